#!/usr/bin/env bash
# The benchmark set of docs/performance.md, on whichever machine runs it: on an NVIDIA GPU
# (build with scripts/device-build.sh first, BUILD_DIR=build-gpu) every lever on and off,
# on the CPU fp32 against bf16. Writes JSON and the printed tables under $OUT (default
# bench-out/). Usage: scripts/bench.sh [gpu|cpu]
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-cpu}
build=${BUILD_DIR:-build}
out=${OUT:-bench-out}
mkdir -p "$out"
S="$build/app/sigma"
bench() {  # name, args...
  local name=$1; shift
  echo "== $name: sigma bench $*" | tee -a "$out/bench.txt"
  "$S" bench "$@" --json "$out/$name.json" 2>&1 | grep -v "^frame" | tee -a "$out/bench.txt"
}
file=${BENCH_FILE:-/tmp/sigma-bench-sd15.safetensors}
if [ "$mode" = gpu ]; then
  bench sd15-fp16 --random-weights sd15 --dtype fp16 --runs 20 --save "$file"
  SIGMA_CUDA_GRAPHS=0 bench sd15-fp16-eager --random-weights sd15 --dtype fp16 --runs 20
  SIGMA_ATTENTION=math bench sd15-fp16-math-attention --random-weights sd15 --dtype fp16 --runs 20
  bench sd15-fp32 --random-weights sd15 --dtype fp32 --runs 10
  bench sd15-bf16 --random-weights sd15 --dtype bf16 --runs 10
  bench sdxl-fp16 --random-weights sdxl --dtype fp16 --runs 10
  bench sd15-file-fp16 -m "$file" --dtype fp16 --runs 6 --steps 30
  SIGMA_CUDA_GRAPHS=0 bench sd15-file-fp16-eager -m "$file" --dtype fp16 --runs 6 --steps 30
  cold=(generate -m "$file" -p "a cat" -W 512 -H 512 --steps 30 -q --overwrite -o "$out/cold.png")
else
  # Full-size SD 1.5 on the CPU: seconds per step, so one warm-up and few runs.
  bench sd15-cpu-bf16 --random-weights sd15 --dtype bf16 --warmup 1 --runs 3 --save "$file"
  bench sd15-cpu-fp32 --random-weights sd15 --dtype fp32 --warmup 1 --runs 3
  bench bundled-auto -m assets/models/sigma-shapes.safetensors --dtype auto --runs 9 --steps 20
  bench bundled-fp32 -m assets/models/sigma-shapes.safetensors --dtype fp32 --runs 9 --steps 20
  cold=(generate -p "a large red circle on the left on a white background" -q --overwrite -o "$out/cold.png")
fi
# The whole command as a user runs it, cold process, several times (label, runs, environment...).
cold_runs() {
  local label=$1 runs=$2; shift 2
  for i in $(seq "$runs"); do
    env "$@" /usr/bin/time -f "cold$label: sigma ${cold[*]}: %e s wall, %M KB max RSS" "$S" "${cold[@]}" 2>&1 | tail -1 | tee -a "$out/bench.txt"
  done
}
cold_runs "" 5
