#include "models/families/loader.h"

#include "models/nn/layers.h"

namespace sigma::models {

namespace {

// Linear weights a file stores in fp8 stay fp8 in memory (models/nn/layers.h, Linear::keep_fp8):
// each such `weight` is emptied and indexed as an empty tensor, load_module fills everything
// else as usual, then each layer gets its bytes and scale, on the device, as stored.
void load_keeping_fp8(torch::nn::Module& module, const TensorIndex& index, const std::string& what, const LoadOptions& opt) {
  TensorIndex rest = index;
  std::vector<std::pair<layers::LinearImpl*, const TensorRef*>> kept;
  for (const auto& item : module.named_modules("", /*include_self=*/false)) {
    auto* lin = dynamic_cast<layers::LinearImpl*>(item.value().get());
    if (!lin) continue;
    const std::string name = item.key() + ".weight";
    const auto it = index.find(name);
    if (it == index.end() || it->second.value.defined() || !it->second.file) continue;
    const std::string stored = it->second.dtype();
    if ((stored != "F8_E4M3" && stored != "F8_E5M2") || it->second.shape != lin->weight.sizes().vec()) continue;
    {
      torch::NoGradGuard no_grad;
      lin->weight.set_data(torch::empty({0}));
    }
    TensorRef empty;
    empty.shape = {0};
    empty.value = torch::empty({0});
    rest[name] = empty;
    kept.emplace_back(lin, &it->second);
  }
  load_module(module, rest, what, opt.dtype, opt.device);
  for (const auto& [lin, ref] : kept) {
    const TensorInfo* info = ref->file->find(ref->key);
    auto bytes = torch::empty(ref->shape, torch::kByte);
    ref->file->read_bytes(*info, 0, info->end - info->begin, bytes.data_ptr());
    lin->keep_fp8(bytes.to(opt.device), info->dtype == "F8_E4M3", ref->scale);
  }
}

}  // namespace

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
  load_keeping_fp8(*t5, te.weights, "T5 encoder " + (te.file.empty() ? "of " + ck.path : te.file), opt);
  t5->eval();
  return t5;
}

FluxTransformer load_flux(const Checkpoint& ck, const LoadOptions& opt) {
  auto tr = build_uninitialised<FluxTransformer>(ck.flux_config);
  load_keeping_fp8(*tr, ck.transformer, "Flux transformer of " + ck.path, opt);
  tr->eval();
  return tr;
}

}  // namespace sigma::models
