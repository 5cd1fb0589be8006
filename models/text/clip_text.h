// The CLIP text transformer (Hugging Face CLIPTextModel names: `text_model.encoder.
// layers.N.self_attn.q_proj`), causal, pre-LayerNorm. SD 1.x uses OpenAI's CLIP-L
// (quick_gelu); SD 2.x's OpenCLIP weights are renamed to these names on load (gelu).
// SDXL's OpenCLIP-bigG adds `text_projection` (CLIPTextModelWithProjection) for the pooled vector.
#pragma once

#include <torch/torch.h>

#include <string>

#include "models/nn/layers.h"

namespace sigma::models {

struct ClipTextConfig {
  int64_t vocab_size = 49408, max_positions = 77, width = 768, layers = 12, heads = 12, mlp = 3072;
  bool quick_gelu = true;  // OpenAI CLIP; false: exact gelu (OpenCLIP)
  double layer_norm_eps = 1e-5;
  int64_t projection_dim = 0;   // > 0: a `text_projection` (no bias) for the pooled vector (SDXL's encoder 2)
  int64_t eos_token_id = 49407; // the end token, whose final state is the pooled one
  std::string describe() const;
};

struct ClipAttentionImpl : torch::nn::Module {
  ClipAttentionImpl(int64_t width, int64_t heads);
  torch::Tensor forward(const torch::Tensor& x);  // causal self-attention, [B,L,C] -> [B,L,C]
  int64_t heads;
  layers::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr};
};
TORCH_MODULE(ClipAttention);

struct ClipMlpImpl : torch::nn::Module {
  ClipMlpImpl(int64_t width, int64_t hidden, bool quick_gelu);
  torch::Tensor forward(const torch::Tensor& x);
  bool quick_gelu;
  layers::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(ClipMlp);

struct ClipLayerImpl : torch::nn::Module {
  explicit ClipLayerImpl(const ClipTextConfig& c);
  torch::Tensor forward(torch::Tensor x);
  ClipAttention self_attn{nullptr};
  torch::nn::LayerNorm layer_norm1{nullptr}, layer_norm2{nullptr};
  ClipMlp mlp{nullptr};
};
TORCH_MODULE(ClipLayer);

struct ClipEmbeddingsImpl : torch::nn::Module {
  explicit ClipEmbeddingsImpl(const ClipTextConfig& c);
  layers::Embedding token_embedding{nullptr}, position_embedding{nullptr};
};
TORCH_MODULE(ClipEmbeddings);

struct ClipEncoderImpl : torch::nn::Module {
  explicit ClipEncoderImpl(const ClipTextConfig& c);
  torch::nn::ModuleList layers{nullptr};
};
TORCH_MODULE(ClipEncoder);

struct ClipTransformerImpl : torch::nn::Module {
  explicit ClipTransformerImpl(const ClipTextConfig& c);
  ClipEmbeddings embeddings{nullptr};
  ClipEncoder encoder{nullptr};
  torch::nn::LayerNorm final_layer_norm{nullptr};
};
TORCH_MODULE(ClipTransformer);

struct ClipTextModelImpl : torch::nn::Module {
  explicit ClipTextModelImpl(ClipTextConfig config);
  // ids [B,L] -> hidden states [B,L,width] of layer (layers − clip_skip + 1), i.e. clip_skip 1
  // is the last layer, 2 the penultimate ("clip skip 2"); final_norm applies final_layer_norm
  // to that state, as SD 1.x/2.x do.
  torch::Tensor forward(const torch::Tensor& ids, int64_t clip_skip = 1, bool final_norm = true);
  // The same with extra token vectors (textual inversion, models/adapters/embedding.h): an id >=
  // config.vocab_size picks row (id − vocab_size) of `extra` [n, width], given per call so
  // the loaded model stays unchanged. An undefined `extra` is plain forward().
  torch::Tensor forward_with_extra_tokens(const torch::Tensor& ids, const torch::Tensor& extra, int64_t clip_skip = 1,
                                          bool final_norm = true);
  // Token embeddings [B,L,width] of ids, on the model's device, extra ids as above.
  torch::Tensor embed_tokens(const torch::Tensor& ids, const torch::Tensor& extra = {});
  // The same hidden state, and the pooled vector: the final-LayerNorm'ed last-layer state at
  // each row's first end token (argmax of the ids where there is none), times text_projection
  // where the model has one (transformers' CLIPTextModelWithProjection.text_embeds, [B,
  // projection_dim]), else as it is (CLIPTextModel's pooler_output, [B, width]: Flux's CLIP-L).
  std::pair<torch::Tensor, torch::Tensor> forward_pooled(const torch::Tensor& ids, int64_t clip_skip, bool final_norm,
                                                         const torch::Tensor& extra = {});
  ClipTextConfig config;
  ClipTransformer text_model{nullptr};
  layers::Linear text_projection{nullptr};  // only when config.projection_dim > 0

 private:
  // Token (embed_tokens) + position embeddings of ids [B,L] -> [B,L,width].
  torch::Tensor embed(const torch::Tensor& ids, const torch::Tensor& extra);
};
TORCH_MODULE(ClipTextModel);

}  // namespace sigma::models
