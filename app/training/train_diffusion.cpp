// The diffusion stages of `sigma train`: the ε UNet with its text encoder, its
// rectified-flow twin, and the canny ControlNet. All three train on VAE latents of the
// shape world and export SD single-file checkpoints.
#include <cstdio>
#include <filesystem>

#include "app/training/shape_world.h"
#include "app/training/train.h"
#include "app/training/train_presets.h"
#include "app/training/train_util.h"
#include "models/families/loader.h"
#include "samplers/model_sampling.h"

namespace fs = std::filesystem;

namespace sigma::app {
namespace {
using namespace training;
namespace F = torch::nn::functional;

// Offset noise (a constant per channel added to ε) lets the model move a picture's mean,
// which plain ε-prediction on SD's schedule cannot: backgrounds here are pure white, black or gray.
constexpr double kOffsetNoise = 0.1;
constexpr double kCaptionDropout = 0.1;       // classifier-free guidance needs an unconditional model
constexpr double kControlCaptionDropout = 0.3; // ControlNet: learn to follow the hint without words

struct Latents {
  torch::Tensor z;    // [N,4,16,16], scaled by the VAE's factor, on the device
  torch::Tensor ids;  // [N,77] on the device
};

Latents encode_pool(models::AutoencoderKL& vae, double scale, const ShapePool& pool, torch::Device device) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> parts;
  for (int64_t i = 0; i < pool.size(); i += 256) {
    auto x = to_unit(pool.images.narrow(0, i, std::min<int64_t>(256, pool.size() - i)).to(device));
    parts.push_back(vae->encode_moments(x).first * scale);
  }
  return {torch::cat(parts), pool.ids.to(device)};
}

// The bit-packed canny hints of `sigma train-hints` -> [N,1,128,128] uint8 in {0,1} on the device.
torch::Tensor load_hints(const std::string& path, uint64_t& first_seed, torch::Device device) {
  auto f = models::SafeTensors::open(path);
  first_seed = static_cast<uint64_t>(f->load("first_seed").item<int64_t>());
  auto packed = f->load("hints").to(device);  // [N,128,16] uint8, 8 pixels per byte, MSB first
  auto bits = torch::arange(7, -1, -1, torch::TensorOptions().dtype(torch::kUInt8).device(device));
  auto unpacked = packed.unsqueeze(-1).bitwise_right_shift(bits).bitwise_and(1);  // [N,128,16,8]
  return unpacked.reshape({packed.size(0), 1, 128, 128}).contiguous();
}

struct Base {
  models::Checkpoint ck;
  models::AutoencoderKL vae{nullptr};
  models::ClipTextModel clip{nullptr};
  models::UNet unet{nullptr};
  double scale = 1;
};

Base load_base(const std::string& path, torch::Device device) {
  Base b;
  b.ck = models::open_checkpoint(path);
  const models::LoadOptions opt{device, torch::kFloat32};
  b.vae = models::load_vae(b.ck, opt);
  b.clip = models::load_text_encoder(b.ck, opt);
  b.unet = models::load_unet(b.ck, opt);
  b.scale = b.ck.vae_config.scaling_factor;
  for (auto* m : std::vector<torch::nn::Module*>{b.vae.get(), b.clip.get(), b.unet.get()})
    for (auto& p : m->parameters()) p.set_requires_grad(false);
  return b;
}

// The frozen parts: the VAE (unet stage), or the whole ε model (flow, controlnet).
struct Frozen {
  Base base;  // empty for the unet stage
  models::AutoencoderKL vae{nullptr};
  double scale = 1;
  std::map<std::string, std::string> vae_meta;  // carried into the exported checkpoint
};

Frozen frozen_parts(const TrainOptions& o, torch::Device device) {
  Frozen fr;
  if (o.stage == "unet") {
    if (o.vae.empty()) throw std::invalid_argument("sigma train unet needs --vae (the output of `sigma train vae`)");
    auto f = models::SafeTensors::open(o.vae);
    fr.vae_meta = f->metadata();
    fr.scale = std::stod(fr.vae_meta.at("sigma.vae_scaling_factor"));
    fr.vae = models::load_vae_file(o.vae, fr.scale, {device, torch::kFloat32});
    for (auto& p : fr.vae->parameters()) p.set_requires_grad(false);
    return fr;
  }
  if (o.base.empty()) throw std::invalid_argument("sigma train " + o.stage + " needs --base (the ε model from `sigma train unet`)");
  fr.base = load_base(o.base, device);
  fr.vae = fr.base.vae;
  fr.scale = fr.base.scale;
  fr.vae_meta = fr.base.ck.metadata;
  return fr;
}

// The networks a stage trains (and the frozen ones it runs), with the parameters the optimizer moves.
struct Trained {
  models::ClipTextModel clip{nullptr};
  models::UNet unet{nullptr};
  controlnet::ControlNet cn{nullptr};
  std::vector<torch::nn::Module*> modules;
  std::vector<torch::Tensor> params;
};

Trained trained_parts(const TrainOptions& o, const Base& base, const models::ClipTokenizer& tokenizer, torch::Device device) {
  const bool flow = o.stage == "flow", control = o.stage == "controlnet";
  Trained t;
  t.clip = base.clip ? base.clip : models::ClipTextModel(shapes_clip(static_cast<int64_t>(tokenizer.vocab_size())));
  t.unet = control ? base.unet : models::UNet(shapes_unet());
  t.clip->to(device);
  t.unet->to(device);
  if (!o.init.empty() && !control) {
    // Continue from an earlier run's exported weights (a fresh optimizer; the EMA starts there).
    const auto init = models::open_checkpoint(o.init);
    models::load_module(*t.unet, init.unet, "UNet of " + o.init, torch::kFloat32, device);
    if (!flow) models::load_module(*t.clip, init.text_encoders[0].weights, "text encoder of " + o.init, torch::kFloat32, device);
    std::fprintf(stderr, "%s: starting from %s\n", o.stage.c_str(), o.init.c_str());
  }
  if (control) {
    t.cn = controlnet::ControlNet(shapes_controlnet());
    t.cn->to(device);
    torch::NoGradGuard no_grad;
    // Start from the ε UNet's encoder (Zhang et al. 2023); zero convs and the hint encoder's output start at 0.
    auto unet_params = t.unet->named_parameters();
    for (auto& p : t.cn->named_parameters())
      if (auto* src = unet_params.find(p.key())) p.value().copy_(*src);
    for (auto& p : t.cn->zero_convs->parameters()) p.zero_();
    for (auto& p : t.cn->middle_block_out->parameters()) p.zero_();
    for (auto& p : t.cn->input_hint_block[t.cn->input_hint_block->size() - 1]->parameters()) p.zero_();
    t.modules = {t.cn.get()};
    t.params = trainable(*t.cn);
  } else if (flow) {
    t.modules = {t.unet.get()};
    t.params = trainable(*t.unet);
  } else {
    t.modules = {t.unet.get(), t.clip.get()};
    t.params = trainable(*t.unet);
    for (auto& p : trainable(*t.clip)) t.params.push_back(p);
  }
  return t;
}

// Writes the stage's checkpoint (and, beside the text-conditioned ones, the tokenizer, where
// the loader looks for it); returns its path.
std::string export_stage(const TrainOptions& o, const Run& run, Frozen& fr, Trained& t, int64_t steps_done,
                         const std::vector<double>& alphas_cumprod) {
  const bool flow = o.stage == "flow", control = o.stage == "controlnet";
  auto meta = base_metadata(o.stage, o, steps_done);
  for (const char* k : {"sigma.vae_scaling_factor", "sigma.latent_rgb", "sigma.vae_heldout_psnr_db"})
    if (fr.vae_meta.count(k)) meta[k] = fr.vae_meta.at(k);
  const auto out = (run.dir / (o.stage == "unet" ? "sigma-shapes.safetensors"
                               : flow          ? "sigma-shapes-flow.safetensors"
                                               : "sigma-shapes-canny.safetensors"))
                       .string();
  if (control) {
    export_checkpoint(out, {{"control_model.", t.cn.get()}}, {}, meta);
    return out;
  }
  meta["sigma.prediction"] = flow ? "flow" : "eps";
  if (flow) meta["sigma.flow_shift"] = "1";
  std::vector<std::pair<std::string, torch::Tensor>> extra;
  if (!flow) extra.emplace_back("alphas_cumprod", torch::tensor(alphas_cumprod, torch::kFloat64).to(torch::kFloat32));
  export_checkpoint(out, {{"model.diffusion_model.", t.unet.get()}, {"first_stage_model.", fr.vae.get()},
                          {"cond_stage_model.transformer.", t.clip.get()}},
                    extra, meta);
  const fs::path tok_dir = fs::path(out).replace_extension(".tokenizer");
  fs::create_directories(tok_dir);
  for (const char* f : {"vocab.json", "merges.txt", "tokenizer_config.json"})
    fs::copy_file(run.dir / "tokenizer" / f, tok_dir / f, fs::copy_options::overwrite_existing);
  return out;
}

}  // namespace

std::string train_diffusion(const TrainOptions& o, torch::Device device, bool amp) {
  Run run{o, device, amp, o.out_dir};
  auto tokenizer = shapes_tokenizer(run.dir / "tokenizer");
  const bool flow = o.stage == "flow", control = o.stage == "controlnet";
  Frozen fr = frozen_parts(o, device);
  uint64_t first_seed = o.seed;
  torch::Tensor hints;
  int64_t pool_size = o.pool;
  if (control) {
    if (o.hints.empty()) throw std::invalid_argument("sigma train controlnet needs --hints (from `sigma train-hints`)");
    hints = load_hints(o.hints, first_seed, device);
    pool_size = hints.size(0);
  }
  std::fprintf(stderr, "%s: generating %lld samples and encoding them\n", o.stage.c_str(), static_cast<long long>(pool_size));
  auto pool = make_pool(first_seed, pool_size, tokenizer, o.threads, true, o.min_objects, o.max_objects);
  auto vae = fr.vae;
  auto data = encode_pool(vae, fr.scale, pool, device);
  const auto empty_ids = torch::tensor(tokenizer.encode_padded("", 77), torch::kLong).to(device);
  Trained t = trained_parts(o, fr.base, tokenizer, device);
  auto& clip = t.clip;
  auto& unet = t.unet;
  auto& cn = t.cn;

  auto ms = samplers::ModelSampling::discrete(samplers::Prediction::eps);
  std::vector<double> ac = ms.alphas_cumprod();
  auto alphas = torch::tensor(ac, torch::kFloat64).to(torch::kFloat32).to(device);
  auto gen = at::detail::createCPUGenerator(o.seed ^ 0x5eed);
  const double dropout = control ? kControlCaptionDropout : kCaptionDropout;
  const int64_t steps_done = loop(run, t.modules, t.params, [&](int64_t) {
    const int64_t B = o.batch;
    auto idx = torch::randint(data.z.size(0), {B}, gen).to(device);
    auto x0 = data.z.index_select(0, idx);
    auto ids = data.ids.index_select(0, idx);
    auto drop = (torch::rand({B}, gen) < dropout).to(device).unsqueeze(1);
    ids = torch::where(drop, empty_ids.unsqueeze(0).expand_as(ids), ids);
    auto noise = torch::randn(x0.sizes(), gen).to(device);
    torch::Tensor ctx;
    if (control || flow) {
      torch::NoGradGuard frozen;  // the ε model's text encoder is kept as it is
      ctx = clip->forward(ids);
    } else {
      ctx = clip->forward(ids);
    }
    if (flow) {
      // Rectified flow with logit-normal t (Esser et al. 2024): x_t = (1−t)x0 + tε, target v = ε − x0.
      auto t = torch::sigmoid(torch::randn({B}, gen)).to(device);
      auto tt = t.view({B, 1, 1, 1});
      auto xt = (1 - tt) * x0 + tt * noise;
      return F::mse_loss(unet->forward(xt, t * 1000, ctx).to(torch::kFloat32), noise - x0);
    }
    noise = noise + kOffsetNoise * torch::randn({B, x0.size(1), 1, 1}, gen).to(device);
    auto t = torch::randint(0, static_cast<int64_t>(ac.size()), {B}, gen).to(device);
    auto a = alphas.index_select(0, t).view({B, 1, 1, 1});
    auto xt = a.sqrt() * x0 + (1 - a).sqrt() * noise;
    auto tf = t.to(torch::kFloat32);
    if (control) {
      auto hint = hints.index_select(0, idx).to(torch::kFloat32).expand({-1, 3, -1, -1});
      auto residuals = cn->forward(xt, tf, ctx, hint);
      return F::mse_loss(unet->forward(xt, tf, ctx, &residuals).to(torch::kFloat32), noise);
    }
    return F::mse_loss(unet->forward(xt, tf, ctx).to(torch::kFloat32), noise);
  }, o.stage);

  return export_stage(o, run, fr, t, steps_done, ac);
}

}  // namespace sigma::app
