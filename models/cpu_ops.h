// Attention, softmax, GEGLU and LayerNorm as the networks call them, fast on the CPU: through Sigma
// Studio's AVX-512 kernels (models/cpu/kernels.h) where they apply (a CPU tensor in float32
// or bf16, nothing recording gradients, a CPU with AVX-512, not turned off by
// SIGMA_CPU_KERNELS=0), LibTorch's operators everywhere else (CUDA, autograd, other CPUs).
// LayerNorm of bf16 on the CPU goes through float32: LibTorch 1.13's bf16 CPU kernel took
// 357 us for a [2, 256, 64] input that float32 normalises in 37 us, conversions included.
#pragma once

#include <torch/torch.h>

namespace sigma::models {

// Built for and running on a CPU the kernels take, and not turned off by SIGMA_CPU_KERNELS=0.
bool cpu_kernels_enabled();

// softmax(x, -1), in place where the kernel takes x (then x itself is returned).
torch::Tensor softmax_lastdim_(torch::Tensor x);

// h [.., 2F] -> h[.., :F] * GELU(h[.., F:]) (diffusers' GEGLU, exact GELU).
torch::Tensor geglu(const torch::Tensor& h);

// softmax(q·kᵀ/√D)·v for q [B,H,Lq,D], k/v [B,H,Lk,D] (any strides with d contiguous, such as
// the transposed views of [B,L,H,D] projections) through models/cpu/attention.h; the result is
// a [B,H,Lq,D] view of a [B,Lq,H,D] tensor, so transposing it back is free. An undefined
// tensor where the kernel does not apply, or (unless only_where_faster is false, as in the
// tests) where LibTorch's operators are faster; then the caller runs those.
torch::Tensor fused_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, bool causal,
                              bool only_where_faster = true);

// ln(x) in x's dtype; bf16/fp16 CPU input is normalised in float32 and rounded back.
torch::Tensor layer_norm(torch::nn::LayerNormImpl& ln, const torch::Tensor& x);

}  // namespace sigma::models
