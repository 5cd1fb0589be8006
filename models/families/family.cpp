#include "models/families/family.h"

#include <sstream>
#include <stdexcept>

namespace sigma::models {

std::string to_string(Family f) {
  switch (f) {
    case Family::SD1: return "Stable Diffusion 1.x";
    case Family::SD2: return "Stable Diffusion 2.x";
    case Family::SDXL: return "Stable Diffusion XL";
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
  d.unet.num_heads = -1;
  d.unet.head_dim = 64;
  // SDXL's training buckets, about one megapixel each.
  d.size_presets = {{1024, 1024, "square"}, {1152, 896, "9:7"}, {896, 1152, "7:9"}, {1216, 832, "3:2"},
                    {832, 1216, "2:3"},     {1344, 768, "16:9"}, {768, 1344, "9:16"}};
  return d;
}

}  // namespace

const FamilyDescription& family_description(Family f) {
  static const FamilyDescription d1 = sd1(), d2 = sd2(), dxl = sdxl();
  switch (f) {
    case Family::SD1: return d1;
    case Family::SD2: return d2;
    case Family::SDXL: return dxl;
  }
  throw std::invalid_argument("unknown model family");
}

std::string FamilyDescription::describe() const {
  std::ostringstream s;
  for (size_t i = 0; i < text_encoders.size(); ++i) {
    const auto& e = text_encoders[i];
    s << (i ? " + " : "") << e.kind << " (" << (e.clip_skip == 1 ? "last" : e.clip_skip == 2 ? "penultimate" : "layer -" + std::to_string(e.clip_skip))
      << " layer" << (e.final_norm ? ", final norm" : ", no final norm") << (e.pooled ? ", pooled" : "") << ")";
  }
  s << " -> context " << context_dim;
  if (has_additional_embedding())
    s << "; additional embedding " << adm_in_channels << " = pooled " << pooled_dim << " + " << micro_conditioning << " x "
      << fourier_dim << " Fourier (micro-conditioning)";
  s << "; VAE scale " << vae_scale << "; native " << native_size << " px";
  return s.str();
}

}  // namespace sigma::models
