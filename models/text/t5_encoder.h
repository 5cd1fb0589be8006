// The T5 encoder (Raffel et al. 2020, v1.1: gated-GELU feed-forward, RMS norms without bias,
// relative position buckets in the first block's attention shared by all blocks), in Hugging
// Face T5EncoderModel names (`encoder.block.N.layer.0.SelfAttention.q`, `shared`): Flux's
// T5-XXL reads the prompt's tokens; its last hidden state, after the final norm, is the
// transformer's context.
#pragma once

#include <torch/torch.h>

#include <string>

#include "models/nn/layers.h"

namespace sigma::models {

struct T5Config {
  int64_t vocab_size = 32128, width = 4096, heads = 64, head_dim = 64, ff = 10240, layers = 24;
  int64_t buckets = 32, max_distance = 128;  // relative position buckets, bidirectional
  double eps = 1e-6;
  std::string describe() const;
};

// x · rsqrt(mean(x²) + eps) · weight, the statistics in float32 (T5LayerNorm).
struct T5LayerNormImpl : torch::nn::Module {
  T5LayerNormImpl(int64_t width, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  double eps;
  torch::Tensor weight;
};
TORCH_MODULE(T5LayerNorm);

struct T5AttentionImpl : torch::nn::Module {
  T5AttentionImpl(const T5Config& c, bool relative_bias);
  // [B,L,C] -> [B,L,C], with position_bias [1 or B, heads, L, L] added to the unscaled scores
  // (T5 folds 1/sqrt(d) into its initialisation).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& position_bias);
  // The first block's bias for a length: [1, heads, L, L].
  torch::Tensor position_bias(int64_t length, const torch::Device& device) const;
  int64_t heads, head_dim, buckets, max_distance;
  layers::Linear q{nullptr}, k{nullptr}, v{nullptr}, o{nullptr};
  layers::Embedding relative_attention_bias{nullptr};  // [buckets, heads], first block only
};
TORCH_MODULE(T5Attention);

struct T5SelfAttentionLayerImpl : torch::nn::Module {
  T5SelfAttentionLayerImpl(const T5Config& c, bool relative_bias);
  T5Attention SelfAttention{nullptr};
  T5LayerNorm layer_norm{nullptr};
};
TORCH_MODULE(T5SelfAttentionLayer);

// wo(gelu_tanh(wi_0 x) · wi_1 x)
struct T5DenseGatedGeluImpl : torch::nn::Module {
  explicit T5DenseGatedGeluImpl(const T5Config& c);
  torch::Tensor forward(const torch::Tensor& x);
  layers::Linear wi_0{nullptr}, wi_1{nullptr}, wo{nullptr};
};
TORCH_MODULE(T5DenseGatedGelu);

struct T5FeedForwardLayerImpl : torch::nn::Module {
  explicit T5FeedForwardLayerImpl(const T5Config& c);
  T5DenseGatedGelu DenseReluDense{nullptr};
  T5LayerNorm layer_norm{nullptr};
};
TORCH_MODULE(T5FeedForwardLayer);

struct T5BlockImpl : torch::nn::Module {
  T5BlockImpl(const T5Config& c, bool relative_bias);
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& position_bias);
  torch::nn::ModuleList layer{nullptr};  // the checkpoint's layer.0 (attention) and layer.1 (feed-forward)
  T5SelfAttentionLayer attention{nullptr};  // = layer[0], typed
  T5FeedForwardLayer feed_forward{nullptr};  // = layer[1], typed
};
TORCH_MODULE(T5Block);

struct T5StackImpl : torch::nn::Module {
  explicit T5StackImpl(const T5Config& c);
  torch::nn::ModuleList block{nullptr};
  T5LayerNorm final_layer_norm{nullptr};
};
TORCH_MODULE(T5Stack);

struct T5EncoderImpl : torch::nn::Module {
  explicit T5EncoderImpl(T5Config config);
  // ids [B,L] -> the last hidden state [B,L,width], after the final norm.
  torch::Tensor forward(const torch::Tensor& ids);
  T5Config config;
  layers::Embedding shared{nullptr};
  T5Stack encoder{nullptr};
};
TORCH_MODULE(T5Encoder);

}  // namespace sigma::models
