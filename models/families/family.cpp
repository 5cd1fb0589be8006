#include "models/families/family.h"

#include <sstream>
#include <stdexcept>

namespace sigma::models {

std::string to_string(Family f) {
  switch (f) {
    case Family::SD1: return "Stable Diffusion 1.x";
    case Family::SD2: return "Stable Diffusion 2.x";
    case Family::SDXL: return "Stable Diffusion XL";
    case Family::Flux: return "Flux.1";
  }
  return "unknown";
}

namespace {

// SD 1.x/2.x share the VAE latent space; SDXL's VAE has its own (ComfyUI's latent_formats).
// (Functions, not globals: descriptions may be built during other files' static initialization.)
std::vector<float> sd_latent_rgb() {
  return {0.3512f, 0.2297f, 0.3227f, 0.3250f, 0.4974f, 0.2350f, -0.2829f, 0.1762f, 0.2721f, -0.2120f, -0.2616f, -0.7177f};
}
std::vector<float> sdxl_latent_rgb() {
  return {0.3651f, 0.4232f, 0.4341f, -0.2533f, -0.0042f, 0.1068f, 0.1076f, 0.1111f, -0.0362f, -0.3165f, -0.2492f, -0.2188f};
}

FamilyDescription sd1() {
  FamilyDescription d;
  d.family = Family::SD1;
  d.text_encoders = {{.component = "text_encoder", .tokenizer = "tokenizer", .kind = "CLIP-L",
                      .single_file_prefix = "cond_stage_model.transformer.", .openclip_names = false,
                      .clip_skip = 1, .final_norm = true, .pooled = false, .quick_gelu = true, .pad_id = -1}};
  d.context_dim = 768;
  d.vae_scale = 0.18215;
  d.latent_rgb = sd_latent_rgb();
  d.native_size = 512;
  d.default_prediction = "eps";
  d.unet.num_heads = 8;
  d.unet.head_dim = -1;
  d.size_presets = {{512, 512, "square"}, {512, 768, "portrait"}, {768, 512, "landscape"},
                    {448, 640, "2:3 portrait"}, {640, 448, "3:2 landscape"}};
  return d;
}

FamilyDescription sd2() {
  FamilyDescription d;
  d.family = Family::SD2;
  // The penultimate block of OpenCLIP-H: single files drop the last block on load (diffusers
  // folders omit it), so "the last loaded layer" is the penultimate one, with the final norm.
  d.text_encoders = {{.component = "text_encoder", .tokenizer = "tokenizer", .kind = "OpenCLIP-H",
                      .single_file_prefix = "cond_stage_model.model.", .openclip_names = true,
                      .clip_skip = 1, .final_norm = true, .pooled = false, .quick_gelu = false, .pad_id = 0,
                      .single_file_unused_last_layer = true}};
  d.context_dim = 1024;
  d.vae_scale = 0.18215;
  d.latent_rgb = sd_latent_rgb();
  d.native_size = 512;
  d.native_size_v = 768;
  d.default_prediction = "v";  // single files are the 768-v models unless told otherwise
  d.unet.num_heads = -1;
  d.unet.head_dim = 64;
  d.size_presets = {{768, 768, "square (768-v)"}, {512, 512, "square (512 base)"}, {576, 1024, "9:16 portrait"},
                    {1024, 576, "16:9 landscape"}, {640, 896, "5:7 portrait"}, {896, 640, "7:5 landscape"}};
  return d;
}

FamilyDescription sdxl() {
  FamilyDescription d;
  d.family = Family::SDXL;
  // Both penultimate hidden states without the final LayerNorm (SGM: layer "penultimate",
  // diffusers: hidden_states[-2]); the pooled vector from encoder 2's normed last layer.
  d.text_encoders = {{.component = "text_encoder", .tokenizer = "tokenizer", .kind = "CLIP-L",
                      .single_file_prefix = "conditioner.embedders.0.transformer.", .openclip_names = false,
                      .clip_skip = 2, .final_norm = false, .pooled = false, .quick_gelu = true, .pad_id = -1},
                     {.component = "text_encoder_2", .tokenizer = "tokenizer_2", .kind = "OpenCLIP-bigG",
                      .single_file_prefix = "conditioner.embedders.1.model.", .openclip_names = true,
                      .clip_skip = 2, .final_norm = false, .pooled = true, .quick_gelu = false, .pad_id = 0}};
  d.context_dim = 2048;  // 768 + 1280
  d.pooled_dim = 1280;
  d.micro_conditioning = 6;
  d.fourier_dim = 256;
  d.adm_in_channels = 2816;  // 1280 + 6 · 256
  d.vae_scale = 0.13025;
  d.vae_fp16_upcast = true;  // (a fixed VAE's diffusers config says force_upcast false)
  d.latent_rgb = sdxl_latent_rgb();
  d.native_size = 1024;
  d.default_prediction = "eps";
  d.align_your_steps = "SDXL";
  d.unet.num_heads = -1;
  d.unet.head_dim = 64;
  // SDXL's training buckets, about one megapixel each.
  d.size_presets = {{1024, 1024, "square"}, {1152, 896, "9:7"}, {896, 1152, "7:9"}, {1216, 832, "3:2"},
                    {832, 1216, "2:3"},     {1344, 768, "16:9"}, {768, 1344, "9:16"}};
  return d;
}

// Flux.1 (dev, schnell and their kin): CLIP-L gives only its pooled vector (vector_in), T5-XXL
// the token context; a 16-channel VAE with a shift; 2x2 patches, so sizes step by 16.
FamilyDescription flux() {
  FamilyDescription d;
  d.family = Family::Flux;
  d.network = DiffusionNetwork::Flux;
  d.text_encoders = {{.component = "text_encoder", .tokenizer = "tokenizer", .kind = "CLIP-L",
                      .single_file_prefix = "text_encoders.clip_l.transformer.", .network = TextNetwork::Clip,
                      .flag = "--clip_l", .context = false, .clip_skip = 1, .final_norm = true, .pooled = true,
                      .quick_gelu = true, .pad_id = -1},
                     // ComfyUI pads T5 to 256 tokens for Flux (comfy/text_encoders/flux.py); diffusers' 512
                     // is the longest prompt read.
                     {.component = "text_encoder_2", .tokenizer = "tokenizer_2", .kind = "T5-XXL",
                      .single_file_prefix = "text_encoders.t5xxl.transformer.", .network = TextNetwork::T5,
                      .flag = "--t5xxl", .context = true, .min_tokens = 256, .max_tokens = 512}};
  d.context_dim = 4096;
  d.pooled_dim = 768;
  d.vae_scale = 0.3611;
  d.vae_shift = 0.1159;
  d.size_multiple = 16;
  // ComfyUI's latent_formats.Flux latent_rgb_factors.
  d.latent_rgb = {-0.0346f, 0.0244f,  0.0681f,  0.0034f,  0.0210f,  0.0687f,  0.0275f,  -0.0668f, -0.0433f, -0.0174f,
                  0.0160f,  0.0617f,  0.0859f,  0.0721f,  0.0329f,  0.0004f,  0.0383f,  0.0115f,  0.0405f,  0.0861f,
                  0.0915f,  -0.0236f, -0.0185f, -0.0259f, -0.0245f, 0.0250f,  0.1180f,  0.1008f,  0.0755f,  -0.0421f,
                  -0.0515f, 0.0201f,  0.0011f,  0.0428f,  -0.0012f, -0.0036f, 0.0817f,  0.0765f,  0.0749f,  -0.1264f,
                  -0.0522f, -0.1103f, -0.0280f, -0.0881f, -0.0499f, -0.1262f, -0.0982f, -0.0778f};
  d.native_size = 1024;
  d.default_prediction = "flow";
  d.align_your_steps = "";  // its lists are for SD's ε σ range
  d.defaults = {.steps = 28, .steps_distilled = 4, .cfg = 1.0, .sampler = "euler", .scheduler = "simple"};
  // Flux's usual buckets (multiples of 16, about one megapixel).
  d.size_presets = {{1024, 1024, "square"}, {1152, 896, "9:7"}, {896, 1152, "7:9"}, {1216, 832, "3:2"},
                    {832, 1216, "2:3"},     {1344, 768, "16:9"}, {768, 1344, "9:16"}, {512, 512, "square (fast)"}};
  return d;
}

}  // namespace

const FamilyDescription& family_description(Family f) {
  static const FamilyDescription d1 = sd1(), d2 = sd2(), dxl = sdxl(), dflux = flux();
  switch (f) {
    case Family::SD1: return d1;
    case Family::SD2: return d2;
    case Family::SDXL: return dxl;
    case Family::Flux: return dflux;
  }
  throw std::invalid_argument("unknown model family");
}

std::string FamilyDescription::describe() const {
  std::ostringstream s;
  for (size_t i = 0; i < text_encoders.size(); ++i) {
    const auto& e = text_encoders[i];
    if (e.network == TextNetwork::T5) {
      s << (i ? " + " : "") << e.kind << " (last layer, " << e.min_tokens << "-" << e.max_tokens << " tokens)";
      continue;
    }
    if (!e.context) {
      s << (i ? " + " : "") << e.kind << " (pooled only)";
      continue;
    }
    s << (i ? " + " : "") << e.kind << " (" << (e.clip_skip == 1 ? "last" : e.clip_skip == 2 ? "penultimate" : "layer -" + std::to_string(e.clip_skip))
      << " layer" << (e.final_norm ? ", final norm" : ", no final norm") << (e.pooled ? ", pooled" : "") << ")";
  }
  s << " -> context " << context_dim;
  if (has_additional_embedding())
    s << "; additional embedding " << adm_in_channels << " = pooled " << pooled_dim << " + " << micro_conditioning << " x "
      << fourier_dim << " Fourier (micro-conditioning)";
  if (!is_unet()) s << "; pooled " << pooled_dim << " -> vector input";
  s << "; VAE scale " << vae_scale;
  if (vae_shift != 0) s << ", shift " << vae_shift;
  s << "; native " << native_size << " px";
  return s.str();
}

}  // namespace sigma::models
