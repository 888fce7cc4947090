#!/usr/bin/env bash
# cli_e2e.sh: end-to-end checks of bitsmith-cli as a user runs it: real commands on the bundled
# model, and bad input that must give a one-line error with a HINT and a non-zero exit, never a
# crash. Usage: cli_e2e.sh PATH/TO/bitsmith-cli SOURCE_DIR
set -u
CLI="$1"
SRC="$2"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
pass=0
failed=0

ok() { pass=$((pass + 1)); echo "PASS: $1"; }
bad() { failed=$((failed + 1)); echo "FAIL: $1"; }

# expect_fail NAME EXPECTED_SUBSTRING -- command...
expect_fail() {
  local name="$1" want="$2"; shift 3
  "$@" >"$TMP/out" 2>"$TMP/err"
  local rc=$?
  if [ $rc -eq 0 ]; then bad "$name: exit 0"; return; fi
  if [ $rc -ge 128 ]; then bad "$name: crashed (rc $rc)"; cat "$TMP/err"; return; fi
  if ! grep -q "^bitsmith-cli: error: .*$want" "$TMP/err"; then bad "$name: no error line with '$want'"; cat "$TMP/err"; return; fi
  if ! grep -q "^HINT: " "$TMP/err"; then bad "$name: no HINT line"; cat "$TMP/err"; return; fi
  ok "$name"
}

# --- real runs on the bundled model -------------------------------------------------------
if "$CLI" info default --json >"$TMP/info.json" 2>"$TMP/err" \
   && python3 -c "import json,sys; d=json.load(open('$TMP/info.json')); assert d['architecture']=='LlamaForCausalLM'; assert d['parameters']==sum(t['parameters'] for t in d['tensors']); assert len(d['tensors'])==2+9*d['layers']+1" ; then
  ok "info --json"
else
  bad "info --json"; cat "$TMP/err"
fi

if "$CLI" eval default --text "$SRC/resources/models/default/eval.txt" --ctx 128 --max-windows 2 --json --quiet >"$TMP/eval.json" 2>"$TMP/err" \
   && python3 -c "import json; d=json.load(open('$TMP/eval.json')); assert d['windows']==2 and d['ctx']==128 and 1<d['perplexity']<1000 and d['tokens']>1000 and d['seconds']>0, d"; then
  ok "eval --json"
else
  bad "eval --json"; cat "$TMP/err" "$TMP/eval.json"
fi

if "$CLI" logits default --text "In the beginning" --out "$TMP/l.npy" >/dev/null 2>"$TMP/err" \
   && python3 -c "
import struct
b=open('$TMP/l.npy','rb').read(); assert b[:6]==b'\x93NUMPY'
n=struct.unpack('<H',b[8:10])[0]; h=b[10:10+n].decode(); assert \"'<f4'\" in h and ', 4096)' in h, h
assert len(b)==10+n+4*4096*int(h.split('(')[1].split(',')[0])"; then
  ok "logits .npy"
else
  bad "logits .npy"; cat "$TMP/err"
fi

# logits of given ids (no tokenizer: the tiny yarn-rope checkpoint) equal transformers' reference
TINY="$SRC/tests/data/tiny/rope-yarn"
IDS=$(python3 -c "import json; print(','.join(map(str, json.load(open('$TINY/ref.json'))['input_ids'])))")
if "$CLI" logits "$TINY" --ids "$IDS" --out "$TMP/ids.npy" >/dev/null 2>"$TMP/err" \
   && python3 -c "
import struct
def load(p):
    b=open(p,'rb').read(); n=struct.unpack('<H',b[8:10])[0]; d=b[10+n:]
    return struct.unpack('<%df' % (len(d)//4), d)
a=load('$TMP/ids.npy'); r=load('$TINY/logits.npy'); assert len(a)==len(r)==12*300
m=max(abs(x-y) for x,y in zip(a,r)); assert m<1e-3, m"; then
  ok "logits --ids (yarn rope) vs transformers"
else
  bad "logits --ids"; cat "$TMP/err"
fi
if "$CLI" info "$SRC/tests/data/tiny/qwen3-sliding" --json >"$TMP/q3.json" 2>"$TMP/err" \
   && python3 -c "import json; d=json.load(open('$TMP/q3.json')); assert d['architecture']=='Qwen3ForCausalLM' and d['rope_type']=='default' and d['sliding_window']==16 and any(t['kind']=='attn.q_norm' for t in d['tensors']), d"; then
  ok "info --json of a Qwen3 checkpoint"
else
  bad "info --json (qwen3)"; cat "$TMP/err"
fi

a=$("$CLI" generate default --prompt "And God said" --max-tokens 12 --temperature 0 2>/dev/null)
b=$("$CLI" generate default --prompt "And God said" --max-tokens 12 --temperature 0 2>/dev/null)
if [ -n "$a" ] && [ "$a" = "$b" ] && [[ "$a" == "And God said"* ]] && [ ${#a} -gt 14 ]; then
  ok "generate (greedy, deterministic): $a"
else
  bad "generate: '$a' vs '$b'"
fi

# sensitivity -> allocate -> compress on a small evaluation (1 window of 64 tokens).
if "$CLI" sensitivity default --text "$SRC/resources/models/default/eval.txt" --calib "$SRC/resources/models/default/calib.txt" \
     --candidates rtn:w2g64,rtn:w8,gptq:w4g128 --windows 1 --ctx 64 --calib-sequences 4 --calib-length 64 --naive-samples 1 \
     --out "$TMP/exp.h5" --json --quiet >"$TMP/sens.json" 2>"$TMP/err" \
   && python3 -c "import json; d=json.load(open('$TMP/sens.json')); assert len(d['layers'])==56 and len(d['layers'][0]['settings'])==3 and d['naive_seconds_estimate']>0, d['out']" \
   && "$CLI" allocate "$TMP/exp.h5" --target-bpw 4 --out "$TMP/recipe.json" --json >"$TMP/alloc.json" 2>"$TMP/err" \
   && python3 -c "import json; d=json.load(open('$TMP/alloc.json')); assert d['bits_per_weight']<=4 and d['greedy_predicted_loss_increase']>=d['predicted_loss_increase']-1e-12, d" \
   && "$CLI" compress default --recipe "$TMP/recipe.json" --out "$TMP/mixed" --quiet >/dev/null 2>"$TMP/err" \
   && "$CLI" eval "$TMP/mixed" --text "$SRC/resources/models/default/eval.txt" --ctx 64 --max-windows 1 --quiet >/dev/null 2>"$TMP/err"; then
  ok "sensitivity -> allocate -> compress"
  if "$CLI" frontier "$TMP/exp.h5" --measure 2 --eval-windows 1 --no-uniform --out "$TMP/frontier.json" --quiet >/dev/null 2>"$TMP/err" \
     && python3 -c "
import json; d=json.load(open('$TMP/frontier.json')); p=d['predicted']; m=d['measured']
assert len(m)==2 and all(x['perplexity']>1 for x in m), m
assert all(a['bytes']<b['bytes'] and a['predicted']>b['predicted'] for a,b in zip(p,p[1:]))"; then
    ok "frontier"
  else
    bad "frontier"; cat "$TMP/err"
  fi
  # The HTML report of the sweep, with the compressed folder's recipe tabulated: three embedded
  # PNGs (heatmap, proxy map, frontier) that decode, every layer named, the recipe's source said.
  if "$CLI" export "$TMP/exp.h5" --format report --model "$TMP/mixed" --out "$TMP/report.html" --json --quiet \
       >"$TMP/report.json" 2>"$TMP/err" \
     && python3 -c "
import json, re, base64, struct
d = json.load(open('$TMP/report.json')); assert d['layers'] == 56 and d['settings'] == 3 and 'recipe.json' in d['recipe'], d
h = open('$TMP/report.html', encoding='utf-8').read()
imgs = [base64.b64decode(b) for b in re.findall(r'data:image/png;base64,([A-Za-z0-9+/=]+)', h)]
assert len(imgs) == 3, len(imgs)
for png in imgs:
    assert png[:8] == b'\\x89PNG\\r\\n\\x1a\\n' and len(png) > 5000, len(png)
    w, hh = struct.unpack('>II', png[16:24]); assert w >= 400 and hh >= 300, (w, hh)
for i in range(8):
    assert '<td>model.layers.%d.mlp.down_proj</td>' % i in h
assert all('id=\"%s\"' % s in h for s in ('model', 'data', 'recipe', 'sensitivity', 'frontier', 'measured', 'timings'))
assert 'report.json' in h
"; then
    ok "export --format report"
  else
    bad "export --format report"; cat "$TMP/err"
  fi
else
  bad "sensitivity -> allocate -> compress"; cat "$TMP/err"
fi

# export: GGUF (dense Q8_0 and the mixed compressed model), Hugging Face folders, recipe YAML.
EVAL="$SRC/resources/models/default/eval.txt"
if "$CLI" export default --format gguf --type Q8_0 --out "$TMP/q8.gguf" --quiet >/dev/null 2>"$TMP/err" \
   && "$CLI" info "$TMP/q8.gguf" --json >"$TMP/q8info.json" 2>"$TMP/err" \
   && python3 -c "
import json; d=json.load(open('$TMP/q8info.json')); f=[t['format'] for t in d['tensors']]
assert f.count('Q8_0')==2+7*d['layers'] and f.count('F32')==1+2*d['layers'], f
r=json.load(open('$TMP/q8.report.json')); assert r['architecture']=='llama' and r['preTokenizer']=='gpt-2', r
assert open('$TMP/q8.tensor-types.txt').read().count('=q8_0')==9" \
   && "$CLI" eval "$TMP/q8.gguf" --text "$EVAL" --ctx 64 --max-windows 2 --json --quiet >"$TMP/q8eval.json" 2>"$TMP/err" \
   && "$CLI" eval default --text "$EVAL" --ctx 64 --max-windows 2 --json --quiet >"$TMP/bfeval.json" 2>"$TMP/err" \
   && python3 -c "
import json; a=json.load(open('$TMP/q8eval.json'))['perplexity']; b=json.load(open('$TMP/bfeval.json'))['perplexity']
assert abs(a-b)<0.01*b, (a,b)"; then
  ok "export gguf Q8_0 -> info/eval"
else
  bad "export gguf Q8_0"; cat "$TMP/err"
fi
if "$CLI" export default --format hf --out "$TMP/hf" --quiet >/dev/null 2>"$TMP/err" \
   && "$CLI" eval "$TMP/hf" --text "$EVAL" --ctx 64 --max-windows 2 --json --quiet >"$TMP/hfeval.json" 2>"$TMP/err" \
   && python3 -c "
import json; a=json.load(open('$TMP/hfeval.json'))['perplexity']; b=json.load(open('$TMP/bfeval.json'))['perplexity']
assert a==b, (a,b)"; then
  ok "export hf -> identical perplexity"
else
  bad "export hf"; cat "$TMP/err"
fi
if [ -d "$TMP/mixed" ]; then
  if "$CLI" export "$TMP/mixed" --format gguf --out "$TMP/mixed.gguf" --json --quiet >"$TMP/mixedgguf.json" 2>"$TMP/err" \
     && python3 -c "
import json; d=json.load(open('$TMP/mixedgguf.json')); assert d['fileBytes']>0 and len(d['tensors'])==3+9*8, d['howCounts']
assert sum(v for k,v in d['howCounts'].items() if k in ('exact','rounded-min','requantized'))==56, d['howCounts']" \
     && "$CLI" eval "$TMP/mixed.gguf" --text "$EVAL" --ctx 64 --max-windows 1 --quiet >/dev/null 2>"$TMP/err" \
     && "$CLI" export "$TMP/mixed" --format hf-gptq --out "$TMP/gptq" --quiet >/dev/null 2>"$TMP/err" \
     && python3 -c "
import json; q=json.load(open('$TMP/gptq/config.json'))['quantization_config']
assert q['quant_method']=='gptq' and q['checkpoint_format'] in ('gptq','gptq_v2') and q['bits'] in (2,4,8), q" \
     && "$CLI" export "$TMP/mixed" --format recipe-yaml --out "$TMP/recipe.yaml" --quiet >/dev/null 2>"$TMP/err" \
     && grep -q "num_bits:" "$TMP/recipe.yaml" && grep -q "config_groups:" "$TMP/recipe.yaml"; then
    ok "export mixed -> gguf/eval, hf-gptq, recipe-yaml"
  else
    bad "export mixed"; cat "$TMP/err"
  fi
fi

# pruning: N:M magnitude (no calibration), Wanda, SparseGPT + 4-bit, structured; info reports sparsity.
if "$CLI" compress default --method magnitude --pattern 2:4 --out "$TMP/mag24" --quiet >/dev/null 2>"$TMP/err" \
   && "$CLI" info "$TMP/mag24" --json >"$TMP/mag24.json" 2>"$TMP/err" \
   && python3 -c "
import json; d=json.load(open('$TMP/mag24.json')); r=json.load(open('$TMP/mag24/report.json'))
lin=[t for t in d['tensors'] if t['block']>=0 and t['kind'] in ('attn.q','attn.k','attn.v','attn.o','mlp.gate','mlp.up','mlp.down')]
assert len(lin)==56 and all(t['sparsity']==0.5 and t['dtype']=='BF16' for t in lin), lin[0]
assert 0.4<d['sparsity']<0.5 and abs(r['sparsity']-d['sparsity'])<1e-9, (d['sparsity'], r['sparsity'])
assert all(l['pattern']=='2:4' and l['sparsity']==0.5 for l in r['layers'])" \
   && "$CLI" eval "$TMP/mag24" --text "$SRC/resources/models/default/eval.txt" --ctx 128 --max-windows 2 --quiet >/dev/null 2>"$TMP/err"; then
  ok "compress --method magnitude --pattern 2:4, info sparsity"
else
  bad "compress magnitude 2:4"; cat "$TMP/err"
fi
if "$CLI" compress default --method wanda --sparsity 0.5 --calib-sequences 2 --calib-length 64 --out "$TMP/wanda" --quiet >/dev/null 2>"$TMP/err" \
   && "$CLI" compress default --method sparsegpt --pattern 2:4 --bits 4 --group 128 --calib-sequences 2 --calib-length 64 --out "$TMP/sgpt" --quiet >/dev/null 2>"$TMP/err" \
   && "$CLI" info "$TMP/wanda" --json >"$TMP/wanda.json" && "$CLI" info "$TMP/sgpt" --json >"$TMP/sgpt.json" \
   && python3 -c "
import json; w=json.load(open('$TMP/wanda.json')); s=json.load(open('$TMP/sgpt.json'))
assert 0.4<w['sparsity']<0.5 and s['quantized_layers']==56 and s['sparsity']>0.4, (w['sparsity'], s['sparsity'])
assert all(t['format']=='q4 g128' for t in s['tensors'] if t['kind']=='mlp.up')" \
   && "$CLI" eval "$TMP/sgpt" --text "$SRC/resources/models/default/eval.txt" --ctx 128 --max-windows 2 --quiet >/dev/null 2>"$TMP/err"; then
  ok "compress --method wanda / sparsegpt + 4-bit"
else
  bad "compress wanda / sparsegpt"; cat "$TMP/err"
fi
if "$CLI" compress default --method structured --heads 0.5 --mlp 0.25 --calib-sequences 2 --calib-length 64 --out "$TMP/struct" --quiet --json >"$TMP/struct.json" 2>"$TMP/err" \
   && "$CLI" info "$TMP/struct" --json >"$TMP/structinfo.json" 2>"$TMP/err" \
   && python3 -c "
import json; d=json.load(open('$TMP/structinfo.json')); c=json.load(open('$TMP/struct/config.json')); r=json.load(open('$TMP/struct.json'))
assert d['intermediate_size']==576 and d['num_attention_heads']==2 and d['num_key_value_heads']==2 and c['head_dim']==64, d
assert d['parameters']==r['parameters_after'] < r['parameters_before']" \
   && "$CLI" eval "$TMP/struct" --text "$SRC/resources/models/default/eval.txt" --ctx 128 --max-windows 2 --quiet >/dev/null 2>"$TMP/err"; then
  ok "compress --method structured"
else
  bad "compress structured"; cat "$TMP/err"
fi

# distill: a 3-bit student (RTN, no calibration) trained 3 steps quantization-aware; the written
# compressed folder runs in eval with the perplexity the distiller measured on the same windows.
if "$CLI" compress default --method rtn --bits 3 --group 64 --out "$TMP/q3" --quiet >/dev/null 2>"$TMP/err" \
   && "$CLI" distill default --student "$TMP/q3" --text "$SRC/resources/models/default/calib.txt" \
        --val "$SRC/resources/models/default/eval.txt" --steps 3 --batch 1 --ctx 32 --val-windows 2 --lr 1e-3 \
        --checkpoint "$TMP/ckpt" --out "$TMP/q3d" --json >"$TMP/distill.json" 2>"$TMP/err" \
   && "$CLI" eval "$TMP/q3d" --text "$SRC/resources/models/default/eval.txt" --ctx 32 --max-windows 2 --json --quiet >"$TMP/q3d.json" 2>>"$TMP/err" \
   && "$CLI" info "$TMP/q3d" --json >"$TMP/q3dinfo.json" 2>>"$TMP/err" \
   && python3 -c "
import json
d=json.load(open('$TMP/distill.json')); e=json.load(open('$TMP/q3d.json')); i=json.load(open('$TMP/q3dinfo.json'))
assert d['steps']==3 and len(d['history'])==3 and d['teacher_used'], d
h=d['history'][-1]; assert abs(h['loss']-(h['kd']+h['ce']))<1e-6 and h['tokens_per_second']>0, h
assert d['perplexity_before']>d['teacher_perplexity']>1, d
assert abs(e['perplexity']-d['perplexity_after'])<1e-3*e['perplexity'], (e['perplexity'], d['perplexity_after'])
q=[t for t in i['tensors'] if 'q3 g64' in t.get('format','')]; assert len(q)==7*8, len(q)
" && test -s "$TMP/ckpt/checkpoint.bin"; then
  ok "compress -> distill (QAT) -> eval"
else
  bad "compress -> distill (QAT) -> eval"; cat "$TMP/err" "$TMP/distill.json"
fi

# --- bad input ------------------------------------------------------------------------------
expect_fail "missing model folder" "model folder not found" -- "$CLI" info /nonexistent/model
expect_fail "unknown command" "unknown command" -- "$CLI" frobnicate
expect_fail "missing --text" "--text is required" -- "$CLI" eval default
expect_fail "bad ctx" "ctx" -- "$CLI" eval default --text "$SRC/resources/models/default/eval.txt" --ctx 100000
expect_fail "bad ctx type" "ctx" -- "$CLI" eval default --text "$SRC/resources/models/default/eval.txt" --ctx abc
expect_fail "bad --ids" "not a token id" -- "$CLI" logits default --ids 1,two,3 --out "$TMP/x.npy"
expect_fail "id outside the vocabulary" "outside the vocabulary" -- "$CLI" logits default --ids 1,999999 --out "$TMP/x.npy"
expect_fail "missing text file" "cannot open text file" -- "$CLI" eval default --text /nonexistent.txt
expect_fail "bad backend" "unknown backend" -- "$CLI" eval default --text /dev/null --backend cuda
expect_fail "bad temperature" "temperature" -- "$CLI" generate default --prompt hi --temperature -1

mkdir -p "$TMP/broken"
cp "$SRC/resources/models/default/config.json" "$SRC/resources/models/default/tokenizer.json" "$TMP/broken/"
head -c 5000 "$SRC/resources/models/default/model.safetensors" >"$TMP/broken/model.safetensors"
expect_fail "truncated safetensors" "model.safetensors" -- "$CLI" info "$TMP/broken"
sed 's/LlamaForCausalLM/FalconForCausalLM/' "$SRC/resources/models/default/config.json" >"$TMP/broken/config.json"
expect_fail "unknown architecture" "FalconForCausalLM" -- "$CLI" info "$TMP/broken"
echo '{"architectures": [' >"$TMP/broken/config.json"
expect_fail "corrupt config" "config" -- "$CLI" info "$TMP/broken"
printf '\x00\x01\x02' >"$TMP/empty.txt"
expect_fail "text shorter than a window" "window" -- "$CLI" eval default --text "$TMP/empty.txt"

expect_fail "bad candidates" "candidate" -- "$CLI" sensitivity default --candidates rtn:w9 --out "$TMP/x.h5"
head -c 3000 "$TMP/exp.h5" >"$TMP/trunc.h5" 2>/dev/null
expect_fail "truncated experiment" "experiment" -- "$CLI" allocate "$TMP/trunc.h5" --target-bpw 4 --out "$TMP/r.json"
expect_fail "report of a truncated experiment" "experiment" -- "$CLI" export "$TMP/trunc.h5" --format report --out "$TMP/x.html"
expect_fail "--model without report" "--model is for --format report" -- "$CLI" export default --format hf --model "$TMP" --out "$TMP/x"
expect_fail "infeasible budget" "smallest possible size" -- "$CLI" allocate "$TMP/exp.h5" --target-bpw 1 --out "$TMP/r.json"
expect_fail "two budgets" "exactly one" -- "$CLI" allocate "$TMP/exp.h5" --target-bpw 4 --max-bytes 10 --out "$TMP/r.json"

expect_fail "export bad format" "--format" -- "$CLI" export default --format onnx --out "$TMP/x"
expect_fail "export bad type" "not a GGUF type" -- "$CLI" export default --format gguf --type Q9_9 --out "$TMP/x.gguf"
expect_fail "gptq of a dense model" "no quantized layers" -- "$CLI" export default --format hf-gptq --out "$TMP/x"
head -c $(( $(stat -c %s "$TMP/q8.gguf" 2>/dev/null || echo 200000) - 100000 )) "$TMP/q8.gguf" >"$TMP/trunc.gguf" 2>/dev/null
expect_fail "truncated gguf" "outside the data section" -- "$CLI" info "$TMP/trunc.gguf"
printf 'GGML0000000000000000000000000000' >"$TMP/magic.gguf"
expect_fail "bad gguf magic" "bad magic" -- "$CLI" eval "$TMP/magic.gguf" --text "$EVAL"

expect_fail "bad sparsity" "sparsity" -- "$CLI" compress default --method magnitude --sparsity 1.5 --out "$TMP/x"
expect_fail "bad pattern" "pattern" -- "$CLI" compress default --method magnitude --pattern 3:2 --out "$TMP/x"
expect_fail "pruning without sparsity" "sparsity" -- "$CLI" compress default --method wanda --sparsity 0 --out "$TMP/x"
expect_fail "bits with a pruner that cannot quantize" "sparsegpt" -- "$CLI" compress default --method wanda --sparsity 0.5 --bits 4 --out "$TMP/x"
expect_fail "bad structured fraction" "MLP neurons" -- "$CLI" compress default --method structured --mlp 1.2 --out "$TMP/x"

expect_fail "distill bad student" "unknown student change" -- "$CLI" distill default --student layers:half --text "$SRC/resources/models/default/calib.txt" --steps 1 --out "$TMP/x"
expect_fail "distill missing --student" "--student is required" -- "$CLI" distill default --text "$SRC/resources/models/default/calib.txt" --steps 1 --out "$TMP/x"
expect_fail "distill bad alpha" "alpha" -- "$CLI" distill default --student layers:4 --text "$SRC/resources/models/default/calib.txt" --steps 1 --alpha 2 --out "$TMP/x"
expect_fail "distill huge batch" "GiB of activations" -- "$CLI" distill default --student layers:4 --text "$SRC/resources/models/default/calib.txt" --steps 1 --batch 100000 --ctx 512 --out "$TMP/x"
expect_fail "distill bad checkpoint" "checkpoint" -- "$CLI" distill default --student layers:4 --text "$SRC/resources/models/default/calib.txt" --steps 1 --resume "$TMP" --out "$TMP/x"

echo "cli_e2e: $pass passed, $failed failed"
[ $failed -eq 0 ]
