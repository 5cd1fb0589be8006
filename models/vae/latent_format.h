// How a family's latents relate to its VAE's: the sampler works on (z - shift) · scale of the
// VAE's latent z (SD 1.x/2.x: scale 0.18215, SDXL: 0.13025, shift 0 for both; the 16-channel
// VAEs of the flow transformers have a shift too), and live previews colour the latents with
// one RGB factor per channel instead of running the VAE.
#pragma once

#include <torch/torch.h>

namespace sigma::models {

struct LatentFormat {
  int64_t channels = 4;    // the VAE's z channels
  int64_t downscale = 8;   // pixels per latent pixel, each axis
  double scale = 0.18215;
  double shift = 0.0;
  torch::Tensor rgb;       // [channels, 3] preview factors, float32 on the CPU

  // The VAE's latent -> the sampler's, and back. Without a shift these are the plain product
  // and quotient (bit for bit what SD's pipelines compute).
  torch::Tensor to_model(const torch::Tensor& z) const { return shift == 0 ? z * scale : (z - shift) * scale; }
  torch::Tensor to_vae(const torch::Tensor& x) const { return shift == 0 ? x / scale : x / scale + shift; }
};

}  // namespace sigma::models
