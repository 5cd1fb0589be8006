#include "models/text/clip_text.h"

#include <sstream>
#include <stdexcept>

#include "models/nn/ops.h"

namespace sigma::models {
namespace nn = sigma::models::layers;  // torch::nn with our Conv2d, Linear, Embedding (models/nn/layers.h)

std::string ClipTextConfig::describe() const {
  std::ostringstream s;
  s << "width " << width << ", " << layers << " layers, " << heads << " heads, MLP " << mlp << ", "
    << (quick_gelu ? "quick_gelu" : "gelu") << ", " << max_positions << " positions, vocab " << vocab_size;
  return s.str();
}

ClipAttentionImpl::ClipAttentionImpl(int64_t width, int64_t heads_) : heads(heads_) {
  q_proj = register_module("q_proj", nn::Linear(width, width));
  k_proj = register_module("k_proj", nn::Linear(width, width));
  v_proj = register_module("v_proj", nn::Linear(width, width));
  out_proj = register_module("out_proj", nn::Linear(width, width));
}

torch::Tensor ClipAttentionImpl::forward(const torch::Tensor& x) {
  const int64_t B = x.size(0), L = x.size(1);
  auto split = [&](const torch::Tensor& t) { return t.view({B, L, heads, -1}).transpose(1, 2); };
  auto out = attention(split(q_proj->forward(x)), split(k_proj->forward(x)), split(v_proj->forward(x)),
                               /*causal=*/true);
  return out_proj->forward(out.transpose(1, 2).reshape({B, L, -1}));
}

ClipMlpImpl::ClipMlpImpl(int64_t width, int64_t hidden, bool qg) : quick_gelu(qg) {
  fc1 = register_module("fc1", nn::Linear(width, hidden));
  fc2 = register_module("fc2", nn::Linear(hidden, width));
}

torch::Tensor ClipMlpImpl::forward(const torch::Tensor& x) {
  auto h = fc1->forward(x);
  h = quick_gelu ? h * torch::sigmoid(1.702 * h) : torch::gelu(h);
  return fc2->forward(h);
}

static nn::LayerNorm make_layer_norm(const ClipTextConfig& c) {
  return nn::LayerNorm(nn::LayerNormOptions({c.width}).eps(c.layer_norm_eps));
}

ClipLayerImpl::ClipLayerImpl(const ClipTextConfig& c) {
  self_attn = register_module("self_attn", ClipAttention(c.width, c.heads));
  layer_norm1 = register_module("layer_norm1", make_layer_norm(c));
  mlp = register_module("mlp", ClipMlp(c.width, c.mlp, c.quick_gelu));
  layer_norm2 = register_module("layer_norm2", make_layer_norm(c));
}

torch::Tensor ClipLayerImpl::forward(torch::Tensor x) {
  x = x + self_attn->forward(layer_norm(*layer_norm1, x));
  return x + mlp->forward(layer_norm(*layer_norm2, x));
}

ClipEmbeddingsImpl::ClipEmbeddingsImpl(const ClipTextConfig& c) {
  token_embedding = register_module("token_embedding", nn::Embedding(c.vocab_size, c.width));
  position_embedding = register_module("position_embedding", nn::Embedding(c.max_positions, c.width));
}

ClipEncoderImpl::ClipEncoderImpl(const ClipTextConfig& c) {
  layers = register_module("layers", nn::ModuleList());
  for (int64_t i = 0; i < c.layers; ++i) layers->push_back(ClipLayer(c));
}

ClipTransformerImpl::ClipTransformerImpl(const ClipTextConfig& c) {
  embeddings = register_module("embeddings", ClipEmbeddings(c));
  encoder = register_module("encoder", ClipEncoder(c));
  final_layer_norm = register_module("final_layer_norm", make_layer_norm(c));
}

ClipTextModelImpl::ClipTextModelImpl(ClipTextConfig c) : config(std::move(c)) {
  text_model = register_module("text_model", ClipTransformer(config));
  if (config.projection_dim > 0)
    text_projection = register_module(
        "text_projection", nn::Linear(nn::LinearOptions(config.width, config.projection_dim).bias(false)));
}

namespace {
void check_skip(const ClipTextConfig& config, int64_t clip_skip) {
  if (clip_skip < 1 || clip_skip > config.layers)
    throw std::invalid_argument("clip skip must be between 1 and " + std::to_string(config.layers) + ", got " +
                                std::to_string(clip_skip));
}
}  // namespace

torch::Tensor ClipTextModelImpl::forward(const torch::Tensor& ids, int64_t clip_skip, bool final_norm) {
  return forward_with_extra_tokens(ids, torch::Tensor(), clip_skip, final_norm);
}

torch::Tensor ClipTextModelImpl::embed_tokens(const torch::Tensor& ids, const torch::Tensor& extra) {
  auto& table = text_model->embeddings->token_embedding;
  const auto device = table->weight.device();
  auto on = ids.to(device);
  if (!extra.defined()) return table->forward(on);
  const int64_t vocab = config.vocab_size, n = extra.size(0);
  if (extra.dim() != 2 || extra.size(1) != config.width)
    throw std::invalid_argument("extra token vectors must be [n, " + std::to_string(config.width) + "]");
  if (on.numel() > 0 && on.max().item<int64_t>() >= vocab + n)
    throw std::invalid_argument("token id " + std::to_string(on.max().item<int64_t>()) + " is past the vocabulary (" +
                                std::to_string(vocab) + ") and the " + std::to_string(n) + " extra vectors");
  // Look both tables up with clamped ids and pick per position: no copy of the 49408-row table.
  const auto is_extra = (on >= vocab).unsqueeze(-1);
  auto base = table->forward(on.clamp_max(vocab - 1));
  auto added = torch::embedding(extra.to(device, table->weight.scalar_type()), (on - vocab).clamp_min(0));
  return torch::where(is_extra, added, base);
}

torch::Tensor ClipTextModelImpl::embed(const torch::Tensor& ids, const torch::Tensor& extra) {
  if (ids.size(1) > config.max_positions)
    throw std::invalid_argument("token sequence of " + std::to_string(ids.size(1)) + " exceeds the text encoder's " +
                                std::to_string(config.max_positions) + " positions");
  auto& emb = text_model->embeddings;
  const auto device = emb->token_embedding->weight.device();
  auto positions = torch::arange(ids.size(1), torch::TensorOptions().dtype(torch::kLong).device(device));
  return embed_tokens(ids, extra) + emb->position_embedding->forward(positions).unsqueeze(0);
}

torch::Tensor ClipTextModelImpl::forward_with_extra_tokens(const torch::Tensor& ids, const torch::Tensor& extra,
                                                           int64_t clip_skip, bool final_norm) {
  check_skip(config, clip_skip);
  auto x = embed(ids, extra);
  const int64_t run = config.layers - clip_skip + 1;  // layers to run
  auto& layers = text_model->encoder->layers;
  for (int64_t i = 0; i < run; ++i) x = layers[static_cast<size_t>(i)]->as<ClipLayer>()->forward(x);
  return final_norm ? layer_norm(*text_model->final_layer_norm, x) : x;
}

std::pair<torch::Tensor, torch::Tensor> ClipTextModelImpl::forward_pooled(const torch::Tensor& ids, int64_t clip_skip,
                                                                           bool final_norm, const torch::Tensor& extra) {
  check_skip(config, clip_skip);
  auto x = embed(ids, extra);
  const int64_t keep = config.layers - clip_skip + 1;  // the state after this many layers is the hidden state read
  torch::Tensor hidden;
  auto& layers = text_model->encoder->layers;
  for (int64_t i = 0; i < config.layers; ++i) {
    x = layers[static_cast<size_t>(i)]->as<ClipLayer>()->forward(x);
    if (i + 1 == keep) hidden = final_norm ? layer_norm(*text_model->final_layer_norm, x) : x;
  }
  auto last = layer_norm(*text_model->final_layer_norm, x);
  // [B]: first end token per row; rows without one use the largest id (transformers' legacy rule).
  auto ids_d = ids.to(last.device());
  auto is_end = ids_d == config.eos_token_id;
  auto index = torch::where(is_end.any(1), is_end.to(torch::kInt).argmax(1), ids_d.argmax(1));
  auto rows = torch::arange(ids_d.size(0), index.options());
  // CLIPTextModelWithProjection's text_embeds (SDXL's encoder 2), else CLIPTextModel's
  // pooler_output, the final-normed state itself (Flux's CLIP-L, vector_in's input).
  auto pooled = last.index({rows, index});
  if (text_projection) pooled = text_projection->forward(pooled);
  return {hidden, pooled};
}

}  // namespace sigma::models
