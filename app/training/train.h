// `sigma train`: the C++ trainer of the bundled default model (issue 6). It trains the
// project's own modules (the same UNet, VAE, CLIP and ControlNet classes that load SD
// checkpoints, in small configurations) on the procedurally generated shape world, and
// writes SD single-file checkpoints that load through the normal loader.
//
// Stages, each its own run (checkpointed, resumable):
//   vae         AutoencoderKL (factor 8, 4 latent channels), L1 + L2 + tiny KL
//   unet        ε-prediction UNet + CLIP text encoder jointly, 10% caption dropout
//   flow        the UNet's rectified-flow twin (velocity on x_t = (1−t)x0 + tε), frozen CLIP
//   controlnet  a ControlNet on canny hints, initialised from the ε UNet's encoder
#pragma once

#include <cstdint>
#include <string>

namespace sigma::app {

struct TrainOptions {
  std::string stage;                 // vae | unet | flow | controlnet
  std::string out_dir = "train-out"; // checkpoints, loss log, exported model
  std::string vae;                   // unet/flow: the trained VAE (.safetensors)
  std::string base;                  // flow/controlnet: the trained ε model (.safetensors)
  std::string hints;                 // controlnet: canny hint pack from `sigma train-hints`
  std::string init;                  // unet/flow: continue from this checkpoint's UNet (and text encoder)
  int64_t steps = 1000, batch = 64;
  double lr = 2e-4, weight_decay = 0.01, ema = 0.999;
  int64_t warmup = 200;
  double max_seconds = 0;            // > 0: the schedule also ends when this much time has passed
  int64_t pool = 20000;              // distinct shape-world samples generated up front
  int min_objects = 1, max_objects = 3;  // objects per scene in the pool (1 <= min <= max <= 3)
  uint64_t seed = 1;
  std::string device = "auto";       // auto | cpu | cuda
  bool amp = true;                   // bf16 autocast on CUDA
  bool resume = true;                // continue from out_dir/state if present
  int64_t log_every = 50, save_every = 1000;
  int threads = 0;                   // data generation threads (0: all cores)
};

// Runs one stage; prints progress to stderr and returns the exported file's path.
std::string train(const TrainOptions& options);

// Canny hints (as the CLI's `--preprocessor canny` makes them) of shape-world seeds
// [first, first+count), bit-packed in one safetensors file, so the ControlNet can be
// trained on a machine without OpenCV. Returns the path written.
std::string make_hint_pack(uint64_t first_seed, int64_t count, const std::string& path, int threads = 0);

}  // namespace sigma::app
