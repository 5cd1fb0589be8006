// The LDM UNet (UNetModel of openaimodel.py) as used by Stable Diffusion 1.x/2.x:
// input_blocks / middle_block / output_blocks of TimestepBlocks, skip connections,
// and ControlNet residuals added to the skips and the middle block.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "models/unet_blocks.h"

namespace sigma::models {

struct UNetConfig {
  int64_t in_channels = 4, out_channels = 4, model_channels = 320;
  std::vector<int64_t> channel_mult{1, 2, 4, 4};
  int64_t num_res_blocks = 2;
  std::vector<int64_t> transformer_depth{1, 1, 1, 0};  // per level; 0 = no attention at that level
  int64_t middle_transformer_depth = 1;                // 0 = no attention in the middle block
  int64_t context_dim = 768;
  int64_t num_heads = 8;       // SD 1.x rule: fixed head count ...
  int64_t head_dim = -1;       // ... or SD 2.x rule: fixed head width (then num_heads = -1)
  bool linear_proj = false;    // SD 2.x: Linear proj_in/proj_out
  int64_t time_embed_dim() const { return model_channels * 4; }
  int64_t heads_for(int64_t channels) const { return num_heads > 0 ? num_heads : channels / head_dim; }
  std::string describe() const;
};

// Residuals a ControlNet hands to the UNet: one per input block, and one for the middle block.
struct ControlResiduals {
  std::vector<torch::Tensor> down;
  torch::Tensor mid;
  bool empty() const { return down.empty() && !mid.defined(); }
};

// The encoder half shared by UNet and ControlNet: input_blocks and middle_block.
struct UNetEncoder {
  torch::nn::ModuleList input_blocks{nullptr};
  TimestepBlock middle_block{nullptr};
  std::vector<int64_t> skip_channels;  // width of each input block's output
};
UNetEncoder build_unet_encoder(const UNetConfig& c);

torch::nn::Sequential make_time_embed(const UNetConfig& c);

struct UNetImpl : torch::nn::Module {
  explicit UNetImpl(UNetConfig config);
  // x [B,Cin,H,W], t [B] (continuous timesteps), context [B,M,context_dim] -> [B,Cout,H,W]
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& context,
                        const ControlResiduals* control = nullptr);

  UNetConfig config;
  torch::nn::Sequential time_embed{nullptr};
  torch::nn::ModuleList input_blocks{nullptr}, output_blocks{nullptr};
  TimestepBlock middle_block{nullptr};
  torch::nn::Sequential out{nullptr};
};
TORCH_MODULE(UNet);

}  // namespace sigma::models
