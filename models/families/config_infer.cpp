// Inferring network configurations from tensor shapes, so that a real checkpoint
// loads with no config file: the shapes fix every width and count; only the
// attention head split is a family rule.
#include <algorithm>

#include "models/families/checkpoint.h"

namespace sigma::models {
namespace {

const TensorRef& need(const TensorIndex& idx, const std::string& key, const std::string& what) {
  auto it = idx.find(key);
  if (it == idx.end()) throw ModelLoadError(what + ": missing key '" + key + "' (the file is incomplete or not this kind of model)");
  return it->second;
}

int64_t dim(const TensorIndex& idx, const std::string& key, size_t d, const std::string& what) {
  const auto& ref = need(idx, key, what);
  if (ref.shape.size() <= d) throw ModelLoadError(what + ": tensor '" + key + "' has shape " + shape_string(ref.shape) + ", expected at least " + std::to_string(d + 1) + " dimensions");
  return ref.shape[d];
}

int64_t count(const TensorIndex& idx, const std::string& prefix, const std::string& suffix) {
  int64_t n = 0;
  while (idx.count(prefix + std::to_string(n) + suffix)) ++n;
  return n;
}

}  // namespace

bool has_prefix(const TensorIndex& index, const std::string& prefix) {
  auto it = index.lower_bound(prefix);
  return it != index.end() && it->first.compare(0, prefix.size(), prefix) == 0;
}

UNetConfig infer_unet_config(const TensorIndex& u, Family family, const std::string& what) {
  UNetConfig c;
  c.model_channels = dim(u, "input_blocks.0.0.weight", 0, what);
  c.in_channels = dim(u, "input_blocks.0.0.weight", 1, what);
  c.out_channels = dim(u, "out.2.weight", 0, what);
  c.channel_mult.clear();
  c.transformer_depth.clear();
  // Walk input_blocks: ResBlocks (with optional attention) and Downsamples split the levels.
  std::vector<int64_t> blocks_per_level{0};
  for (int64_t i = 1; has_prefix(u, "input_blocks." + std::to_string(i) + "."); ++i) {
    const std::string b = "input_blocks." + std::to_string(i) + ".";
    if (u.count(b + "0.op.weight")) {
      blocks_per_level.push_back(0);
      continue;
    }
    const int64_t out = dim(u, b + "0.out_layers.3.weight", 0, what);
    const int64_t depth = count(u, b + "1.transformer_blocks.", ".norm1.weight");
    if (blocks_per_level.back()++ == 0) {
      c.channel_mult.push_back(out / c.model_channels);
      c.transformer_depth.push_back(depth);
    }
  }
  if (c.channel_mult.empty()) throw ModelLoadError(what + ": no UNet input blocks found");
  c.num_res_blocks = blocks_per_level.front();
  for (auto n : blocks_per_level)
    if (n != c.num_res_blocks)
      throw ModelLoadError(what + ": levels have different numbers of residual blocks, which this UNet does not support");
  c.middle_transformer_depth = count(u, "middle_block.1.transformer_blocks.", ".norm1.weight");
  c.context_dim = 0;
  for (const auto& [k, ref] : u) {
    static const std::string suffix = "attn2.to_k.weight";
    if (k.size() >= suffix.size() && k.compare(k.size() - suffix.size(), suffix.size(), suffix) == 0) {
      c.context_dim = ref.shape.at(1);
      break;
    }
  }
  for (const auto& [k, ref] : u)
    if (k.find(".proj_in.weight") != std::string::npos) {
      c.linear_proj = ref.shape.size() == 2;
      break;
    }
  if (u.count("label_emb.0.0.weight")) c.adm_in_channels = dim(u, "label_emb.0.0.weight", 1, what);
  const auto& d = family_description(family);
  c.num_heads = d.unet.num_heads;
  c.head_dim = d.unet.head_dim;
  return c;
}

VaeConfig infer_vae_config(const TensorIndex& v, const std::string& what) {
  VaeConfig c;
  c.ch = dim(v, "encoder.conv_in.weight", 0, what);
  c.in_channels = dim(v, "encoder.conv_in.weight", 1, what);
  c.out_channels = dim(v, "decoder.conv_out.weight", 0, what);
  c.z_channels = dim(v, "decoder.conv_in.weight", 1, what);
  c.num_res_blocks = count(v, "encoder.down.0.block.", ".conv1.weight");
  c.ch_mult.clear();
  for (int64_t i = 0; v.count("encoder.down." + std::to_string(i) + ".block.0.conv1.weight"); ++i)
    c.ch_mult.push_back(dim(v, "encoder.down." + std::to_string(i) + ".block.0.conv2.weight", 0, what) / c.ch);
  if (c.ch_mult.empty() || c.num_res_blocks == 0) throw ModelLoadError(what + ": no VAE encoder levels found");
  c.quant_convs = v.count("quant_conv.weight") > 0;
  return c;
}

ClipTextConfig infer_clip_config(const TensorIndex& t, Family family, const std::string& what, size_t role) {
  ClipTextConfig c;
  c.vocab_size = dim(t, "text_model.embeddings.token_embedding.weight", 0, what);
  c.width = dim(t, "text_model.embeddings.token_embedding.weight", 1, what);
  c.max_positions = dim(t, "text_model.embeddings.position_embedding.weight", 0, what);
  c.layers = count(t, "text_model.encoder.layers.", ".layer_norm1.weight");
  c.mlp = dim(t, "text_model.encoder.layers.0.mlp.fc1.weight", 0, what);
  // Every released CLIP text encoder uses 64-wide heads (CLIP-L 12, OpenCLIP-H 16, bigG 20);
  // narrower test-size models use 4 heads, fewer when heads would be under 8 wide (a 16-wide
  // encoder has 2). Configs, where the layout has them, override this.
  c.heads = (c.width >= 256 && c.width % 64 == 0) ? c.width / 64 : std::clamp<int64_t>(c.width / 8, 1, 4);
  const auto& roles = family_description(family).text_encoders;
  if (role >= roles.size()) throw ModelLoadError(what + ": " + to_string(family) + " has no text encoder " + std::to_string(role + 1));
  c.quick_gelu = roles[role].quick_gelu;
  if (t.count("text_projection.weight")) c.projection_dim = dim(t, "text_projection.weight", 0, what);
  return c;
}

T5Config infer_t5_config(const TensorIndex& t, const std::string& what) {
  T5Config c;
  c.vocab_size = dim(t, "shared.weight", 0, what);
  c.width = dim(t, "shared.weight", 1, what);
  const std::string bias = "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight";
  c.buckets = dim(t, bias, 0, what);
  c.heads = dim(t, bias, 1, what);
  c.head_dim = dim(t, "encoder.block.0.layer.0.SelfAttention.q.weight", 0, what) / c.heads;
  c.ff = dim(t, "encoder.block.0.layer.1.DenseReluDense.wi_0.weight", 0, what);
  c.layers = count(t, "encoder.block.", ".layer.0.layer_norm.weight");
  return c;
}

FluxConfig infer_flux_config(const TensorIndex& f, const std::string& what) {
  FluxConfig c;
  c.hidden = dim(f, "img_in.weight", 0, what);
  c.in_channels = dim(f, "img_in.weight", 1, what);
  c.context_in = dim(f, "txt_in.weight", 1, what);
  c.vec_in = dim(f, "vector_in.in_layer.weight", 1, what);
  c.guidance_embed = f.count("guidance_in.in_layer.weight") > 0;
  c.mlp_hidden = dim(f, "double_blocks.0.img_mlp.0.weight", 0, what);
  const int64_t head_dim = dim(f, "double_blocks.0.img_attn.norm.query_norm.scale", 0, what);
  c.heads = c.hidden / head_dim;
  c.depth = count(f, "double_blocks.", ".img_attn.qkv.weight");
  c.depth_single = count(f, "single_blocks.", ".linear1.weight");
  const int64_t first = std::min<int64_t>(16, head_dim / 4);
  c.axes_dim = {first, (head_dim - first) / 2, (head_dim - first) / 2};
  if (c.axes_dim[0] + c.axes_dim[1] + c.axes_dim[2] != head_dim || c.axes_dim[1] % 2)
    throw ModelLoadError(what + ": a head width of " + std::to_string(head_dim) + " has no RoPE split Sigma Studio knows");
  return c;
}

}  // namespace sigma::models
