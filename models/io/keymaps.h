// Renaming weights from the diffusers / OpenCLIP layouts to the canonical names our
// modules use (LDM names for UNet, VAE and ControlNet; Hugging Face names for CLIP).
// Each function takes one component's index (prefix already stripped).
#pragma once

#include "models/io/weights.h"

namespace sigma::models {

TensorIndex unet_from_diffusers(const TensorIndex& diffusers);
TensorIndex vae_from_diffusers(const TensorIndex& diffusers);
// Also renames the hint encoder and zero convs (controlnet_cond_embedding, controlnet_down_blocks).
TensorIndex controlnet_from_diffusers(const TensorIndex& diffusers);

bool looks_like_diffusers_unet(const TensorIndex& index);
bool looks_like_diffusers_vae(const TensorIndex& index);

}  // namespace sigma::models
