// The bundled model's network sizes: Stable Diffusion's structure at a size whose five
// networks (ε UNet + VAE + CLIP, flow UNet + VAE + CLIP, ControlNet) fit in 20 MB of fp16.
#pragma once

#include "controlnet/controlnet.h"
#include "models/diffusion/unet/unet.h"
#include "models/text/clip_text.h"
#include "models/vae/autoencoder_kl.h"

namespace sigma::app::training {

inline models::VaeConfig shapes_vae() {
  models::VaeConfig c;
  c.ch = 32;
  c.ch_mult = {1, 2, 2, 2};
  c.num_res_blocks = 1;
  c.z_channels = 4;
  return c;
}

inline models::ClipTextConfig shapes_clip(int64_t vocab_size) {
  models::ClipTextConfig c;
  c.vocab_size = vocab_size;
  c.width = 128;
  c.layers = 3;
  c.heads = 4;  // what the loader infers for widths below 256 (checkpoint.h)
  c.mlp = 512;
  c.quick_gelu = true;  // SD 1.x family
  return c;
}

inline models::UNetConfig shapes_unet() {
  models::UNetConfig c;
  c.model_channels = 32;
  c.channel_mult = {1, 2, 2};
  c.num_res_blocks = 2;
  c.transformer_depth = {1, 1, 0};  // no attention at 4x4, as SD has none at its lowest level
  c.middle_transformer_depth = 1;
  c.context_dim = 128;
  c.num_heads = 8;  // SD 1.x rule, as the loader infers
  c.head_dim = -1;
  return c;
}

inline controlnet::ControlNetConfig shapes_controlnet() {
  controlnet::ControlNetConfig c;
  c.unet = shapes_unet();
  c.hint_channels = {16, 32, 64, 128};
  return c;
}

}  // namespace sigma::app::training
