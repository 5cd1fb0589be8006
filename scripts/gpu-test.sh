#!/usr/bin/env bash
# The GPU conformance run, on an NVIDIA machine with PyTorch (CUDA): builds the test suite
# against PyTorch's LibTorch and runs every `gpu` test (the conformance and end-to-end
# suites on CUDA in float32 with TF32 off, and in float16).
# Missing Debian libraries (ICU, stb) come from .device/deps.tar.xz (scripts/device-deps.sh);
# fixtures from $SIGMA_FIXTURES or .device/fixtures (../shared does not travel).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/device-build.sh sigma_tests sigma
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
cd "$build"
ctest -L gpu --output-on-failure -V "$@" | grep -vE "^[0-9]+: (Test command|Working Directory|Environment variables|  SIGMA_|$)"
