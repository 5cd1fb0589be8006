#include "models/text/t5_encoder.h"

#include <cmath>
#include <sstream>
#include <stdexcept>


namespace sigma::models {

namespace nn = layers;

std::string T5Config::describe() const {
  std::ostringstream s;
  s << "T5 encoder: width " << width << ", " << layers << " blocks, " << heads << " heads of " << head_dim
    << ", feed-forward " << ff << " (gated GELU), vocabulary " << vocab_size << ", " << buckets
    << " relative position buckets";
  return s.str();
}

T5LayerNormImpl::T5LayerNormImpl(int64_t width, double eps) : eps(eps) {
  weight = register_parameter("weight", torch::ones({width}));
}

torch::Tensor T5LayerNormImpl::forward(const torch::Tensor& x) {
  const auto variance = x.to(torch::kFloat32).pow(2).mean(-1, /*keepdim=*/true);
  return weight * (x.to(torch::kFloat32) * torch::rsqrt(variance + eps)).to(weight.scalar_type());
}

T5AttentionImpl::T5AttentionImpl(const T5Config& c, bool relative_bias)
    : heads(c.heads), head_dim(c.head_dim), buckets(c.buckets), max_distance(c.max_distance) {
  const int64_t inner = c.heads * c.head_dim;
  q = register_module("q", nn::Linear(nn::LinearOptions(c.width, inner).bias(false)));
  k = register_module("k", nn::Linear(nn::LinearOptions(c.width, inner).bias(false)));
  v = register_module("v", nn::Linear(nn::LinearOptions(c.width, inner).bias(false)));
  o = register_module("o", nn::Linear(nn::LinearOptions(inner, c.width).bias(false)));
  if (relative_bias) relative_attention_bias = register_module("relative_attention_bias", nn::Embedding(c.buckets, c.heads));
}

torch::Tensor T5AttentionImpl::position_bias(int64_t length, const torch::Device& device) const {
  // Hugging Face's _relative_position_bucket, bidirectional: half the buckets for keys after
  // the query; within a half, exact distances below max_exact, then log-spaced up to max_distance.
  auto position = torch::arange(length, torch::TensorOptions().dtype(torch::kLong).device(device));
  auto relative = position.unsqueeze(0) - position.unsqueeze(1);  // [query, key]: key − query
  const int64_t half = buckets / 2, max_exact = half / 2;
  auto bucket = (relative > 0).to(torch::kLong) * half;
  auto distance = relative.abs();
  auto large = max_exact + (torch::log(distance.to(torch::kFloat32) / static_cast<double>(max_exact)) /
                            std::log(static_cast<double>(max_distance) / static_cast<double>(max_exact)) *
                            static_cast<double>(half - max_exact))
                               .to(torch::kLong);
  large = torch::clamp_max(large, half - 1);
  bucket = bucket + torch::where(distance < max_exact, distance, large);
  return torch::embedding(relative_attention_bias->weight, bucket).permute({2, 0, 1}).unsqueeze(0);  // [1, heads, q, k]
}

torch::Tensor T5AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& position_bias) {
  const int64_t B = x.size(0), L = x.size(1);
  auto split = [&](const torch::Tensor& t) { return t.view({B, L, heads, head_dim}).transpose(1, 2); };
  auto qh = split(q(x)), kh = split(k(x)), vh = split(v(x));
  // Unscaled scores plus the bias and the softmax in float32: without the 1/sqrt(d) the scores
  // are large, and rounding them to a half type before the softmax moves its weights.
  auto scores = torch::matmul(qh.to(torch::kFloat32), kh.to(torch::kFloat32).transpose(-1, -2)) +
                position_bias.to(torch::kFloat32);
  auto weights = torch::softmax(scores, -1).to(x.scalar_type());
  auto out = torch::matmul(weights, vh).transpose(1, 2).reshape({B, L, heads * head_dim});
  return o(out);
}

T5SelfAttentionLayerImpl::T5SelfAttentionLayerImpl(const T5Config& c, bool relative_bias) {
  SelfAttention = register_module("SelfAttention", T5Attention(c, relative_bias));
  layer_norm = register_module("layer_norm", T5LayerNorm(c.width, c.eps));
}

T5DenseGatedGeluImpl::T5DenseGatedGeluImpl(const T5Config& c) {
  wi_0 = register_module("wi_0", nn::Linear(nn::LinearOptions(c.width, c.ff).bias(false)));
  wi_1 = register_module("wi_1", nn::Linear(nn::LinearOptions(c.width, c.ff).bias(false)));
  wo = register_module("wo", nn::Linear(nn::LinearOptions(c.ff, c.width).bias(false)));
}

torch::Tensor T5DenseGatedGeluImpl::forward(const torch::Tensor& x) {
  return wo(torch::gelu(wi_0(x), "tanh") * wi_1(x));  // Hugging Face's gelu_new
}

T5FeedForwardLayerImpl::T5FeedForwardLayerImpl(const T5Config& c) {
  DenseReluDense = register_module("DenseReluDense", T5DenseGatedGelu(c));
  layer_norm = register_module("layer_norm", T5LayerNorm(c.width, c.eps));
}

T5BlockImpl::T5BlockImpl(const T5Config& c, bool relative_bias) {
  attention = T5SelfAttentionLayer(c, relative_bias);
  feed_forward = T5FeedForwardLayer(c);
  layer = register_module("layer", torch::nn::ModuleList(attention, feed_forward));
}

torch::Tensor T5BlockImpl::forward(torch::Tensor x, const torch::Tensor& position_bias) {
  x = x + attention->SelfAttention(attention->layer_norm(x), position_bias);
  return x + feed_forward->DenseReluDense(feed_forward->layer_norm(x));
}

T5StackImpl::T5StackImpl(const T5Config& c) {
  block = register_module("block", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.layers; ++i) block->push_back(T5Block(c, /*relative_bias=*/i == 0));
  final_layer_norm = register_module("final_layer_norm", T5LayerNorm(c.width, c.eps));
}

T5EncoderImpl::T5EncoderImpl(T5Config c) : config(std::move(c)) {
  shared = register_module("shared", nn::Embedding(config.vocab_size, config.width));
  encoder = register_module("encoder", T5Stack(config));
}

torch::Tensor T5EncoderImpl::forward(const torch::Tensor& ids) {
  const auto ids_here = ids.to(shared->weight.device());
  if (ids_here.numel() > 0 && ids_here.max().item<int64_t>() >= config.vocab_size)
    throw std::invalid_argument("T5: token id " + std::to_string(ids_here.max().item<int64_t>()) +
                                " is outside the encoder's " + std::to_string(config.vocab_size) +
                                "-entry embedding table; the tokenizer does not belong to this T5 (--t5-tokenizer)");
  auto x = shared(ids_here);
  auto first = encoder->block[0]->as<T5Block>();
  const auto bias = first->attention->SelfAttention->position_bias(ids.size(1), x.device());
  for (const auto& b : *encoder->block) x = b->as<T5Block>()->forward(x, bias);
  return encoder->final_layer_norm(x);
}

}  // namespace sigma::models
