#include "models/nn/channels_last.h"

#include "models/kernels/cuda_ops.h"

namespace sigma::models {

bool channels_last_enabled(const torch::Device& device) {
  return device.is_cuda();
}

bool vae_channels_last_enabled(const torch::Device& device, torch::ScalarType dtype) {
  return device.is_cuda() ? fused_group_norm_enabled() : dtype == torch::kFloat32;
}

void use_channels_last(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters())
    if (p.dim() == 4) p.set_data(p.contiguous(torch::MemoryFormat::ChannelsLast));
}

void apply_channels_last(torch::nn::Module& unet, torch::nn::Module& vae, const torch::Device& device) {
  if (channels_last_enabled(device)) use_channels_last(unet);
  const auto vae_params = vae.parameters();
  const auto vae_dtype = vae_params.empty() ? torch::kFloat32 : vae_params.front().scalar_type();
  if (vae_channels_last_enabled(device, vae_dtype)) use_channels_last(vae);
}

}  // namespace sigma::models
