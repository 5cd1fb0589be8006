// What the kernels in models/kernels/cuda/*.cu share: float conversions, vector packs, launch sizes.
// Plain CUDA, no LibTorch headers.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "models/kernels/cuda/group_norm.h"

namespace sigma::models::cuda::detail {

template <typename T>
__device__ __forceinline__ float to_float(T v) {
  if constexpr (std::is_same_v<T, __half>) return __half2float(v);
  else if constexpr (std::is_same_v<T, __nv_bfloat16>) return __bfloat162float(v);
  else return v;
}
template <typename T>
__device__ __forceinline__ T from_float(float v) {
  if constexpr (std::is_same_v<T, __half>) return __float2half_rn(v);
  else if constexpr (std::is_same_v<T, __nv_bfloat16>) return __float2bfloat16_rn(v);
  else return v;
}

template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

inline int sm_count() {
  static int counts[64] = {};
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) return 100;
  if (!counts[dev]) {
    int n = 0;
    cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev);
    counts[dev] = n > 0 ? n : 100;
  }
  return counts[dev];
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The widest pack (at most 16 bytes) that divides `extent` and keeps every pointer aligned.
inline int pack_width(size_t elem, int64_t extent, std::initializer_list<const void*> ptrs) {
  for (int v = int(16 / elem); v > 1; v /= 2) {
    bool ok = extent % v == 0;
    for (const void* p : ptrs) ok = ok && reinterpret_cast<uintptr_t>(p) % (v * elem) == 0;
    if (ok) return v;
  }
  return 1;
}

template <typename F>
void with_width(int v, F&& f) {
  switch (v) {
    case 8: f(std::integral_constant<int, 8>{}); break;
    case 4: f(std::integral_constant<int, 4>{}); break;
    case 2: f(std::integral_constant<int, 2>{}); break;
    default: f(std::integral_constant<int, 1>{}); break;
  }
}

inline size_t element_size(DType d) { return d == DType::f32 ? 4 : 2; }

}  // namespace sigma::models::cuda::detail
