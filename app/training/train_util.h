// The trainer's machinery, shared by every stage: the shape-world sample pool, AdamW and
// EMA over all parameters at once (multi-tensor ops: a small UNet has ~500 parameter
// tensors, and one kernel per tensor per op would dominate a GPU step), the loss log,
// resumable training state, and export to SD single-file checkpoints.
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "app/training/train.h"
#include "models/text/clip_tokenizer.h"

namespace sigma::app::training {

// fn(i) for i in [0, count) on `threads` threads (0: all cores), items handed out one at a time.
void parallel_for(int64_t count, int threads, const std::function<void(int64_t)>& fn);

// Distinct shape-world samples, made once per run by all cores.
struct ShapePool {
  torch::Tensor images;   // [N,3,128,128] uint8
  torch::Tensor ids;      // [N,77] int64, tokenized captions
  std::vector<std::string> captions;
  uint64_t first_seed = 0;
  int64_t size() const { return images.size(0); }
};
ShapePool make_pool(uint64_t first_seed, int64_t count, const models::ClipTokenizer& tokenizer, int threads,
                    bool training_captions = true, int min_objects = 1, int max_objects = 3);

// Decoupled weight decay Adam (Loshchilov & Hutter 2019) over a list of tensors.
class AdamW {
 public:
  AdamW(std::vector<torch::Tensor> params, double weight_decay, double beta1 = 0.9, double beta2 = 0.999,
        double eps = 1e-8);
  void step(double lr);
  void zero_grad();
  torch::Tensor clip_grad_norm(double max_norm);  // the norm before clipping (on the device: no sync)
  void save(torch::serialize::OutputArchive& a) const;
  void load(torch::serialize::InputArchive& a);

 private:
  std::vector<torch::Tensor> params_, m_, v_;
  double wd_, b1_, b2_, eps_;
  int64_t t_ = 0;
};

// Exponential moving average of parameters (the weights that are exported).
class Ema {
 public:
  Ema(const std::vector<torch::Tensor>& params, double decay);
  void update(const std::vector<torch::Tensor>& params, int64_t step);
  void copy_to(const std::vector<torch::Tensor>& params) const;
  std::vector<torch::Tensor>& shadow() { return shadow_; }

 private:
  std::vector<torch::Tensor> shadow_;
  double decay_;
};

std::vector<torch::Tensor> trainable(torch::nn::Module& m);

// step,seconds,loss[,extra...] lines; appends when resuming.
class LossLog {
 public:
  LossLog(const std::string& path, const std::string& header, bool append);
  void write(int64_t step, double seconds, const std::vector<double>& values);

 private:
  std::ofstream out_;
};

// Saves/loads modules' parameters, the optimizer, the EMA and the step in one archive.
void save_state(const std::string& path, const std::vector<torch::nn::Module*>& modules, const AdamW& opt, Ema& ema,
                int64_t step);
int64_t load_state(const std::string& path, const std::vector<torch::nn::Module*>& modules, AdamW& opt, Ema& ema);

// Parameters and buffers of each module under its checkpoint prefix, as float16, plus
// `extra` tensors as given; written atomically.
void export_checkpoint(const std::string& path, const std::vector<std::pair<std::string, torch::nn::Module*>>& parts,
                       const std::vector<std::pair<std::string, torch::Tensor>>& extra,
                       const std::map<std::string, std::string>& metadata);

// Learning rate: linear warm-up, then cosine decay to 10% over `progress` in [0,1].
double lr_at(int64_t step, double progress, int64_t warmup, double base);

// bf16 autocast on CUDA for the scope (no-op elsewhere).
class Autocast {
 public:
  explicit Autocast(bool enabled);
  ~Autocast();

 private:
  bool enabled_;
};

// One stage's run: its options, device, and where its files go.
struct Run {
  const TrainOptions& o;
  torch::Device device;
  bool amp;
  std::filesystem::path dir;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  double seconds() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); }
};

// The loop every stage shares: AdamW (warm-up + cosine), gradient clipping at 1, EMA,
// bf16 autocast, a loss log and resumable state in run.dir/<name>.*; `loss_fn(step)`
// returns the batch loss. On return the parameters hold the EMA weights; returns the steps done.
int64_t loop(Run& run, const std::vector<torch::nn::Module*>& modules, std::vector<torch::Tensor> params,
          const std::function<torch::Tensor(int64_t)>& loss_fn, const std::string& name);

std::map<std::string, std::string> base_metadata(const std::string& stage, const TrainOptions& o, int64_t steps_done);
// The shape world's CLIP vocabulary, written into `dir` and loaded back.
models::ClipTokenizer shapes_tokenizer(const std::filesystem::path& dir);
torch::Tensor to_unit(const torch::Tensor& u8);                 // uint8 [0,255] -> float [-1,1]
double psnr(const torch::Tensor& a, const torch::Tensor& b);    // of [-1,1] images, on the [0,1] scale

}  // namespace sigma::app::training
