#include "models/vae/autoencoder_kl.h"

#include <sstream>

#include "models/nn/ops.h"

namespace sigma::models {
namespace nn = sigma::models::layers;  // torch::nn with our Conv2d, Linear, Embedding (models/nn/layers.h)
namespace F = torch::nn::functional;

std::string VaeConfig::describe() const {
  std::ostringstream s;
  s << "ch " << ch << ", ch_mult (";
  for (size_t i = 0; i < ch_mult.size(); ++i) s << (i ? ", " : "") << ch_mult[i];
  s << "), num_res_blocks " << num_res_blocks << ", z_channels " << z_channels << ", factor " << downscale()
    << ", scaling_factor " << scaling_factor;
  return s.str();
}

VaeResBlockImpl::VaeResBlockImpl(int64_t in, int64_t out) {
  norm1 = register_module("norm1", group_norm(in, 1e-6));
  conv1 = register_module("conv1", conv(in, out, 3));
  norm2 = register_module("norm2", group_norm(out, 1e-6));
  conv2 = register_module("conv2", conv(out, out, 3));
  if (in != out) nin_shortcut = register_module("nin_shortcut", conv(in, out, 1));
}

torch::Tensor VaeResBlockImpl::forward(const torch::Tensor& x) {
  auto h = conv1->forward(group_norm_act(*norm1, x, true));
  h = conv2->forward(group_norm_act(*norm2, h, true));
  return (nin_shortcut ? nin_shortcut->forward(x) : x) + h;
}

VaeAttnBlockImpl::VaeAttnBlockImpl(int64_t ch) {
  norm = register_module("norm", group_norm(ch, 1e-6));
  q = register_module("q", conv(ch, ch, 1));
  k = register_module("k", conv(ch, ch, 1));
  v = register_module("v", conv(ch, ch, 1));
  proj_out = register_module("proj_out", conv(ch, ch, 1));
}

torch::Tensor VaeAttnBlockImpl::forward(const torch::Tensor& x) {
  // x [B,C,H,W]: one head over the H·W pixels
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  auto h = group_norm_act(*norm, x, false);
  auto tokens = [&](const torch::Tensor& t) { return t.reshape({B, 1, C, H * W}).transpose(-1, -2); };
  auto out = attention(tokens(q->forward(h)), tokens(k->forward(h)), tokens(v->forward(h)));
  out = out.transpose(-1, -2).reshape({B, C, H, W});
  return x + proj_out->forward(out);
}

VaeMidImpl::VaeMidImpl(int64_t ch) {
  block_1 = register_module("block_1", VaeResBlock(ch, ch));
  attn_1 = register_module("attn_1", VaeAttnBlock(ch));
  block_2 = register_module("block_2", VaeResBlock(ch, ch));
}

VaeResampleImpl::VaeResampleImpl(int64_t ch, bool down_) : down(down_) {
  conv = register_module("conv", down ? sigma::models::conv(ch, ch, 3, 2, 0) : sigma::models::conv(ch, ch, 3));
}

torch::Tensor VaeResampleImpl::forward(const torch::Tensor& x) {
  if (down) return conv->forward(F::pad(x, F::PadFuncOptions({0, 1, 0, 1})));  // LDM pads right/bottom only
  return conv->forward(
      F::interpolate(x, F::InterpolateFuncOptions().scale_factor(std::vector<double>{2, 2}).mode(torch::kNearest)));
}

VaeLevelImpl::VaeLevelImpl(int64_t in, int64_t out, int64_t blocks, bool down, bool resample_) {
  block = register_module("block", nn::ModuleList());
  for (int64_t i = 0; i < blocks; ++i) block->push_back(VaeResBlock(i == 0 ? in : out, out));
  if (resample_) resample = register_module(down ? "downsample" : "upsample", VaeResample(out, down));
}

torch::Tensor VaeLevelImpl::forward(torch::Tensor x) {
  for (const auto& b : *block) x = b->as<VaeResBlock>()->forward(x);
  return resample ? resample->forward(x) : x;
}

VaeEncoderImpl::VaeEncoderImpl(const VaeConfig& c) {
  conv_in = register_module("conv_in", conv(c.in_channels, c.ch, 3));
  down = register_module("down", nn::ModuleList());
  int64_t ch = c.ch;
  for (size_t i = 0; i < c.ch_mult.size(); ++i) {
    const int64_t out = c.ch * c.ch_mult[i];
    down->push_back(VaeLevel(ch, out, c.num_res_blocks, true, i + 1 != c.ch_mult.size()));
    ch = out;
  }
  mid = register_module("mid", VaeMid(ch));
  norm_out = register_module("norm_out", group_norm(ch, 1e-6));
  conv_out = register_module("conv_out", conv(ch, 2 * c.z_channels, 3));
}

torch::Tensor VaeEncoderImpl::forward(const torch::Tensor& x) {
  auto h = conv_in->forward(x);
  for (const auto& level : *down) h = level->as<VaeLevel>()->forward(h);
  h = mid->forward(h);
  return conv_out->forward(group_norm_act(*norm_out, h, true));
}

VaeDecoderImpl::VaeDecoderImpl(const VaeConfig& c) {
  const size_t L = c.ch_mult.size();
  int64_t ch = c.ch * c.ch_mult.back();
  conv_in = register_module("conv_in", conv(c.z_channels, ch, 3));
  mid = register_module("mid", VaeMid(ch));
  // up.{i} is stored by resolution level (up.0 is the finest) but runs from the coarsest.
  std::vector<VaeLevel> levels(L, nullptr);
  for (size_t i = L; i-- > 0;) {
    const int64_t out = c.ch * c.ch_mult[i];
    levels[i] = VaeLevel(ch, out, c.num_res_blocks + 1, false, i != 0);
    ch = out;
  }
  up = register_module("up", nn::ModuleList());
  for (auto& l : levels) up->push_back(l);
  norm_out = register_module("norm_out", group_norm(ch, 1e-6));
  conv_out = register_module("conv_out", conv(ch, c.out_channels, 3));
}

torch::Tensor VaeDecoderImpl::forward(const torch::Tensor& z) {
  auto h = mid->forward(conv_in->forward(z));
  for (size_t i = up->size(); i-- > 0;) h = up[i]->as<VaeLevel>()->forward(h);
  return conv_out->forward(group_norm_act(*norm_out, h, true));
}

AutoencoderKLImpl::AutoencoderKLImpl(VaeConfig c) : config(std::move(c)) {
  encoder = register_module("encoder", VaeEncoder(config));
  decoder = register_module("decoder", VaeDecoder(config));
  if (config.quant_convs) {
    quant_conv = register_module("quant_conv", conv(2 * config.z_channels, 2 * config.z_channels, 1));
    post_quant_conv = register_module("post_quant_conv", conv(config.z_channels, config.z_channels, 1));
  }
}

torch::Tensor AutoencoderKLImpl::quantize(const torch::Tensor& moments) { return quant_conv ? quant_conv->forward(moments) : moments; }
torch::Tensor AutoencoderKLImpl::post_quantize(const torch::Tensor& z) { return post_quant_conv ? post_quant_conv->forward(z) : z; }
torch::ScalarType AutoencoderKLImpl::weight_dtype() const { return decoder->conv_in->weight.scalar_type(); }

// Inputs run in the module's dtype (a VAE kept in float32 for a float16 pipeline), outputs come back in theirs.
std::pair<torch::Tensor, torch::Tensor> AutoencoderKLImpl::encode_moments(const torch::Tensor& image) {
  return posterior(quantize(encoder->forward(image.to(weight_dtype()))), image.scalar_type());
}

std::pair<torch::Tensor, torch::Tensor> AutoencoderKLImpl::posterior(const torch::Tensor& moments, torch::ScalarType dtype) {
  auto m = moments.chunk(2, 1);
  return {m[0].to(dtype), m[1].clamp(-30.0, 20.0).to(dtype)};
}

torch::Tensor AutoencoderKLImpl::decode(const torch::Tensor& z) {
  return decoder->forward(post_quantize(z.to(weight_dtype()))).to(z.scalar_type());
}

}  // namespace sigma::models
