// The trainer's stages (see train.h). Each stage: build or load its networks, make the
// sample pool, run the loop with AdamW + EMA (+ bf16 autocast on CUDA), log, checkpoint,
// and export the EMA weights as an SD single-file checkpoint.
#include "app/training/train.h"

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "app/engine.h"
#include "app/training/shape_vocab.h"
#include "app/training/shape_world.h"
#include "app/training/train_presets.h"
#include "app/training/train_util.h"
#include "models/families/loader.h"
#include "models/runtime/torch_compat.h"
#include "samplers/model_sampling.h"

namespace fs = std::filesystem;

namespace sigma::app {
namespace {
using namespace training;
namespace F = torch::nn::functional;


constexpr int64_t kHeldOut = 512;  // VAE PSNR is measured on seeds after the pool

// ---------------------------------------------------------------- VAE
std::string train_vae(Run& run) {
  auto tokenizer = shapes_tokenizer(run.dir / "tokenizer");
  std::fprintf(stderr, "vae: generating %lld samples\n", static_cast<long long>(run.o.pool));
  auto pool = make_pool(run.o.seed, run.o.pool, tokenizer, run.o.threads);
  auto images = pool.images.to(run.device);
  models::AutoencoderKL vae(shapes_vae());
  vae->to(run.device);
  auto gen = at::detail::createCPUGenerator(run.o.seed);
  const int64_t steps_done = loop(run, {vae.get()}, trainable(*vae), [&](int64_t) {
    auto idx = torch::randint(pool.size(), {run.o.batch}, gen).to(run.device);
    auto x = to_unit(images.index_select(0, idx));
    auto [mean, logvar] = vae->encode_moments(x);
    auto z = mean + torch::exp(0.5 * logvar) * torch::randn_like(mean);
    auto rec = vae->decode(z).to(torch::kFloat32);
    auto kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).to(torch::kFloat32).sum() / x.size(0);
    return F::l1_loss(rec, x) + F::mse_loss(rec, x) + 1e-6 * kl;
  }, "vae");

  // Held-out quality, the latent scale (1/std, as SD's 0.18215 was chosen) and the preview factors.
  torch::NoGradGuard no_grad;
  vae->eval();
  auto held = make_pool(run.o.seed + static_cast<uint64_t>(run.o.pool), kHeldOut, tokenizer, run.o.threads).images;
  std::vector<torch::Tensor> means, recs;
  for (int64_t i = 0; i < kHeldOut; i += 64) {
    auto x = to_unit(held.narrow(0, i, 64).to(run.device));
    auto mean = vae->encode_moments(x).first;
    means.push_back(mean);
    recs.push_back(vae->decode(mean).clamp(-1, 1));
  }
  auto mean = torch::cat(means), rec = torch::cat(recs);
  const double held_psnr = psnr(rec.cpu(), to_unit(held));
  const double scale = 1.0 / mean.std().item<double>();
  // latent [N,4,16,16] -> 8x8-pooled RGB [N,3,16,16]: least squares for the 4x3 preview matrix.
  auto rgb = F::avg_pool2d(to_unit(held).to(run.device), F::AvgPool2dFuncOptions(8));
  auto A = (mean * scale).permute({0, 2, 3, 1}).reshape({-1, 4}).cpu().to(torch::kFloat64);
  auto B = rgb.permute({0, 2, 3, 1}).reshape({-1, 3}).cpu().to(torch::kFloat64);
  auto factors = torch::linalg_solve(A.t().matmul(A), A.t().matmul(B)).to(torch::kFloat32).contiguous();
  std::string rgb_json = "[";
  for (int64_t i = 0; i < 12; ++i) rgb_json += (i ? "," : "") + std::to_string(factors.data_ptr<float>()[i]);
  rgb_json += "]";
  std::fprintf(stderr, "vae: held-out PSNR %.2f dB on %lld images, latent scale %.5f\n", held_psnr,
               static_cast<long long>(kHeldOut), scale);
  auto meta = base_metadata("vae", run.o, steps_done);
  meta["sigma.vae_scaling_factor"] = std::to_string(scale);
  meta["sigma.latent_rgb"] = rgb_json;
  meta["sigma.vae_heldout_psnr_db"] = std::to_string(held_psnr);
  const auto out = (run.dir / "vae.safetensors").string();
  export_checkpoint(out, {{"first_stage_model.", vae.get()}}, {}, meta);
  return out;
}

}  // namespace

std::string train_diffusion(const TrainOptions& o, torch::Device device, bool amp);  // train_diffusion.cpp

std::string train(const TrainOptions& o) {
  const std::string dev = o.device == "auto" ? (compat::cuda_available() ? "cuda" : "cpu") : o.device;
  const auto device = parse_device(dev);
  const bool amp = o.amp && device.is_cuda();
  if (device.is_cuda()) compat::set_allow_tf32(true);
  ShapeWorldOptions scenes;  // checked before anything is made; the rule lives in shape_world
  scenes.min_objects = o.min_objects;
  scenes.max_objects = o.max_objects;
  try {
    check_options(scenes);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("--min-objects/--max-objects: ") + e.what());
  }
  fs::create_directories(o.out_dir);
  std::fprintf(stderr, "sigma train %s on %s%s: %lld steps of batch %lld, lr %g\n", o.stage.c_str(), dev.c_str(),
               amp ? " (bf16 autocast)" : "", static_cast<long long>(o.steps), static_cast<long long>(o.batch), o.lr);
  if (o.stage == "vae") {
    Run run{o, device, amp, o.out_dir};
    return train_vae(run);
  }
  if (o.stage == "unet" || o.stage == "flow" || o.stage == "controlnet") return train_diffusion(o, device, amp);
  throw std::invalid_argument("unknown training stage '" + o.stage + "' (known: vae, unet, flow, controlnet)");
}

}  // namespace sigma::app
