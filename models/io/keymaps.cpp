#include "models/io/keymaps.h"

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <regex>

namespace sigma::models {
namespace {

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }

// Replaces a leading `from` with `to`; nullopt when the name does not start with it.
std::optional<std::string> swap_prefix(const std::string& name, const std::string& from, const std::string& to) {
  if (!starts_with(name, from)) return std::nullopt;
  return to + name.substr(from.size());
}

// Inside a ResBlock: diffusers' ResnetBlock2D names and LDM's, one table for both directions.
const std::vector<std::pair<std::string, std::string>>& resnet_names() {
  static const std::vector<std::pair<std::string, std::string>> map = {
      {"norm1.", "in_layers.0."},  {"conv1.", "in_layers.2."},  {"time_emb_proj.", "emb_layers.1."},
      {"norm2.", "out_layers.0."}, {"conv2.", "out_layers.3."}, {"conv_shortcut.", "skip_connection."}};
  return map;
}

bool any_starts_with(const std::vector<std::string>& names, const std::string& prefix) {
  return std::any_of(names.begin(), names.end(), [&](const std::string& n) { return starts_with(n, prefix); });
}

int count_indices(const std::vector<std::string>& names, const std::string& prefix) {
  int n = 0;
  while (any_starts_with(names, prefix + std::to_string(n) + ".")) ++n;
  return n;
}

// The highest N of `prefix`N. among the names, -1 when none.
int highest_index(const std::vector<std::string>& names, const std::string& prefix) {
  int n = -1;
  for (const auto& name : names)
    if (starts_with(name, prefix)) n = std::max(n, std::atoi(name.c_str() + prefix.size()));
  return n;
}

std::vector<std::string> names_of(const TensorIndex& index) {
  std::vector<std::string> names;
  for (const auto& [k, ref] : index) names.push_back(k);
  return names;
}

}  // namespace

UnetKeyMap::UnetKeyMap(const Shape& s) {
  auto add = [&](std::string d, std::string l, bool resnet = false) { rows_.push_back({std::move(d), std::move(l), resnet}); };
  add("time_embedding.linear_1.", "time_embed.0.");
  add("time_embedding.linear_2.", "time_embed.2.");
  add("add_embedding.linear_1.", "label_emb.0.0.");  // SDXL's additional embedding ("text_time")
  add("add_embedding.linear_2.", "label_emb.0.2.");
  add("conv_in.", "input_blocks.0.0.");
  add("conv_norm_out.", "out.0.");
  add("conv_out.", "out.2.");
  const int per_level = s.num_res_blocks + 1;  // input blocks per level: the ResBlocks, then the downsampler
  for (int i = 0; i < static_cast<int>(s.down_attention.size()); ++i) {
    const std::string level = "down_blocks." + std::to_string(i) + ".";
    for (int j = 0; j < s.num_res_blocks; ++j) {
      const std::string block = "input_blocks." + std::to_string(1 + i * per_level + j) + ".";
      add(level + "resnets." + std::to_string(j) + ".", block + "0.", true);
      if (s.down_attention[i]) add(level + "attentions." + std::to_string(j) + ".", block + "1.");
    }
    add(level + "downsamplers.0.conv.", "input_blocks." + std::to_string((i + 1) * per_level) + ".0.op.");
  }
  add("mid_block.resnets.0.", "middle_block.0.", true);
  add("mid_block.attentions.0.", "middle_block.1.");
  add("mid_block.resnets.1.", "middle_block.2.", true);
  // Up levels have one ResBlock more; the upsampler sits in the last one, after its attention if any.
  for (int i = 0; i < static_cast<int>(s.up_attention.size()); ++i) {
    const std::string level = "up_blocks." + std::to_string(i) + ".";
    for (int j = 0; j <= s.num_res_blocks; ++j) {
      const std::string block = "output_blocks." + std::to_string(i * per_level + j) + ".";
      add(level + "resnets." + std::to_string(j) + ".", block + "0.", true);
      if (s.up_attention[i]) add(level + "attentions." + std::to_string(j) + ".", block + "1.");
    }
    add(level + "upsamplers.0.",
        "output_blocks." + std::to_string(i * per_level + s.num_res_blocks) + (s.up_attention[i] ? ".2." : ".1."));
  }
  // A ControlNet's own parts: the zero convolutions after each input block and the middle
  // block, and the hint encoder (conv_in, the blocks, conv_out; SiLUs between in LDM's Sequential).
  for (int k = 0; k < s.zero_convs; ++k)
    add("controlnet_down_blocks." + std::to_string(k) + ".", "zero_convs." + std::to_string(k) + ".0.");
  if (s.zero_convs > 0) add("controlnet_mid_block.", "middle_block_out.0.");
  if (s.hint_blocks > 0) {
    add("controlnet_cond_embedding.conv_in.", "input_hint_block.0.");
    for (int k = 0; k < s.hint_blocks; ++k)
      add("controlnet_cond_embedding.blocks." + std::to_string(k) + ".", "input_hint_block." + std::to_string(2 * (k + 1)) + ".");
    add("controlnet_cond_embedding.conv_out.", "input_hint_block." + std::to_string(2 * (s.hint_blocks + 1)) + ".");
  }
}

UnetKeyMap UnetKeyMap::from_diffusers(const std::vector<std::string>& names) {
  Shape s;
  s.num_res_blocks = count_indices(names, "down_blocks.0.resnets.");
  for (int i = 0, n = count_indices(names, "down_blocks."); i < n; ++i)
    s.down_attention.push_back(any_starts_with(names, "down_blocks." + std::to_string(i) + ".attentions."));
  for (int i = 0, n = count_indices(names, "up_blocks."); i < n; ++i)
    s.up_attention.push_back(any_starts_with(names, "up_blocks." + std::to_string(i) + ".attentions."));
  s.zero_convs = count_indices(names, "controlnet_down_blocks.");
  s.hint_blocks = count_indices(names, "controlnet_cond_embedding.blocks.");
  return UnetKeyMap(s);
}

UnetKeyMap UnetKeyMap::from_ldm(const std::vector<std::string>& names) {
  Shape s;
  // The first downsampler sits at input_blocks.(nrb+1); with one level there is none, and
  // every input block after conv_in is a ResBlock.
  int first_op = -1;
  static const std::regex op(R"(input_blocks\.(\d+)\.0\.op\.weight)");
  std::smatch m;
  for (const auto& name : names)
    if (std::regex_match(name, m, op)) first_op = first_op < 0 ? std::stoi(m[1]) : std::min(first_op, std::stoi(m[1]));
  const int highest_in = highest_index(names, "input_blocks.");
  s.num_res_blocks = first_op > 0 ? first_op - 1 : std::max(0, highest_in);
  const int per_level = s.num_res_blocks + 1;
  auto has = [&](const std::string& prefix) { return any_starts_with(names, prefix); };
  for (int i = 0; i * per_level < std::max(1, highest_in); ++i)
    s.down_attention.push_back(has("input_blocks." + std::to_string(1 + i * per_level) + ".1."));
  for (int i = 0; i * per_level <= highest_index(names, "output_blocks."); ++i)
    s.up_attention.push_back(has("output_blocks." + std::to_string(i * per_level) + ".1."));
  s.zero_convs = highest_index(names, "zero_convs.") + 1;
  for (int k = 2; has("input_hint_block." + std::to_string(k + 2) + "."); k += 2) ++s.hint_blocks;
  return UnetKeyMap(s);
}

std::string UnetKeyMap::to_ldm(const std::string& name) const { return translate(name, true); }
std::string UnetKeyMap::to_diffusers(const std::string& name) const { return translate(name, false); }

std::string UnetKeyMap::translate(const std::string& name, bool to_ldm) const {
  const Row* best = nullptr;
  size_t best_length = 0;
  for (const auto& row : rows_) {
    const std::string& from = to_ldm ? row.diffusers : row.ldm;
    if (from.size() > best_length && starts_with(name, from)) best = &row, best_length = from.size();
  }
  if (!best) return "";
  const std::string rest = name.substr(best_length);
  const std::string& prefix = to_ldm ? best->ldm : best->diffusers;
  if (!best->resnet) return prefix + rest;
  for (const auto& [diffusers, ldm] : resnet_names())
    if (auto r = swap_prefix(rest, to_ldm ? diffusers : ldm, to_ldm ? ldm : diffusers)) return prefix + *r;
  return "";
}

bool looks_like_diffusers_unet(const TensorIndex& index) {
  return index.count("conv_in.weight") && index.count("time_embedding.linear_1.weight");
}

bool looks_like_diffusers_vae(const TensorIndex& index) {
  return index.count("decoder.conv_in.weight") &&
         std::any_of(index.begin(), index.end(), [](const auto& kv) { return starts_with(kv.first, "decoder.up_blocks."); });
}

TensorIndex unet_from_diffusers(const TensorIndex& d) {
  const auto map = UnetKeyMap::from_diffusers(names_of(d));
  TensorIndex out;
  for (const auto& [k, ref] : d) {
    const std::string name = map.to_ldm(k);
    out[name.empty() ? "diffusers:" + k : name] = ref;  // unknown names stay visible as unexpected keys
  }
  return out;
}

TensorIndex controlnet_from_diffusers(const TensorIndex& d) { return unet_from_diffusers(d); }

TensorIndex vae_from_diffusers(const TensorIndex& d) {
  const int levels = count_indices(names_of(d), "decoder.up_blocks.");
  static const std::regex down(R"(encoder\.down_blocks\.(\d+)\.(resnets|downsamplers)\.(\d+)\.(.*))");
  static const std::regex up(R"(decoder\.up_blocks\.(\d+)\.(resnets|upsamplers)\.(\d+)\.(.*))");
  static const std::regex mid(R"((encoder|decoder)\.mid_block\.(resnets|attentions)\.(\d+)\.(.*))");
  auto resnet_rest = [](const std::string& rest) {
    if (auto r = swap_prefix(rest, "conv_shortcut.", "nin_shortcut.")) return *r;
    return rest;
  };
  TensorIndex out;
  for (const auto& [k, ref] : d) {
    std::string name = k;
    TensorRef r = ref;
    std::smatch m;
    if (std::regex_match(k, m, down)) {
      const std::string level = "encoder.down." + std::string(m[1]) + ".";
      name = m[2] == "resnets" ? level + "block." + std::string(m[3]) + "." + resnet_rest(m[4])
                               : level + "downsample." + std::string(m[4]);
    } else if (std::regex_match(k, m, up)) {
      const std::string level = "decoder.up." + std::to_string(levels - 1 - std::stoi(m[1])) + ".";
      name = m[2] == "resnets" ? level + "block." + std::string(m[3]) + "." + resnet_rest(m[4])
                               : level + "upsample." + std::string(m[4]);
    } else if (std::regex_match(k, m, mid)) {
      const std::string base = std::string(m[1]) + ".mid.";
      const std::string rest = m[4];
      if (m[2] == "resnets") {
        name = base + (m[3] == "0" ? "block_1." : "block_2.") + resnet_rest(rest);
      } else {
        // diffusers stores the attention as Linear layers (newer) or query/key/value/proj_attn (older).
        static const std::vector<std::pair<std::string, std::string>> attn = {
            {"group_norm.", "norm."}, {"to_q.", "q."},     {"to_k.", "k."},     {"to_v.", "v."},
            {"to_out.0.", "proj_out."}, {"query.", "q."}, {"key.", "k."},      {"value.", "v."},
            {"proj_attn.", "proj_out."}};
        std::string inner = rest;
        for (const auto& [from, to] : attn)
          if (auto s = swap_prefix(rest, from, to)) inner = *s;
        name = base + "attn_1." + inner;
        if (r.shape.size() == 2) r.shape = {r.shape[0], r.shape[1], 1, 1};
      }
    } else if (auto s = swap_prefix(k, "encoder.conv_norm_out.", "encoder.norm_out.")) {
      name = *s;
    } else if (auto s2 = swap_prefix(k, "decoder.conv_norm_out.", "decoder.norm_out.")) {
      name = *s2;
    }
    out[name] = r;
  }
  return out;
}

TensorIndex clip_from_openclip(const TensorIndex& oc, std::vector<std::string>& ignored, bool with_projection) {
  TensorIndex out;
  auto put = [&](const std::string& name, const TensorRef& ref) { out["text_model." + name] = ref; };
  for (const auto& [k, ref] : oc) {
    if (k == "token_embedding.weight") put("embeddings.token_embedding.weight", ref);
    else if (k == "positional_embedding") put("embeddings.position_embedding.weight", ref);
    else if (k.rfind("ln_final.", 0) == 0) put("final_layer_norm." + k.substr(9), ref);
    else if (k.rfind("transformer.resblocks.", 0) == 0) {
      const auto rest = k.substr(22);
      const auto dot = rest.find('.');
      const std::string layer = "encoder.layers." + rest.substr(0, dot) + ".";
      const std::string p = rest.substr(dot + 1);
      if (p == "attn.in_proj_weight" || p == "attn.in_proj_bias") {
        auto full = ref.file->load(ref.key);  // split once in memory, in the stored dtype: q, k, v
        auto parts = full.chunk(3, 0);
        const char* names[] = {"q_proj", "k_proj", "v_proj"};
        for (int i = 0; i < 3; ++i) {
          TensorRef part;
          part.value = parts[i].contiguous();
          part.shape = part.value.sizes().vec();
          put(layer + "self_attn." + names[i] + (p == "attn.in_proj_weight" ? ".weight" : ".bias"), part);
        }
      } else {
        static const std::vector<std::pair<std::string, std::string>> layer_names = {
            {"attn.out_proj.", "self_attn.out_proj."}, {"ln_1.", "layer_norm1."}, {"ln_2.", "layer_norm2."},
            {"mlp.c_fc.", "mlp.fc1."}, {"mlp.c_proj.", "mlp.fc2."}};
        bool done = false;
        for (const auto& [from, to] : layer_names)
          if (p.rfind(from, 0) == 0) {
            put(layer + to + p.substr(from.size()), ref);
            done = true;
          }
        if (!done) put("unknown." + k, ref);
      }
    } else if (k == "text_projection" && with_projection) {
      TensorRef t;
      t.value = ref.file->load(ref.key).t().contiguous();
      t.shape = t.value.sizes().vec();
      out["text_projection.weight"] = t;
    } else {
      ignored.push_back(k);  // logit_scale (and SD 2.x's text_projection): the image-text head, unused for conditioning
    }
  }
  return out;
}

}  // namespace sigma::models
