// One interface for every denoising network (the UNet of SD 1.x/2.x/SDXL now, the flow
// transformers next): the pipeline calls it with the latent, the network's time and one
// conditioning struct that holds whatever a family needs, and never learns which network
// runs. The sampler layer turns the raw output into D(x; σ) (samplers/model_sampling.h).
#pragma once

#include <torch/torch.h>

#include <vector>

namespace sigma::models {

// Residuals a ControlNet hands to the network: one per input block, and one for the middle block.
struct ControlResiduals {
  std::vector<torch::Tensor> down;
  torch::Tensor mid;
  bool empty() const { return down.empty() && !mid.defined(); }
};

// What a network is given besides x and t, for one call (all on the network's device).
struct DiffusionConditioning {
  torch::Tensor context;  // [B, tokens, width]: the text encoders' states (cross-attention)
  torch::Tensor y;        // [B, width]: a vector input (SDXL: label_emb's [pooled, Fourier(time ids)]; Flux: CLIP's pooled), else undefined
  torch::Tensor guidance; // [B]: a distilled guidance value (Flux dev's guidance_in, e.g. 3.5), else undefined
  const ControlResiduals* control = nullptr;  // ControlNet residuals, or none
};

class DiffusionModel {
 public:
  virtual ~DiffusionModel() = default;
  // x [B, C, H, W] and t [B] (the network's time, c_noise) -> the network's raw output F.
  virtual torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t, const DiffusionConditioning& c) = 0;
  // The network as a module: its weights (the LoRA patcher, channels-last, dtype).
  virtual torch::nn::Module& module() = 0;
  // Whether its weights stream through the device block by block (--lowvram): then no
  // captured CUDA graph can replay a call, since the weights move every call.
  virtual bool streaming() const = 0;
};

}  // namespace sigma::models
