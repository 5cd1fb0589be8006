#!/usr/bin/env bash
# Builds Sigma Studio on an NVIDIA GPU machine against the LibTorch inside PyTorch
# (CUDA). Source it: it exports LD_LIBRARY_PATH for the carried Debian libraries and
# sets $build. Usage: . scripts/device-build.sh [targets...]
# Fixtures: $SIGMA_FIXTURES, else .device/fixtures, unpacked first from .device/fx where that
# holds a pack (scripts/device-fixtures.py: the same files in less of the carry limit).
set -euo pipefail
deps=/opt/sigma-deps
if [ -f .device/deps.tar.xz ] && [ ! -d "$deps/usr-root" ]; then
  mkdir -p "$deps" && tar -xJf .device/deps.tar.xz -C "$deps"
fi
root="$deps/usr-root/usr"
export LD_LIBRARY_PATH="$root/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
export PKG_CONFIG_SYSROOT_DIR="$deps/usr-root" PKG_CONFIG_PATH="$root/lib/x86_64-linux-gnu/pkgconfig"
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
if [ -z "${SIGMA_FIXTURES:-}" ] && [ -f .device/fx/manifest.json ] && [ ! -d .device/fixtures ]; then
  python3 scripts/device-fixtures.py unpack .device/fx .device/fixtures
fi
fixtures=${SIGMA_FIXTURES:-$PWD/.device/fixtures}
[ -d "$fixtures" ] || fixtures="$PWD/../shared/fixtures"
build=${BUILD_DIR:-build-gpu}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$torch_prefix;$root" \
  -DSIGMA_BUILD_GUI=OFF -DSIGMA_FIXTURES="$fixtures" ${CMAKE_ARGS:-} > "$build.configure.log" 2>&1 || { cat "$build.configure.log"; exit 1; }
grep -E "LibTorch|Sigma Studio" "$build.configure.log" || true
cmake --build "$build" --target "${@:-sigma}" -j "$(nproc)" | grep -vE "^\[[0-9]+/[0-9]+\] Building" || true
test -x "$build/app/sigma"
