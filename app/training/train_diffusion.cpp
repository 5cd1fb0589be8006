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

}  // namespace

std::string train_diffusion(const TrainOptions& o, torch::Device device, bool amp) {
  Run run{o, device, amp, o.out_dir};
  auto tokenizer = shapes_tokenizer(run.dir / "tokenizer");
  const bool flow = o.stage == "flow", control = o.stage == "controlnet";

  // Frozen parts: the VAE (unet stage), or the whole ε model (flow, controlnet).
  Base base;
  models::AutoencoderKL vae{nullptr};
  double scale = 1;
  std::map<std::string, std::string> vae_meta;
  if (o.stage == "unet") {
    if (o.vae.empty()) throw std::invalid_argument("sigma train unet needs --vae (the output of `sigma train vae`)");
    auto f = models::SafeTensors::open(o.vae);
    vae_meta = f->metadata();
    scale = std::stod(vae_meta.at("sigma.vae_scaling_factor"));
    vae = models::load_vae_file(o.vae, scale, {device, torch::kFloat32});
    for (auto& p : vae->parameters()) p.set_requires_grad(false);
  } else {
    if (o.base.empty()) throw std::invalid_argument("sigma train " + o.stage + " needs --base (the ε model from `sigma train unet`)");
    base = load_base(o.base, device);
    vae = base.vae;
    scale = base.scale;
    vae_meta = base.ck.metadata;
  }

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
  auto data = encode_pool(vae, scale, pool, device);
  const auto empty_ids = torch::tensor(tokenizer.encode_padded("", 77), torch::kLong).to(device);

  // Trained parts.
  models::ClipTextModel clip = base.clip ? base.clip : models::ClipTextModel(shapes_clip(static_cast<int64_t>(tokenizer.vocab_size())));
  models::UNet unet = control ? base.unet : models::UNet(shapes_unet());
  controlnet::ControlNet cn{nullptr};
  clip->to(device);
  unet->to(device);
  if (!o.init.empty() && !control) {
    // Continue from an earlier run's exported weights (a fresh optimizer; the EMA starts there).
    const auto init = models::open_checkpoint(o.init);
    models::load_module(*unet, init.unet, "UNet of " + o.init, torch::kFloat32, device);
    if (!flow) models::load_module(*clip, init.text_encoders[0].weights, "text encoder of " + o.init, torch::kFloat32, device);
    std::fprintf(stderr, "%s: starting from %s\n", o.stage.c_str(), o.init.c_str());
  }
  std::vector<torch::nn::Module*> modules;
  std::vector<torch::Tensor> params;
  if (control) {
    cn = controlnet::ControlNet(shapes_controlnet());
    cn->to(device);
    torch::NoGradGuard no_grad;
    // Start from the ε UNet's encoder (Zhang et al. 2023); zero convs and the hint encoder's output start at 0.
    auto unet_params = unet->named_parameters();
    for (auto& p : cn->named_parameters())
      if (auto* src = unet_params.find(p.key())) p.value().copy_(*src);
    for (auto& p : cn->zero_convs->parameters()) p.zero_();
    for (auto& p : cn->middle_block_out->parameters()) p.zero_();
    for (auto& p : cn->input_hint_block[cn->input_hint_block->size() - 1]->parameters()) p.zero_();
    modules = {cn.get()};
    params = trainable(*cn);
  } else if (flow) {
    modules = {unet.get()};
    params = trainable(*unet);
  } else {
    modules = {unet.get(), clip.get()};
    params = trainable(*unet);
    for (auto& p : trainable(*clip)) params.push_back(p);
  }

  auto ms = samplers::ModelSampling::discrete(samplers::Prediction::eps);
  std::vector<double> ac = ms.alphas_cumprod();
  auto alphas = torch::tensor(ac, torch::kFloat64).to(torch::kFloat32).to(device);
  auto gen = at::detail::createCPUGenerator(o.seed ^ 0x5eed);
  const double dropout = control ? kControlCaptionDropout : kCaptionDropout;
  const int64_t steps_done = loop(run, modules, params, [&](int64_t) {
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

  auto meta = base_metadata(o.stage, o, steps_done);
  for (const char* k : {"sigma.vae_scaling_factor", "sigma.latent_rgb", "sigma.vae_heldout_psnr_db"})
    if (vae_meta.count(k)) meta[k] = vae_meta.at(k);
  const auto out = (run.dir / (o.stage == "unet" ? "sigma-shapes.safetensors"
                               : flow          ? "sigma-shapes-flow.safetensors"
                                               : "sigma-shapes-canny.safetensors"))
                       .string();
  if (control) {
    export_checkpoint(out, {{"control_model.", cn.get()}}, {}, meta);
  } else {
    meta["sigma.prediction"] = flow ? "flow" : "eps";
    if (flow) meta["sigma.flow_shift"] = "1";
    std::vector<std::pair<std::string, torch::Tensor>> extra;
    if (!flow) extra.emplace_back("alphas_cumprod", torch::tensor(ac, torch::kFloat64).to(torch::kFloat32));
    export_checkpoint(out, {{"model.diffusion_model.", unet.get()}, {"first_stage_model.", vae.get()},
                            {"cond_stage_model.transformer.", clip.get()}},
                      extra, meta);
  }
  // The tokenizer travels beside the checkpoint, where the loader looks for it.
  const fs::path tok_dir = fs::path(out).replace_extension(".tokenizer");
  if (!control) {
    fs::create_directories(tok_dir);
    for (const char* f : {"vocab.json", "merges.txt", "tokenizer_config.json"})
      fs::copy_file(run.dir / "tokenizer" / f, tok_dir / f, fs::copy_options::overwrite_existing);
  }
  return out;
}

}  // namespace sigma::app
