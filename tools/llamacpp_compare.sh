#!/usr/bin/env bash
# llamacpp_compare.sh: perplexity of Bitsmith-exported GGUF files by Bitsmith and by llama.cpp's
# llama-perplexity, on the same tokens (llama-perplexity scores the second half of each window,
# so Bitsmith is run with --score-from CTX/2 as well as with its own protocol). Not part of CI:
# it needs a llama.cpp build made outside this repository.
#
# Usage: tools/llamacpp_compare.sh LLAMA_BUILD_BIN_DIR BITSMITH_CLI TEXT CTX FILE.gguf...
#   e.g. tools/llamacpp_compare.sh ~/llama.cpp/build/bin build/app/cli/bitsmith-cli \
#            resources/models/default/eval.txt 256 /tmp/q8.gguf /tmp/gptq4.gguf
set -euo pipefail
LLAMA_BIN="$1"; CLI="$2"; TEXT="$3"; CTX="$4"; shift 4
printf '%-40s %12s %14s %14s %14s\n' file bytes bitsmith-all bitsmith-half llama.cpp
for f in "$@"; do
  all=$("$CLI" eval "$f" --text "$TEXT" --ctx "$CTX" --quiet --json | python3 -c "import json,sys; print('%.4f' % json.load(sys.stdin)['perplexity'])")
  half=$("$CLI" eval "$f" --text "$TEXT" --ctx "$CTX" --score-from $((CTX / 2)) --quiet --json | python3 -c "import json,sys; print('%.4f' % json.load(sys.stdin)['perplexity'])")
  llama=$("$LLAMA_BIN/llama-perplexity" -m "$f" -f "$TEXT" -c "$CTX" 2>&1 | sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p')
  printf '%-40s %12s %14s %14s %14s\n' "$(basename "$f")" "$(stat -c %s "$f")" "$all" "$half" "${llama:-failed}"
done
