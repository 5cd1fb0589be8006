#include "app/training/train_util.h"

#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <thread>

#include "app/training/shape_vocab.h"
#include "app/training/shape_world.h"
#include "models/io/safetensors.h"
#include "models/runtime/torch_compat.h"

namespace fs = std::filesystem;
namespace sigma::app::training {

ShapePool make_pool(uint64_t first_seed, int64_t count, const models::ClipTokenizer& tokenizer, int threads,
                    bool training_captions, int min_objects, int max_objects) {
  ShapePool pool;
  pool.first_seed = first_seed;
  pool.images = torch::empty({count, 3, kShapeWorldSize, kShapeWorldSize}, torch::kUInt8);
  pool.ids = torch::empty({count, 77}, torch::kLong);
  pool.captions.resize(static_cast<size_t>(count));
  ShapeWorldOptions options;
  if (training_captions) options.caption = CaptionStyle::training();
  options.min_objects = min_objects;
  options.max_objects = max_objects;
  parallel_for(count, threads, [&](int64_t i) {
    auto s = generate(first_seed + static_cast<uint64_t>(i), options);
    // HWC -> CHW into the pool's row
    auto hwc = torch::from_blob(s.image.pixels.data(), {s.image.height, s.image.width, 3}, torch::kUInt8);
    pool.images[i].copy_(hwc.permute({2, 0, 1}));
    const auto ids = tokenizer.encode_padded(s.caption, 77);
    std::copy(ids.begin(), ids.end(), pool.ids.data_ptr<int64_t>() + i * 77);
    pool.captions[static_cast<size_t>(i)] = std::move(s.caption);
  });
  return pool;
}

void parallel_for(int64_t count, int threads, const std::function<void(int64_t)>& fn) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::atomic<int64_t> next{0};
  std::mutex failed_mutex;
  std::exception_ptr failed;  // the first error, rethrown here: an exception leaving a thread would abort
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t)
    workers.emplace_back([&] {
      try {
        for (int64_t i; (i = next++) < count;) fn(i);
      } catch (...) {
        next = count;  // the other workers stop after their current item
        std::lock_guard<std::mutex> lock(failed_mutex);
        if (!failed) failed = std::current_exception();
      }
    });
  for (auto& w : workers) w.join();
  if (failed) std::rethrow_exception(failed);
}

AdamW::AdamW(std::vector<torch::Tensor> params, double weight_decay, double beta1, double beta2, double eps)
    : params_(std::move(params)), wd_(weight_decay), b1_(beta1), b2_(beta2), eps_(eps) {
  for (const auto& p : params_) {
    m_.push_back(torch::zeros_like(p));
    v_.push_back(torch::zeros_like(p));
  }
}

void AdamW::zero_grad() {
  for (auto& p : params_)
    if (p.grad().defined()) p.mutable_grad().zero_();
}

torch::Tensor AdamW::clip_grad_norm(double max_norm) {
  std::vector<torch::Tensor> grads;
  for (auto& p : params_)
    if (p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return torch::zeros({});
  auto total = torch::stack(at::_foreach_norm(grads, 2)).norm();
  // Scale by min(1, max/‖g‖) on the device: reading the norm back every step would stall the GPU.
  compat::foreach_mul(grads, (max_norm / (total + 1e-6)).clamp_max(1.0));
  return total;
}

void AdamW::step(double lr) {
  torch::NoGradGuard no_grad;
  ++t_;
  std::vector<torch::Tensor> p, g, m, v;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!params_[i].grad().defined()) continue;
    p.push_back(params_[i]);
    g.push_back(params_[i].grad());
    m.push_back(m_[i]);
    v.push_back(v_[i]);
  }
  if (p.empty()) return;
  const double bc1 = 1 - std::pow(b1_, static_cast<double>(t_)), bc2 = 1 - std::pow(b2_, static_cast<double>(t_));
  at::_foreach_mul_(p, 1 - lr * wd_);                 // decoupled weight decay
  at::_foreach_mul_(m, b1_);
  at::_foreach_add_(m, g, 1 - b1_);                   // m = β1 m + (1−β1) g
  at::_foreach_mul_(v, b2_);
  at::_foreach_addcmul_(v, g, g, 1 - b2_);            // v = β2 v + (1−β2) g²
  auto denom = at::_foreach_sqrt(v);
  at::_foreach_div_(denom, std::sqrt(bc2));
  at::_foreach_add_(denom, eps_);                      // √v̂ + ε
  at::_foreach_addcdiv_(p, m, denom, -lr / bc1);       // p −= lr · m̂ / (√v̂ + ε)
}

void AdamW::save(torch::serialize::OutputArchive& a) const {
  a.write("adam.t", torch::tensor(t_));
  for (size_t i = 0; i < m_.size(); ++i) {
    a.write("adam.m." + std::to_string(i), m_[i]);
    a.write("adam.v." + std::to_string(i), v_[i]);
  }
}

void AdamW::load(torch::serialize::InputArchive& a) {
  torch::Tensor t;
  a.read("adam.t", t);
  t_ = t.item<int64_t>();
  for (size_t i = 0; i < m_.size(); ++i) {
    torch::Tensor m, v;
    a.read("adam.m." + std::to_string(i), m);
    a.read("adam.v." + std::to_string(i), v);
    m_[i].copy_(m);
    v_[i].copy_(v);
  }
}

Ema::Ema(const std::vector<torch::Tensor>& params, double decay) : decay_(decay) {
  for (const auto& p : params) shadow_.push_back(p.detach().clone());
}

void Ema::update(const std::vector<torch::Tensor>& params, int64_t step) {
  torch::NoGradGuard no_grad;
  // Warm-up as in common EMA implementations: short runs are not dominated by the init.
  const double d = std::min(decay_, (1.0 + static_cast<double>(step)) / (10.0 + static_cast<double>(step)));
  std::vector<torch::Tensor> detached;
  for (const auto& p : params) detached.push_back(p.detach());
  at::_foreach_mul_(shadow_, d);
  at::_foreach_add_(shadow_, detached, 1 - d);
}

void Ema::copy_to(const std::vector<torch::Tensor>& params) const {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params.size(); ++i) params[i].copy_(shadow_[i]);
}

std::vector<torch::Tensor> trainable(torch::nn::Module& m) {
  std::vector<torch::Tensor> out;
  for (auto& p : m.parameters())
    if (p.requires_grad()) out.push_back(p);
  return out;
}

LossLog::LossLog(const std::string& path, const std::string& header, bool append)
    : out_(path, append ? std::ios::app : std::ios::trunc) {
  if (!append) out_ << header << "\n";
}

void LossLog::write(int64_t step, double seconds, const std::vector<double>& values) {
  out_ << step << "," << seconds;
  for (double v : values) out_ << "," << v;
  out_ << "\n";
  out_.flush();
}

void save_state(const std::string& path, const std::vector<torch::nn::Module*>& modules, const AdamW& opt, Ema& ema,
                int64_t step) {
  torch::serialize::OutputArchive a;
  for (size_t i = 0; i < modules.size(); ++i)
    for (const auto& p : modules[i]->named_parameters()) a.write("m" + std::to_string(i) + "." + p.key(), p.value());
  for (size_t i = 0; i < ema.shadow().size(); ++i) a.write("ema." + std::to_string(i), ema.shadow()[i]);
  opt.save(a);
  a.write("step", torch::tensor(step));
  const std::string tmp = path + ".tmp";
  a.save_to(tmp);
  std::filesystem::rename(tmp, path);
}

int64_t load_state(const std::string& path, const std::vector<torch::nn::Module*>& modules, AdamW& opt, Ema& ema) {
  torch::serialize::InputArchive a;
  a.load_from(path);
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < modules.size(); ++i)
    for (auto& p : modules[i]->named_parameters()) {
      torch::Tensor t;
      a.read("m" + std::to_string(i) + "." + p.key(), t);
      p.value().copy_(t);
    }
  for (size_t i = 0; i < ema.shadow().size(); ++i) {
    torch::Tensor t;
    a.read("ema." + std::to_string(i), t);
    ema.shadow()[i].copy_(t);
  }
  opt.load(a);
  torch::Tensor step;
  a.read("step", step);
  return step.item<int64_t>();
}

void export_checkpoint(const std::string& path, const std::vector<std::pair<std::string, torch::nn::Module*>>& parts,
                       const std::vector<std::pair<std::string, torch::Tensor>>& extra,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& [prefix, m] : parts) {
    for (const auto& p : m->named_parameters()) tensors.emplace_back(prefix + p.key(), p.value().detach().to(torch::kCPU, torch::kFloat16));
    for (const auto& b : m->named_buffers()) tensors.emplace_back(prefix + b.key(), b.value().detach().to(torch::kCPU));
  }
  for (const auto& e : extra) tensors.push_back(e);
  models::save_safetensors(path, tensors, metadata);
}

double lr_at(int64_t step, double progress, int64_t warmup, double base) {
  if (step < warmup) return base * static_cast<double>(step + 1) / static_cast<double>(warmup);
  return base * (0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI * std::min(1.0, progress))));
}

Autocast::Autocast(bool enabled) : enabled_(enabled) {
  if (enabled_) compat::set_cuda_autocast(true, torch::kBFloat16);
}
Autocast::~Autocast() {
  if (enabled_) compat::set_cuda_autocast(false);
}


models::ClipTokenizer shapes_tokenizer(const fs::path& dir) {
  write_shape_vocab(dir.string());
  return models::ClipTokenizer::from_dir(dir.string());
}

torch::Tensor to_unit(const torch::Tensor& u8) { return u8.to(torch::kFloat32) / 127.5 - 1.0; }

// 10·log10(1/MSE) on [0,1] images.
double psnr(const torch::Tensor& a, const torch::Tensor& b) {
  const double mse = ((a - b) / 2).pow(2).mean().item<double>();
  return 10 * std::log10(1.0 / std::max(mse, 1e-12));
}

int64_t loop(Run& run, const std::vector<torch::nn::Module*>& modules, std::vector<torch::Tensor> params,
          const std::function<torch::Tensor(int64_t)>& loss_fn, const std::string& name) {
  AdamW opt(params, run.o.weight_decay, 0.9, 0.99);
  Ema ema(params, run.o.ema);
  const auto state = (run.dir / (name + ".state.pt")).string();
  int64_t step = 0;
  if (run.o.resume && fs::exists(state)) {
    step = load_state(state, modules, opt, ema);
    std::fprintf(stderr, "%s: resumed at step %lld\n", name.c_str(), static_cast<long long>(step));
  }
  LossLog log((run.dir / (name + ".loss.csv")).string(), "step,seconds,loss,lr,grad_norm", step > 0);
  torch::Tensor running = torch::zeros({}, torch::TensorOptions().device(run.device));  // summed on the device
  torch::Tensor gn;
  int64_t seen = 0;
  // Progress through the schedule: by steps, or by time when a time budget is given
  // (a GPU lease is measured in minutes), whichever is further along.
  const auto loop_start = std::chrono::steady_clock::now();
  auto progress = [&](int64_t s) {
    double p = static_cast<double>(s) / static_cast<double>(run.o.steps);
    if (run.o.max_seconds > 0)
      p = std::max(p, std::chrono::duration<double>(std::chrono::steady_clock::now() - loop_start).count() / run.o.max_seconds);
    return p;
  };
  for (; step < run.o.steps && progress(step) < 1.0; ++step) {
    const double lr = lr_at(step, progress(step), run.o.warmup, run.o.lr);
    opt.zero_grad();
    torch::Tensor loss;
    {
      Autocast autocast(run.amp);
      loss = loss_fn(step);
    }
    loss.backward();
    gn = opt.clip_grad_norm(1.0);
    opt.step(lr);
    ema.update(params, step);
    running += loss.detach().to(torch::kFloat32);
    ++seen;
    if ((step + 1) % run.o.log_every == 0 || step + 1 == run.o.steps || progress(step + 1) >= 1.0) {
      const double mean = running.item<double>() / static_cast<double>(seen);
      const double g = gn.item<double>();
      log.write(step + 1, run.seconds(), {mean, lr, g});
      std::fprintf(stderr, "%s step %lld/%lld  loss %.5f  lr %.2e  |g| %.3f  %.0fs\n", name.c_str(),
                   static_cast<long long>(step + 1), static_cast<long long>(run.o.steps), mean, lr, g, run.seconds());
      running.zero_();
      seen = 0;
    }
    if ((step + 1) % run.o.save_every == 0) save_state(state, modules, opt, ema, step + 1);
  }
  save_state(state, modules, opt, ema, step);
  std::fprintf(stderr, "%s: finished after %lld steps, %.0f s\n", name.c_str(), static_cast<long long>(step), run.seconds());
  ema.copy_to(params);  // export the averaged weights
  return step;
}

std::map<std::string, std::string> base_metadata(const std::string& stage, const TrainOptions& o, int64_t steps_done) {
  return {{"sigma.native_size", std::to_string(kShapeWorldSize)},
          {"sigma.trained_by", "sigma train " + stage},
          {"sigma.train_steps", std::to_string(steps_done)},
          {"sigma.train_batch", std::to_string(o.batch)},
          {"modelspec.title", "Sigma Studio shapes (" + stage + ")"}};
}

}  // namespace sigma::app::training
