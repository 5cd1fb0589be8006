// The LibTorch side of Sigma Studio's own CUDA kernels (models/kernels/cuda/): fused GroupNorm
// + SiLU, the channels-last convolution bias, GEGLU. Each call runs its kernel where it applies
// (a CUDA build with the kernels, a CUDA tensor they take) and otherwise says so (an undefined tensor, false), and the caller
// (models/nn/ops.cpp, models/nn/layers.cpp) runs LibTorch's operators.
#pragma once

#include <torch/torch.h>

namespace sigma::models {

// GroupNorm (+ SiLU) of x through the fused kernels, in NCHW or channels-last with the output
// in x's layout; undefined where they do not apply. The caller checks autograd (the kernels
// have no backward). gamma/beta may be undefined (no affine map).
torch::Tensor cuda_group_norm_act(const torch::Tensor& x, int64_t groups, const torch::Tensor& gamma,
                                  const torch::Tensor& beta, double eps, bool silu);

// Whether this build has the kernels (a CUDA build where nvcc compiled them).
bool fused_group_norm_enabled();

// The fused kernels alone (the GPU test compares them with LibTorch's GroupNorm): x must be a
// CUDA tensor they take; throws otherwise. gamma/beta may be undefined (no affine map).
torch::Tensor fused_group_norm(const torch::Tensor& x, int64_t groups, const torch::Tensor& gamma,
                               const torch::Tensor& beta, double eps, bool silu);

// A channels-last convolution's bias [C] and per-image bias [N, C] (either may be undefined)
// added to its output y [N, C, H, W] in place, through models/kernels/cuda/channel_bias.h (LibTorch adds
// each as a broadcast that does not vectorise); false, with y untouched, where the kernel does
// not apply (no kernels, not CUDA, not NHWC, another dtype). Conv2d (models/nn/layers.cpp) calls
// it when nothing records gradients.
bool add_bias_nhwc(torch::Tensor& y, const torch::Tensor& bias, const torch::Tensor& image_bias = {});
// Whether this build has the bias kernel.
bool fused_bias_enabled();

// GEGLU's h[.., :F] * GELU(h[.., F:]) through models/kernels/cuda/geglu.h for a contiguous CUDA h, or
// an undefined tensor where the kernel does not apply (no kernels, another
// device or dtype, autograd). models::geglu (models/nn/ops.h) calls it first.
torch::Tensor cuda_geglu(const torch::Tensor& h);

}  // namespace sigma::models
