// A fused GroupNorm (+ optional SiLU) for CUDA, built with nvcc only in CUDA builds
// (models/kernels/cuda_ops.h calls it; this header needs neither CUDA's nor LibTorch's headers).
//
// Why: LibTorch's CUDA GroupNorm wants NCHW-contiguous input, so in a channels-last
// network every norm costs a layout copy in, the norm's own passes, a separate SiLU pass
// and a layout copy back for the next convolution (~5 kernels and 6 full reads/writes).
// Here it is 3 kernels, 2 reads and 1 write, in either layout: partial statistics per slice
// of each image, their merge into a per-channel scale and shift, and y = silu(a x + b).
#pragma once

#include <cstddef>
#include <cstdint>

namespace sigma::models::cuda {

enum class DType { f32, f16, bf16 };

struct GroupNormArgs {
  const void* x = nullptr;  // [N, C, H, W], contiguous in NCHW or in NHWC (channels_last)
  void* y = nullptr;        // the same shape, dtype and layout as x
  const void* gamma = nullptr, *beta = nullptr;  // [C] in x's dtype, or null (1 and 0)
  int64_t N = 0, C = 0, HW = 0;
  int64_t groups = 0;
  float eps = 1e-5f;
  bool channels_last = false;
  bool silu = false;
  DType dtype = DType::f32;
  float* workspace = nullptr;  // group_norm_workspace_floats(N, C, groups) floats on the device
};

// The kernels take these; anything else is the caller's to run another way.
constexpr int64_t kMaxGroups = 128;
constexpr int64_t kMaxChannels = 8192;

size_t group_norm_workspace_floats(int64_t N, int64_t C, int64_t groups);

// Whether the kernels take these arguments (groups <= kMaxGroups dividing C, C <= kMaxChannels,
// grid limits); the caller runs LibTorch's GroupNorm otherwise.
bool group_norm_supported(const GroupNormArgs& args);

// Queues the kernels on `stream` (a cudaStream_t). Returns null, or CUDA's error text.
const char* group_norm(const GroupNormArgs& args, void* stream);

}  // namespace sigma::models::cuda
