// Which networks store their 4-D weights channels-last (NHWC), per device and dtype.
#pragma once

#include <torch/torch.h>

namespace sigma::models {

// The channels-last (NHWC) lever: a module's 4-D weights stored in channels-last order, so
// its convolutions take cuDNN's / oneDNN's NHWC kernels and their outputs stay NHWC.
// CUDA: the UNet (SD 1.5 fp16 CFG step on an H200: 10.9 vs 12.9 ms through CUDA graphs); the
// VAE only with the fused GroupNorm kernels, since LibTorch's CUDA GroupNorm converts NHWC back
// to NCHW (decode 26.6 vs 21.5 ms without them, 9.2 vs 10.3 ms with). CPU: the VAE in float32
// (512² decode 12.1 vs 13.9 s on 2 cores); not in bf16, where LibTorch 1.13's NHWC GroupNorm is
// wrong and the NCHW detour (models/nn/ops.cpp) ate the gain, nor the UNet (11.8 vs 12.1 s
// a float32 step). docs/performance.md. SIGMA_CHANNELS_LAST=0/1 and SIGMA_VAE_CHANNELS_LAST=0/1
// override the UNet's and the VAE's choice.
bool channels_last_enabled(const torch::Device& device);
bool vae_channels_last_enabled(const torch::Device& device, torch::ScalarType dtype);
void use_channels_last(torch::nn::Module& module);
// use_channels_last on the networks the policy above picks for `device` and their dtypes.
void apply_channels_last(torch::nn::Module& unet, torch::nn::Module& vae, const torch::Device& device);

}  // namespace sigma::models
