#!/usr/bin/env bash
# Regenerates the README's screenshots of sigma-studio (docs/screenshots/*.png) with its
# --script mode under Xvfb: idle with a model loaded, generating with the live preview,
# the gallery with metadata, and the ControlNet tab with a live canny hint.
# Uses the bundled model when it exists, else the tiny fixture model (random weights:
# its images are colourful noise). BUILD_DIR picks the build (default: build).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build=${BUILD_DIR:-build}
studio="$root/$build/ui/sigma-studio"
fixtures=${SIGMA_FIXTURES:-$root/../shared/fixtures}
[ -x "$studio" ] || { echo "no $studio: build the sigma-studio target first" >&2; exit 1; }
command -v xvfb-run > /dev/null || { echo "xvfb-run is missing: apt-get install xvfb xauth" >&2; exit 1; }
command -v convert > /dev/null || { echo "ImageMagick's convert is missing: apt-get install imagemagick" >&2; exit 1; }

model="$root/assets/models/sigma-shapes.safetensors"
controlnet="$root/assets/models/sigma-shapes-canny.safetensors"
size=128  # the bundled model's native size
if [ ! -e "$model" ] || [ ! -e "$controlnet" ]; then
  model="$fixtures/sd15-tiny/models/tiny-sd15-diffusers"
  controlnet="$fixtures/sd15-tiny/models/tiny-controlnet.safetensors"
  size=256
fi
# Single-object prompts: what the bundled model draws reliably (docs/default-model.md).
p1="a large red circle on the left on a white background"
p2="a small yellow triangle in the center on a black background"
p3="a large purple ring at the top right on a gray background"
p4="a large blue star at the bottom on a white background"
out="$root/docs/screenshots"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

# A condition image: a white triangle on black at the bottom right, as a sketch would be
# (the prompt names no place: the layout comes from the hint).
convert -size 512x512 xc:black -fill white -draw "polygon 250,460 470,460 360,270" "$work/shapes.png"

cat > "$work/script.json" <<EOF
[
  {"settings": {"output_dir": "$work/out", "preview_every": 1}},
  {"set": {"model": "$model", "prompt": "$p1", "negative": "", "width": $size, "height": $size, "steps": 24,
           "sampler": "dpmpp_2m", "scheduler": "karras", "seed": 7, "cfg": 6.5}},
  {"ui": {"random_seed": false}},
  {"click": "load_model"},
  {"wait": "idle", "timeout": 600},
  {"frames": 4},
  {"screenshot": "$out/idle.png"},
  {"set": {"prompt": "$p2", "seed": 11}}, {"click": "generate"}, {"wait": "idle", "timeout": 900},
  {"set": {"prompt": "$p3", "seed": 12}}, {"click": "generate"}, {"wait": "idle", "timeout": 900},
  {"set": {"prompt": "$p4", "seed": 13}}, {"click": "generate"}, {"wait": "idle", "timeout": 900},
  {"set": {"prompt": "$p1", "seed": 7, "steps": 150}},
  {"click": "generate"},
  {"wait": "preview", "value": 115, "timeout": 900},
  {"screenshot": "$out/generating.png"},
  {"wait": "idle", "timeout": 900},
  {"set": {"steps": 24, "seed": 21, "batch-count": 2}}, {"click": "generate"}, {"wait": "idle", "timeout": 900},
  {"set": {"batch-count": 1}},
  {"click": "gallery:3"},
  {"frames": 3},
  {"screenshot": "$out/gallery.png"},
  {"tab": "controlnet"},
  {"click": "add_unit"},
  {"set": {"prompt": "a large green triangle on a white background",
           "control-net": [{"model": "$controlnet", "image": "$work/shapes.png", "preprocessor": "canny",
                            "params": {"low": 80, "high": 160}, "strength": 1.0}]}},
  {"wait": "images", "timeout": 120},
  {"click": "generate"},
  {"wait": "idle", "timeout": 900},
  {"frames": 3},
  {"screenshot": "$out/controlnet.png"},
  {"quit": true}
]
EOF
XDG_CONFIG_HOME="$work/config" xvfb-run -a -s "-screen 0 1400x900x24" "$studio" --script "$work/script.json"
ls -l "$out"
