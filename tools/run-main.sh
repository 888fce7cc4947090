#!/usr/bin/env bash
# run-main.sh: the README's main command. Installs what is missing, builds, and opens the
# workbench on the bundled default model. Without a display it runs the same job headless and
# writes its results (model summary, perplexity, a generated sample, a screenshot) to out/.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
bash tools/install-deps.sh
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD_DIR" -j "${JOBS:-2}" --target bitsmith bitsmith-cli

if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
  exec "$BUILD_DIR/app/gui/bitsmith" "${1:-default}"
fi

MODEL=${1:-default}
OUT=${OUT_DIR:-out}
mkdir -p "$OUT"
CLI="$BUILD_DIR/app/cli/bitsmith-cli"
echo "No display: running the main job headless on '$MODEL'; results go to $OUT/"
"$CLI" info "$MODEL" >"$OUT/info.txt"
head -8 "$OUT/info.txt"
"$CLI" info "$MODEL" --json >"$OUT/info.json"
"$CLI" eval "$MODEL" --text resources/models/default/eval.txt --ctx 256 --json | tee "$OUT/eval.json"
"$CLI" generate "$MODEL" --prompt "In the beginning" --max-tokens 60 --temperature 0.8 --seed 1 | tee "$OUT/sample.txt"
QT_QPA_PLATFORM=offscreen "$BUILD_DIR/app/gui/bitsmith" "$MODEL" --screenshot "$OUT/screenshot.png"
echo "Wrote $OUT/info.txt, $OUT/info.json, $OUT/eval.json, $OUT/sample.txt, $OUT/screenshot.png"
