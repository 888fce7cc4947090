#!/usr/bin/env bash
# run-tests.sh: the README's test command. Installs what is missing (Debian packages, the real
# tokenizer vocabularies used as test references), builds everything, and runs the whole suite.
# Environment: BUILD_DIR (default build), BITSMITH_SANITIZE=ON for an ASan/UBSan build,
# JOBS (parallel compile jobs, default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-2}
SANITIZE=${BITSMITH_SANITIZE:-OFF}

bash tools/install-deps.sh
bash tools/fetch-test-tokenizers.sh "$PWD/$BUILD_DIR/test-tokenizers"

cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBITSMITH_SANITIZE="$SANITIZE" >/dev/null
cmake --build "$BUILD_DIR" -j "$JOBS"

export QT_QPA_PLATFORM=offscreen OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1
export BITSMITH_TEST_TOKENIZERS="$PWD/$BUILD_DIR/test-tokenizers"
cd "$BUILD_DIR"
ctest --output-on-failure --timeout 600 -j "$JOBS"
