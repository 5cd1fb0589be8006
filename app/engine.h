// A loaded model: the checkpoint's networks on a device, its tokenizer, and how its
// outputs become a denoiser. Loaded once, then only read (whisper.cpp's context/state
// split): every generation keeps its own state, so one Engine serves many requests.
#pragma once

#include <torch/torch.h>

#include <map>
#include <memory>
#include <istream>
#include <future>
#include <mutex>
#include <optional>
#include <string>

#include "app/request.h"
#include "controlnet/controlnet.h"
#include "models/families/checkpoint.h"
#include "models/families/loader.h"
#include "models/runtime/cuda_graph.h"
#include "models/runtime/streaming.h"
#include "models/text/clip_tokenizer.h"
#include "samplers/model_sampling.h"
#include "samplers/schedules.h"

namespace sigma::app {

struct EngineAdapters;  // app/adapters.h

// What identifies a loaded model: two requests with equal specs share one Engine.
struct ModelSpec {
  std::string model, tokenizer, vae, prediction;
  std::string device = "cpu";
  torch::ScalarType dtype = torch::kFloat32;
  bool lowvram = false;  // CUDA: weights in host memory, on the GPU only while used (models/runtime/streaming.h)
  bool operator==(const ModelSpec&) const = default;
};

// The request's model fields resolved: default model, device "auto", dtype "auto".
ModelSpec model_spec(const Request& r);
torch::Device parse_device(const std::string& name);
// The --dtype spelling of a dtype: fp32 | fp16 | bf16.
std::string dtype_flag(torch::ScalarType t);

// assets/ of the source tree or beside the installed binary ($SIGMA_ASSETS overrides).
std::string assets_dir();
std::string default_model_path();

class Engine {
 public:
  // Throws models::ModelLoadError / std::invalid_argument with the file and the fix.
  static std::shared_ptr<Engine> load(const ModelSpec& spec);

  const ModelSpec& spec() const { return spec_; }
  const models::Checkpoint& checkpoint() const { return checkpoint_; }
  // Tokenizer of text encoder i (SDXL's encoder 2 pads with "!" = id 0).
  const models::ClipTokenizer& tokenizer(size_t i = 0) const { return i == 0 ? *tokenizer_ : *tokenizer_2_; }
  const samplers::ModelSampling& sampling() const { return *sampling_; }
  // diffusers-style spacings follow the model's scheduler config (SD: steps_offset 1, set_alpha_to_one off).
  const samplers::ScheduleOptions& schedule_options() const { return schedule_options_; }
  torch::Device device() const { return device_; }
  torch::ScalarType dtype() const { return spec_.dtype; }
  int64_t native_size() const { return native_size_; }
  double scaling_factor() const { return vae_->config.scaling_factor; }
  int64_t latent_channels() const { return vae_->config.z_channels; }
  int64_t downscale() const { return vae_->config.downscale(); }
  std::string name() const;             // file or folder name without extension
  std::string hash() const;             // AUTOMATIC1111's short hash: first 10 hex of SHA-256 (cached)
  const torch::Tensor& latent_rgb() const { return latent_rgb_; }  // [C,3] factors for previews

  // The networks. Loaded modules are never modified after load (eval, no grad).
  models::ClipTextModel& clip() { return clip_; }
  // Text encoder i of the family's description (0: clip(), 1: SDXL's OpenCLIP-bigG).
  models::ClipTextModel& text_encoder(size_t i) { return i == 0 ? clip_ : clip_2_; }
  const models::FamilyDescription& family() const { return checkpoint_.description; }
  models::UNet& unet() { return unet_; }
  // One UNet call as the sampler makes it: on CUDA through a CUDA graph captured once per
  // input signature (models/runtime/cuda_graph.h), eager with ControlNet residuals or on the CPU.
  torch::Tensor unet_forward(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& context,
                             const models::ControlResiduals* control = nullptr, const torch::Tensor& y = {});
  // Text encoder i on token ids [n, 77] (on the device) as the conditioning calls it: the
  // hidden state at clip skip `skip` and, with `pooled`, the pooled vector (else undefined).
  // On CUDA through a CUDA graph per signature: the encoder's ~200 small kernels take longer
  // to launch than to run. Eager with textual-inversion vectors (their ids are range-checked
  // on the host, which no capture allows) and with --lowvram.
  std::pair<torch::Tensor, torch::Tensor> encode_tokens(size_t i, const torch::Tensor& ids, int64_t skip, bool final_norm,
                                                        bool pooled, const torch::Tensor& extra = {});
  models::AutoencoderKL& vae() { return vae_; }
  // --lowvram: while the returned guard lives, `module` (the text encoder, the VAE) is on the
  // device; without --lowvram it always is, and the guard does nothing.
  std::unique_ptr<models::OnDevice> visit(torch::nn::Module& module) const;
  bool lowvram() const { return spec_.lowvram && device_.is_cuda(); }
  // The same VAE in float32, read from the file on first use and kept: the fallback when
  // a float16 decode overflows (SDXL's original VAE does). Equals vae() when that is float32.
  models::AutoencoderKL& vae_float32();
  // A ControlNet for this model, loaded on first use and kept; throws if it does not fit.
  controlnet::ControlNet controlnet(const std::string& path);

 private:
  Engine() = default;
  ModelSpec spec_;
  torch::Device device_ = torch::kCPU;
  models::Checkpoint checkpoint_;
  std::optional<models::ClipTokenizer> tokenizer_, tokenizer_2_;
  std::optional<samplers::ModelSampling> sampling_;
  samplers::ScheduleOptions schedule_options_;
  models::ClipTextModel clip_{nullptr}, clip_2_{nullptr};
  models::UNet unet_{nullptr};
  models::AutoencoderKL vae_{nullptr};
  models::AutoencoderKL vae_float32_{nullptr};
  int64_t native_size_ = 512;
  torch::Tensor latent_rgb_;
  mutable std::mutex mutex_;
  std::shared_future<std::string> hash_;  // started at load, in the background: it never delays the first image
  models::GraphCache unet_graphs_;
  models::GraphCache text_graphs_{4};  // SDXL's two encoders, a prompt and a longer one
  std::map<std::string, controlnet::ControlNet> controlnets_;
  // LoRA patcher and adapter caches (app/adapters.h), created on first use.
  friend EngineAdapters& engine_adapters(Engine& engine);
  std::shared_ptr<EngineAdapters> adapters_;
};

// SHA-256 of a file, hex; cached by path, size and modification time under the user's cache folder.
std::string file_sha256(const std::string& path);
// SHA-256 of what is left of `in` (from its current position to the end), hex.
std::string sha256_hex(std::istream& in);

}  // namespace sigma::app
