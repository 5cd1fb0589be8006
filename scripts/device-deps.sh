#!/usr/bin/env bash
# Packs the Debian libraries the GPU machine's image lacks (ICU 72 for the tokenizer, stb
# for image I/O, cpp-httplib and the brotli it links for `sigma serve`) into .device/deps.tar.xz, to be named in the device tool's `carry`.
# The GPU image (Ubuntu 24.04 + PyTorch's LibTorch) has CUDA, CMake, ninja, zlib, OpenSSL,
# nlohmann-json, doctest and CLI11, but no ICU headers and no stb; it cannot download.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .device
files=()
for pkg in libicu-dev libicu72 libstb-dev libstb0 libcpp-httplib-dev libcpp-httplib0.11 libbrotli-dev libbrotli1; do
  while read -r f; do
    [ -f "$f" ] || [ -L "$f" ] || continue
    case "$f" in */doc/*|*/man/*|*.a|*/lintian/*) continue ;; esac
    files+=("$f")
  done < <(dpkg -L "$pkg")
done
tar -cJf .device/deps.tar.xz --absolute-names --transform 's|^/|usr-root/|' "${files[@]}" 2>/dev/null
ls -la .device/deps.tar.xz
