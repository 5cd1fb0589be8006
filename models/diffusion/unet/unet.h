// The LDM UNet (UNetModel of openaimodel.py) as used by Stable Diffusion 1.x/2.x and SDXL:
// input_blocks / middle_block / output_blocks of TimestepBlocks, skip connections,
// ControlNet residuals added to the skips and the middle block, and SDXL's additional
// embedding (`label_emb.0.0`, SiLU, `label_emb.0.2`) of a vector y added to the time embedding.
#pragma once

#include <torch/torch.h>

#include <optional>
#include <string>
#include <vector>

#include "models/diffusion/diffusion_model.h"
#include "models/diffusion/unet/blocks.h"

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
  int64_t adm_in_channels = 0; // SDXL: width of y fed to label_emb (real SDXL: 2816); 0 = no label_emb
  int64_t time_embed_dim() const { return model_channels * 4; }
  int64_t heads_for(int64_t channels) const { return num_heads > 0 ? num_heads : channels / head_dim; }
  std::string describe() const;
};

// The encoder half shared by UNet and ControlNet: input_blocks and middle_block.
struct UNetEncoder {
  torch::nn::ModuleList input_blocks{nullptr};
  TimestepBlock middle_block{nullptr};
  std::vector<int64_t> skip_channels;  // width of each input block's output
};
UNetEncoder build_unet_encoder(const UNetConfig& c);

torch::nn::Sequential make_time_embed(const UNetConfig& c);

// SDXL's y: [pooled [B,P], timestep_embedding of each micro-conditioning number (time_ids
// [B,N]: original h, w, crop top, left, target h, w) at fourier_dim, flattened] -> [B, P + N·fourier_dim],
// as SGM's ConcatTimestepEmbedderND and diffusers' add_time_proj (cos first, no shift) compute it.
torch::Tensor additional_embedding_input(const torch::Tensor& pooled, const torch::Tensor& time_ids, int64_t fourier_dim);

struct UNetImpl : torch::nn::Module, DiffusionModel {
  explicit UNetImpl(UNetConfig config);
  // x [B,Cin,H,W], t [B] (continuous timesteps), context [B,M,context_dim] -> [B,Cout,H,W];
  // y [B, adm_in_channels] when the UNet has label_emb (SDXL), else undefined.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& context,
                        const ControlResiduals* control = nullptr, const torch::Tensor& y = {});
  // DiffusionModel: the same call with the conditioning in one struct.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t, const DiffusionConditioning& c) override {
    return forward(x, t, c.context, c.control, c.y);
  }
  torch::nn::Module& module() override { return *this; }
  bool streaming() const override { return stream_blocks_to.has_value(); }

  UNetConfig config;
  torch::nn::Sequential time_embed{nullptr};
  torch::nn::ModuleList label_emb{nullptr};     // [label_emb_net], when adm_in_channels > 0
  torch::nn::Sequential label_emb_net{nullptr}; // label_emb.0 = Linear, SiLU, Linear
  torch::nn::ModuleList input_blocks{nullptr}, output_blocks{nullptr};
  TimestepBlock middle_block{nullptr};
  torch::nn::Sequential out{nullptr};
  // --lowvram: the blocks' weights wait in host memory and visit this device one block at a
  // time (models/runtime/streaming.h); stream_blocks() moves the small embeddings and `out` there
  // and parks the blocks. Unset: resident.
  std::optional<torch::Device> stream_blocks_to;
  void stream_blocks(const torch::Device& device);
};
TORCH_MODULE(UNet);

}  // namespace sigma::models
