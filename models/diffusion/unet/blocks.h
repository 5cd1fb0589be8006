// The building blocks of the LDM UNet (openaimodel.py / attention.py of the
// CompVis and Stability repositories), with member names equal to the checkpoint
// keys so that loading is a lookup: `input_blocks.1.0.in_layers.2.weight` is the
// conv of ResBlock 0 of TimestepBlock 1. ControlNet reuses these blocks.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <vector>

#include "models/nn/layers.h"

namespace sigma::models {

// Sinusoidal embedding of (continuous) timesteps, cos first ("flip_sin_to_cos"),
// max period 10000, no frequency shift: LDM's timestep_embedding.  t [B] -> [B, dim]
torch::Tensor timestep_embedding(const torch::Tensor& t, int64_t dim);

// A Sequential(GroupNorm, SiLU, [Identity,] Conv2d), kept for the checkpoint's key names
// (in_layers.0.weight, ...), run as group_norm_act (one fused call on CUDA) and the conv.
// image_bias [N, C_out], when given, is added with the conv's bias (Conv2dImpl::forward).
torch::Tensor norm_silu_conv(torch::nn::Sequential& layers, const torch::Tensor& x,
                             const torch::Tensor& image_bias = {});

// ResBlock: GN-SiLU-conv, + Linear(emb), GN-SiLU-(dropout)-conv, 1x1 skip when widths differ.
struct ResBlockImpl : torch::nn::Module {
  ResBlockImpl(int64_t in, int64_t out, int64_t emb_dim);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& emb);
  torch::nn::Sequential in_layers{nullptr}, emb_layers{nullptr}, out_layers{nullptr};
  layers::Conv2d skip_connection{nullptr};
};
TORCH_MODULE(ResBlock);

// Multi-head attention with to_q/to_k/to_v (no bias) and to_out.0; self-attention when context is empty.
struct CrossAttentionImpl : torch::nn::Module {
  CrossAttentionImpl(int64_t query_dim, int64_t context_dim, int64_t heads, int64_t dim_head);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context = {});
  int64_t heads;
  layers::Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr};
  torch::nn::Sequential to_out{nullptr};
};
TORCH_MODULE(CrossAttention);

// GEGLU feed-forward: net.0.proj (dim -> 2·4·dim), x·gelu(gate), net.2 (4·dim -> dim).
struct GEGLUImpl : torch::nn::Module {
  GEGLUImpl(int64_t dim_in, int64_t dim_out);
  torch::Tensor forward(const torch::Tensor& x);
  layers::Linear proj{nullptr};
};
TORCH_MODULE(GEGLU);

struct FeedForwardImpl : torch::nn::Module {
  explicit FeedForwardImpl(int64_t dim);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Sequential net{nullptr};
};
TORCH_MODULE(FeedForward);

// x += attn1(norm1 x); x += attn2(norm2 x, context); x += ff(norm3 x)
struct BasicTransformerBlockImpl : torch::nn::Module {
  BasicTransformerBlockImpl(int64_t dim, int64_t heads, int64_t dim_head, int64_t context_dim);
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& context);
  CrossAttention attn1{nullptr}, attn2{nullptr};
  FeedForward ff{nullptr};
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr}, norm3{nullptr};
};
TORCH_MODULE(BasicTransformerBlock);

// GroupNorm, proj_in (1x1 conv in SD 1.x, Linear in SD 2.x), transformer blocks, proj_out, residual.
struct SpatialTransformerImpl : torch::nn::Module {
  SpatialTransformerImpl(int64_t channels, int64_t heads, int64_t dim_head, int64_t depth, int64_t context_dim,
                         bool linear_proj);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context);
  bool linear_proj;
  torch::nn::GroupNorm norm{nullptr};
  torch::nn::AnyModule proj_in, proj_out;
  torch::nn::ModuleList transformer_blocks{nullptr};
};
TORCH_MODULE(SpatialTransformer);

struct DownsampleImpl : torch::nn::Module {
  explicit DownsampleImpl(int64_t channels);
  torch::Tensor forward(const torch::Tensor& x) { return op->forward(x); }
  layers::Conv2d op{nullptr};
};
TORCH_MODULE(Downsample);

struct UpsampleImpl : torch::nn::Module {
  explicit UpsampleImpl(int64_t channels);
  torch::Tensor forward(const torch::Tensor& x);
  layers::Conv2d conv{nullptr};
};
TORCH_MODULE(Upsample);

// TimestepEmbedSequential: children "0", "1", ... each a ResBlock, SpatialTransformer,
// Downsample, Upsample or plain conv (input_blocks.0), called with what each needs.
struct TimestepBlockImpl : torch::nn::Module {
  void add(ResBlock m);
  void add(SpatialTransformer m);
  void add(Downsample m);
  void add(Upsample m);
  void add(layers::Conv2d m);
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& emb, const torch::Tensor& context);

 private:
  using Call = std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&)>;
  std::vector<Call> layers_;
  void push(std::shared_ptr<torch::nn::Module> m, Call call);
};
TORCH_MODULE(TimestepBlock);

}  // namespace sigma::models
