// The functional operations every network calls (attention, softmax, GEGLU, LayerNorm,
// GroupNorm + SiLU), each one entry point that picks the fastest implementation that applies:
// Sigma Studio's CUDA kernels (models/kernels/cuda_ops.h), its AVX-512 CPU kernels
// (models/kernels/cpu_ops.h), LibTorch 2.x's fused attention (models/runtime/torch_compat.h),
// or LibTorch's operators. Networks include this and models/nn/layers.h, never a kernel.
#pragma once

#include <torch/torch.h>

#include <algorithm>
#include <vector>

namespace sigma::models {

// softmax(q·kᵀ/√D)·v for q [B,H,Lq,D], k/v [B,H,Lk,D]; `causal` masks keys after the query.
// LibTorch 2.x: its fused kernels (flash / memory-efficient on CUDA), unless SIGMA_ATTENTION=math
// asks for the written-out path (to tell a fused kernel's fault from ours). LibTorch 1.13 (no
// public SDPA): our fused CPU kernel where it applies and is faster, else the written-out math.
torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, bool causal = false);

// fn(start, n) for the query rows [start, start + n) of q [.., Lq, D], in slices whose
// attention weights ([.., n, Lk] against k) number at most `budget`, concatenated along the
// rows; one call when all rows fit. Each row's softmax is its own, so slicing keeps the result.
template <class Fn>
torch::Tensor in_query_slices(const torch::Tensor& q, const torch::Tensor& k, int64_t budget, Fn&& fn) {
  const int64_t Lq = q.size(-2);
  const int64_t per_row = q.numel() / std::max<int64_t>(1, Lq * q.size(-1)) * k.size(-2);
  const int64_t chunk = std::max<int64_t>(1, budget / std::max<int64_t>(1, per_row));
  if (chunk >= Lq) return fn(int64_t(0), Lq);
  std::vector<torch::Tensor> parts;
  for (int64_t s = 0; s < Lq; s += chunk) parts.push_back(fn(s, std::min(chunk, Lq - s)));
  return torch::cat(parts, -2);
}

// softmax(x, -1), in place where the CPU kernel takes x (then x itself is returned).
torch::Tensor softmax_lastdim_(torch::Tensor x);

// h [.., 2F] -> h[.., :F] * GELU(h[.., F:]) (diffusers' GEGLU, exact GELU).
torch::Tensor geglu(const torch::Tensor& h);

// ln(x) in x's dtype; bf16/fp16 CPU input is normalised in float32 and rounded back once
// (LibTorch 1.13's bf16 CPU kernel took 357 us for a [2, 256, 64] input that float32
// normalises in 37 us, conversions included).
torch::Tensor layer_norm(torch::nn::LayerNormImpl& ln, const torch::Tensor& x);

// GroupNorm and the SiLU that follows it in every ResBlock and VAE block, as one call: on
// CUDA through the fused kernels when the build has them, in NCHW or channels-last with the
// output in the input's layout; bf16/fp16 on the CPU normalised in float32 and rounded back
// once, after the SiLU; LibTorch's GroupNorm then SiLU everywhere else (autograd included).
torch::Tensor group_norm_act(torch::nn::GroupNormImpl& gn, const torch::Tensor& x, bool silu);

}  // namespace sigma::models
