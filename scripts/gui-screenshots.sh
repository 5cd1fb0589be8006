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
size=256
if [ ! -e "$model" ]; then
  model="$fixtures/sd15-tiny/models/tiny-sd15-diffusers"
  size=256
fi
controlnet="$fixtures/sd15-tiny/models/tiny-controlnet.safetensors"
out="$root/docs/screenshots"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

# A condition image: a few white shapes on black, as a sketch would be.
convert -size 512x512 xc:black -fill white -draw "circle 170,190 170,95" \
  -draw "polygon 290,440 470,440 380,290" -draw "rectangle 300,70 460,210" "$work/shapes.png"

cat > "$work/script.json" <<EOF
[
  {"settings": {"output_dir": "$work/out", "preview_every": 1}},
  {"set": {"model": "$model", "prompt": "a red circle above a blue triangle, flat colours, (white background:1.2)",
           "negative": "blurry, text, watermark", "width": $size, "height": $size, "steps": 24,
           "sampler": "dpmpp_2m", "scheduler": "karras", "seed": 7, "cfg": 6.5}},
  {"ui": {"random_seed": false}},
  {"click": "load_model"},
  {"wait": "idle", "timeout": 600},
  {"frames": 4},
  {"screenshot": "$out/idle.png"},
  {"set": {"steps": 120}},
  {"click": "generate"},
  {"wait": "preview", "value": 45, "timeout": 600},
  {"screenshot": "$out/generating.png"},
  {"wait": "idle", "timeout": 900},
  {"set": {"steps": 24, "batch-count": 3}},
  {"ui": {"random_seed": true}},
  {"click": "generate"},
  {"wait": "idle", "timeout": 900},
  {"click": "gallery:1"},
  {"frames": 3},
  {"screenshot": "$out/gallery.png"},
  {"set": {"batch-count": 1}},
  {"tab": "controlnet"},
  {"click": "add_unit"},
  {"set": {"control-net": [{"model": "$controlnet", "image": "$work/shapes.png", "preprocessor": "canny",
                            "params": {"low": 80, "high": 160}, "strength": 0.9}]}},
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
