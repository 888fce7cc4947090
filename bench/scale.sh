#!/usr/bin/env bash
# scale.sh: time and peak memory of Bitsmith's jobs on real-sized checkpoints (issue 13), each job
# inside a memory cgroup (../shared/tools/memcap, or MEMCAP): the cap is what the job must pass in;
# page cache of the mapped checkpoint is reclaimable inside it, the program's own memory is not.
#
#   bash bench/scale.sh                 # 1B and 8B shapes (generated on demand into CKPT_DIR)
#   SHAPES=1b bash bench/scale.sh       # one shape
#   LLAMA_BIN=/path/to/llama.cpp/build/bin bash bench/scale.sh   # + llama.cpp on the same files
#
# Environment: CKPT_DIR (default /work/ckpt, never inside the repository), BITSMITH_CLI (default
# build/app/cli/bitsmith-cli), THREADS (default 1), KEEP=1 keeps the outputs, GPTQ_8B=1 also runs
# GPTQ on the 8B shape (about an hour at one thread), DROP_CACHES=0 keeps the page cache between
# jobs (by default it is dropped before each, when writable, so that the cap binds).
# Prints one row per job: job, shape, cap, memcap's peak (includes page cache charged to the
# group), the job's own peak anonymous memory (its --json peak_memory), wall time, exit status,
# and PASS/FAIL against the issue's goal.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CLI=${BITSMITH_CLI:-$ROOT/build/app/cli/bitsmith-cli}
CKPT_DIR=${CKPT_DIR:-/work/ckpt}
THREADS=${THREADS:-1}
SHAPES=${SHAPES:-"1b 8b"}
MEMCAP=${MEMCAP:-$ROOT/../shared/tools/memcap}
WORK=${WORK:-$CKPT_DIR/scale-out}
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=$THREADS QT_QPA_PLATFORM=offscreen
[ -x "$CLI" ] || { echo "scale.sh: $CLI not built (cmake --build build --target bitsmith-cli)" >&2; exit 2; }
[ -x "$MEMCAP" ] || { echo "scale.sh: memcap not found at $MEMCAP (set MEMCAP)" >&2; exit 2; }
mkdir -p "$WORK"

mib() { echo $(( $1 / 1024 / 1024 )); }
dir_bytes() { du -sb --apparent-size "$1" | cut -f1; }

ROWS=()
# run JOB SHAPE CAP_MIB GOAL_WALL_S CMD... : runs CMD under the cap, records a row.
run() {
  local job=$1 shape=$2 cap=$3 goalwall=$4; shift 4
  local log=$WORK/$shape-$job
  local t0 t1 rc peak anon wall pass
  # Cold page cache, so the job's own reads are charged to its group and the cap really binds.
  if [ "${DROP_CACHES:-1}" = 1 ] && [ -w /proc/sys/vm/drop_caches ]; then sync; echo 1 > /proc/sys/vm/drop_caches; fi
  t0=$(date +%s.%N)
  "$MEMCAP" "${cap}M" "$@" >"$log.out" 2>"$log.err"
  rc=$?
  t1=$(date +%s.%N)
  peak=$(sed -n 's/.*memcap: rc=[0-9]* peak=\([0-9]*\) MiB.*/\1/p' "$log.err" | tail -1)
  anon=$(python3 -c 'import json,sys
try:
    d=json.load(open(sys.argv[1])); print(int(d["peak_memory"]["anon_peak_bytes"])//1048576)
except Exception: print("-")' "$log.out")
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')
  pass=PASS
  [ "$rc" = 0 ] || pass=FAIL
  if [ "$goalwall" != "-" ] && awk -v w="$wall" -v g="$goalwall" 'BEGIN{exit !(w>g)}'; then pass="FAIL(>${goalwall}s)"; fi
  ROWS+=("$(printf '%-22s %-5s %9s %9s %9s %8s %4s  %s' "$job" "$shape" "$cap" "${peak:--}" "$anon" "$wall" "$rc" "$pass")")
  printf '%s\n' "${ROWS[-1]}" >&2
  [ "$rc" = 0 ] || tail -3 "$log.err" >&2
}

json_field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d.get(sys.argv[2], "-"))' "$1" "$2" 2>/dev/null || echo -; }

for shape in $SHAPES; do
  case $shape in
    1b) name=llama-3.2-1b ;;
    8b) name=llama-3-8b ;;
    *) echo "scale.sh: unknown shape $shape (1b, 8b)" >&2; exit 2 ;;
  esac
  ckpt=$CKPT_DIR/$name
  if [ ! -d "$ckpt" ]; then
    echo "scale.sh: generating $ckpt" >&2
    python3 tools/make_real_shape_checkpoint.py --shape "$name" --out "$ckpt" >&2 || exit 1
  fi
  file=$(dir_bytes "$ckpt")
  plus2=$(( $(mib "$file") + 2048 ))
  plus3=$(( $(mib "$file") + 3072 ))
  echo "== $name: $(mib "$file") MiB on disk" >&2
  common=(--threads "$THREADS" --quiet --json)
  run info "$shape" 1024 5 "$CLI" info "$ckpt" "${common[@]}"
  GUI=${BITSMITH_GUI:-$ROOT/build/app/gui/bitsmith}
  if [ -x "$GUI" ]; then
    run gui-open "$shape" 2048 3 "$GUI" "$ckpt" --open-time
    grep opened "$WORK/$shape-gui-open.out" >&2 || true
  fi
  run eval-ctx128 "$shape" "$plus2" - "$CLI" eval "$ckpt" --text "$ckpt/eval.txt" --ctx 128 --max-windows 1 "${common[@]}"
  run eval-ctx256 "$shape" "$plus2" - "$CLI" eval "$ckpt" --text "$ckpt/eval.txt" --ctx 256 --max-windows 1 "${common[@]}"
  tps=$(json_field "$WORK/$shape-eval-ctx256.out" tokens_per_second)
  rm -rf "$WORK/$shape-rtn"
  run compress-rtn-w4g128 "$shape" "$plus2" - "$CLI" compress "$ckpt" --method rtn --bits 4 --group 128 --out "$WORK/$shape-rtn" "${common[@]}"
  if [ -d "$WORK/$shape-rtn" ]; then
    out=$(dir_bytes "$WORK/$shape-rtn")
    run eval-rtn-output "$shape" $(( $(mib "$out") + 2048 )) - "$CLI" eval "$WORK/$shape-rtn" --text "$ckpt/eval.txt" --ctx 128 --max-windows 1 "${common[@]}"
  fi
  if [ "$shape" = 1b ] || [ "${GPTQ_8B:-0}" = 1 ]; then
    rm -rf "$WORK/$shape-gptq"
    run compress-gptq-w4g128 "$shape" "$plus2" - "$CLI" compress "$ckpt" --method gptq --bits 4 --group 128 --calib "$ckpt/calib.txt" \
      --calib-sequences 8 --calib-length 256 --out "$WORK/$shape-gptq" "${common[@]}"
  fi
  if [ "$shape" = 1b ]; then
    rm -f "$WORK/$shape-sens.h5"
    run sensitivity-2cand "$shape" "$plus3" - "$CLI" sensitivity "$ckpt" --candidates rtn:w4g128,rtn:w8 --windows 2 --ctx 128 \
      --calib-sequences 8 --calib-length 128 --naive-samples 0 --hutchinson-probes 0 --out "$WORK/$shape-sens.h5" "${common[@]}"
  fi
  run export-gguf-q8_0 "$shape" "$plus2" - "$CLI" export "$ckpt" --format gguf --type Q8_0 --out "$WORK/$shape-q8_0.gguf" "${common[@]}"
  rm -rf "$WORK/$shape-hf"
  run export-hf-2GB-shards "$shape" "$plus2" - "$CLI" export "$ckpt" --format hf --max-shard-size 2GB --out "$WORK/$shape-hf" "${common[@]}"
  echo "== $name: bf16 prefill $tps tok/s at ctx 256, $THREADS thread(s)" >&2

  if [ -n "${LLAMA_BIN:-}" ]; then
    # llama.cpp on the same weights: Bitsmith's BF16 GGUF of the checkpoint, then llama.cpp's own tools.
    run export-gguf-bf16 "$shape" "$plus2" - "$CLI" export "$ckpt" --format gguf --out "$WORK/$shape-bf16.gguf" "${common[@]}"
    g=$WORK/$shape-bf16.gguf
    gcap=$(( $(mib "$(dir_bytes "$g")") + 2048 ))
    run llama-perplexity-ctx128 "$shape" "$gcap" - "$LLAMA_BIN/llama-perplexity" -m "$g" -f "$ckpt/eval.txt" -c 128 --chunks 1 -t "$THREADS"
    run llama-quantize-q8_0 "$shape" "$gcap" - "$LLAMA_BIN/llama-quantize" "$g" "$WORK/$shape-llama-q8_0.gguf" Q8_0 "$THREADS"
    run llama-bench-pp256 "$shape" "$gcap" - "$LLAMA_BIN/llama-bench" -m "$g" -p 256 -n 0 -t "$THREADS" -r 1
    grep -E "pp256" "$WORK/$shape-llama-bench-pp256.out" >&2 || true
  fi
  [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK/$shape-rtn" "$WORK/$shape-gptq" "$WORK/$shape-hf" "$WORK"/$shape-*.gguf "$WORK/$shape-sens.h5"
done

echo
printf '%-22s %-5s %9s %9s %9s %8s %4s  %s\n' job shape "cap MiB" "peak MiB" "anon MiB" "wall s" rc goal
for r in "${ROWS[@]}"; do printf '%s\n' "$r"; done
