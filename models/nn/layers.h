// The layers that hold nearly all of a diffusion model's weights, Conv2d, Linear and
// Embedding, as drop-ins for LibTorch's (same options, parameter names, initialisation and
// forward), with one difference: under a `SkipInit` guard they allocate their weights
// without filling them. LibTorch's own layers always run their random initialisation in the
// constructor, one serial RNG draw per element: ~6 s of CPU for SD 1.5's 1.07 G weights,
// every one of which a checkpoint load overwrites at once. Training builds its networks
// without the guard and gets LibTorch's initialisation, draw for draw.
//
// Model code uses them through `namespace nn = sigma::models::layers;`, which also makes
// every other torch::nn name (Sequential, GroupNorm, SiLU, ...) available under nn::.
#pragma once

#include <torch/torch.h>

#include "models/runtime/weight_patches.h"

namespace sigma::models {

// While one lives on this thread, new Conv2d/Linear/Embedding weights are left
// uninitialised (torch::empty): for modules whose every parameter is loaded right after
// (load_module refuses a file that misses any, so nothing uninitialised survives a load).
class SkipInit {
 public:
  SkipInit();
  ~SkipInit();
  SkipInit(const SkipInit&) = delete;
  SkipInit& operator=(const SkipInit&) = delete;
  static bool active();

 private:
  bool previous_;
};

// A network built under SkipInit, for a loader that fills every weight right after.
template <class Network, class Config>
Network build_uninitialised(const Config& config) {
  SkipInit skip;
  return Network(config);
}

namespace layers {
using namespace torch::nn;

class Conv2dImpl : public torch::nn::Cloneable<Conv2dImpl> {
 public:
  explicit Conv2dImpl(Conv2dOptions options);
  void reset() override;
  torch::Tensor forward(const torch::Tensor& x);
  // conv(x) + bias + image_bias[n, c] for image_bias [N or 1, out_channels]: the ResBlock's timestep
  // embedding, added in the same pass as the bias where the CUDA kernel runs.
  torch::Tensor forward_with_image_bias(const torch::Tensor& x, const torch::Tensor& image_bias);
  Conv2dOptions options;
  torch::Tensor weight, bias;
};
TORCH_MODULE(Conv2d);

class LinearImpl : public torch::nn::Cloneable<LinearImpl>, public PatchedOnTheFly {
 public:
  LinearImpl(int64_t in, int64_t out) : LinearImpl(LinearOptions(in, out)) {}
  explicit LinearImpl(LinearOptions options);
  void reset() override;
  torch::Tensor forward(const torch::Tensor& x);
  // A weight kept as its file stores it in fp8 (a 12B Flux is 12 GB, not 24): `weight` is then
  // empty (its dtype the compute dtype) and each call dequantizes the bytes, times the
  // per-tensor scale (ComfyUI's scaled fp8), into that dtype (models/runtime/fp8.h).
  void keep_fp8(torch::Tensor bytes, bool e4m3, torch::Tensor scale);
  bool is_fp8() const { return fp8_bytes.defined(); }
  torch::Tensor dense_weight() const;  // the weight in the compute dtype, as the call uses it
  // An fp8 weight takes adapters' deltas on the fly (models/runtime/weight_patches.h).
  std::vector<int64_t> on_the_fly_shape() const override;
  torch::Device on_the_fly_device() const override { return fp8_bytes.defined() ? fp8_bytes.device() : weight.device(); }
  void set_weight_patches(std::vector<WeightPatch> patches) override { fp8_patches = std::move(patches); }
  size_t weight_patches() const override { return fp8_patches.size(); }
  LinearOptions options;
  torch::Tensor weight, bias;
  torch::Tensor fp8_bytes, fp8_scale;  // kByte [out, in] and a scalar (undefined: 1)
  bool fp8_e4m3 = true;
  std::vector<WeightPatch> fp8_patches;
};
TORCH_MODULE(Linear);

class EmbeddingImpl : public torch::nn::Cloneable<EmbeddingImpl> {
 public:
  EmbeddingImpl(int64_t count, int64_t dim) : EmbeddingImpl(EmbeddingOptions(count, dim)) {}
  explicit EmbeddingImpl(EmbeddingOptions options);
  void reset() override;
  torch::Tensor forward(const torch::Tensor& ids);
  EmbeddingOptions options;
  torch::Tensor weight;
};
TORCH_MODULE(Embedding);

}  // namespace layers

// The shorthands every network builds with: a k×k convolution padded to keep the size
// (k / 2, or `pad`), a Linear, and LDM's GroupNorm of 32 groups.
layers::Conv2d conv(int64_t in, int64_t out, int64_t k, int64_t stride = 1, int64_t pad = -1);
layers::Linear linear(int64_t in, int64_t out, bool bias = true);
torch::nn::GroupNorm group_norm(int64_t channels, double eps);

}  // namespace sigma::models
