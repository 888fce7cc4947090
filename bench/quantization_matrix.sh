#!/usr/bin/env bash
# quantization_matrix.sh: perplexity of the bundled model under every quantizer and format the
# quantization issue asks for, with size, bits per weight and compression time, as a table.
# Usage: bench/quantization_matrix.sh [BUILD_DIR] [EXTRA compress FLAGS...]
# Calibration: the bundled calib.txt, 128 sequences x 512 tokens (the defaults).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
shift || true
CLI=${BITSMITH_CLI:-$BUILD/app/cli/bitsmith-cli}
EVAL=resources/models/default/eval.txt
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
export OMP_WAIT_POLICY=PASSIVE BITSMITH_THREADS=${BITSMITH_THREADS:-1}

ppl() { "$CLI" eval "$1" --text "$EVAL" --ctx 256 --json --quiet | python3 -c "import json,sys; d=json.load(sys.stdin); print(f\"{d['perplexity']:.4f} {d['tokens_per_second']:.0f}\")"; }

printf "%-28s %10s %8s %9s %10s %9s\n" "configuration" "ppl" "bpw" "MiB" "compress s" "eval tok/s"
read -r p t < <(ppl default)
printf "%-28s %10s %8s %9s %10s %9s\n" "bf16 (original)" "$p" "16.000" "$(python3 -c "print(f'{16794064/1048576:.2f}')")" "-" "$t"
while read -r name flags; do
  [ -z "$name" ] && continue
  # shellcheck disable=SC2086
  stats=$("$CLI" compress default $flags "$@" --out "$OUT/$name" --json --quiet | python3 -c "import json,sys; d=json.load(sys.stdin); print(f\"{d['effective_bpw']:.3f} {d['compressed_bytes']/1048576:.2f} {d['seconds']:.1f}\")")
  read -r bpw mib secs <<<"$stats"
  read -r p t < <(ppl "$OUT/$name")
  printf "%-28s %10s %8s %9s %10s %9s\n" "$name" "$p" "$bpw" "$mib" "$secs" "$t"
  rm -rf "$OUT/$name"
done <<'EOF2'
rtn-w8-perchannel    --method rtn --bits 8 --group 0
gptq-w8-perchannel   --method gptq --bits 8 --group 0
rtn-w4-perchannel    --method rtn --bits 4 --group 0
gptq-w4-perchannel   --method gptq --bits 4 --group 0
rtn-w4-g128          --method rtn --bits 4 --group 128
gptq-w4-g128         --method gptq --bits 4 --group 128
awq-w4-g128          --method awq --bits 4 --group 128
rtn-w3-g64           --method rtn --bits 3 --group 64
gptq-w3-g64          --method gptq --bits 3 --group 64
gptq-w3-g64-actorder --method gptq --bits 3 --group 64 --act-order
awq-w3-g64           --method awq --bits 3 --group 64
rtn-w2-g64           --method rtn --bits 2 --group 64
gptq-w2-g64          --method gptq --bits 2 --group 64
awq-w2-g64           --method awq --bits 2 --group 64
smoothquant-w8a8     --method smoothquant --bits 8 --group 0 --sym
EOF2
