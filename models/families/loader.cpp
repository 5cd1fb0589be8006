#include "models/families/loader.h"

#include "models/nn/layers.h"

namespace sigma::models {

// Each network is built uninitialised (models/nn/layers.h): load_module overwrites every weight.
UNet load_unet(const Checkpoint& ck, const LoadOptions& opt) {
  auto unet = build_uninitialised<UNet>(ck.unet_config);
  load_module(*unet, ck.unet, "UNet of " + ck.path, opt.dtype, opt.device);
  unet->eval();
  return unet;
}

AutoencoderKL load_vae(const Checkpoint& ck, const LoadOptions& opt) {
  auto vae = build_uninitialised<AutoencoderKL>(ck.vae_config);
  load_module(*vae, ck.vae, "VAE of " + ck.path, opt.dtype, opt.device);
  vae->eval();
  return vae;
}

AutoencoderKL load_vae_file(const std::string& path, double scaling_factor, const LoadOptions& opt) {
  auto index = open_vae_file(path);
  auto config = infer_vae_config(index, path);
  config.scaling_factor = scaling_factor;
  auto vae = build_uninitialised<AutoencoderKL>(config);
  load_module(*vae, index, "VAE " + path, opt.dtype, opt.device);
  vae->eval();
  return vae;
}

ClipTextModel load_text_encoder(const Checkpoint& ck, const LoadOptions& opt, size_t index) {
  if (index >= ck.description.text_encoders.size())
    throw ModelLoadError(ck.path + ": " + to_string(ck.family) + " has no text encoder " + std::to_string(index + 1));
  const auto& te = ck.text_encoders[index];
  auto clip = build_uninitialised<ClipTextModel>(te.config);
  const std::string what = te.file.empty() ? (index ? "text encoder " + std::to_string(index + 1) : std::string("text encoder")) + " of " + ck.path
                                           : "text encoder " + te.file;
  load_module(*clip, te.weights, what, opt.dtype, opt.device);
  clip->eval();
  return clip;
}

T5Encoder load_t5_encoder(const Checkpoint& ck, const LoadOptions& opt, size_t index) {
  const auto& te = ck.text_encoders.at(index);
  auto t5 = build_uninitialised<T5Encoder>(te.t5_config);
  load_module(*t5, te.weights, "T5 encoder " + (te.file.empty() ? "of " + ck.path : te.file), opt.dtype, opt.device);
  t5->eval();
  return t5;
}

FluxTransformer load_flux(const Checkpoint& ck, const LoadOptions& opt) {
  auto tr = build_uninitialised<FluxTransformer>(ck.flux_config);
  load_module(*tr, ck.transformer, "Flux transformer of " + ck.path, opt.dtype, opt.device);
  tr->eval();
  return tr;
}

}  // namespace sigma::models
