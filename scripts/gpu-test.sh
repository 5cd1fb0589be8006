#!/usr/bin/env bash
# The GPU conformance run, on an NVIDIA machine with PyTorch (CUDA): builds the test suite
# against PyTorch's LibTorch and runs every `gpu` test (the conformance and end-to-end
# suites on CUDA in float32 with TF32 off, and in float16).
# Missing Debian libraries (ICU, stb) come from .device/deps.tar.xz (scripts/device-deps.sh);
# fixtures from $SIGMA_FIXTURES or .device/fixtures (../shared does not travel).
set -euo pipefail
cd "$(dirname "$0")/.."
deps=/opt/sigma-deps
if [ -f .device/deps.tar.xz ] && [ ! -d "$deps/usr-root" ]; then
  mkdir -p "$deps" && tar -xJf .device/deps.tar.xz -C "$deps"
fi
root="$deps/usr-root/usr"
export LD_LIBRARY_PATH="$root/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
export PKG_CONFIG_SYSROOT_DIR="$deps/usr-root" PKG_CONFIG_PATH="$root/lib/x86_64-linux-gnu/pkgconfig"
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
fixtures=${SIGMA_FIXTURES:-$PWD/.device/fixtures}
[ -d "$fixtures" ] || fixtures="$PWD/../shared/fixtures"
build=${BUILD_DIR:-build-gpu}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$torch_prefix;$root" \
  -DSIGMA_BUILD_GUI=OFF -DSIGMA_FIXTURES="$fixtures" ${CMAKE_ARGS:-} > "$build.configure.log" 2>&1 || { cat "$build.configure.log"; exit 1; }
grep -E "LibTorch|Sigma Studio" "$build.configure.log" || true
cmake --build "$build" --target sigma_tests sigma -j "$(nproc)"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
cd "$build"
ctest -L gpu --output-on-failure -V "$@" | grep -vE "^[0-9]+: (Test command|Working Directory|Environment variables|  SIGMA_|$)"
