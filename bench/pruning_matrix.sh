#!/usr/bin/env bash
# pruning_matrix.sh: perplexity of the bundled model under every pruning method and pattern the
# pruning issue asks for, with sparsity, size, compression time, evaluation speed (ctx 256) and
# decoding speed (200 greedy tokens), as a table.
# Usage: bench/pruning_matrix.sh [BUILD_DIR]   (ONLY=REGEX runs only the matching rows, no baseline)
# Calibration: the bundled calib.txt, 128 sequences x 512 tokens (the defaults; structured: 32).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
CLI=${BITSMITH_CLI:-$BUILD/app/cli/bitsmith-cli}
EVAL=resources/models/default/eval.txt
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
export OMP_WAIT_POLICY=PASSIVE BITSMITH_THREADS=${BITSMITH_THREADS:-1}

ppl() { "$CLI" eval "$1" --text "$EVAL" --ctx 256 --json --quiet | python3 -c "import json,sys; d=json.load(sys.stdin); print(f\"{d['perplexity']:.2f} {d['tokens_per_second']:.0f}\")"; }
# decoding tokens/s: best of 3 runs of 200 greedy tokens (the host may be shared)
decode() {
  for _ in 1 2 3; do "$CLI" generate "$1" --prompt "And God said" --max-tokens 200 --temperature 0 --json 2>/dev/null \
    | python3 -c "import json,sys; print(json.load(sys.stdin)['tokens_per_second'])"; done | sort -g | tail -1 | xargs printf "%.0f"
}
info() { "$CLI" info "$1" --json | python3 -c "import json,sys; d=json.load(sys.stdin); print(f\"{d['sparsity']*100:.1f} {d['bytes']/1048576:.2f} {d['parameters']/1e6:.2f}\")"; }

printf "%-26s %8s %9s %7s %8s %10s %10s %10s\n" "configuration" "ppl" "sparsity%" "MiB" "Mparams" "compress s" "eval tok/s" "dec tok/s"
if [ -z "${ONLY:-}" ]; then
  read -r p t < <(ppl default)
  read -r sp mib mp < <(info default)
  printf "%-26s %8s %9s %7s %8s %10s %10s %10s\n" "bf16 (original)" "$p" "$sp" "$mib" "$mp" "-" "$t" "$(decode default)"
fi
while read -r name flags; do
  [ -z "$name" ] && continue
  [[ -n "${ONLY:-}" && ! "$name" =~ $ONLY ]] && continue
  start=$(date +%s.%N)
  # shellcheck disable=SC2086
  "$CLI" compress default $flags --out "$OUT/$name" --quiet >/dev/null
  secs=$(python3 -c "import time; print(f'{time.time()-$start:.1f}')")
  read -r p t < <(ppl "$OUT/$name")
  read -r sp mib mp < <(info "$OUT/$name")
  printf "%-26s %8s %9s %7s %8s %10s %10s %10s\n" "$name" "$p" "$sp" "$mib" "$mp" "$secs" "$t" "$(decode "$OUT/$name")"
  rm -rf "$OUT/$name"
done <<'EOF2'
magnitude-50%            --method magnitude --sparsity 0.5
magnitude-50%-row        --method magnitude --sparsity 0.5 --param scope=row
magnitude-2:4            --method magnitude --pattern 2:4
wanda-50%                --method wanda --sparsity 0.5
wanda-2:4                --method wanda --pattern 2:4
sparsegpt-50%            --method sparsegpt --sparsity 0.5
sparsegpt-2:4            --method sparsegpt --pattern 2:4
sparsegpt-2:4+w4g128     --method sparsegpt --pattern 2:4 --bits 4 --group 128
magnitude-4:8            --method magnitude --pattern 4:8
magnitude-90%            --method magnitude --sparsity 0.9
structured-mlp10%        --method structured --mlp 0.10
structured-mlp25%        --method structured --mlp 0.25
structured-heads10%      --method structured --heads 0.10
structured-heads25%      --method structured --heads 0.25
structured-h50%+mlp25%   --method structured --heads 0.5 --mlp 0.25
EOF2
