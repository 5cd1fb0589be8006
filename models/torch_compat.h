// The one place where LibTorch 1.13 (Debian, CPU) and LibTorch 2.x (PyTorch wheels,
// CUDA) differ for Sigma Studio. Everything else is written against the common API.
#pragma once

#include <torch/torch.h>
#include <torch/version.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>
#include <ATen/autocast_mode.h>

#include "models/cpu_ops.h"
#ifdef SIGMA_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <cuda_runtime_api.h>
#endif
#include <c10/util/Exception.h>
#include <new>

namespace sigma::compat {

inline constexpr bool kHasFusedAttention = TORCH_VERSION_MAJOR >= 2;

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

// softmax(q·kᵀ·scale + mask)·v for q [B,H,Lq,D], k/v [B,H,Lk,D].
// LibTorch 2.x dispatches to flash / memory-efficient kernels on CUDA; 1.13 has no
// public SDPA, so the exact math is written out (as fast as the private op on CPU).
// SIGMA_ATTENTION=math forces the written-out path on 2.x too (to tell a fused kernel's
// fault from ours when a result looks wrong).
inline torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               bool causal = false) {
#if TORCH_VERSION_MAJOR >= 2
  static const bool math = [] {
    const char* env = std::getenv("SIGMA_ATTENTION");
    return env && std::string(env) == "math";
  }();
  // Flash attention takes head sizes up to 256; the VAE's one 512-wide head can fall to the
  // math kernel, whose weights at 1024² (16384 latent pixels) are 16384² floats: 1 GiB. Its
  // query rows go in slices of at most 64 M weights there.
  if (!math && q.size(-1) > 256 && !causal)
    return in_query_slices(q, k, int64_t(1) << 26, [&](int64_t start, int64_t n) {
      return at::scaled_dot_product_attention(q.narrow(-2, start, n), k, v);
    });
  if (!math) return at::scaled_dot_product_attention(q, k, v, {}, 0.0, causal);
#else
  // Sigma Studio's fused CPU kernel where it applies (models/cpu_ops.h), the operators below elsewhere.
  if (auto out = models::fused_attention(q, k, v, causal); out.defined()) return out;
#endif
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  const int64_t Lq = q.size(-2), Lk = k.size(-2);
  // The heads come as transposed views; one copy each into [B·H, L, D] here, not one per
  // slice inside matmul (which copied all of k and v again for every slice of rows). The
  // scale goes on q (as PyTorch's own math SDPA does), not in a pass over the weights; not
  // baddbmm's alpha either: with beta 0 LibTorch 1.13's small-matrix CPU kernel still reads
  // the uninitialised input and turns it into NaN.
  const auto q3 = q.contiguous().view({-1, Lq, q.size(-1)}).mul(scale);
  const auto kt3 = k.contiguous().view({-1, Lk, k.size(-1)}).transpose(1, 2);
  const auto v3 = v.contiguous().view({-1, Lk, v.size(-1)});
  auto rows = [&](int64_t start, int64_t n) {
    auto w = torch::bmm(q3.narrow(1, start, n), kt3);
    if (causal) {
      auto mask = torch::ones({n, Lk}, q.options().dtype(torch::kBool)).triu(start + 1);
      w = w.masked_fill(mask, -std::numeric_limits<float>::infinity());
    }
    return torch::bmm(models::softmax_lastdim_(w), v3);  // models/cpu_ops.h
  };
  // The weights are [.., Lq, Lk]: at SD's 4096 latent pixels (512²) and 8 heads x CFG pair
  // that is 268 M numbers, twice over with the softmax. The rows are taken in slices of at
  // most kAttentionChunk weights: the same numbers, a bounded peak (A1111's split attention
  // on the CPU). 2 M weights (8 MB in float32) stay under glibc's largest mmap threshold
  // (32 MB), so the slices reuse heap memory instead of faulting in fresh pages for every
  // call, and a slice's bf16 weights stay in cache between the product, the softmax and the
  // product with v (SD 1.5's 4096-token bf16 attention on 2 cores: 566 ms with 2 M, 745 ms
  // with 4 M and the per-slice copies). SIGMA_ATTENTION_SLICE=N overrides the 2 M.
  static const int64_t kAttentionChunk = [] {
    const char* env = std::getenv("SIGMA_ATTENTION_SLICE");
    const long long n = env ? std::atoll(env) : 0;
    return n > 0 ? static_cast<int64_t>(n) : int64_t(1) << 21;
  }();
  auto sizes = q.sizes().vec();
  sizes.back() = v.size(-1);
  return in_query_slices(q3, k, kAttentionChunk, rows).view(sizes);
}

// TF32 silently lowers float32 matmul/conv precision on Ampere+ GPUs; the conformance
// suite needs it off, production runs may turn it on.
inline void set_allow_tf32(bool allow) {
  at::globalContext().setAllowTF32CuBLAS(allow);
  at::globalContext().setAllowTF32CuDNN(allow);
}

// cuDNN's per-shape algorithm search (the first call of each conv shape is slower).
inline void set_cudnn_benchmark(bool on) { at::globalContext().setBenchmarkCuDNN(on); }

inline bool cuda_available() { return torch::cuda::is_available(); }

// Waits for the current CUDA device's queued work (timing); a no-op in CPU-only builds.
inline void cuda_synchronize() {
#ifdef SIGMA_WITH_CUDA
  torch::cuda::synchronize();
#endif
}

#ifdef SIGMA_WITH_CUDA
// The caching allocator sets up its per-device state on the first allocation and refuses
// stats, caps and resets before that ("Invalid device argument", "Allocator not initialized
// for device"): every call below on device 0 goes through here first.
inline void cuda_allocator_ready() {
  static const bool ready = [] {
    (void)torch::empty({1}, torch::TensorOptions().device(torch::kCUDA, 0));
    return true;
  }();
  (void)ready;
}
#endif

// The caching allocator's peak of allocated bytes on device 0 since start, in GB (0 without CUDA).
inline double cuda_peak_allocated_gb() {
#ifdef SIGMA_WITH_CUDA
  if (!torch::cuda::is_available()) return 0;
  cuda_allocator_ready();
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(0);
  return static_cast<double>(stats.allocated_bytes[0].peak) / 1e9;
#else
  return 0;
#endif
}

// Starts the caching allocator's peak counters again from what is allocated now (per-stage peaks).
inline void cuda_reset_peak() {
#ifdef SIGMA_WITH_CUDA
  if (!torch::cuda::is_available()) return;
  cuda_allocator_ready();
  c10::cuda::CUDACachingAllocator::resetPeakStats(0);
#endif
}

// The caching allocator's current {reserved, allocated} bytes on device 0 ({0, 0} without CUDA):
// reserved minus allocated is memory this process holds free for its next tensors.
inline std::pair<double, double> cuda_reserved_allocated() {
#ifdef SIGMA_WITH_CUDA
  if (!torch::cuda::is_available()) return {0, 0};
  cuda_allocator_ready();
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(0);
  return {static_cast<double>(stats.reserved_bytes[0].current), static_cast<double>(stats.allocated_bytes[0].current)};
#else
  return {0, 0};
#endif
}

// An allocation that failed: c10::OutOfMemoryError (CUDA's caching allocator; LibTorch 2.x's
// CPU allocator too), LibTorch 1.13's CPU allocator (a plain c10::Error), std::bad_alloc.
inline bool is_out_of_memory(const std::exception& e) {
  if (dynamic_cast<const c10::OutOfMemoryError*>(&e) || dynamic_cast<const std::bad_alloc*>(&e)) return true;
  const std::string what = e.what();
  return what.find("CUDA out of memory") != std::string::npos || what.find("can't allocate memory") != std::string::npos;
}

// Gives the CUDA caching allocator's unused blocks back to the driver (after an
// out-of-memory, so that the next job starts from what is really in use). No-op without CUDA.
inline void cuda_empty_cache() {
#ifdef SIGMA_WITH_CUDA
  if (torch::cuda::is_available()) c10::cuda::CUDACachingAllocator::emptyCache();
#endif
}

// The share of device 0's memory this process may use, as last set (1 = all of it).
inline double& cuda_memory_fraction() {
  static double fraction = 1.0;
  return fraction;
}

// Caps this process's share of device 0's memory (torch.cuda.set_per_process_memory_fraction):
// allocations beyond it fail as out-of-memory. For a GPU shared with other programs.
inline void cuda_set_memory_fraction(double fraction) {
#ifdef SIGMA_WITH_CUDA
  cuda_allocator_ready();
  c10::cuda::CUDACachingAllocator::setMemoryFraction(fraction, 0);
  cuda_memory_fraction() = fraction;
#else
  (void)fraction;
#endif
}

// Free and total bytes of the current CUDA device as the driver sees them ({0, 0} without CUDA).
inline std::pair<size_t, size_t> cuda_memory_info() {
  size_t free = 0, total = 0;
#ifdef SIGMA_WITH_CUDA
  if (cudaMemGetInfo(&free, &total) != cudaSuccess) {
    (void)cudaGetLastError();
    return {0, 0};
  }
#endif
  return {free, total};
}

// tensors[i] *= factor (a 0-dim tensor on their device), without a host sync.
inline void foreach_mul(std::vector<torch::Tensor>& tensors, const torch::Tensor& factor) {
#if TORCH_VERSION_MAJOR >= 2 && TORCH_VERSION_MINOR >= 1 || TORCH_VERSION_MAJOR > 2
  at::_foreach_mul_(tensors, factor);
#else
  for (auto& t : tensors) t.mul_(factor);
#endif
}

// Mixed precision for training: autocast CUDA ops to `dtype` (the API was renamed in 2.x).
inline void set_cuda_autocast(bool enabled, torch::ScalarType dtype = torch::kBFloat16) {
#if TORCH_VERSION_MAJOR >= 2
  at::autocast::set_autocast_enabled(at::kCUDA, enabled);
  at::autocast::set_autocast_dtype(at::kCUDA, dtype);
#else
  at::autocast::set_enabled(enabled);
  at::autocast::set_autocast_gpu_dtype(dtype);
#endif
  if (!enabled) at::autocast::clear_cache();
}

}  // namespace sigma::compat
