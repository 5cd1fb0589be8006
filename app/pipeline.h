// The generation pipeline: prompt -> conditioning; seed -> initial noise; the denoiser
// closure (CFG, ControlNet residuals, inpainting blend) -> solver -> VAE decode.
// Stateless apart from the Engine it reads; cancellation and progress come in as hooks.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "app/engine.h"
#include "app/parameters.h"
#include "app/request.h"
#include "app/vae_runner.h"
#include "imaging/image.h"

namespace sigma::app {


struct Progress {
  int step = 0, total = 0;          // steps done in this batch, of total
  int batch = 0, batches = 1;       // which of batch_count
  double sigma = 0;
  const torch::Tensor* denoised = nullptr;  // current estimate of the clean latents (for previews)
};

struct GeneratedImage {
  Image image;
  ImageRecord record;
  std::string parameters;                   // A1111 text of this image
  Request reproduce;                        // the request that makes exactly this image again
};

struct GenerateHooks {
  std::function<void(const Progress&)> on_progress;
  std::function<bool()> cancelled;          // polled at every step; true stops after that step
  torch::Tensor initial_noise;              // tests/reference runs: use instead of the seeded draw
  std::function<void(const GeneratedImage&)> on_image;  // each image as soon as it is decoded
};

struct GenerateResult {
  std::vector<GeneratedImage> images;
  Request request;                          // as resolved: seed, size
  bool cancelled = false;
  torch::Tensor latents;                    // the last batch's final latents, before decoding
};

// Resolves -1 seeds and 0 sizes against the engine; validates.
Request resolve_request(const Request& r, const Engine& engine);

// The σ list the request asks for (img2img: the last `steps` of a longer run, ComfyUI's rule).
std::vector<double> request_sigmas(const Request& r, const Engine& engine);

GenerateResult generate(Engine& engine, const Request& request, const GenerateHooks& hooks = {});

// Initial noise of a batch by the seed conventions (drawn on the CPU, so CPU and GPU agree).
torch::Tensor seeded_noise(const std::vector<int64_t>& shape, int64_t seed, const std::string& seed_mode);

// Latents -> RGB approximation without the VAE, for live previews: [1,C,h,w] -> image of h x w.
Image preview_image(const Engine& engine, const torch::Tensor& latents);

// [B,3,H,W] in [-1,1] -> images (rounded to 8 bit)
std::vector<Image> tensor_to_images(const torch::Tensor& x);
// image -> [1,C,H,W] float in [0,1]
torch::Tensor image_to_tensor(const Image& img);

}  // namespace sigma::app
