#!/usr/bin/env bash
# Installs every system package Sigma Studio needs, from Debian's archive.
# Non-interactive and idempotent: a second run installs nothing new.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev                 # LibTorch 1.13 (CPU)
  libopenblas0-openmp          # REQUIRED: the default reference BLAS makes matmul ~100x slower
  libopencv-dev                # ControlNet preprocessors, the shape-world generator and checker
  libimgui-dev libglfw3-dev    # the desktop app (Dear ImGui 1.86 with its GLFW/OpenGL3 backends)
  libstb-dev                   # image I/O
  libicu-dev                   # Unicode classes + NFC for the CLIP tokenizer
  doctest-dev nlohmann-json3-dev libcli11-dev  # tests, JSON, command-line parsing
  libssl-dev zlib1g-dev        # SHA-256 model hashes, PNG metadata CRCs
  fonts-dejavu-core            # the GUI's font
  xvfb xauth xdotool imagemagick  # GUI tests and screenshots
  libcpp-httplib-dev           # `sigma serve` (cpp-httplib 0.11, a shared library + header)
  chromium                     # the web page's browser test (headless, driven by puppeteer-core)
  clang libclang-rt-14-dev     # libFuzzer targets (scripts/fuzz.sh, the CI fuzz smoke)
  time                         # /usr/bin/time in scripts/soak.sh and scripts/gui-soak.sh
)
# Node for that test: Debian's nodejs + npm, unless a node with npm is already installed
# (NodeSource's nodejs bundles npm and conflicts with Debian's npm package).
command -v npm >/dev/null || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all ${#packages[@]} packages already installed"
fi

# OpenBLAS must be the libblas.so.3 that LibTorch loads (installing it switches the
# alternative, but a machine may have pinned the reference BLAS by hand).
if command -v update-alternatives >/dev/null; then
  blas=$(update-alternatives --list libblas.so.3-x86_64-linux-gnu 2>/dev/null | grep openblas | head -1 || true)
  [ -n "$blas" ] && $SUDO update-alternatives --set libblas.so.3-x86_64-linux-gnu "$blas" >/dev/null
  lapack=$(update-alternatives --list liblapack.so.3-x86_64-linux-gnu 2>/dev/null | grep openblas | head -1 || true)
  [ -n "$lapack" ] && $SUDO update-alternatives --set liblapack.so.3-x86_64-linux-gnu "$lapack" >/dev/null
fi
# The browser test's npm package (pinned by tests/web/package-lock.json; no browser download).
"$(dirname "$0")/web-test-deps.sh"
echo "setup: done"
