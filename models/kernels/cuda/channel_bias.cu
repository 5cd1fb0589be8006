// models/kernels/cuda/channel_bias.h says why.
#include "models/kernels/cuda/channel_bias.h"

#include <algorithm>

#include "models/kernels/cuda/kernel_util.cuh"

namespace sigma::models::cuda {
namespace {
using namespace detail;

constexpr int kThreads = 256;

// V consecutive values of one pixel per step (V divides C), so the biases are V consecutive
// values too; the grid strides over the tensor.
template <typename T, int V, typename I>
__global__ void bias_nhwc(T* __restrict__ y, const T* __restrict__ bias, const T* __restrict__ image_bias, I total,
                          I C, I image_values) {
  for (I i = (I(blockIdx.x) * blockDim.x + threadIdx.x) * V; i < total; i += I(gridDim.x) * blockDim.x * V) {
    auto p = *reinterpret_cast<Pack<T, V>*>(y + i);
    const I c = i % C;
    float add[V] = {};
    if (bias) {
      const auto b = *reinterpret_cast<const Pack<T, V>*>(bias + c);
#pragma unroll
      for (int j = 0; j < V; ++j) add[j] = to_float(b.v[j]);
    }
    if (image_bias) {
      const auto e = *reinterpret_cast<const Pack<T, V>*>(image_bias + (i / image_values) * C + c);
#pragma unroll
      for (int j = 0; j < V; ++j) add[j] += to_float(e.v[j]);
    }
#pragma unroll
    for (int j = 0; j < V; ++j) p.v[j] = from_float<T>(to_float(p.v[j]) + add[j]);
    *reinterpret_cast<Pack<T, V>*>(y + i) = p;
  }
}

template <typename T>
const char* run(T* y, const T* bias, const T* image_bias, int64_t total, int64_t C, int64_t image_values,
                cudaStream_t stream) {
  const int v = pack_width(sizeof(T), C, {y, bias, image_bias});
  with_width(v, [&](auto V) {
    constexpr int W = decltype(V)::value;
    const unsigned blocks = unsigned(std::max<int64_t>(1, std::min<int64_t>(ceil_div(total / W, kThreads), int64_t(sm_count()) * 16)));
    if (total < (int64_t(1) << 31))
      bias_nhwc<T, W, uint32_t><<<blocks, kThreads, 0, stream>>>(y, bias, image_bias, uint32_t(total), uint32_t(C),
                                                                 uint32_t(image_values));
    else
      bias_nhwc<T, W, int64_t><<<blocks, kThreads, 0, stream>>>(y, bias, image_bias, total, C, image_values);
  });
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

}  // namespace

const char* add_channel_bias_nhwc(void* y, const void* bias, const void* image_bias, DType dtype, int64_t total,
                                  int64_t channels, int64_t image_values, void* stream) {
  if (channels < 1 || total % channels) return "add_channel_bias_nhwc: total is not a multiple of channels";
  if (image_bias && (image_values < channels || image_values % channels || total % image_values))
    return "add_channel_bias_nhwc: image_values is not a whole number of pixels per image";
  if (total == 0 || (!bias && !image_bias)) return nullptr;
  auto s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DType::f16:
      return run(static_cast<__half*>(y), static_cast<const __half*>(bias), static_cast<const __half*>(image_bias), total,
                 channels, image_values, s);
    case DType::bf16:
      return run(static_cast<__nv_bfloat16*>(y), static_cast<const __nv_bfloat16*>(bias),
                 static_cast<const __nv_bfloat16*>(image_bias), total, channels, image_values, s);
    default:
      return run(static_cast<float*>(y), static_cast<const float*>(bias), static_cast<const float*>(image_bias), total,
                 channels, image_values, s);
  }
}

}  // namespace sigma::models::cuda
