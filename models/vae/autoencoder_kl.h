// AutoencoderKL of latent diffusion (taming/modules/diffusionmodules/model.py):
// Encoder -> quant_conv -> (mean, logvar); post_quant_conv -> Decoder. Member names are
// the LDM checkpoint keys (`encoder.down.1.block.0.nin_shortcut.weight`, `mid.attn_1.q`).
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "models/nn/layers.h"

namespace sigma::models {

struct VaeConfig {
  int64_t in_channels = 3, out_channels = 3, ch = 128, z_channels = 4;
  std::vector<int64_t> ch_mult{1, 2, 4, 4};
  int64_t num_res_blocks = 2;
  double scaling_factor = 0.18215;  // latents are z · scaling_factor
  bool quant_convs = true;  // the 1x1 quant_conv / post_quant_conv (SD's KL-VAEs); Flux's ae has none
  int64_t downscale() const { return int64_t(1) << (ch_mult.size() - 1); }
  std::string describe() const;
};

// norm1-swish-conv1-norm2-swish-conv2 (+ nin_shortcut 1x1 when widths differ); GroupNorm eps 1e-6.
struct VaeResBlockImpl : torch::nn::Module {
  VaeResBlockImpl(int64_t in, int64_t out);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::GroupNorm norm1{nullptr}, norm2{nullptr};
  layers::Conv2d conv1{nullptr}, conv2{nullptr}, nin_shortcut{nullptr};
};
TORCH_MODULE(VaeResBlock);

// Single-head self-attention over all pixels, q/k/v/proj_out as 1x1 convs.
struct VaeAttnBlockImpl : torch::nn::Module {
  explicit VaeAttnBlockImpl(int64_t ch);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::GroupNorm norm{nullptr};
  layers::Conv2d q{nullptr}, k{nullptr}, v{nullptr}, proj_out{nullptr};
};
TORCH_MODULE(VaeAttnBlock);

// mid = block_1, attn_1, block_2
struct VaeMidImpl : torch::nn::Module {
  explicit VaeMidImpl(int64_t ch);
  torch::Tensor forward(const torch::Tensor& x) { return block_2->forward(attn_1->forward(block_1->forward(x))); }
  VaeResBlock block_1{nullptr}, block_2{nullptr};
  VaeAttnBlock attn_1{nullptr};
};
TORCH_MODULE(VaeMid);

// `downsample.conv` (asymmetric pad, stride 2) or `upsample.conv` (nearest x2, then conv).
struct VaeResampleImpl : torch::nn::Module {
  VaeResampleImpl(int64_t ch, bool down);
  torch::Tensor forward(const torch::Tensor& x);
  bool down;
  layers::Conv2d conv{nullptr};
};
TORCH_MODULE(VaeResample);

// One resolution level: `block` (ModuleList of VaeResBlock), then an optional resample.
struct VaeLevelImpl : torch::nn::Module {
  VaeLevelImpl(int64_t in, int64_t out, int64_t blocks, bool down, bool resample);
  torch::Tensor forward(torch::Tensor x);
  torch::nn::ModuleList block{nullptr};
  VaeResample resample{nullptr};
};
TORCH_MODULE(VaeLevel);

struct VaeEncoderImpl : torch::nn::Module {
  explicit VaeEncoderImpl(const VaeConfig& c);
  torch::Tensor forward(const torch::Tensor& x);  // [B,3,H,W] -> [B,2z,H/f,W/f]
  layers::Conv2d conv_in{nullptr}, conv_out{nullptr};
  torch::nn::ModuleList down{nullptr};
  VaeMid mid{nullptr};
  torch::nn::GroupNorm norm_out{nullptr};
};
TORCH_MODULE(VaeEncoder);

struct VaeDecoderImpl : torch::nn::Module {
  explicit VaeDecoderImpl(const VaeConfig& c);
  torch::Tensor forward(const torch::Tensor& z);  // [B,z,h,w] -> [B,3,h·f,w·f]
  layers::Conv2d conv_in{nullptr}, conv_out{nullptr};
  torch::nn::ModuleList up{nullptr};
  VaeMid mid{nullptr};
  torch::nn::GroupNorm norm_out{nullptr};
};
TORCH_MODULE(VaeDecoder);

struct AutoencoderKLImpl : torch::nn::Module {
  explicit AutoencoderKLImpl(VaeConfig config);
  // image in [-1,1] -> (mean, logvar) of the latent posterior, logvar clamped to [-30, 20]
  std::pair<torch::Tensor, torch::Tensor> encode_moments(const torch::Tensor& image);
  // latent (unscaled, i.e. already divided by scaling_factor) -> image in about [-1,1]
  torch::Tensor decode(const torch::Tensor& z);
  // quant_conv's output -> (mean, logvar) in `dtype` (encode_moments' last step)
  static std::pair<torch::Tensor, torch::Tensor> posterior(const torch::Tensor& moments, torch::ScalarType dtype);
  // The encoder's moments through quant_conv, and z through post_quant_conv, where the VAE has them.
  torch::Tensor quantize(const torch::Tensor& moments);
  torch::Tensor post_quantize(const torch::Tensor& z);
  torch::ScalarType weight_dtype() const;  // what inputs are converted to

  VaeConfig config;
  VaeEncoder encoder{nullptr};
  VaeDecoder decoder{nullptr};
  layers::Conv2d quant_conv{nullptr}, post_quant_conv{nullptr};  // unset without quant_convs
};
TORCH_MODULE(AutoencoderKL);

}  // namespace sigma::models
