// Flux's two spellings: BFL's (fused q/k/v, `double_blocks`, `single_blocks`), which the
// network and ComfyUI use, and diffusers' (separate to_q/to_k/to_v, `transformer_blocks`,
// `single_transformer_blocks`, the final modulation's halves swapped). One table, read one way
// to load a diffusers transformer and the other way to land a diffusers-named LoRA on row
// slices of the fused weights.
#include <algorithm>
#include <stdexcept>

#include "models/io/keymaps.h"

namespace sigma::models {
namespace {

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }

// Blocks 0..n-1 of `prefix`N. (the index is sorted: the first name at or after "prefixN." tells).
int64_t count_blocks(const TensorIndex& index, const std::string& prefix) {
  int64_t n = 0;
  for (;; ++n) {
    const std::string block = prefix + std::to_string(n) + ".";
    const auto it = index.lower_bound(block);
    if (it == index.end() || !starts_with(it->first, block)) return n;
  }
}

// A part as stored: float32 for the F8 formats (no LibTorch type), else its own dtype.
torch::Tensor load_stored(const TensorRef& ref) {
  const auto t = safetensors_torch_dtype(ref.dtype());
  return ref.load(t ? *t : torch::kFloat32);
}

}  // namespace

std::vector<FluxModuleMap> flux_module_map(int64_t depth, int64_t depth_single) {
  std::vector<FluxModuleMap> m = {
      {"img_in", {"x_embedder"}},
      {"txt_in", {"context_embedder"}},
      {"time_in.in_layer", {"time_text_embed.timestep_embedder.linear_1"}},
      {"time_in.out_layer", {"time_text_embed.timestep_embedder.linear_2"}},
      {"guidance_in.in_layer", {"time_text_embed.guidance_embedder.linear_1"}},
      {"guidance_in.out_layer", {"time_text_embed.guidance_embedder.linear_2"}},
      {"vector_in.in_layer", {"time_text_embed.text_embedder.linear_1"}},
      {"vector_in.out_layer", {"time_text_embed.text_embedder.linear_2"}},
      {"final_layer.linear", {"proj_out"}},
      // BFL keeps (shift, scale) in the final modulation, diffusers (scale, shift).
      {"final_layer.adaLN_modulation.1", {"norm_out.linear"}, true},
  };
  for (int64_t i = 0; i < depth; ++i) {
    const std::string b = "double_blocks." + std::to_string(i) + ".", d = "transformer_blocks." + std::to_string(i) + ".";
    m.push_back({b + "img_mod.lin", {d + "norm1.linear"}});
    m.push_back({b + "txt_mod.lin", {d + "norm1_context.linear"}});
    m.push_back({b + "img_attn.qkv", {d + "attn.to_q", d + "attn.to_k", d + "attn.to_v"}});
    m.push_back({b + "txt_attn.qkv", {d + "attn.add_q_proj", d + "attn.add_k_proj", d + "attn.add_v_proj"}});
    m.push_back({b + "img_attn.norm.query_norm", {d + "attn.norm_q"}, false, true});
    m.push_back({b + "img_attn.norm.key_norm", {d + "attn.norm_k"}, false, true});
    m.push_back({b + "txt_attn.norm.query_norm", {d + "attn.norm_added_q"}, false, true});
    m.push_back({b + "txt_attn.norm.key_norm", {d + "attn.norm_added_k"}, false, true});
    m.push_back({b + "img_attn.proj", {d + "attn.to_out.0"}});
    m.push_back({b + "txt_attn.proj", {d + "attn.to_add_out"}});
    m.push_back({b + "img_mlp.0", {d + "ff.net.0.proj"}});
    m.push_back({b + "img_mlp.2", {d + "ff.net.2"}});
    m.push_back({b + "txt_mlp.0", {d + "ff_context.net.0.proj"}});
    m.push_back({b + "txt_mlp.2", {d + "ff_context.net.2"}});
  }
  for (int64_t i = 0; i < depth_single; ++i) {
    const std::string b = "single_blocks." + std::to_string(i) + ".", d = "single_transformer_blocks." + std::to_string(i) + ".";
    m.push_back({b + "linear1", {d + "attn.to_q", d + "attn.to_k", d + "attn.to_v", d + "proj_mlp"}});
    m.push_back({b + "linear2", {d + "proj_out"}});
    m.push_back({b + "modulation.lin", {d + "norm.linear"}});
    m.push_back({b + "norm.query_norm", {d + "attn.norm_q"}, false, true});
    m.push_back({b + "norm.key_norm", {d + "attn.norm_k"}, false, true});
  }
  return m;
}

int64_t flux_double_depth(const TensorIndex& diffusers) { return count_blocks(diffusers, "transformer_blocks."); }
int64_t flux_single_depth(const TensorIndex& diffusers) { return count_blocks(diffusers, "single_transformer_blocks."); }

bool looks_like_diffusers_flux(const TensorIndex& index) {
  return index.count("x_embedder.weight") && index.count("context_embedder.weight");
}

TensorIndex flux_from_diffusers(const TensorIndex& d, std::vector<std::string>& unused) {
  TensorIndex out;
  std::set<std::string> taken;
  for (const auto& row : flux_module_map(flux_double_depth(d), flux_single_depth(d))) {
    // Linear layers have weight and bias; the RMS norms' `weight` is BFL's `scale`.
    const std::vector<std::pair<std::string, std::string>> suffixes =
        row.norm ? std::vector<std::pair<std::string, std::string>>{{".scale", ".weight"}}
                 : std::vector<std::pair<std::string, std::string>>{{".weight", ".weight"}, {".bias", ".bias"}};
    for (const auto& [bfl_suffix, diffusers_suffix] : suffixes) {
      std::vector<const TensorRef*> parts;
      for (const auto& name : row.diffusers)
        if (auto it = d.find(name + diffusers_suffix); it != d.end()) {
          parts.push_back(&it->second);
          taken.insert(it->first);
        }
      if (parts.empty()) continue;  // schnell has no guidance_in; a bias-free layer
      if (parts.size() != row.diffusers.size())
        throw ModelLoadError("diffusers Flux transformer: '" + row.diffusers.front() + diffusers_suffix +
                             "' comes without all of its fused partners (" + std::to_string(parts.size()) + " of " +
                             std::to_string(row.diffusers.size()) + "); is the file complete?");
      const std::string name = row.bfl + bfl_suffix;
      if (parts.size() == 1 && !row.swap_halves) {
        out[name] = *parts[0];
        continue;
      }
      // Fused or swapped: made once in memory, in the stored precision.
      std::vector<torch::Tensor> loaded;
      for (const auto* p : parts) loaded.push_back(load_stored(*p));
      auto value = torch::cat(loaded, 0);
      if (row.swap_halves) {
        auto halves = value.chunk(2, 0);
        value = torch::cat({halves[1], halves[0]}, 0);
      }
      TensorRef ref;
      ref.shape = value.sizes().vec();
      ref.value = value;
      out[name] = ref;
    }
  }
  for (const auto& [name, ref] : d)
    if (!taken.count(name)) unused.push_back(name);
  return out;
}

}  // namespace sigma::models
