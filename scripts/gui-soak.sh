#!/usr/bin/env bash
# GUI soak (issue 14): sigma-studio --script under Xvfb with N generations (default 200),
# cancels at random steps, model switches and settings changes; prints the counts and the
# resident memory after the warm-up and at the end (the test fails above 5 % growth).
# It is the gui.studio.soak test at a larger count.   scripts/gui-soak.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
cmake --build "$build" -j 2 --target sigma_tests sigma-studio >/dev/null
SIGMA_GUI_SOAK=${1:-200} SIGMA_STUDIO=$PWD/$build/ui/sigma-studio SIGMA_FIXTURES=${SIGMA_FIXTURES:-$PWD/../shared/fixtures} \
  /usr/bin/time -f "wall %e s" "$build/tests/sigma_tests" --test-suite=gui.studio --test-case='soak*' 2>&1 |
  grep -E "gui soak:|test cases|assertions|wall|ERROR|CHECK|REQUIRE"
