// The LibTorch side of Sigma Studio's AVX-512 CPU kernels (models/kernels/cpu/): each call
// runs a kernel where it applies (a CPU tensor in float32 or bf16, nothing recording
// gradients, a CPU with AVX-512, not turned off by SIGMA_CPU_KERNELS=0) and returns an
// undefined tensor elsewhere, where the caller (models/nn/ops.cpp) runs LibTorch's operators.
#pragma once

#include <torch/torch.h>

namespace sigma::models {

// Built for and running on a CPU the kernels take, and not turned off by SIGMA_CPU_KERNELS=0.
bool cpu_kernels_enabled();

// softmax(x, -1) in place (x itself is returned).
torch::Tensor cpu_softmax_lastdim_(torch::Tensor x);

// h [.., 2F] -> h[.., :F] * GELU(h[.., F:]) (diffusers' GEGLU, exact GELU).
torch::Tensor cpu_geglu(const torch::Tensor& h);

// softmax(q·kᵀ/√D)·v for q [B,H,Lq,D], k/v [B,H,Lk,D] (any strides with d contiguous, such as
// the transposed views of [B,L,H,D] projections) through models/kernels/cpu/attention.h; the result is
// a [B,H,Lq,D] view of a [B,Lq,H,D] tensor, so transposing it back is free. Undefined also
// (unless only_where_faster is false, as in the tests) where LibTorch's operators are faster.
torch::Tensor fused_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, bool causal,
                              bool only_where_faster = true);

}  // namespace sigma::models
