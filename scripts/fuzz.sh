#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan; tests/fuzz/) and runs each for SECONDS
# (default 60) or 10 million executions, whichever comes first, one target at a time
# (FUZZ_JOBS=2 runs two at once). Seeds: tests/fuzz/<target>/corpus (plus the fixtures'
# safetensors headers for the checkpoint and safetensors_header targets when
# ../shared/fixtures is there, read from there, never committed); what
# the fuzzer adds goes to build-fuzz/corpus/<target>, never into the tree. A crash, leak,
# timeout or out-of-memory leaves its input in build-fuzz/artifacts/<target>/ and makes the
# script exit 1. The last lines are one summary line per target: executions, cov, ft, time.
#   scripts/fuzz.sh [SECONDS] [TARGET...]     e.g. scripts/fuzz.sh 1800 prompt tokenizer
# FUZZ_RUNS overrides the 10 M execution cap (e.g. FUZZ_RUNS=-1 for time only).
# FUZZ_FORK=N runs each target as N worker processes (libFuzzer's -fork; a crash, leak,
# timeout or OOM of any worker still stops the run and counts); FUZZ_PREBUILT=1 skips the
# build and uses the binaries already in the build folder (a machine without clang: the GPU
# machine's 16 cores, scripts/fuzz-device.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
seconds=${1:-60}
shift || true
all=(safetensors_header checkpoint prompt tokenizer t5_tokenizer png_metadata image_loader job_line request_body)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")
build=${FUZZ_BUILD_DIR:-build-fuzz}
runs=${FUZZ_RUNS:-10000000}
jobs=${FUZZ_JOBS:-1}

fork=${FUZZ_FORK:-0}
if [ "${FUZZ_PREBUILT:-0}" != 1 ]; then
  cmake -S . -B "$build" -G Ninja -DSIGMA_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_COMPILER="${FUZZ_CC:-clang}" -DCMAKE_CXX_COMPILER="${FUZZ_CXX:-clang++}" >/dev/null
  cmake --build "$build" -j "${FUZZ_BUILD_JOBS:-2}" --target $(printf 'fuzz_%s ' "${targets[@]}")
fi

fixtures=${SIGMA_FIXTURES:-$root/../shared/fixtures}
# Leaks are findings (detect_leaks=1). LibTorch (checkpoint target only) is not built with
# ASan; nothing of it needed suppressing so far. See docs/reliability.md.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

max_len() {
  case $1 in
    checkpoint) echo 262144 ;;     # whole model headers (the bundled model's is 93 KB)
    png_metadata|image_loader|request_body) echo 65536 ;;
    *) echo 8192 ;;
  esac
}

run_one() {
  local t=$1 corpus=$build/corpus/$1 art=$build/artifacts/$1/
  # Findings of an earlier run move aside (copy one into tests/fuzz/<target>/corpus as regress-*
  # with its fix); this run's are counted alone.
  if [ -n "$(ls -A "$art" 2>/dev/null)" ]; then rm -rf "${art%/}.previous"; mv "$art" "${art%/}.previous"; fi
  mkdir -p "$corpus" "$art"
  if { [ "$t" = checkpoint ] || [ "$t" = safetensors_header ]; } && [ -d "$fixtures" ]; then
    # The fixtures' real headers (SD 1.x, 2.x, SDXL, ControlNet, LoRA, embeddings) as extra
    # seeds, read from ../shared and never committed: the checkpoint target takes the JSON,
    # the safetensors_header target the file's start (length prefix + JSON).
    python3 - "$fixtures" "$corpus" "$t" <<'PY'
import sys, glob, os, struct
fx, out, target = sys.argv[1], sys.argv[2], sys.argv[3]
files = glob.glob(fx + '/*/models/*.safetensors') + glob.glob(fx + '/*/lora/*.safetensors') + glob.glob(fx + '/*/embeddings/*.safetensors')
for p in sorted(files)[:24]:
    with open(p, 'rb') as f:
        prefix = f.read(8)
        n = struct.unpack('<Q', prefix)[0]
        if n < 262144:
            header = f.read(n)
            open(os.path.join(out, 'fixture-' + os.path.basename(p)), 'wb').write(header if target == 'checkpoint' else prefix + header)
PY
  fi
  local log=$build/fuzz-$t.log start=$(date +%s)
  [ -s "$root/tests/fuzz/$t/$t.dict" ] || { echo "fuzz: $t: tests/fuzz/$t/$t.dict is missing (every target has a dictionary)" | tee -a "$build/fuzz-summary.txt"; return 1; }
  local rc=0 mode=()
  # Fork mode ignores timeouts and OOMs unless told not to: they are findings here.
  [ "$fork" -gt 0 ] && mode=(-fork="$fork" -ignore_crashes=0 -ignore_timeouts=0 -ignore_ooms=0)
  # request_body runs on a 1 MB stack: 32,000 levels of nesting (a 64 KB input) then overflow
  # any recursion over the parsed value, the server crash of issue 25, instead of fitting
  # into the default 8 MB.
  local stack_kb=unlimited
  [ "$t" = request_body ] && stack_kb=1024
  (cd "$build" && { [ "$stack_kb" = unlimited ] || ulimit -s "$stack_kb"; } && TMPDIR=${TMPDIR:-/tmp} "./tests/fuzz/fuzz_$t" "${mode[@]}" "corpus/$t" "$root/tests/fuzz/$t/corpus" \
      -dict="$root/tests/fuzz/$t/$t.dict" -max_len="$(max_len "$t")" -max_total_time="$seconds" -runs="$runs" \
      -timeout=10 -rss_limit_mb=2560 -artifact_prefix="artifacts/$t/" -print_final_stats=1 -close_fd_mask=1) \
      >"$log" 2>&1 || rc=$?
  local secs=$(( $(date +%s) - start ))
  local execs cov ft
  # (|| true: a fuzzer that stopped before its first status line still gets its summary line)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  # Fork mode has no final stats: its status lines ("#N: cov: ...") count every worker's runs.
  [ -n "$execs" ] || execs=$(grep -oE '^#[0-9]+: cov' "$log" | tail -1 | tr -dc '0-9' || true)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2 || true)
  ft=$(grep -oE 'ft: [0-9]+' "$log" | tail -1 | cut -d' ' -f2 || true)
  local found
  found=$(ls "$build/artifacts/$t" 2>/dev/null | wc -l)
  echo "fuzz: $t: rc=$rc executions=${execs:-?} cov=${cov:-?} ft=${ft:-?} time=${secs}s artifacts=$found" | tee -a "$build/fuzz-summary.txt"
  [ "$rc" -eq 0 ] && [ "$found" -eq 0 ]
}

status=0
pids=()
for t in "${targets[@]}"; do
  if [ "$jobs" -gt 1 ]; then
    run_one "$t" & pids+=($!)
    if [ ${#pids[@]} -ge "$jobs" ]; then wait "${pids[0]}" || status=1; pids=("${pids[@]:1}"); fi
  else
    run_one "$t" || status=1
  fi
done
for p in "${pids[@]}"; do wait "$p" || status=1; done
[ $status -eq 0 ] || { echo "fuzz: FAILED (logs: $build/fuzz-*.log, inputs: $build/artifacts/)"; exit 1; }
echo "fuzz: all clean"
