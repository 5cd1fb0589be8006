#include "app/engine.h"

#include <openssl/evp.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "app/process.h"
#include "models/io/json_text.h"
#include "models/nn/channels_last.h"
#include "models/runtime/options.h"
#include "models/runtime/torch_compat.h"

namespace fs = std::filesystem;

namespace sigma::app {

std::string assets_dir() {
  if (auto env = assets_override(); !env.empty()) return env;
  // Installed layout: <prefix>/bin/sigma and <prefix>/share/sigma-studio/assets.
  std::error_code ec;
  const auto exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const auto installed = exe.parent_path().parent_path() / "share" / "sigma-studio" / "assets";
    if (fs::is_directory(installed)) return installed.string();
  }
  return SIGMA_SOURCE_ASSETS;
}

std::string default_model_path() { return (fs::path(assets_dir()) / "models" / "sigma-shapes.safetensors").string(); }

torch::Device parse_device(const std::string& name) {
  if (name == "cuda") {
    if (!compat::cuda_available())
      throw std::invalid_argument("--device cuda: no CUDA device is available to this build (Debian's LibTorch is CPU-only); use --device cpu");
    return torch::Device(torch::kCUDA);
  }
  if (name == "cpu") return torch::Device(torch::kCPU);
  throw std::invalid_argument("--device must be cpu or cuda, got '" + name + "'");
}

std::string dtype_flag(torch::ScalarType t) {
  return t == torch::kFloat16 ? "fp16" : t == torch::kBFloat16 ? "bf16" : "fp32";
}

ModelSpec model_spec(const Request& r) {
  ModelSpec s;
  const std::string& named = r.model.empty() ? r.diffusion_model : r.model;
  s.model = named.empty() ? default_model_path() : named;
  if (named.empty() && !std::filesystem::exists(s.model))
    throw std::invalid_argument("the bundled model is missing (expected at " + s.model +
                                "; set SIGMA_ASSETS to the assets folder) - or give a checkpoint with -m PATH");
  s.clip_l = r.clip_l;
  s.t5xxl = r.t5xxl;
  s.t5_tokenizer = r.t5_tokenizer;
  s.tokenizer = r.tokenizer;
  s.vae = r.vae;
  s.prediction = r.prediction;
  s.device = r.device == "auto" ? (compat::cuda_available() ? "cuda" : "cpu") : r.device;
  const bool gpu = s.device == "cuda";
  // auto: fp16 on CUDA; on the CPU bf16 where it has bf16 matrix units (~5x fp32 there,
  // ~49 dB from the fp32 picture), else fp32 (emulated bf16 would be slower).
  const std::string dt = r.dtype != "auto" ? r.dtype : gpu ? "fp16" : models::cpu_has_bf16_units() ? "bf16" : "fp32";
  if (dt == "fp16" && !gpu)
    throw std::invalid_argument("--dtype fp16 needs --device cuda: LibTorch has no float16 kernels for the CPU; use fp32 (or bf16)");
  s.dtype = dt == "fp16" ? torch::kFloat16 : dt == "bf16" ? torch::kBFloat16 : torch::kFloat32;
  s.lowvram = r.lowvram && gpu;  // the CPU has nothing to offload to
  return s;
}

namespace {

// The tokenizer of text encoder `role`: vocab.json + merges.txt from the given folder (encoder
// 1; later encoders reuse its vocabulary), the diffusers folder's own tokenizer/ or tokenizer_2/,
// a NAME.tokenizer/ or tokenizer/ (NAME.tokenizer_2/, tokenizer_2/) beside the file, or, last,
// the CLIP vocabulary bundled in assets/clip-bpe (every SD text encoder uses CLIP's BPE).
// A folder's tokenizer_config.json picks the pad token; without one the family's pad applies
// (SD 1.x: the end token; SD 2.x and SDXL's encoder 2: "!" = id 0).
models::ClipTokenizer find_tokenizer(const ModelSpec& spec, const models::Checkpoint& ck, size_t role) {
  const auto& r = ck.description.text_encoders.at(role);
  std::vector<std::string> tried;
  auto has_vocab = [](const fs::path& dir) { return fs::exists(dir / "vocab.json") && fs::exists(dir / "merges.txt"); };
  auto from = [&](const fs::path& dir, bool use_config) {
    if (use_config && fs::exists(dir / "tokenizer_config.json")) return models::ClipTokenizer::from_dir(dir.string());
    return models::ClipTokenizer::from_files((dir / "vocab.json").string(), (dir / "merges.txt").string(), r.pad_id);
  };
  auto try_dir = [&](const fs::path& dir, bool use_config) -> std::optional<models::ClipTokenizer> {
    tried.push_back(dir.string());
    if (has_vocab(dir)) return from(dir, use_config);
    return std::nullopt;
  };
  const std::string& own = ck.text_encoders[role].tokenizer_dir;
  if (!spec.tokenizer.empty()) {
    if (role > 0 && !own.empty())
      if (auto t = try_dir(own, true)) return *t;
    if (auto t = try_dir(spec.tokenizer, role == 0)) return *t;
    throw models::ModelLoadError("--tokenizer " + spec.tokenizer + ": no vocab.json and merges.txt in this folder");
  }
  if (!own.empty())
    if (auto t = try_dir(own, true)) return *t;
  const fs::path file(ck.path);
  const std::string sub = r.tokenizer;  // "tokenizer", "tokenizer_2"
  for (const auto& dir : {file.parent_path() / (file.stem().string() + "." + sub), file.parent_path() / sub})
    if (auto t = try_dir(dir, true)) return *t;
  if (role > 0)  // the first encoder's vocabulary, with this encoder's padding
    for (const auto& dir : {file.parent_path() / (file.stem().string() + ".tokenizer"), file.parent_path() / "tokenizer"})
      if (auto t = try_dir(dir, false)) return *t;
  if (auto t = try_dir(fs::path(assets_dir()) / "clip-bpe", false)) return *t;
  std::string where;
  for (const auto& t : tried) where += "\n  " + t;
  throw models::ModelLoadError(
      ck.path + ": a single-file checkpoint carries no tokenizer. Put the CLIP tokenizer files of its family (vocab.json and "
      "merges.txt, e.g. the tokenizer/ folder of any " + models::to_string(ck.family) +
      " diffusers model) in one of these folders, or pass --tokenizer DIR. Looked in:" + where);
}

// T5's tokenizer: --t5-tokenizer, the diffusers folder's tokenizer_2/spiece.model (or tokenizer.json),
// else T5's own vocabulary bundled in assets/t5-tokenizer (real T5 files carry none). A T5
// whose embedding table is smaller than the tokenizer's ids would index past it.
models::T5Tokenizer find_t5_tokenizer(const ModelSpec& spec, const models::Checkpoint& ck, size_t role) {
  const auto& te = ck.text_encoders.at(role);
  std::string path = spec.t5_tokenizer, source = "--t5-tokenizer";
  for (const char* name : {"spiece.model", "tokenizer.json"})
    if (path.empty() && !te.tokenizer_dir.empty() && fs::exists(fs::path(te.tokenizer_dir) / name)) {
      path = (fs::path(te.tokenizer_dir) / name).string();
      source = "the folder's tokenizer";
    }
  if (path.empty()) {
    path = (fs::path(assets_dir()) / "t5-tokenizer" / "spiece.model").string();
    source = "the bundled T5 vocabulary";
  }
  auto tok = models::T5Tokenizer::from_file(path);
  if (tok.vocab_size() > te.t5_config.vocab_size)
    throw models::ModelLoadError("T5 encoder " + (te.file.empty() ? "of " + ck.path : te.file) + ": its embedding table has " +
                                 std::to_string(te.t5_config.vocab_size) + " rows but " + source + " (" + path + ") uses " +
                                 std::to_string(tok.vocab_size()) + " ids; pass this T5's own SentencePiece model with --t5-tokenizer FILE");
  return tok;
}

samplers::ModelSampling make_sampling(const models::Checkpoint& ck, const std::string& prediction_override) {
  const auto& meta = ck.metadata;
  const std::string prediction = !prediction_override.empty() ? prediction_override : ck.prediction;
  if (prediction == "flow") {
    const double shift = meta.count("sigma.flow_shift") ? std::stod(meta.at("sigma.flow_shift")) : 1.0;
    return samplers::ModelSampling::flow(shift);
  }
  const auto p = samplers::parse_prediction(prediction);
  if (!ck.alphas_cumprod.empty())
    return samplers::ModelSampling::from_alphas_cumprod(
        p, ck.zero_terminal_snr ? samplers::rescale_zero_terminal_snr(ck.alphas_cumprod) : ck.alphas_cumprod);
  samplers::DiscreteOptions o;
  o.zero_terminal_snr = ck.zero_terminal_snr;  // SDXL v-prediction files with a `ztsnr` key, diffusers' rescale_betas_zero_snr
  return samplers::ModelSampling::discrete(p, o);
}

// Latent -> RGB of the family, least squares over decoded images (as ComfyUI's previewers
// use); models may carry their own in metadata ("sigma.latent_rgb": 12 numbers).
torch::Tensor latent_rgb_factors(const models::Checkpoint& ck, int64_t channels) {
  std::vector<float> f = ck.description.latent_rgb;
  if (auto it = ck.metadata.find("sigma.latent_rgb"); it != ck.metadata.end()) {
    try {  // only preview colours: a damaged entry falls back to the family's
      f = models::parse_json(it->second, "sigma.latent_rgb").get<std::vector<float>>();
    } catch (const std::exception&) {
      f = ck.description.latent_rgb;
    }
  }
  if (static_cast<int64_t>(f.size()) != channels * 3) return torch::zeros({channels, 3});
  return torch::tensor(f).reshape({channels, 3});
}

// SIGMA_CUDA_MEMORY_FRACTION=F (0 < F <= 1): this process may use at most F of the GPU's
// memory (torch.cuda.set_per_process_memory_fraction), for a GPU shared with other programs;
// what goes beyond fails as out-of-memory, with the pipeline's message. Set once per process.
void apply_cuda_memory_fraction() {
  static std::once_flag once;
  std::call_once(once, [] {
    const std::string& env = models::runtime_options().cuda_memory_fraction;
    if (env.empty()) return;
    char* end = nullptr;
    const double f = std::strtod(env.c_str(), &end);
    if (*end != '\0' || !(f > 0 && f <= 1))
      throw std::invalid_argument("SIGMA_CUDA_MEMORY_FRACTION=" + env +
                                  ": expected a fraction of the GPU's memory in (0, 1], e.g. 0.5");
    compat::cuda_set_memory_fraction(f);
  });
}

}  // namespace

std::shared_ptr<Engine> Engine::load(const ModelSpec& spec) {
  models::trace_time("loading " + spec.model);
  std::shared_ptr<Engine> e(new Engine());
  e->spec_ = spec;
  e->device_ = parse_device(spec.device);
  models::ComponentFiles parts{spec.clip_l, spec.t5xxl, spec.vae, models_root()};
  e->checkpoint_ = models::open_checkpoint(spec.model, parts);
  const auto& ck = e->checkpoint_;
  for (const auto& note : ck.notes) std::fprintf(stderr, "sigma: %s\n", note.c_str());
  const auto& roles = ck.description.text_encoders;
  e->text_encoders_.resize(ck.text_encoders.size());
  for (size_t i = 0; i < ck.text_encoders.size(); ++i) {
    if (roles[i].network == models::TextNetwork::T5) e->text_encoders_[i].t5_tokenizer = find_t5_tokenizer(spec, ck, i);
    else e->text_encoders_[i].tokenizer = find_tokenizer(spec, ck, i);
  }
  e->sampling_ = make_sampling(ck, spec.prediction);
  e->schedule_options_.steps_offset = 1;
  e->schedule_options_.set_alpha_to_one = false;
  e->schedule_options_.ays_model = ck.description.align_your_steps;
  const auto sched_cfg = std::filesystem::path(ck.path) / "scheduler" / "scheduler_config.json";
  if (ck.layout == models::Layout::Diffusers && std::filesystem::exists(sched_cfg)) {
    const auto j = models::read_json_file(sched_cfg.string());
    e->schedule_options_.steps_offset = j.value("steps_offset", 1);
    e->schedule_options_.set_alpha_to_one = j.value("set_alpha_to_one", false);
  }
  // cuDNN autotuning (each conv shape's algorithms timed once) stays off, LibTorch's default:
  // on the H200 it bought nothing warm (SD 1.5 step 12.84 ms off, 12.86 on) and cost ~2 s of
  // every cold start (30-step 512² command 4.6-4.9 s off, 6.5-7.1 s on; docs/performance.md).
  if (e->device_.is_cuda()) apply_cuda_memory_fraction();
  // --lowvram: every network loads into host memory in the compute dtype; the UNet's small
  // embeddings and output layer then move to the GPU, its blocks stream in one at a time,
  // the text encoders and the VAE visit for their calls (Engine::visit).
  const bool lowvram = e->lowvram();
  if (lowvram && !ck.description.is_unet())
    throw std::invalid_argument("--lowvram: not available for " + models::to_string(ck.family) +
                                " models yet (its transformer does not stream block by block); leave --lowvram out");
  const models::LoadOptions opt{lowvram ? torch::Device(torch::kCPU) : e->device_, spec.dtype};
  for (size_t i = 0; i < ck.text_encoders.size(); ++i) {
    if (roles[i].network == models::TextNetwork::T5) e->text_encoders_[i].t5 = models::load_t5_encoder(ck, opt, i);
    else e->text_encoders_[i].model = models::load_text_encoder(ck, opt, i);
  }
  if (ck.description.is_unet()) {
    e->unet_ = models::load_unet(ck, opt);
    e->diffusion_ = e->unet_.ptr();
  } else {
    e->flux_ = models::load_flux(ck, opt);
    e->diffusion_ = e->flux_.ptr();
  }
  // SDXL's VAE overflows float16: it runs in float32 then, as diffusers' force_upcast (the
  // latents and images still come and go in the pipeline's dtype).
  auto vae_opt = opt;
  if (spec.dtype == torch::kFloat16 && ck.description.vae_fp16_upcast) vae_opt.dtype = torch::kFloat32;
  // (Flux's VAE is the checkpoint's already when --vae names it: its parts come from the flags.)
  e->vae_ = spec.vae.empty() || !ck.description.is_unet() ? models::load_vae(ck, vae_opt)
                                                           : models::load_vae_file(spec.vae, ck.vae_config.scaling_factor, vae_opt);
  models::trace_time("weights on " + e->device_.str());
  if (e->unet_) models::apply_channels_last(*e->unet_, *e->vae_, e->device_);  // models/nn/channels_last.h
  if (lowvram) {  // (a UNet family: refused above for the others)
    for (auto& t : e->text_encoders_) models::park_in_host_memory(*t.model);
    models::park_in_host_memory(*e->vae_);
    e->unet_->stream_blocks(e->device_);  // embeddings and `out` to the GPU, the blocks parked
  }
  const auto& family = ck.description;
  e->native_size_ = ck.metadata.count("sigma.native_size") ? std::stoll(ck.metadata.at("sigma.native_size"))
                    : family.native_size_v > 0 && ck.prediction == "v" ? family.native_size_v
                                                                       : family.native_size;
  auto& format = e->latent_format_;
  format.channels = e->vae_->config.z_channels;
  format.downscale = e->vae_->config.downscale();
  format.scale = e->vae_->config.scaling_factor;
  format.shift = family.vae_shift;
  format.rgb = latent_rgb_factors(ck, format.channels);
  // The metadata's short hash reads the whole file (seconds for a 2-7 GB checkpoint): hash
  // in the background while the first image is made (file_sha256 caches it for next time).
  fs::path hashed(ck.path);
  if (fs::is_directory(hashed)) {  // a diffusers folder: its denoiser's weights (the first shard), else its index
    const fs::path dir = hashed;
    hashed = dir / "model_index.json";
    for (const auto& candidate : {dir / "unet" / "diffusion_pytorch_model.safetensors", dir / "transformer" / "diffusion_pytorch_model.safetensors"})
      if (fs::exists(candidate)) hashed = candidate;
    std::error_code ec;
    if (!fs::exists(hashed) && fs::is_directory(dir / "transformer"))
      for (const auto& entry : fs::directory_iterator(dir / "transformer", ec))
        if (entry.path().filename().string().find("-00001-of-") != std::string::npos) hashed = entry.path();
  }
  e->hash_ = std::async(std::launch::async, [file = hashed.string()] { return file_sha256(file).substr(0, 10); }).share();
  models::trace_time("loaded");
  return e;
}

std::string Engine::name() const {
  const fs::path p(checkpoint_.path);
  return (p.has_filename() ? p : p.parent_path()).stem().string();
}

std::string Engine::hash() const { return hash_.get(); }

const samplers::ModelSampling& Engine::sampling(const Request& r) const {
  // Flux dev shifts its schedule by the image's token count (diffusers' use_dynamic_shifting,
  // ComfyUI's ModelSamplingFlux: exp(μ), μ from 0.5 at 256 tokens to 1.15 at 4096); schnell
  // and the other families keep the one chosen at load. An explicit --prediction keeps it too.
  if (!takes_guidance() || !spec_.prediction.empty() || checkpoint_.metadata.count("sigma.flow_shift")) return *sampling_;
  const int64_t f = latent_format_.downscale * flux_->config.patch;
  const int64_t w = r.width > 0 ? r.width : native_size_, h = r.height > 0 ? r.height : native_size_;
  const int64_t tokens = (h / f) * (w / f);
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = shifted_.find(tokens);
  if (it == shifted_.end()) it = shifted_.emplace(tokens, samplers::ModelSampling::flow(std::exp(samplers::flux_mu(tokens)))).first;
  return it->second;
}

int64_t Engine::default_steps() const {
  const auto& d = family().defaults;
  return flux_ && !flux_->config.guidance_embed && d.steps_distilled > 0 ? d.steps_distilled : d.steps;
}

std::unique_ptr<models::OnDevice> Engine::visit(torch::nn::Module& module) const {
  return lowvram() ? std::make_unique<models::OnDevice>(module, device_) : nullptr;
}

torch::Tensor Engine::denoise(const torch::Tensor& x, const torch::Tensor& t, const models::DiffusionConditioning& c) {
  // Streamed blocks change their weights' addresses every call: no graph can replay them.
  if ((c.control && !c.control->empty()) || diffusion_->streaming()) return diffusion_->forward(x, t, c);
  return network_graphs_.run({x, t, c.context, c.y, c.guidance}, [this](const std::vector<torch::Tensor>& in) {
    models::DiffusionConditioning captured;
    captured.context = in[2];
    captured.y = in[3];
    captured.guidance = in[4];
    return diffusion_->forward(in[0], in[1], captured);
  });
}

std::pair<torch::Tensor, torch::Tensor> Engine::encode_tokens(size_t i, const torch::Tensor& ids, int64_t skip,
                                                              bool final_norm, bool pooled, const torch::Tensor& extra) {
  auto& clip = text_encoder(i);
  auto eager = [&](const std::vector<torch::Tensor>& in) -> std::vector<torch::Tensor> {
    if (!pooled) return {clip->forward_with_extra_tokens(in[0], extra, skip, final_norm), torch::Tensor()};
    auto [hidden, p] = clip->forward_pooled(in[0], skip, final_norm, extra);
    return {hidden, p};
  };
  const auto out = extra.defined() || lowvram()
                       ? eager({ids})
                       : text_graphs_.run_all({ids}, eager,
                                              "encoder " + std::to_string(i) + " skip " + std::to_string(skip) +
                                                  (final_norm ? " norm" : "") + (pooled ? " pooled" : ""));
  return {out[0], out[1]};
}

models::AutoencoderKL& Engine::vae_float32() {
  if (spec_.dtype == torch::kFloat32) return vae_;
  std::lock_guard<std::mutex> lock(mutex_);
  if (!vae_float32_) {
    const models::LoadOptions opt{lowvram() ? torch::Device(torch::kCPU) : device_, torch::kFloat32};
    vae_float32_ = spec_.vae.empty() ? models::load_vae(checkpoint_, opt)
                                     : models::load_vae_file(spec_.vae, checkpoint_.vae_config.scaling_factor, opt);
    if (lowvram()) models::park_in_host_memory(*vae_float32_);
  }
  return vae_float32_;
}

controlnet::ControlNet Engine::controlnet(const std::string& path) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (auto it = controlnets_.find(path); it != controlnets_.end()) return it->second;
  if (checkpoint_.description.has_additional_embedding() || !unet_)
    throw models::ModelLoadError(path + ": ControlNet on " + models::to_string(checkpoint_.family) +
                                 " models is not supported yet (base model " + checkpoint_.path + ")");
  auto ck = controlnet::open_controlnet(path, checkpoint_.family);
  if (models::has_prefix(ck.weights, "label_emb."))
    throw models::ModelLoadError(path + ": this is an SDXL ControlNet (it has SDXL's additional embedding, label_emb); "
                                        "ControlNet for SDXL is not supported yet");
  const auto& u = unet_->config;
  const auto& c = ck.config.unet;
  if (c.model_channels != u.model_channels || c.channel_mult != u.channel_mult || c.context_dim != u.context_dim ||
      c.num_res_blocks != u.num_res_blocks)
    throw models::ModelLoadError(path + ": this ControlNet does not fit the base model " + checkpoint_.path +
                                 " (ControlNet: " + c.describe() + "; base UNet: " + u.describe() +
                                 "); use a ControlNet made for " + models::to_string(checkpoint_.family));
  auto net = controlnet::load_controlnet(ck, device_, spec_.dtype);
  controlnets_.emplace(path, net);
  return net;
}

std::string sha256_hex(std::istream& in) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    EVP_DigestUpdate(ctx, buf.data(), static_cast<size_t>(in.gcount()));
  }
  unsigned char digest[32];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, digest, &len);
  EVP_MD_CTX_free(ctx);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out.push_back(hex[digest[i] >> 4]);
    out.push_back(hex[digest[i] & 15]);
  }
  return out;
}

std::string file_sha256(const std::string& path) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec) throw std::runtime_error(path + ": cannot read to hash");
  const auto mtime = fs::last_write_time(path).time_since_epoch().count();
  const fs::path cache_file = fs::path(cache_dir()) / "hashes.json";
  const std::string key = fs::absolute(path).string() + "|" + std::to_string(size) + "|" + std::to_string(mtime);
  nlohmann::json cache = nlohmann::json::object();
  try {
    if (fs::exists(cache_file)) {
      std::ifstream in(cache_file);
      cache = models::parse_json(std::string(std::istreambuf_iterator<char>(in), {}), cache_file.string());
      if (!cache.is_object()) cache = nlohmann::json::object();
    }
  } catch (const std::exception&) {
    cache = nlohmann::json::object();  // a damaged cache is only a cache
  }
  if (cache.contains(key) && cache[key].is_string()) return cache[key].get<std::string>();

  std::ifstream in(path, std::ios::binary);
  const std::string out = sha256_hex(in);
  try {
    fs::create_directories(cache_file.parent_path());
    cache[key] = out;
    const auto tmp = cache_file.string() + ".tmp-" + std::to_string(::getpid()) + "-" +
                     std::to_string(std::hash<std::thread::id>{}(std::this_thread::get_id()));
    std::ofstream(tmp) << cache.dump(1);
    fs::rename(tmp, cache_file);
  } catch (const std::exception&) {
    // A read-only home only costs re-hashing next time.
  }
  return out;
}

}  // namespace sigma::app
