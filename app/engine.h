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
#include <vector>

#include "app/request.h"
#include "controlnet/controlnet.h"
#include "models/diffusion/diffusion_model.h"
#include "models/families/checkpoint.h"
#include "models/families/loader.h"
#include "models/runtime/cuda_graph.h"
#include "models/runtime/streaming.h"
#include "models/text/clip_tokenizer.h"
#include "models/text/t5_tokenizer.h"
#include "models/vae/latent_format.h"
#include "samplers/model_sampling.h"
#include "samplers/schedules.h"

namespace sigma::app {

struct EngineAdapters;  // app/adapters.h

// What identifies a loaded model: two requests with equal specs share one Engine.
struct ModelSpec {
  std::string model, tokenizer, vae, prediction;
  std::string clip_l, t5xxl, t5_tokenizer;  // a Flux transformer's separate parts (Request's fields)
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
  // The model's sampling (parameterization and training schedule) for a request. The SD
  // families have one, chosen at load; a family whose schedule depends on the image (Flux
  // shifts σ by its token count) derives it from the request's size here. The reference
  // stays valid as long as the Engine.
  const samplers::ModelSampling& sampling(const Request& r) const;
  // diffusers-style spacings follow the model's scheduler config (SD: steps_offset 1, set_alpha_to_one off).
  const samplers::ScheduleOptions& schedule_options() const { return schedule_options_; }
  torch::Device device() const { return device_; }
  torch::ScalarType dtype() const { return spec_.dtype; }
  int64_t native_size() const { return native_size_; }
  // Canvas sizes step by this (the VAE's factor times the network's patch: SD 8, Flux 16).
  int64_t size_multiple() const { return family().size_multiple; }
  // The request's defaults for this model (Request: steps 0, cfg < 0, empty sampler/scheduler):
  // the family's, and the distilled variant's step count (Flux schnell: 4).
  int64_t default_steps() const;
  // Whether the network reads a distilled guidance value (Flux dev's guidance_in).
  bool takes_guidance() const { return flux_ && flux_->config.guidance_embed; }
  // The family's latents: channels, downscale, scale and shift, preview colours.
  const models::LatentFormat& latent_format() const { return latent_format_; }
  std::string name() const;             // file or folder name without extension
  std::string hash() const;             // AUTOMATIC1111's short hash: first 10 hex of SHA-256 (cached)

  // The networks. Loaded modules are never modified after load (eval, no grad).
  const models::FamilyDescription& family() const { return checkpoint_.description; }
  // The family's text encoders in its order (family().text_encoders: SD 1.x/2.x one CLIP,
  // SDXL CLIP-L then OpenCLIP-bigG), each with its tokenizer (SDXL's second pads with "!" = id 0).
  // Flux: CLIP-L (pooled only) then T5-XXL; text_encoder(i) / tokenizer(i) are the CLIPs
  // (a T5's are t5(i) / t5_tokenizer(i); family().text_encoders[i].network says which).
  size_t text_encoder_count() const { return text_encoders_.size(); }
  models::ClipTextModel& text_encoder(size_t i) { return text_encoders_.at(i).model; }
  const models::ClipTokenizer& tokenizer(size_t i = 0) const { return *text_encoders_.at(i).tokenizer; }
  models::T5Encoder& t5(size_t i) { return text_encoders_.at(i).t5; }
  const models::T5Tokenizer& t5_tokenizer(size_t i) const { return *text_encoders_.at(i).t5_tokenizer; }
  // The denoising network, whichever the family has (models/diffusion/diffusion_model.h).
  models::DiffusionModel& diffusion_model() { return *diffusion_; }
  // Its weights as a module that shares the Engine's ownership (the LoRA patcher keeps one).
  std::shared_ptr<torch::nn::Module> diffusion_module() { return {diffusion_, &diffusion_->module()}; }
  // One network call as the sampler makes it: on CUDA through a CUDA graph captured once per
  // input signature (models/runtime/cuda_graph.h); eager with ControlNet residuals, with
  // streamed weights (--lowvram) or on the CPU.
  torch::Tensor denoise(const torch::Tensor& x, const torch::Tensor& t, const models::DiffusionConditioning& c);
  // Forgets the network's captured graphs: adapters changed weights that are patched per call
  // (fp8 weights, models/runtime/weight_patches.h), which a graph captured before would replay without.
  void forget_network_graphs() { network_graphs_.clear(); }
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
  std::optional<samplers::ModelSampling> sampling_;
  // Flux dev: one shifted flow schedule per image token count (Engine::sampling), kept.
  mutable std::map<int64_t, samplers::ModelSampling> shifted_;
  samplers::ScheduleOptions schedule_options_;
  struct TextEncoder {
    models::ClipTextModel model{nullptr};
    std::optional<models::ClipTokenizer> tokenizer;
    models::T5Encoder t5{nullptr};
    std::optional<models::T5Tokenizer> t5_tokenizer;
  };
  std::vector<TextEncoder> text_encoders_;
  models::UNet unet_{nullptr};  // the SD families' network, or
  models::FluxTransformer flux_{nullptr};  // Flux's; diffusion_ is the one loaded, as the interface
  std::shared_ptr<models::DiffusionModel> diffusion_;
  models::AutoencoderKL vae_{nullptr};
  models::AutoencoderKL vae_float32_{nullptr};
  int64_t native_size_ = 512;
  models::LatentFormat latent_format_;
  mutable std::mutex mutex_;
  std::shared_future<std::string> hash_;  // started at load, in the background: it never delays the first image
  models::GraphCache network_graphs_;
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
