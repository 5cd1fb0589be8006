// The one place where LibTorch 1.13 (Debian, CPU) and LibTorch 2.x (PyTorch wheels,
// CUDA) differ for Sigma Studio. Everything else is written against the common API.
#pragma once

#include <torch/torch.h>
#include <torch/version.h>

namespace sigma::compat {

inline constexpr bool kHasFusedAttention = TORCH_VERSION_MAJOR >= 2;

// softmax(q·kᵀ·scale + mask)·v for q [B,H,Lq,D], k/v [B,H,Lk,D].
// LibTorch 2.x dispatches to flash / memory-efficient kernels on CUDA; 1.13 has no
// public SDPA, so the exact math is written out (as fast as the private op on CPU).
inline torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               bool causal = false) {
#if TORCH_VERSION_MAJOR >= 2
  return at::scaled_dot_product_attention(q, k, v, {}, 0.0, causal);
#else
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  auto w = torch::matmul(q, k.transpose(-2, -1)) * scale;
  if (causal) {
    auto mask = torch::ones({q.size(-2), k.size(-2)}, q.options().dtype(torch::kBool)).triu(1);
    w = w.masked_fill(mask, -std::numeric_limits<float>::infinity());
  }
  return torch::matmul(w.softmax(-1), v);
#endif
}

// TF32 silently lowers float32 matmul/conv precision on Ampere+ GPUs; the conformance
// suite needs it off, production runs may turn it on.
inline void set_allow_tf32(bool allow) {
  at::globalContext().setAllowTF32CuBLAS(allow);
  at::globalContext().setAllowTF32CuDNN(allow);
}

inline bool cuda_available() { return torch::cuda::is_available(); }

}  // namespace sigma::compat
