// Flux.1's files as people have them (models/families/checkpoint.h opens them through here):
//  - the transformer alone in BFL names (flux1-dev.safetensors, the fp8 and scaled-fp8 files),
//    with CLIP-L, T5-XXL and the VAE as separate files (--clip_l, --t5xxl, --vae), or found by
//    name beside it or in a ComfyUI models folder (text_encoders/ or clip/, vae/);
//  - ComfyUI's all-in-one checkpoint (model.diffusion_model., text_encoders.clip_l.transformer.,
//    text_encoders.t5xxl.transformer., vae.);
//  - a diffusers folder (transformer/, text_encoder/, text_encoder_2/, tokenizer_2/, vae/;
//    sharded files with their .index.json too).
#pragma once

#include <memory>
#include <string>

#include "models/families/checkpoint.h"

namespace sigma::models {

// A single file whose keys are a Flux transformer's (BFL names, bare or under
// model.diffusion_model., or diffusers names).
bool is_flux_file(const SafeTensors& file);
// A diffusers folder of a Flux pipeline (transformer/ with FluxTransformer2DModel's names or config).
bool is_flux_folder(const std::string& dir);

Checkpoint open_flux_file(const std::shared_ptr<const SafeTensors>& file, const ComponentFiles& parts);
Checkpoint open_flux_folder(const std::string& dir, const ComponentFiles& parts);

}  // namespace sigma::models
