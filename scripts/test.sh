#!/usr/bin/env bash
# Configures, builds and runs the whole CTest suite. Extra arguments go to ctest
# (e.g. `scripts/test.sh -L unit`). BUILD_DIR and CMAKE_ARGS override the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release ${CMAKE_ARGS:-}
cmake --build "$build" -j "$(nproc)"
cd "$build"
ctest --output-on-failure "$@"
