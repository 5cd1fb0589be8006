#!/usr/bin/env bash
# The long fuzz campaign on a machine with many cores but no clang (the GPU machine: 16
# cores). Two halves:
#   scripts/fuzz-device.sh pack            here: builds the torch-free targets, seeds their
#                                           corpora, copies binaries (debug info stripped)
#                                           and corpora to .device/fuzz (carry it)
#   scripts/fuzz-device.sh run SECONDS     there: every packed target at once, each as
#                                           FORK workers (libFuzzer -fork), for SECONDS;
#                                           logs, summary and grown corpora to $OUT/fuzz.tar.xz
# The `checkpoint` target links LibTorch 1.13 (Debian's), so it runs here with scripts/fuzz.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
targets=(safetensors_header prompt tokenizer png_metadata image_loader job_line)
case "${1:-}" in
  pack)
    # A one-second run builds the targets and seeds their corpora (fixture headers included).
    FUZZ_RUNS=1 scripts/fuzz.sh 1 "${targets[@]}" >/dev/null
    rm -rf .device/fuzz && mkdir -p .device/fuzz/tests/fuzz .device/fuzz/corpus
    for t in "${targets[@]}"; do
      strip -g -o ".device/fuzz/tests/fuzz/fuzz_$t" "build-fuzz/tests/fuzz/fuzz_$t"
      cp -r "build-fuzz/corpus/$t" .device/fuzz/corpus/
    done
    du -sh .device/fuzz
    ;;
  run)
    seconds=${2:?seconds}
    fork=${FUZZ_FORK:-2}
    export FUZZ_BUILD_DIR=$PWD/.device/fuzz FUZZ_PREBUILT=1 FUZZ_RUNS=-1 FUZZ_FORK=$fork FUZZ_JOBS=${#targets[@]}
    rm -f .device/fuzz/fuzz-summary.txt
    rc=0
    scripts/fuzz.sh "$seconds" "${targets[@]}" || rc=$?
    tar -C .device/fuzz -cJf "${OUT:-.}/fuzz.tar.xz" corpus artifacts fuzz-summary.txt $(cd .device/fuzz && ls fuzz-*.log)
    exit $rc
    ;;
  *)
    echo "usage: scripts/fuzz-device.sh pack | run SECONDS" >&2
    exit 2
    ;;
esac
