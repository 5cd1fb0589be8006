// Building each network of a checkpoint at its inferred configuration and filling it
// with the checkpoint's weights (on a device, in a dtype), in eval mode.
#pragma once

#include "models/families/checkpoint.h"

namespace sigma::models {

struct LoadOptions {
  torch::Device device = torch::kCPU;
  torch::ScalarType dtype = torch::kFloat32;
};

UNet load_unet(const Checkpoint& ck, const LoadOptions& opt);
AutoencoderKL load_vae(const Checkpoint& ck, const LoadOptions& opt);
// A VAE from its own file (--vae), at the configuration its shapes give.
AutoencoderKL load_vae_file(const std::string& path, double scaling_factor, const LoadOptions& opt);
// Text encoder `index` of the family (0: text_encoder, 1: SDXL's text_encoder_2 with its projection).
ClipTextModel load_text_encoder(const Checkpoint& ck, const LoadOptions& opt, size_t index = 0);
// The family's T5 encoder (Flux's text_encoder_2).
T5Encoder load_t5_encoder(const Checkpoint& ck, const LoadOptions& opt, size_t index);
// Flux's transformer (ck.transformer, BFL names).
FluxTransformer load_flux(const Checkpoint& ck, const LoadOptions& opt);

}  // namespace sigma::models
