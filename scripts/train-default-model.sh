#!/usr/bin/env bash
# The exact recipe of the bundled model (assets/models/sigma-shapes*.safetensors).
#   scripts/train-default-model.sh hints            # on a machine with OpenCV (makes .device/hints.safetensors)
#   scripts/train-default-model.sh vae unet unet2 unet3 unet4 unet5 unet6 unet7 unet8  # on an NVIDIA GPU
#   scripts/train-default-model.sh flow unet9 flow2 controlnet                         # (scripts/device-build.sh builds there)
#   scripts/train-default-model.sh install          # copy the results into assets/models/
# How the bundled files were made (docs/default-model.md has the steps and times): unet8 ran beside
# a variant on mixed scenes that was not kept; flow ran beside a ControlNet on round 8 that was
# not kept; flow2 ran beside controlnet. Rounds 8 and 9 took their VAE from the bundled round-7
# file (VAE=assets/models/sigma-shapes.safetensors): the same VAE as vae.safetensors, in fp16.
# Stages can run on the CPU too (slowly; SIGMA_TRAIN_DEVICE=cpu, and fewer steps via STEPS_SCALE=0.001).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${TRAIN_OUT:-.device/train}   # .device/ is what the GPU tool carries between machines
scale=${STEPS_SCALE:-1}
steps() { python3 -c "print(max(2, int($1 * $scale)))"; }
device=${SIGMA_TRAIN_DEVICE:-auto}
base=${BASE:-$out/sigma-shapes.safetensors}   # the final ε model, which the ControlNet is trained on
flow_base=${BASE:-$out/round8/sigma-shapes.safetensors}  # the ε model the flow twin starts from
sigma=${SIGMA:-}
ensure_sigma() {
  if [ -z "$sigma" ]; then
    if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
      . scripts/device-build.sh sigma
      sigma="$build/app/sigma"
    else
      sigma=build/app/sigma
    fi
  fi
}
for stage in "$@"; do
  case "$stage" in
    hints)
      ensure_sigma
      "$sigma" train-hints --first-seed 5000000 --count 24000 -o .device/hints.safetensors
      xz -T0 -f -k .device/hints.safetensors ;;  # 49 MB -> a few MB to carry
    vae)
      ensure_sigma
      "$sigma" train vae -o "$out" --device "$device" --steps "$(steps 8000)" --max-seconds 180 --batch 64 --lr 4e-4 \
        --pool 20000 --seed 1 ;;
    unet)
      ensure_sigma
      "$sigma" train unet -o "$out" --device "$device" --vae "$out/vae.safetensors" --steps "$(steps 30000)" \
        --max-seconds 420 --batch 256 --lr 3e-4 --pool 100000 --seed 1000000 ;;
    unet2)
      # A second round from the first one's weights, at 4x the batch (the small UNet's GPU steps
      # cost the same at batch 1024 as at 256: they are bound by kernel launches).
      ensure_sigma
      "$sigma" train unet -o "$out/round2" --device "$device" --vae "$out/vae.safetensors" --init "$out/sigma-shapes.safetensors" \
        --steps "$(steps 100000)" --max-seconds 380 --batch 1024 --lr 5e-4 --warmup 100 --pool 200000 --seed 3000000
      cp "$out/round2/sigma-shapes.safetensors" "$out/"
      cp "$out/round2/unet.loss.csv" "$out/unet2.loss.csv" ;;
    unet3)
      # A third round on single-object scenes: where an object goes ("on the left") is the
      # slowest thing to learn, and one object per picture leaves no doubt which one is meant.
      ensure_sigma
      "$sigma" train unet -o "$out/round3" --device "$device" --vae "$out/vae.safetensors" --init "$out/sigma-shapes.safetensors" \
        --steps "$(steps 100000)" --max-seconds 240 --batch 1024 --lr 4e-4 --warmup 100 --pool 100000 --max-objects 1 --seed 4000000
      cp "$out/round3/sigma-shapes.safetensors" "$out/"
      cp "$out/round3/unet.loss.csv" "$out/unet3.loss.csv" ;;
    unet4|unet5|unet6|unet7|unet8|unet9)
      # Rounds 4 to 7 on one- and two-object scenes: round 3 placed single objects well but
      # forgot scenes of two; these rounds teach which words belong to which object (at first
      # both objects took one colour). Rounds 8 and 9 on two-object scenes only: by round 7
      # shapes and places were right and the errors left were colours swapped between the two
      # objects. Each round has its own pool of scenes.
      # VAE= names the VAE file when vae.safetensors is not at hand: the bundled single file holds
      # the same VAE in fp16, and the VAE loader takes its first_stage_model. keys.
      ensure_sigma
      n=${stage#unet}
      lr=$(case $n in 4) echo 4e-4 ;; 5) echo 3e-4 ;; 6|7) echo 2.5e-4 ;; 8) echo 2e-4 ;; *) echo 1.5e-4 ;; esac)
      secs=$(case $n in 8) echo 390 ;; 9) echo 250 ;; *) echo 430 ;; esac)
      min_objects=$(case $n in 8|9) echo 2 ;; *) echo 1 ;; esac)
      "$sigma" train unet -o "$out/round$n" --device "$device" --vae "${VAE:-$out/vae.safetensors}" --init "$out/sigma-shapes.safetensors" \
        --steps "$(steps 100000)" --max-seconds "${UNET_SECONDS:-$secs}" --batch 1024 --lr "$lr" --warmup 100 --pool 200000 \
        --min-objects "$min_objects" --max-objects 2 --seed $((n + 2))000000
      cp "$out/round$n/sigma-shapes.safetensors" "$out/"
      cp "$out/round$n/unet.loss.csv" "$out/unet$n.loss.csv" ;;
    flow)
      # The flow twin starts from round 8's ε UNet weights (same network, new target: the
      # velocity ε − x0), with round 8's text encoder frozen and shipped in the flow file.
      ensure_sigma
      "$sigma" train flow -o "$out" --device "$device" --base "$flow_base" --init "$flow_base" \
        --steps "$(steps 100000)" --max-seconds "${FLOW_SECONDS:-470}" --batch 1024 --lr 3e-4 --warmup 100 --pool 200000 --max-objects 2 --seed 2000000 ;;
    flow2)
      # A second flow round from the first one's weights (same base, same frozen text encoder).
      ensure_sigma
      "$sigma" train flow -o "$out/flow2" --device "$device" --base "$flow_base" --init "$out/sigma-shapes-flow.safetensors" \
        --steps "$(steps 100000)" --max-seconds "${FLOW_SECONDS:-170}" --batch 1024 --lr 2e-4 --warmup 100 --pool 200000 --max-objects 2 --seed 12000000
      cp "$out/flow2/sigma-shapes-flow.safetensors" "$out/"
      cp "$out/flow2/flow.loss.csv" "$out/flow2.loss.csv" ;;
    controlnet)
      ensure_sigma
      [ -f .device/hints.safetensors ] || xz -d -k .device/hints.safetensors.xz
      "$sigma" train controlnet -o "$out" --device "$device" --base "$base" \
        --hints .device/hints.safetensors --steps "$(steps 20000)" --max-seconds "${CN_SECONDS:-170}" --batch 256 --lr 2e-4 --seed 5000000 ;;
    install)
      mkdir -p assets/models
      cp "$out"/sigma-shapes.safetensors "$out"/sigma-shapes-flow.safetensors "$out"/sigma-shapes-canny.safetensors assets/models/
      for m in sigma-shapes sigma-shapes-flow; do
        mkdir -p "assets/models/$m.tokenizer" && cp "$out/$m.tokenizer"/* "assets/models/$m.tokenizer/"
      done
      cp "$out"/*.loss.csv docs/measurements/ 2>/dev/null || true ;;
    *) echo "unknown stage '$stage' (hints, vae, unet, unet2, ..., unet9, flow, flow2, controlnet, install)" >&2; exit 2 ;;
  esac
done
