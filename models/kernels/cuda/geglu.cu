// models/kernels/cuda/geglu.h says why.
#include "models/kernels/cuda/geglu.h"

#include <algorithm>

#include "models/kernels/cuda/kernel_util.cuh"

namespace sigma::models::cuda {
namespace {
using namespace detail;

constexpr int kThreads = 256;

// V consecutive outputs of one row per step (V divides F); the grid strides over rows x F.
template <typename T, int V, typename I>
__global__ void geglu_kernel(const T* __restrict__ h, T* __restrict__ out, I total, I F) {
  for (I i = (I(blockIdx.x) * blockDim.x + threadIdx.x) * V; i < total; i += I(gridDim.x) * blockDim.x * V) {
    const I row = i / F, col = i - row * F;
    const auto a = *reinterpret_cast<const Pack<T, V>*>(h + row * 2 * F + col);
    const auto b = *reinterpret_cast<const Pack<T, V>*>(h + row * 2 * F + F + col);
    Pack<T, V> o;
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const float x = to_float(b.v[j]);
      o.v[j] = from_float<T>(to_float(a.v[j]) * (0.5f * x * (1.0f + erff(x * 0.70710678118654752f))));
    }
    *reinterpret_cast<Pack<T, V>*>(out + i) = o;
  }
}

template <typename T>
const char* run(const T* h, T* out, int64_t rows, int64_t F, cudaStream_t stream) {
  const int64_t total = rows * F;
  const int v = pack_width(sizeof(T), F, {h, out});
  with_width(v, [&](auto V) {
    constexpr int W = decltype(V)::value;
    const unsigned blocks = unsigned(std::max<int64_t>(1, std::min<int64_t>(ceil_div(total / W, kThreads), int64_t(sm_count()) * 16)));
    if (2 * total < (int64_t(1) << 31))
      geglu_kernel<T, W, uint32_t><<<blocks, kThreads, 0, stream>>>(h, out, uint32_t(total), uint32_t(F));
    else
      geglu_kernel<T, W, int64_t><<<blocks, kThreads, 0, stream>>>(h, out, total, F);
  });
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

}  // namespace

const char* geglu(const void* h, void* out, DType dtype, int64_t rows, int64_t F, void* stream) {
  if (rows < 0 || F < 1) return "geglu: empty or negative shape";
  if (rows == 0) return nullptr;
  auto s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DType::f16: return run(static_cast<const __half*>(h), static_cast<__half*>(out), rows, F, s);
    case DType::bf16: return run(static_cast<const __nv_bfloat16*>(h), static_cast<__nv_bfloat16*>(out), rows, F, s);
    default: return run(static_cast<const float*>(h), static_cast<float*>(out), rows, F, s);
  }
}

}  // namespace sigma::models::cuda
