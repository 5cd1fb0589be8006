// Weights that live in host memory and visit the GPU only while their module runs
// (--lowvram, as AUTOMATIC1111's --lowvram and ComfyUI's offloading): the text encoder and
// the VAE for their call, the UNet one block at a time. The copies go over PCIe on the
// compute stream from pinned memory, so they are ordered before the kernels that use them;
// what visited is freed into the caching allocator when the visit ends.
#pragma once

#include <torch/torch.h>

#include <utility>
#include <vector>

namespace sigma::models {

// The module's parameters and buffers moved to pinned host memory (the GPU's next visit
// copies from there without staging). For modules that OnDevice brings in when they run.
void park_in_host_memory(torch::nn::Module& module);

// While it lives, `module`'s tensors are copies on `device`; then its host tensors again.
// A no-op for a CPU device or a module already there.
class OnDevice {
 public:
  OnDevice(torch::nn::Module& module, const torch::Device& device);
  ~OnDevice();
  OnDevice(const OnDevice&) = delete;
  OnDevice& operator=(const OnDevice&) = delete;

 private:
  std::vector<std::pair<torch::Tensor, torch::Tensor>> visited_;  // (parameter or buffer, its host data)
};

}  // namespace sigma::models
