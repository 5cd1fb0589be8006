// The Flux.1 transformer (Black Forest Labs' flux/model.py; an MMDiT, Esser et al. 2024) in
// BFL's checkpoint names: the image and text streams in `double_blocks` (each stream its own
// modulation, q/k RMS norms and MLP, one joint attention), then one stream in `single_blocks`
// (attention and MLP in parallel from one fused `linear1`), 3-axis RoPE over (0, row, col) ids,
// a time / guidance / pooled-text vector that modulates every block, and 2x2 patches of the
// 16-channel latent. dev has `guidance_in` (the distilled guidance value); schnell has none.
#pragma once

#include <torch/torch.h>

#include <array>
#include <string>
#include <vector>

#include "models/diffusion/diffusion_model.h"
#include "models/nn/layers.h"

namespace sigma::models {

struct FluxConfig {
  int64_t in_channels = 64;        // latent channels x patch² (16 x 2 x 2)
  int64_t hidden = 3072, heads = 24, mlp_hidden = 12288;
  int64_t context_in = 4096;       // T5's width
  int64_t vec_in = 768;            // CLIP-L's pooled width
  int64_t depth = 19, depth_single = 38;
  bool guidance_embed = true;      // dev (guidance_in); schnell: false
  std::vector<int64_t> axes_dim = {16, 56, 56};  // RoPE widths per id axis; they sum to the head width
  double theta = 10000;
  int64_t patch = 2;
  int64_t latent_channels() const { return in_channels / (patch * patch); }
  std::string describe() const;
};

// BFL's RMSNorm: the statistics in float32, then `scale`.
struct FluxRMSNormImpl : torch::nn::Module {
  explicit FluxRMSNormImpl(int64_t width);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor scale;
};
TORCH_MODULE(FluxRMSNorm);

struct QKNormImpl : torch::nn::Module {
  explicit QKNormImpl(int64_t head_dim);
  FluxRMSNorm query_norm{nullptr}, key_norm{nullptr};
};
TORCH_MODULE(QKNorm);

// in_layer -> SiLU -> out_layer
struct MLPEmbedderImpl : torch::nn::Module {
  MLPEmbedderImpl(int64_t in, int64_t hidden);
  torch::Tensor forward(const torch::Tensor& x);
  layers::Linear in_layer{nullptr}, out_layer{nullptr};
};
TORCH_MODULE(MLPEmbedder);

// lin(SiLU(vec)) in (shift, scale, gate) triples: two for a double block's stream, one for a single block.
struct ModulationImpl : torch::nn::Module {
  ModulationImpl(int64_t hidden, bool two);
  std::vector<torch::Tensor> forward(const torch::Tensor& vec);  // each [B, 1, hidden]
  layers::Linear lin{nullptr};
};
TORCH_MODULE(Modulation);

struct FluxSelfAttentionImpl : torch::nn::Module {
  FluxSelfAttentionImpl(int64_t hidden, int64_t heads);
  layers::Linear qkv{nullptr}, proj{nullptr};
  QKNorm norm{nullptr};
};
TORCH_MODULE(FluxSelfAttention);

struct DoubleStreamBlockImpl : torch::nn::Module {
  explicit DoubleStreamBlockImpl(const FluxConfig& c);
  // img [B, Li, hidden], txt [B, Lt, hidden] -> both updated; pe: RoPE of [txt; img].
  std::pair<torch::Tensor, torch::Tensor> forward(torch::Tensor img, torch::Tensor txt, const torch::Tensor& vec,
                                                  const torch::Tensor& pe);
  int64_t heads;
  Modulation img_mod{nullptr}, txt_mod{nullptr};
  FluxSelfAttention img_attn{nullptr}, txt_attn{nullptr};
  torch::nn::Sequential img_mlp{nullptr}, txt_mlp{nullptr};  // Linear, GELU (tanh), Linear
};
TORCH_MODULE(DoubleStreamBlock);

struct SingleStreamBlockImpl : torch::nn::Module {
  explicit SingleStreamBlockImpl(const FluxConfig& c);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& vec, const torch::Tensor& pe);
  int64_t hidden, heads, mlp_hidden;
  layers::Linear linear1{nullptr}, linear2{nullptr};  // [q; k; v; mlp_in], [attention; mlp_out] -> hidden
  QKNorm norm{nullptr};
  Modulation modulation{nullptr};
};
TORCH_MODULE(SingleStreamBlock);

struct LastLayerImpl : torch::nn::Module {
  LastLayerImpl(int64_t hidden, int64_t out);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& vec);
  layers::Linear linear{nullptr};
  torch::nn::Sequential adaLN_modulation{nullptr};  // SiLU, Linear(hidden, 2·hidden): (shift, scale)
};
TORCH_MODULE(LastLayer);

struct FluxTransformerImpl : torch::nn::Module, DiffusionModel {
  explicit FluxTransformerImpl(FluxConfig config);
  // BFL's forward on packed tokens: img [B, Li, in_channels] with img_ids [B or 1, Li, 3], txt
  // [B, Lt, context_in] with txt_ids [B or 1, Lt, 3], timesteps [B] and guidance [B] in the
  // network's time (σ·1000, guidance·1000), y [B, vec_in] -> the velocity [B, Li, in_channels].
  torch::Tensor forward_packed(const torch::Tensor& img, const torch::Tensor& img_ids, const torch::Tensor& txt,
                               const torch::Tensor& txt_ids, const torch::Tensor& timesteps, const torch::Tensor& y,
                               const torch::Tensor& guidance);
  // DiffusionModel: x [B, 16, H, W] (H, W even), t = σ·1000, c.context the T5 states, c.y CLIP's
  // pooled vector, c.guidance the guidance value (dev) -> the velocity, unpacked like x.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t, const DiffusionConditioning& c) override;
  torch::nn::Module& module() override { return *this; }
  bool streaming() const override { return false; }

  FluxConfig config;
  layers::Linear img_in{nullptr}, txt_in{nullptr};
  MLPEmbedder time_in{nullptr}, vector_in{nullptr}, guidance_in{nullptr};
  torch::nn::ModuleList double_blocks{nullptr}, single_blocks{nullptr};
  LastLayer final_layer{nullptr};
};
TORCH_MODULE(FluxTransformer);

// 2x2 patches: [B, C, H, W] -> [B, (H/2)(W/2), C·4] ((c, ph, pw) inner order, as BFL and
// diffusers), and back; the ids (0, row, col) of the packed grid, [1, (H/2)(W/2), 3].
torch::Tensor flux_pack(const torch::Tensor& x, int64_t patch = 2);
torch::Tensor flux_unpack(const torch::Tensor& tokens, int64_t height, int64_t width, int64_t patch = 2);
torch::Tensor flux_image_ids(int64_t height, int64_t width, int64_t patch, const torch::TensorOptions& options);

}  // namespace sigma::models
