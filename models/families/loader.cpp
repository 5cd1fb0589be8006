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
  auto clip = build_uninitialised<ClipTextModel>(ck.text_encoders[index].config);
  load_module(*clip, ck.text_encoders[index].weights, (index ? "text encoder " + std::to_string(index + 1) : std::string("text encoder")) + " of " + ck.path, opt.dtype,
              opt.device);
  clip->eval();
  return clip;
}

}  // namespace sigma::models
