#include "models/io/keymaps.h"

#include <algorithm>
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

// Inside a diffusers ResnetBlock2D: norm1/conv1/time_emb_proj/norm2/conv2/conv_shortcut.
std::string unet_resnet_rest(const std::string& rest) {
  static const std::vector<std::pair<std::string, std::string>> map = {
      {"norm1.", "in_layers.0."},        {"conv1.", "in_layers.2."},    {"time_emb_proj.", "emb_layers.1."},
      {"norm2.", "out_layers.0."},       {"conv2.", "out_layers.3."},   {"conv_shortcut.", "skip_connection."}};
  for (const auto& [from, to] : map)
    if (auto r = swap_prefix(rest, from, to)) return *r;
  return rest;
}

int count_indices(const TensorIndex& index, const std::string& prefix) {
  int n = 0;
  while (std::any_of(index.begin(), index.end(), [&](const auto& kv) {
    return starts_with(kv.first, prefix + std::to_string(n) + ".");
  }))
    ++n;
  return n;
}

// The shared encoder half (conv_in, time embedding, down blocks, mid block) of UNet and ControlNet.
std::optional<std::string> unet_encoder_name(const std::string& k, int nrb) {
  static const std::regex down(R"(down_blocks\.(\d+)\.(resnets|attentions|downsamplers)\.(\d+)\.(.*))");
  static const std::regex mid(R"(mid_block\.(resnets|attentions)\.(\d+)\.(.*))");
  std::smatch m;
  if (auto r = swap_prefix(k, "time_embedding.linear_1.", "time_embed.0.")) return r;
  if (auto r = swap_prefix(k, "time_embedding.linear_2.", "time_embed.2.")) return r;
  // SDXL's additional embedding ("text_time"): add_embedding = SGM's label_emb.0
  if (auto r = swap_prefix(k, "add_embedding.linear_1.", "label_emb.0.0.")) return r;
  if (auto r = swap_prefix(k, "add_embedding.linear_2.", "label_emb.0.2.")) return r;
  if (auto r = swap_prefix(k, "conv_in.", "input_blocks.0.0.")) return r;
  if (std::regex_match(k, m, down)) {
    const int i = std::stoi(m[1]), j = std::stoi(m[3]);
    const std::string kind = m[2], rest = m[4];
    if (kind == "downsamplers") {
      if (auto r = swap_prefix(rest, "conv.", "op.")) return "input_blocks." + std::to_string((i + 1) * (nrb + 1)) + ".0." + *r;
      return std::nullopt;
    }
    const std::string block = "input_blocks." + std::to_string(1 + i * (nrb + 1) + j);
    return kind == "resnets" ? block + ".0." + unet_resnet_rest(rest) : block + ".1." + rest;
  }
  if (std::regex_match(k, m, mid)) {
    const std::string kind = m[1], rest = m[3];
    const int j = std::stoi(m[2]);
    if (kind == "attentions") return "middle_block.1." + rest;
    return "middle_block." + std::to_string(j == 0 ? 0 : 2) + "." + unet_resnet_rest(rest);
  }
  return std::nullopt;
}

}  // namespace

bool looks_like_diffusers_unet(const TensorIndex& index) {
  return index.count("conv_in.weight") && index.count("time_embedding.linear_1.weight");
}

bool looks_like_diffusers_vae(const TensorIndex& index) {
  return index.count("decoder.conv_in.weight") &&
         std::any_of(index.begin(), index.end(), [](const auto& kv) { return starts_with(kv.first, "decoder.up_blocks."); });
}

TensorIndex unet_from_diffusers(const TensorIndex& d) {
  const int nrb = count_indices(d, "down_blocks.0.resnets.");
  static const std::regex up(R"(up_blocks\.(\d+)\.(resnets|attentions|upsamplers)\.(\d+)\.(.*))");
  TensorIndex out;
  for (const auto& [k, ref] : d) {
    std::optional<std::string> name = unet_encoder_name(k, nrb);
    std::smatch m;
    if (!name) {
      if (auto r = swap_prefix(k, "conv_norm_out.", "out.0.")) name = r;
      else if (auto r2 = swap_prefix(k, "conv_out.", "out.2.")) name = r2;
      else if (std::regex_match(k, m, up)) {
        const int i = std::stoi(m[1]), j = std::stoi(m[3]);
        const std::string kind = m[2], rest = m[4];
        // Up blocks have nrb+1 resnets; the upsampler sits in the last one, after its attention if any.
        if (kind == "upsamplers") {
          const bool has_attn = d.count("up_blocks." + std::to_string(i) + ".attentions.0.norm.weight") > 0;
          name = "output_blocks." + std::to_string(i * (nrb + 1) + nrb) + "." + (has_attn ? "2." : "1.") + rest;
        } else {
          const std::string block = "output_blocks." + std::to_string(i * (nrb + 1) + j);
          name = kind == "resnets" ? block + ".0." + unet_resnet_rest(rest) : block + ".1." + rest;
        }
      }
    }
    out[name ? *name : "diffusers:" + k] = ref;  // unknown names stay visible as unexpected keys
  }
  return out;
}

TensorIndex controlnet_from_diffusers(const TensorIndex& d) {
  const int nrb = count_indices(d, "down_blocks.0.resnets.");
  const int hint_blocks = count_indices(d, "controlnet_cond_embedding.blocks.");
  static const std::regex zero(R"(controlnet_down_blocks\.(\d+)\.(.*))");
  static const std::regex hint(R"(controlnet_cond_embedding\.blocks\.(\d+)\.(.*))");
  TensorIndex out;
  for (const auto& [k, ref] : d) {
    std::optional<std::string> name = unet_encoder_name(k, nrb);
    std::smatch m;
    if (!name) {
      if (std::regex_match(k, m, zero)) name = "zero_convs." + std::string(m[1]) + ".0." + std::string(m[2]);
      else if (auto r = swap_prefix(k, "controlnet_mid_block.", "middle_block_out.0.")) name = r;
      else if (auto r2 = swap_prefix(k, "controlnet_cond_embedding.conv_in.", "input_hint_block.0.")) name = r2;
      else if (auto r3 = swap_prefix(k, "controlnet_cond_embedding.conv_out.",
                                     "input_hint_block." + std::to_string(2 * (hint_blocks + 1)) + "."))
        name = r3;
      else if (std::regex_match(k, m, hint))
        name = "input_hint_block." + std::to_string(2 * (std::stoi(m[1]) + 1)) + "." + std::string(m[2]);
    }
    out[name ? *name : "diffusers:" + k] = ref;
  }
  return out;
}

TensorIndex vae_from_diffusers(const TensorIndex& d) {
  const int levels = count_indices(d, "decoder.up_blocks.");
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

}  // namespace sigma::models
