#include "models/families/flux_layouts.h"

#include <algorithm>
#include <filesystem>
#include <functional>
#include <optional>
#include <set>

#include "models/io/keymaps.h"
#include "models/io/quantized.h"

namespace fs = std::filesystem;

namespace sigma::models {
namespace {

constexpr const char* kComfyTransformer = "model.diffusion_model.";

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }
bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// One component's weights from its own file, under whichever prefix the tool that saved it
// used (bare, ComfyUI's all-in-one prefix, SD's, or a bare `transformer.`).
TensorIndex part_from_file(const std::string& path, const std::vector<std::string>& prefixes, const std::string& probe,
                           const std::string& what) {
  auto f = SafeTensors::open(path);
  const auto all = index_file(f);
  for (const auto& p : prefixes)
    if (all.count(p + probe)) return index_file(f, p);
  throw ModelLoadError(path + ": not " + what + " (no '" + probe + "' key)");
}

TensorIndex clip_l_file(const std::string& path) {
  return part_from_file(path, {"", "text_encoders.clip_l.transformer.", "cond_stage_model.transformer.", "transformer."},
                        "text_model.embeddings.token_embedding.weight", "a CLIP text encoder; --clip_l takes CLIP-L's file (clip_l.safetensors)");
}

TensorIndex t5_file(const std::string& path) {
  return part_from_file(path, {"", "text_encoders.t5xxl.transformer.", "transformer."}, "encoder.block.0.layer.0.SelfAttention.q.weight",
                        "a T5 encoder; --t5xxl takes T5-XXL's encoder file (t5xxl_fp16.safetensors, t5xxl_fp8_e4m3fn.safetensors)");
}

TensorIndex flux_vae_file(const std::string& path) {
  auto vae = open_vae_file(path);
  const auto it = vae.find("decoder.conv_in.weight");
  if (it != vae.end() && it->second.shape.size() == 4 && it->second.shape[1] != 16)
    throw ModelLoadError(path + ": a VAE of " + std::to_string(it->second.shape[1]) +
                         " latent channels; Flux's has 16 (ae.safetensors): pass that one with --vae");
  return vae;
}

// A companion file found by name: the transformer's own folder first, then the models root's
// ComfyUI folders. `rank` orders the names it accepts (lower first; < 0: not a candidate);
// `load` must accept the file, else the next candidate is tried.
struct Companion {
  std::string kind;
  std::vector<std::string> folders;  // under a models root
  std::function<int(const std::string& stem)> rank;
  std::function<TensorIndex(const std::string& path)> load;
};

std::vector<fs::path> search_roots(const fs::path& model, const std::string& models_root) {
  std::vector<fs::path> roots;
  const auto folder = model.parent_path();
  const auto name = folder.filename().string();
  if (name == "diffusion_models" || name == "unet" || name == "checkpoints" || name == "Stable-diffusion")
    roots.push_back(folder.parent_path());
  if (!models_root.empty()) roots.push_back(models_root);
  return roots;
}

std::optional<std::pair<std::string, TensorIndex>> find_companion(const fs::path& model, const std::string& models_root,
                                                                  const Companion& c) {
  std::vector<fs::path> dirs = {model.parent_path().empty() ? fs::path(".") : model.parent_path()};
  for (const auto& root : search_roots(model, models_root))
    for (const auto& sub : c.folders) dirs.push_back(root / sub);
  std::error_code ec;
  for (const auto& dir : dirs) {
    if (!fs::is_directory(dir, ec)) continue;
    std::vector<std::pair<int, fs::path>> candidates;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      const auto& p = entry.path();
      if (p.extension() != ".safetensors" || fs::equivalent(p, model, ec)) continue;
      const int r = c.rank(p.stem().string());
      if (r >= 0) candidates.emplace_back(r, p);
    }
    std::sort(candidates.begin(), candidates.end());
    for (const auto& [r, p] : candidates) {
      try {
        return std::make_pair(p.string(), c.load(p.string()));
      } catch (const std::exception&) {
        // a name that fits, a file that does not: try the next one
      }
    }
  }
  return std::nullopt;
}

std::vector<Companion> flux_companions() {
  auto lower = [](std::string s) {
    for (auto& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return s;
  };
  return {
      {"CLIP-L", {"text_encoders", "clip"},
       [=](const std::string& stem) { return starts_with(lower(stem), "clip_l") ? 0 : contains(lower(stem), "clip_l") ? 1 : -1; },
       clip_l_file},
      // T5-XXL: full precision first, then ComfyUI's scaled fp8, then plain fp8.
      {"T5-XXL", {"text_encoders", "clip"},
       [=](const std::string& stem) {
         const auto s = lower(stem);
         if (!contains(s, "t5xxl") && !contains(s, "t5_xxl")) return -1;
         return contains(s, "fp8") ? (contains(s, "scaled") ? 1 : 2) : 0;
       },
       t5_file},
      {"VAE", {"vae"},
       [=](const std::string& stem) {
         const auto s = lower(stem);
         if (s == "ae") return 0;
         if (starts_with(s, "ae") || s == "flux_vae" || s == "flux-vae") return 1;
         return contains(s, "flux") && (contains(s, "vae") || contains(s, "ae")) ? 2 : -1;
       },
       flux_vae_file},
  };
}

// CLIP-L's pooler output is Flux's vector input as it is: a text_projection some CLIP-L files
// carry (ComfyUI's) is not applied (ComfyUI: return_projected_pooled=False).
void finish_clip(Checkpoint& ck, TextEncoderFiles& te, const std::string& what) {
  for (const char* unused : {"text_projection.weight", "text_model.embeddings.position_ids", "logit_scale"})
    if (te.weights.erase(unused)) ck.text_encoder_ignored.push_back(std::string("CLIP-L: ") + unused);
  apply_weight_scales(te.weights, ck.text_encoder_ignored, what);
  te.config = infer_clip_config(te.weights, Family::Flux, what, 0);
}

// T5: `shared` is the embedding (Hugging Face also stores it again as encoder.embed_tokens).
void finish_t5(Checkpoint& ck, TextEncoderFiles& te, const std::string& what) {
  auto& w = te.weights;
  if (!w.count("shared.weight") && w.count("encoder.embed_tokens.weight")) {
    w["shared.weight"] = w["encoder.embed_tokens.weight"];
    w.erase("encoder.embed_tokens.weight");
  }
  if (w.erase("encoder.embed_tokens.weight")) ck.text_encoder_ignored.push_back("T5: encoder.embed_tokens.weight (= shared.weight)");
  for (auto it = w.begin(); it != w.end();)  // a decoder or an LM head (a whole T5 file): not the encoder
    if (starts_with(it->first, "decoder.") || starts_with(it->first, "lm_head.") || it->first == "logit_scale") {
      ck.text_encoder_ignored.push_back("T5: " + it->first);
      it = w.erase(it);
    } else {
      ++it;
    }
  apply_weight_scales(w, ck.text_encoder_ignored, what);
  te.t5_config = infer_t5_config(w, what);
}

// Sizes from the tensors, checked against each other: T5's width is what txt_in reads, CLIP's
// what vector_in reads, the VAE's latent channels what the patches hold.
void finish(Checkpoint& ck) {
  const std::string& path = ck.path;
  apply_weight_scales(ck.transformer, ck.ignored, path + " transformer");
  const auto axes = ck.flux_config.axes_dim;  // a diffusers config's axes_dims_rope, else empty
  ck.flux_config = infer_flux_config(ck.transformer, path + " transformer");
  if (!axes.empty()) {
    int64_t sum = 0;
    for (auto a : axes) sum += a;
    if (axes.size() != 3 || sum != ck.flux_config.hidden / ck.flux_config.heads)
      throw ModelLoadError(path + "/transformer/config.json: axes_dims_rope must be 3 widths adding up to the head width " +
                           std::to_string(ck.flux_config.hidden / ck.flux_config.heads));
    ck.flux_config.axes_dim = axes;
  }
  auto& clip = ck.text_encoders[0];
  auto& t5 = ck.text_encoders[1];
  finish_clip(ck, clip, clip.file.empty() ? path + " CLIP-L" : clip.file);
  finish_t5(ck, t5, t5.file.empty() ? path + " T5-XXL" : t5.file);
  ck.vae_config = infer_vae_config(ck.vae, path + " VAE");
  ck.vae_config.scaling_factor = ck.description.vae_scale;
  auto& d = ck.description;
  const auto& f = ck.flux_config;
  if (t5.t5_config.width != f.context_in)
    throw ModelLoadError(path + ": T5 gives " + std::to_string(t5.t5_config.width) + "-wide states but the transformer's txt_in reads " +
                         std::to_string(f.context_in) + " (a T5 of another model?)");
  if (clip.config.width != f.vec_in)
    throw ModelLoadError(path + ": CLIP-L gives a " + std::to_string(clip.config.width) + "-wide pooled vector but the transformer's "
                         "vector_in reads " + std::to_string(f.vec_in) + " (another CLIP than CLIP-L?)");
  if (ck.vae_config.z_channels != f.latent_channels())
    throw ModelLoadError(path + ": the VAE has " + std::to_string(ck.vae_config.z_channels) + " latent channels, the transformer reads " +
                         std::to_string(f.latent_channels()) + "; pass Flux's VAE (ae.safetensors) with --vae");
  d.context_dim = f.context_in;
  d.pooled_dim = f.vec_in;
}

Checkpoint empty_flux(const std::string& path, Layout layout) {
  Checkpoint ck;
  ck.path = path;
  ck.layout = layout;
  ck.family = Family::Flux;
  ck.description = family_description(Family::Flux);
  ck.prediction = ck.description.default_prediction;
  ck.text_encoders.resize(ck.description.text_encoders.size());
  ck.flux_config.axes_dim.clear();
  return ck;
}

// A part named by its flag, else the checkpoint's own, else one found by name; else missing.
void take_part(Checkpoint& ck, const std::string& given, const std::function<bool(TensorIndex&)>& own,
               const Companion& companion, const std::string& models_root, TensorIndex& into, std::string* file,
               std::vector<std::string>& missing, const std::string& flag) {
  if (!given.empty()) {
    into = companion.load(given);
    if (file) *file = given;
    return;
  }
  if (own(into)) return;
  if (auto found = find_companion(ck.path, models_root, companion)) {
    into = found->second;
    if (file) *file = found->first;
    ck.notes.push_back(fs::path(ck.path).filename().string() + ": " + companion.kind + " from " + found->first +
                       " (found by name; " + flag + " FILE picks another)");
    return;
  }
  missing.push_back(companion.kind + " (" + flag + " FILE)");
}

void refuse_missing(const Checkpoint& ck, const std::vector<std::string>& missing, const std::string& models_root) {
  if (missing.empty()) return;
  std::string list;
  for (size_t i = 0; i < missing.size(); ++i) list += (i ? ", " : "") + missing[i];
  const auto roots = search_roots(ck.path, models_root);
  std::string where = fs::path(ck.path).parent_path().string();
  for (const auto& r : roots) where += ", " + (r / "text_encoders").string() + ", " + (r / "vae").string();
  throw ModelLoadError(ck.path + ": a Flux transformer without its other parts: no " + list +
                       ". Flux needs CLIP-L, T5-XXL and its VAE beside the transformer: pass them, e.g. sigma generate "
                       "--diffusion-model " + fs::path(ck.path).filename().string() +
                       " --clip_l clip_l.safetensors --t5xxl t5xxl_fp16.safetensors --vae ae.safetensors, or put them where they "
                       "are looked for by name (" + where + ")");
}

// A diffusers component's weights: one file, or shards listed by their .index.json.
TensorIndex index_folder(const fs::path& dir, const std::string& stem) {
  for (const std::string& name : {stem + ".safetensors", stem + ".fp16.safetensors"})
    if (fs::exists(dir / name)) return index_file(SafeTensors::open((dir / name).string()));
  for (const std::string& name : {stem + ".safetensors.index.json", stem + ".fp16.safetensors.index.json"}) {
    if (!fs::exists(dir / name)) continue;
    const auto j = read_json_file((dir / name).string());
    if (!j.contains("weight_map") || !j["weight_map"].is_object())
      throw ModelLoadError((dir / name).string() + ": no 'weight_map' object");
    std::set<std::string> shards;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it)
      if (it->is_string()) shards.insert(it->get<std::string>());
    TensorIndex all;
    for (const auto& shard : shards) {
      if (shard.find('/') != std::string::npos || shard.find("..") != std::string::npos)
        throw ModelLoadError((dir / name).string() + ": shard '" + shard + "' is not a file name in that folder");
      for (auto& [k, ref] : index_file(SafeTensors::open((dir / shard).string()))) all[k] = ref;
    }
    return all;
  }
  throw ModelLoadError(dir.string() + ": no " + stem + ".safetensors (or sharded " + stem +
                       "-0000N-of-0000M.safetensors with its .index.json); only safetensors are supported");
}

}  // namespace

bool is_flux_file(const SafeTensors& f) {
  return f.contains("double_blocks.0.img_attn.qkv.weight") || f.contains("model.diffusion_model.double_blocks.0.img_attn.qkv.weight") ||
         (f.contains("x_embedder.weight") && f.contains("transformer_blocks.0.attn.add_q_proj.weight") &&
          f.contains("single_transformer_blocks.0.proj_mlp.weight"));
}

bool is_flux_folder(const std::string& dir) {
  const fs::path d(dir);
  if (!fs::is_directory(d / "transformer")) return false;
  if (fs::exists(d / "transformer" / "config.json")) {
    const auto j = read_json_file((d / "transformer" / "config.json").string());
    return j.value("_class_name", std::string()) == "FluxTransformer2DModel";
  }
  return false;
}

Checkpoint open_flux_file(const std::shared_ptr<const SafeTensors>& f, const ComponentFiles& parts) {
  Checkpoint ck = empty_flux(f->path(), Layout::SingleFile);
  ck.metadata = f->metadata();
  const auto all = index_file(f);
  const bool all_in_one = has_prefix(all, kComfyTransformer);
  ck.transformer = all_in_one ? index_file(f, kComfyTransformer) : all;
  if (!all_in_one && looks_like_diffusers_flux(ck.transformer)) ck.transformer = flux_from_diffusers(ck.transformer, ck.unused);
  const auto companions = flux_companions();
  const auto& roles = ck.description.text_encoders;
  std::vector<std::string> missing;
  auto own_prefix = [&](const std::vector<std::string>& prefixes) {
    return [&, prefixes](TensorIndex& into) {
      if (!all_in_one) return false;
      for (const auto& p : prefixes)
        if (has_prefix(all, p)) {
          into = index_file(f, p);
          return true;
        }
      return false;
    };
  };
  for (size_t i = 0; i < roles.size(); ++i)
    take_part(ck, i == 0 ? parts.clip_l : parts.t5xxl, own_prefix({roles[i].single_file_prefix}), companions[i],
              parts.models_root, ck.text_encoders[i].weights, &ck.text_encoders[i].file, missing, roles[i].flag);
  take_part(ck, parts.vae, own_prefix({"vae.", "first_stage_model."}), companions[2], parts.models_root, ck.vae, &ck.vae_file, missing, "--vae");
  refuse_missing(ck, missing, parts.models_root);
  if (all_in_one) {
    for (const auto& [name, ref] : all) {
      bool known = starts_with(name, kComfyTransformer) || starts_with(name, "vae.") || starts_with(name, "first_stage_model.");
      for (const auto& r : roles) known |= starts_with(name, r.single_file_prefix);
      if (!known) ck.unused.push_back(name);
    }
  }
  finish(ck);
  return ck;
}

Checkpoint open_flux_folder(const std::string& dir, const ComponentFiles& parts) {
  const fs::path d(dir);
  Checkpoint ck = empty_flux(dir, Layout::Diffusers);
  ck.transformer = flux_from_diffusers(index_folder(d / "transformer", "diffusion_pytorch_model"), ck.unused);
  const auto cfg = read_json_file((d / "transformer" / "config.json").string());
  if (cfg.contains("axes_dims_rope") && cfg["axes_dims_rope"].is_array())
    for (const auto& a : cfg["axes_dims_rope"])
      if (a.is_number_integer()) ck.flux_config.axes_dim.push_back(a.get<int64_t>());
  const auto companions = flux_companions();
  const auto& roles = ck.description.text_encoders;
  std::vector<std::string> missing;
  for (size_t i = 0; i < roles.size(); ++i) {
    auto& te = ck.text_encoders[i];
    const auto sub = d / roles[i].component;
    take_part(ck, i == 0 ? parts.clip_l : parts.t5xxl,
              [&](TensorIndex& into) {
                if (!fs::is_directory(sub)) return false;
                into = index_folder(sub, "model");
                return true;
              },
              companions[i], parts.models_root, te.weights, &te.file, missing, roles[i].flag);
    if (fs::is_directory(d / roles[i].tokenizer)) te.tokenizer_dir = (d / roles[i].tokenizer).string();
  }
  take_part(ck, parts.vae,
            [&](TensorIndex& into) {
              if (!fs::is_directory(d / "vae")) return false;
              into = vae_from_diffusers(index_folder(d / "vae", "diffusion_pytorch_model"));
              return true;
            },
            companions[2], parts.models_root, ck.vae, &ck.vae_file, missing, "--vae");
  refuse_missing(ck, missing, parts.models_root);
  finish(ck);
  if (parts.vae.empty() && fs::exists(d / "vae" / "config.json")) {
    const auto v = read_json_file((d / "vae" / "config.json").string());
    ck.vae_config.scaling_factor = v.value("scaling_factor", ck.description.vae_scale);
    ck.description.vae_shift = v.value("shift_factor", ck.description.vae_shift);
  }
  return ck;
}

}  // namespace sigma::models
