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

#ifdef SIGMA_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <cuda_runtime_api.h>
#endif
#include <c10/util/Exception.h>
#include <new>

namespace sigma::compat {

inline constexpr bool kHasFusedAttention = TORCH_VERSION_MAJOR >= 2;

// LibTorch 2.x's fused scaled_dot_product_attention (flash / memory-efficient kernels on
// CUDA) of q [B,H,Lq,D], k/v [B,H,Lk,D]; 1.13 has no public SDPA: an undefined tensor there,
// and models::attention (models/nn/ops.h) writes the math out.
inline torch::Tensor fused_sdpa(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, bool causal) {
#if TORCH_VERSION_MAJOR >= 2
  return at::scaled_dot_product_attention(q, k, v, {}, 0.0, causal);
#else
  (void)q, (void)k, (void)v, (void)causal;
  return {};
#endif
}

// Stored fp8 bytes (kByte) -> `dtype` through LibTorch 2.x's own fp8 types; 1.13 has none:
// an undefined tensor there, and models/runtime/fp8.h decodes through a table.
inline torch::Tensor fp8_bytes_to(const torch::Tensor& bytes, bool e4m3, torch::ScalarType dtype) {
#if TORCH_VERSION_MAJOR >= 2
  return bytes.view(e4m3 ? torch::kFloat8_e4m3fn : torch::kFloat8_e5m2).to(dtype);
#else
  (void)bytes, (void)e4m3, (void)dtype;
  return {};
#endif
}

// TF32 silently lowers float32 matmul/conv precision on Ampere+ GPUs; the conformance
// suite needs it off, production runs may turn it on.
inline void set_allow_tf32(bool allow) {
  at::globalContext().setAllowTF32CuBLAS(allow);
  at::globalContext().setAllowTF32CuDNN(allow);
}

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
