#include "models/families/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "models/io/json_text.h"
#include "models/families/flux_layouts.h"
#include "models/io/keymaps.h"

namespace fs = std::filesystem;

namespace sigma::models {

std::string to_string(Layout l) { return l == Layout::SingleFile ? "single file (original LDM layout)" : "diffusers folder"; }

nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ModelLoadError(path + ": cannot read");
  try {
    return parse_json(std::string(std::istreambuf_iterator<char>(in), {}), "");
  } catch (const JsonError& e) {
    throw ModelLoadError(path + ": " + e.what());
  }
}

namespace {

constexpr const char* kUnetPrefix = "model.diffusion_model.";
constexpr const char* kVaePrefix = "first_stage_model.";

// The separate-part flags belong to families that come apart (Flux); an SD checkpoint has its
// text encoders inside (its --vae is the engine's, as before).
void refuse_parts(const ComponentFiles& parts, const std::string& path, Family family) {
  for (const auto& [flag, file] : {std::pair<std::string, std::string>{"--clip_l", parts.clip_l}, {"--t5xxl", parts.t5xxl}})
    if (!file.empty())
      throw ModelLoadError(flag + " " + file + ": separate text encoders are for Flux models; " + path + " is a " +
                           to_string(family) + " checkpoint with its own (leave " + flag + " out)");
}

// Names that say what a file is when it is not a full checkpoint, so the error can say what to do.
void reject_other_kinds(const SafeTensors& f) {
  auto any = [&](const std::string& prefix) {
    return std::any_of(f.tensors().begin(), f.tensors().end(),
                       [&](const TensorInfo& t) { return t.name.compare(0, prefix.size(), prefix) == 0; });
  };
  const std::string p = f.path();
  if (any("control_model.") || f.contains("input_hint_block.0.weight"))
    throw ModelLoadError(p + ": this is a ControlNet, not a base model; pass it with --control-net and give a base model with --model");
  if (any("lora_unet_") || any("lora_te_"))
    throw ModelLoadError(p + ": this is a LoRA, not a base model; give a base model with --model");
  if (any("joint_blocks.") || any("model.diffusion_model.joint_blocks."))
    throw ModelLoadError(p + ": this is a Stable Diffusion 3 model (MMDiT joint blocks); that family is not supported yet: "
                             "this version runs SD 1.x, 2.x, SDXL and Flux.1");
  if (any("conditioner.embedders."))
    throw ModelLoadError(p + ": SDXL-style text encoders ('conditioner.embedders.*') but no UNet ('model.diffusion_model.*' keys); "
                             "the file is incomplete");
  if (f.contains("decoder.conv_in.weight") && f.contains("encoder.conv_in.weight"))
    throw ModelLoadError(p + ": this is a standalone VAE; pass it with --vae and give a base model with --model");
  if (f.contains("conv_in.weight") && f.contains("time_embedding.linear_1.weight"))
    throw ModelLoadError(p + ": this is a bare diffusers UNet file; pass the whole diffusers folder (the one with model_index.json)");
  std::string sample;
  for (size_t i = 0; i < f.tensors().size() && i < 5; ++i) sample += (i ? ", " : "") + f.tensors()[i].name;
  throw ModelLoadError(p + ": not a Stable Diffusion checkpoint: no 'model.diffusion_model.*' UNet keys (first keys: " +
                       (sample.empty() ? "none" : sample) + ")");
}

// Drops the text-encoder layer a family never runs: SD 2.x reads the penultimate block of
// OpenCLIP, and its single files carry the last one too (diffusers folders already omit it).
void drop_unused_clip_layers(Checkpoint& ck) {
  if (ck.layout != Layout::SingleFile) return;
  for (size_t i = 0; i < ck.description.text_encoders.size(); ++i) {
    if (!ck.description.text_encoders[i].single_file_unused_last_layer) continue;
    auto& config = ck.text_encoders[i].config;
    auto& weights = ck.text_encoders[i].weights;
    const int64_t last = config.layers - 1;
    const std::string prefix = "text_model.encoder.layers." + std::to_string(last) + ".";
    for (auto it = weights.begin(); it != weights.end();) {
      if (it->first.compare(0, prefix.size(), prefix) == 0) {
        ck.text_encoder_ignored.push_back(it->first);
        it = weights.erase(it);
      } else {
        ++it;
      }
    }
    config.layers = last;  // what runs; clip skip 1 on SD 2.x means this (penultimate) layer
  }
}

Checkpoint open_single_file(const std::shared_ptr<const SafeTensors>& f) {
  const std::string& path = f->path();
  Checkpoint ck;
  ck.path = path;
  ck.layout = Layout::SingleFile;
  ck.metadata = f->metadata();
  ck.unet = index_file(f, kUnetPrefix);
  if (ck.unet.empty()) reject_other_kinds(*f);
  ck.family = detect_single_file_family(index_file(f), path);
  ck.description = family_description(ck.family);
  ck.text_encoders.resize(ck.description.text_encoders.size());
  ck.prediction = ck.description.default_prediction;  // SD 2.x single files: the 768-v models unless told otherwise (--prediction eps)
  ck.vae = index_file(f, kVaePrefix);
  const auto& roles = ck.description.text_encoders;
  for (size_t i = 0; i < roles.size(); ++i) {
    auto index = index_file(f, roles[i].single_file_prefix);
    ck.text_encoders[i].weights = roles[i].openclip_names ? clip_from_openclip(index, ck.text_encoder_ignored, roles[i].pooled) : index;
  }
  // SDXL v-prediction files mark themselves with a `v_pred` key, zero-terminal-SNR ones also
  // with `ztsnr` (ComfyUI's supported_models.SDXL.model_type reads exactly these).
  if (ck.family == Family::SDXL && f->contains("v_pred")) {
    ck.prediction = "v";
    ck.zero_terminal_snr = f->contains("ztsnr");
  }
  if (ck.vae.empty()) throw ModelLoadError(path + ": the checkpoint has no VAE ('first_stage_model.*' keys); pass one with --vae");
  for (const auto& t : f->tensors()) {
    const auto& n = t.name;
    if (n.rfind(kUnetPrefix, 0) == 0 || n.rfind(kVaePrefix, 0) == 0 || n.rfind("cond_stage_model.", 0) == 0) continue;
    if (std::any_of(roles.begin(), roles.end(), [&](const TextEncoderRole& r) { return n.rfind(r.single_file_prefix, 0) == 0; }))
      continue;
    static const std::vector<std::string> schedule_buffers = {
        "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
        "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
        "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
        "logvar", "model_ema.decay", "model_ema.num_updates", "v_pred", "ztsnr"};
    if (std::find(schedule_buffers.begin(), schedule_buffers.end(), n) != schedule_buffers.end() ||
        n.rfind("model_ema.", 0) == 0)
      ck.ignored.push_back(n);
    else
      ck.unused.push_back(n);
  }
  if (f->contains("alphas_cumprod")) {
    auto a = f->load("alphas_cumprod", torch::kFloat64).contiguous();
    ck.alphas_cumprod.assign(a.data_ptr<double>(), a.data_ptr<double>() + a.numel());
  }
  return ck;
}

std::string need_file(const fs::path& dir, const std::vector<std::string>& names, const std::string& what) {
  for (const auto& n : names)
    if (fs::exists(dir / n)) return (dir / n).string();
  throw ModelLoadError(dir.string() + ": no " + what + " weights (" + names.front() +
                       "); only safetensors are supported: convert .bin files with diffusers' save_pretrained(safe_serialization=True)");
}

// The sizes a family's description leaves to the tensors, checked against each other.
void fill_description_sizes(Checkpoint& ck) {
  auto& d = ck.description;
  const auto& roles = d.text_encoders;
  d.context_dim = ck.unet_config.context_dim;
  int64_t width = 0;
  std::string widths;
  for (size_t i = 0; i < roles.size(); ++i) {
    width += ck.text_encoders[i].config.width;
    widths += (i ? " + " : "") + std::to_string(ck.text_encoders[i].config.width);
  }
  if (d.context_dim > 0 && width != d.context_dim)
    throw ModelLoadError(ck.path + ": the text encoder" + (roles.size() > 1 ? "s give " : " gives ") + widths +
                         "-wide states but the UNet's cross-attention reads " + std::to_string(d.context_dim) +
                         " (a UNet and text encoders of different models?)");
  const int64_t adm = ck.unet_config.adm_in_channels;
  if (!family_description(ck.family).has_additional_embedding()) {
    if (adm > 0)
      throw ModelLoadError(ck.path + ": the UNet has an additional embedding (label_emb, " + std::to_string(adm) +
                           " wide), as unCLIP and other class-conditional " + to_string(ck.family) +
                           " models do; those are not supported");
    return;
  }
  if (adm == 0)
    throw ModelLoadError(ck.path + ": " + to_string(ck.family) + " UNet without its additional embedding ('label_emb.0.0.weight')");
  d.adm_in_channels = adm;
  d.pooled_dim = 0;
  for (size_t i = 0; i < roles.size(); ++i)
    if (roles[i].pooled) {
      d.pooled_dim = ck.text_encoders[i].config.projection_dim;
      if (d.pooled_dim == 0)
        throw ModelLoadError(ck.path + ": " + roles[i].component + " has no text_projection, which gives " + to_string(ck.family) +
                             "'s pooled text vector");
    }
  const int64_t rest = adm - d.pooled_dim;
  if (rest <= 0 || rest % d.micro_conditioning || (rest / d.micro_conditioning) % 2)
    throw ModelLoadError(ck.path + ": the additional embedding reads " + std::to_string(adm) + " numbers, which is not the pooled " +
                         std::to_string(d.pooled_dim) + " plus " + std::to_string(d.micro_conditioning) +
                         " even-sized Fourier embeddings of the micro-conditioning");
  d.fourier_dim = rest / d.micro_conditioning;
}

nlohmann::json optional_json(const fs::path& path) {
  return fs::exists(path) ? read_json_file(path.string()) : nlohmann::json::object();
}

Checkpoint open_diffusers(const fs::path& dir) {
  Checkpoint ck;
  ck.path = dir.string();
  ck.layout = Layout::Diffusers;
  for (const char* sub : {"unet", "vae"})
    if (!fs::is_directory(dir / sub))
      throw ModelLoadError(dir.string() + ": diffusers folder without '" + sub + "/'; is this a complete Stable Diffusion pipeline?");
  const auto te_cfg = optional_json(dir / "text_encoder" / "config.json");
  ck.family = detect_diffusers_family(optional_json(dir / "unet" / "config.json"), te_cfg, fs::is_directory(dir / "text_encoder"),
                                      fs::is_directory(dir / "text_encoder_2"), dir.string());
  ck.description = family_description(ck.family);
  ck.text_encoders.resize(ck.description.text_encoders.size());
  const std::vector<std::string> st = {"diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"};
  auto unet_file = SafeTensors::open(need_file(dir / "unet", st, "UNet"));
  auto vae_file = SafeTensors::open(need_file(dir / "vae", st, "VAE"));
  ck.unet = unet_from_diffusers(index_file(unet_file));
  ck.vae = vae_from_diffusers(index_file(vae_file));
  const auto& roles = ck.description.text_encoders;
  for (size_t i = 0; i < roles.size(); ++i) {
    const auto sub = dir / roles[i].component;
    auto file = SafeTensors::open(need_file(sub, {"model.safetensors", "model.fp16.safetensors"}, roles[i].component));
    ck.text_encoders[i].weights = index_file(file);
    auto& config = ck.text_encoders[i].config;
    config = infer_clip_config(ck.text_encoders[i].weights, ck.family, sub.string(), i);
    const auto cfg = optional_json(sub / "config.json");
    if (cfg.contains("num_attention_heads")) config.heads = cfg["num_attention_heads"].get<int64_t>();
    if (cfg.contains("layer_norm_eps")) config.layer_norm_eps = cfg["layer_norm_eps"].get<double>();
    if (cfg.contains("hidden_act")) config.quick_gelu = cfg["hidden_act"].get<std::string>() == "quick_gelu";
    if (cfg.contains("eos_token_id") && cfg["eos_token_id"].is_number_integer() && cfg["eos_token_id"].get<int64_t>() > 2)
      config.eos_token_id = cfg["eos_token_id"].get<int64_t>();  // (2 is transformers' legacy placeholder: argmax rule)
    if (fs::is_directory(dir / roles[i].tokenizer)) ck.text_encoders[i].tokenizer_dir = (dir / roles[i].tokenizer).string();
  }
  const auto sched_path = dir / "scheduler" / "scheduler_config.json";
  ck.prediction = "eps";
  if (fs::exists(sched_path)) {
    const auto s = read_json_file(sched_path.string());
    const std::string pt = s.value("prediction_type", "epsilon");
    ck.prediction = pt == "v_prediction" ? "v" : "eps";
    ck.zero_terminal_snr = s.value("rescale_betas_zero_snr", false);
  }
  return ck;
}

}  // namespace

Family detect_single_file_family(const TensorIndex& f, const std::string& path) {
  const bool adm = f.count("model.diffusion_model.label_emb.0.0.weight") > 0;
  if (has_prefix(f, "conditioner.embedders.")) {
    if (has_prefix(f, "conditioner.embedders.0.transformer.text_model.") && has_prefix(f, "conditioner.embedders.1.model.") && adm)
      return Family::SDXL;
    if (has_prefix(f, "conditioner.embedders.0.model.") && !has_prefix(f, "conditioner.embedders.1."))
      throw ModelLoadError(path + ": this is an SDXL refiner (one OpenCLIP-bigG text encoder); Sigma Studio runs SDXL base "
                                  "models, not the refiner, yet");
    throw ModelLoadError(path + ": an SGM-format model ('conditioner.embedders.*') that is not SDXL base (which has CLIP-L in "
                                "'conditioner.embedders.0.transformer.', OpenCLIP-bigG in 'conditioner.embedders.1.model.' and "
                                "'model.diffusion_model.label_emb.*'); not supported");
  }
  if (has_prefix(f, "cond_stage_model.transformer.")) return Family::SD1;
  if (has_prefix(f, "cond_stage_model.model.")) return Family::SD2;
  throw ModelLoadError(path + ": the checkpoint has a UNet but no text encoder ('cond_stage_model.*' or 'conditioner.embedders.*' keys)");
}

Family detect_diffusers_family(const nlohmann::json& unet_cfg, const nlohmann::json& te_cfg, bool has_te, bool has_te2,
                               const std::string& path) {
  const auto it = unet_cfg.is_object() ? unet_cfg.find("addition_embed_type") : unet_cfg.end();
  const bool text_time = it != unet_cfg.end() && it->is_string() && it->get<std::string>() == "text_time";
  if (has_te2 || text_time) {
    if (!has_te)
      throw ModelLoadError(path + ": an SDXL pipeline with only 'text_encoder_2/' is the SDXL refiner; Sigma Studio runs SDXL base "
                                  "models, not the refiner, yet");
    if (!has_te2)
      throw ModelLoadError(path + ": the UNet takes SDXL's text_time embedding but there is no 'text_encoder_2/'; is the folder complete?");
    return Family::SDXL;
  }
  if (!has_te) throw ModelLoadError(path + ": diffusers folder without 'text_encoder/'; is this a complete Stable Diffusion pipeline?");
  return te_cfg.value("hidden_act", "quick_gelu") == "gelu" ? Family::SD2 : Family::SD1;
}

Checkpoint open_checkpoint(const std::string& path, const ComponentFiles& parts) {
  if (!fs::exists(path)) throw ModelLoadError(path + ": no such file or folder");
  Checkpoint ck;
  if (fs::is_directory(path)) {
    if (fs::exists(fs::path(path) / "config.json") && !fs::exists(fs::path(path) / "model_index.json"))
      throw ModelLoadError(path + ": this folder holds a single diffusers model (config.json), not a pipeline; "
                                  "for a ControlNet pass it with --control-net");
    if (is_flux_folder(path)) return open_flux_folder(path, parts);
    ck = open_diffusers(path);
  } else {
    const auto ext = fs::path(path).extension().string();
    if (ext == ".ckpt" || ext == ".pt" || ext == ".pth" || ext == ".bin")
      throw ModelLoadError(path + ": pickle checkpoints (" + ext + ") can run code when loaded and are not supported; "
                                  "convert it to .safetensors (e.g. with the safetensors package) and pass that");
    auto file = SafeTensors::open(path);
    if (is_flux_file(*file)) return open_flux_file(file, parts);
    ck = open_single_file(file);
    for (size_t i = 0; i < ck.description.text_encoders.size(); ++i)
      ck.text_encoders[i].config = infer_clip_config(ck.text_encoders[i].weights, ck.family,
                                               path + " text encoder" + (i ? " " + std::to_string(i + 1) : std::string()), i);
  }
  // A buffer transformers saves and recomputes; our embedding needs no copy of it.
  for (size_t i = 0; i < ck.text_encoders.size(); ++i)
    if (ck.text_encoders[i].weights.erase("text_model.embeddings.position_ids"))
      ck.text_encoder_ignored.push_back((i ? ck.description.text_encoders[i].component + ": " : std::string()) +
                                        "text_model.embeddings.position_ids");
  ck.unet_config = infer_unet_config(ck.unet, ck.family, path + " UNet");
  ck.vae_config = infer_vae_config(ck.vae, path + " VAE");
  ck.vae_config.scaling_factor = ck.description.vae_scale;
  if (ck.layout == Layout::Diffusers) {
    const auto vcfg = fs::path(path) / "vae" / "config.json";
    if (fs::exists(vcfg)) {
      const auto j = read_json_file(vcfg.string());
      ck.vae_config.scaling_factor = j.value("scaling_factor", ck.description.vae_scale);
      if (ck.description.vae_fp16_upcast) ck.description.vae_fp16_upcast = j.value("force_upcast", true);
    }
    const auto ucfg = fs::path(path) / "unet" / "config.json";
    if (fs::exists(ucfg)) {
      apply_diffusers_heads(ck.unet_config, read_json_file(ucfg.string()));
    }
  }
  if (auto it = ck.metadata.find("sigma.prediction"); it != ck.metadata.end()) ck.prediction = it->second;
  if (auto it = ck.metadata.find("sigma.vae_scaling_factor"); it != ck.metadata.end())
    ck.vae_config.scaling_factor = std::stod(it->second);  // our own models record the scale they were trained with
  drop_unused_clip_layers(ck);
  refuse_parts(parts, path, ck.family);
  ck.default_clip_skip = 1;
  fill_description_sizes(ck);
  return ck;
}

void apply_diffusers_heads(UNetConfig& c, const nlohmann::json& j) {
  if (!j.contains("attention_head_dim")) return;
  const auto& h = j["attention_head_dim"];
  if (h.is_array()) {
    c.num_heads = -1;
    c.head_dim = c.model_channels * c.channel_mult[0] / h[0].get<int64_t>();
  } else {
    c.num_heads = h.get<int64_t>();
    c.head_dim = -1;
  }
}

TensorIndex open_vae_file(const std::string& path) {
  auto f = SafeTensors::open(path);
  const auto all = index_file(f);
  // LDM checkpoints' prefix, or ComfyUI all-in-one files' (vae.)
  TensorIndex idx = index_file(f, has_prefix(all, kVaePrefix) ? kVaePrefix : has_prefix(all, "vae.decoder.") ? "vae." : "");
  if (looks_like_diffusers_vae(idx)) idx = vae_from_diffusers(idx);
  if (!idx.count("decoder.conv_in.weight"))
    throw ModelLoadError(path + ": not a VAE (no 'decoder.conv_in.weight' or 'first_stage_model.decoder.*' keys)");
  for (auto it = idx.begin(); it != idx.end();)
    it = (it->first.rfind("encoder.", 0) == 0 || it->first.rfind("decoder.", 0) == 0 ||
          it->first.rfind("quant_conv.", 0) == 0 || it->first.rfind("post_quant_conv.", 0) == 0)
             ? std::next(it)
             : idx.erase(it);  // e.g. the LPIPS loss weights some VAE releases carry
  return idx;
}

}  // namespace sigma::models
