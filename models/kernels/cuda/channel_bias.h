// A convolution's bias added to its channels-last output, for CUDA builds (models/nn/layers.cpp
// calls it; this header needs neither CUDA's nor LibTorch's headers).
//
// Why: LibTorch runs cuDNN's NHWC convolution without the bias and then adds the bias as a
// [1, C, 1, 1] broadcast, which its elementwise kernels do not vectorise: ~15% of the GPU's
// busy time in SD 1.5's UNet step and in the VAE decode on an H200 (sigma bench --profile).
#pragma once

#include <cstdint>

#include "models/kernels/cuda/group_norm.h"  // DType

namespace sigma::models::cuda {

// y[n, h, w, c] += bias[c] + image_bias[n, c] for y in NHWC order with `channels` channels,
// `image_values` (H·W·C) values per image and `total` in all; bias [channels] and image_bias
// [N, channels] of y's dtype, either may be null. The ResBlock's timestep embedding is its first
// convolution's per-image bias, so one pass adds both. In float32, rounded once. Returns an
// error message or nullptr.
const char* add_channel_bias_nhwc(void* y, const void* bias, const void* image_bias, DType dtype, int64_t total,
                                  int64_t channels, int64_t image_values, void* stream);

}  // namespace sigma::models::cuda
