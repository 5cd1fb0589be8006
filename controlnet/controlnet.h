// ControlNet (Zhang et al. 2023, cldm.py): a trainable copy of the UNet's encoder half
// that reads a condition image through the hint encoder and returns, through zero
// convolutions, one residual per UNet skip connection plus one for the middle block.
#pragma once

#include <torch/torch.h>

#include <string>

#include "models/diffusion/unet/unet.h"
#include "models/families/checkpoint.h"

namespace sigma::controlnet {

struct ControlNetConfig {
  models::UNetConfig unet;                 // the encoder half it copies
  std::vector<int64_t> hint_channels{16, 32, 96, 256};
  int64_t hint_in_channels = 3;
  std::string describe() const;
};

struct ControlNetImpl : torch::nn::Module {
  explicit ControlNetImpl(ControlNetConfig config);
  // x [B,4,h,w], t [B], context [B,M,C], hint [B,3,8h,8w] in [0,1] -> residuals (not yet scaled)
  models::ControlResiduals forward(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& context,
                                   const torch::Tensor& hint);

  ControlNetConfig config;
  torch::nn::Sequential time_embed{nullptr}, input_hint_block{nullptr};
  torch::nn::ModuleList input_blocks{nullptr}, zero_convs{nullptr};
  models::TimestepBlock middle_block{nullptr};
  torch::nn::Sequential middle_block_out{nullptr};
};
TORCH_MODULE(ControlNet);

// A ControlNet file: single-file (with or without the `control_model.` prefix) or a
// diffusers folder / file; weights under LDM names, configuration from shapes.
struct ControlNetCheckpoint {
  std::string path;
  bool diffusers = false;
  models::TensorIndex weights;
  ControlNetConfig config;
};
ControlNetCheckpoint open_controlnet(const std::string& path, models::Family family = models::Family::SD1);

}  // namespace sigma::controlnet

namespace sigma::controlnet {
ControlNet load_controlnet(const ControlNetCheckpoint& ck, torch::Device device, torch::ScalarType dtype);
}  // namespace sigma::controlnet
