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
else
  bad "sensitivity -> allocate -> compress"; cat "$TMP/err"
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
expect_fail "infeasible budget" "smallest possible size" -- "$CLI" allocate "$TMP/exp.h5" --target-bpw 1 --out "$TMP/r.json"
expect_fail "two budgets" "exactly one" -- "$CLI" allocate "$TMP/exp.h5" --target-bpw 4 --max-bytes 10 --out "$TMP/r.json"

expect_fail "distill bad student" "unknown student change" -- "$CLI" distill default --student layers:half --text "$SRC/resources/models/default/calib.txt" --steps 1 --out "$TMP/x"
expect_fail "distill missing --student" "--student is required" -- "$CLI" distill default --text "$SRC/resources/models/default/calib.txt" --steps 1 --out "$TMP/x"
expect_fail "distill bad alpha" "alpha" -- "$CLI" distill default --student layers:4 --text "$SRC/resources/models/default/calib.txt" --steps 1 --alpha 2 --out "$TMP/x"
expect_fail "distill huge batch" "GiB of activations" -- "$CLI" distill default --student layers:4 --text "$SRC/resources/models/default/calib.txt" --steps 1 --batch 100000 --ctx 512 --out "$TMP/x"
expect_fail "distill bad checkpoint" "checkpoint" -- "$CLI" distill default --student layers:4 --text "$SRC/resources/models/default/calib.txt" --steps 1 --resume "$TMP" --out "$TMP/x"

echo "cli_e2e: $pass passed, $failed failed"
[ $failed -eq 0 ]
