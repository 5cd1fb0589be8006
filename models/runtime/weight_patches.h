// A weight that is not stored as a plain parameter (a Linear kept in fp8, models/nn/layers.h)
// and so cannot take an adapter's delta in place: merging would need either a dense copy (the
// memory fp8 saves: 24 GB instead of 12 for Flux dev) or a lossy re-quantization. Adapters
// hand such a weight their deltas instead, and it adds them in float32 each time it
// materializes itself for a call, as ComfyUI patches weights on cast for its low-VRAM mode.
// The adapters' side is models/adapters/lora.cpp's ModelPatcher; this header only names the
// seam, so that neither folder includes the other.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <vector>

namespace sigma::models {

class PatchedOnTheFly {
 public:
  // Adds a delta to the float32 weight (its full [out, in] shape) as a call materializes it.
  // It runs inside CUDA graph captures too: everything it reads must already be on the device.
  using WeightPatch = std::function<void(torch::Tensor& weight_fp32)>;

  virtual ~PatchedOnTheFly() = default;
  // The weight's logical shape when it is held this way, empty when it is a plain parameter
  // (then adapters merge into the parameter as usual).
  virtual std::vector<int64_t> on_the_fly_shape() const = 0;
  virtual torch::Device on_the_fly_device() const = 0;  // where the patches' tensors must be
  virtual void set_weight_patches(std::vector<WeightPatch> patches) = 0;  // replaces; {} removes them
  virtual size_t weight_patches() const = 0;
};

}  // namespace sigma::models
