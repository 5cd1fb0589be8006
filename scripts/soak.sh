#!/usr/bin/env bash
# Kill-and-resume soak (issue 14): a `sigma batch` job file of JOBS jobs (default 1000) on
# the bundled model at 64x64, 8 steps, split over 4 shards that run at once, each killed
# with SIGKILL at random moments (up to KILLS times per shard, default 40) and restarted
# until done; then every file is checked (exactly once, decodes, its own metadata, no
# temporary left, summaries add up). It is the e2e.kill_resume test at a larger count.
#   scripts/soak.sh [JOBS] [KILLS]        (SEED=n varies the kill moments)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
cmake --build "$build" -j 2 --target sigma_tests sigma >/dev/null
SIGMA_SOAK_JOBS=${1:-1000} SIGMA_SOAK_KILLS=${2:-40} SIGMA_SOAK_SEED=${SEED:-14} \
  SIGMA_FIXTURES=${SIGMA_FIXTURES:-$PWD/../shared/fixtures} \
  /usr/bin/time -v "$build/tests/sigma_tests" --test-suite=e2e.kill_resume --success=false 2>&1 |
  grep -E "kill_resume:|test cases|assertions|Elapsed|Maximum resident|ERROR|CHECK|REQUIRE"
