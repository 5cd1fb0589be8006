// CUDA graphs of a network call: the ~1,500 kernels of an SD UNet step are launched by one
// cudaGraphLaunch instead of one host call each, which is most of an fp16 step on a fast
// GPU (the kernels themselves are short). A graph fixes its input and output addresses, so
// each distinct input signature (shapes, dtypes, which inputs are given) is captured once
// into its own static buffers; a call copies its inputs there, replays and clones the output.
// Weights must only change in place while graphs exist (ModelPatcher merges LoRAs so).
// Builds without CUDA (Debian's LibTorch) and SIGMA_CUDA_GRAPHS=0 run the call eagerly.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace sigma::models {

class GraphCache {
 public:
  using Fn = std::function<torch::Tensor(const std::vector<torch::Tensor>&)>;
  using MultiFn = std::function<std::vector<torch::Tensor>(const std::vector<torch::Tensor>&)>;
  explicit GraphCache(size_t capacity = 3) : capacity_(capacity) {}
  ~GraphCache();

  // fn(inputs), through a captured graph when the inputs are on a CUDA device and graphs
  // are enabled; undefined inputs stay undefined. The result is the caller's own tensor.
  torch::Tensor run(const std::vector<torch::Tensor>& inputs, const Fn& fn);
  // The same for a call with several outputs. `variant` names what fn bakes in besides its
  // inputs (a clip skip, say): calls that differ in it get their own graphs.
  std::vector<torch::Tensor> run_all(const std::vector<torch::Tensor>& inputs, const MultiFn& fn,
                                     const std::string& variant = {});
  size_t captured() const;
  void clear();  // forgets every graph (what they bake in changed: adapters patching fp8 weights per call)

  static bool enabled();  // compiled with CUDA graphs and not turned off by SIGMA_CUDA_GRAPHS=0

 private:
  struct Entry;
  size_t capacity_;
  mutable std::mutex mutex_;
  std::list<std::pair<std::string, std::shared_ptr<Entry>>> entries_;  // most recently used first
};

}  // namespace sigma::models
