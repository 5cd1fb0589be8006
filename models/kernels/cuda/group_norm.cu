// Fused GroupNorm (+ SiLU) kernels: models/kernels/cuda/group_norm.h says why. The arithmetic is
// torch.nn.GroupNorm's: statistics in float32 over (C/G)·H·W values per (image, group),
// biased variance, eps inside the square root, then the affine map, then x·sigmoid(x).
#include "models/kernels/cuda/group_norm.h"

#include <algorithm>

#include "models/kernels/cuda/kernel_util.cuh"

namespace sigma::models::cuda {
namespace {
using namespace detail;

constexpr int kMaxSlices = 512;  // statistics blocks per image (NHWC) or per group (NCHW)
constexpr int kThreads = 256;

// A count, mean and sum of squared deviations (Chan et al.'s pairwise merge).
struct Stats {
  float n, mean, m2;
};

__device__ __forceinline__ Stats merge(Stats a, Stats b) {
  if (b.n == 0.f) return a;
  if (a.n == 0.f) return b;
  const float n = a.n + b.n, wb = b.n / n, d = b.mean - a.mean;
  return {n, a.mean + d * wb, a.m2 + b.m2 + d * d * a.n * wb};
}

// A thread's running sums are shifted by its first value K, which keeps E[x²] - E[x]²
// from cancelling when the mean is large against the spread.
struct Running {
  float k = 0.f, s1 = 0.f, s2 = 0.f, n = 0.f;
  __device__ __forceinline__ void add(float v) {
    if (n == 0.f) k = v;
    const float d = v - k;
    s1 += d;
    s2 += d * d;
    n += 1.f;
  }
  __device__ __forceinline__ Stats stats() const {
    if (n == 0.f) return {0.f, 0.f, 0.f};
    return {n, k + s1 / n, fmaxf(s2 - s1 * s1 / n, 0.f)};
  }
};

__device__ __forceinline__ Stats warp_merge(Stats s) {
  for (int o = 16; o > 0; o >>= 1) {
    const Stats t{__shfl_down_sync(0xffffffffu, s.n, o), __shfl_down_sync(0xffffffffu, s.mean, o),
                  __shfl_down_sync(0xffffffffu, s.m2, o)};
    s = merge(s, t);
  }
  return s;
}

// The merge of every thread's stats, valid in thread 0.
__device__ Stats block_merge(Stats s) {
  __shared__ Stats warps[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  s = warp_merge(s);
  if (lane == 0) warps[warp] = s;
  __syncthreads();
  if (warp == 0) s = warp_merge(lane < (blockDim.x + 31) / 32 ? warps[lane] : Stats{0.f, 0.f, 0.f});
  return s;
}


// NCHW: a group of one image is one contiguous run of (C/G)·H·W values. Block (s, n·G + g)
// takes the slice [s·chunk, (s+1)·chunk) of that run.
template <typename T, int V>
__global__ void stats_nchw(const T* __restrict__ x, Stats* __restrict__ partial, int64_t run, int64_t chunk) {
  const int64_t ng = blockIdx.y;
  const int64_t begin = blockIdx.x * chunk, end = min(run, begin + chunk);
  const T* base = x + ng * run;
  Running r;
#pragma unroll 4  // several loads in flight per thread: the statistics pass is bandwidth-bound
  for (int64_t i = begin + int64_t(threadIdx.x) * V; i < end; i += int64_t(blockDim.x) * V) {
    const auto p = *reinterpret_cast<const Pack<T, V>*>(base + i);
#pragma unroll
    for (int j = 0; j < V; ++j) r.add(to_float(p.v[j]));
  }
  const Stats s = block_merge(r.stats());
  if (threadIdx.x == 0) partial[ng * gridDim.x + blockIdx.x] = s;
}

// NHWC: a pixel's C values are contiguous. Thread (cv, row) of block (s, n) reads channels
// [cv·V, cv·V + V) (one group: V divides C/G) of every R-th pixel of the slice, so a warp
// reads contiguous memory; the block then merges its threads group by group.
template <typename T, int V>
__global__ void stats_nhwc(const T* __restrict__ x, Stats* __restrict__ partial, int64_t HW, int C, int G,
                           int64_t chunk) {
  __shared__ Stats threads[1024];
  const int CV = C / V, cv = threadIdx.x % CV, row = threadIdx.x / CV, R = blockDim.x / CV;
  const int64_t n = blockIdx.y, begin = blockIdx.x * chunk, end = min(HW, begin + chunk);
  const T* base = x + n * HW * C + cv * V;
  Running r;
#pragma unroll 4
  for (int64_t p = begin + row; p < end; p += R) {
    const auto v = *reinterpret_cast<const Pack<T, V>*>(base + p * C);
#pragma unroll
    for (int j = 0; j < V; ++j) r.add(to_float(v.v[j]));
  }
  threads[threadIdx.x] = r.stats();
  __syncthreads();
  const int per_group = C / G / V;  // channel packs per group
  for (int g = threadIdx.x; g < G; g += blockDim.x) {
    Stats acc{0.f, 0.f, 0.f};
    for (int rr = 0; rr < R; ++rr)
      for (int c = g * per_group; c < (g + 1) * per_group; ++c) acc = merge(acc, threads[rr * CV + c]);
    partial[(n * G + g) * gridDim.x + blockIdx.x] = acc;
  }
}

// Block n·G + g (one warp) merges group g's S slices of image n into mean and 1/σ, then each
// of its channels c gets scale a = γ_c/σ and shift b = β_c − mean·a (ab: a's [N, C], then b's).
template <typename T>
__global__ void finalize(const Stats* __restrict__ partial, const T* __restrict__ gamma,
                         const T* __restrict__ beta, float* __restrict__ ab, int64_t N, int C, int G, int S,
                         float eps) {
  // One warp per (image, group), so the N·G merges run side by side: a block per image and a
  // warp looping over its groups (2 blocks at CFG batch 2) took 8 µs a call on an H200.
  const int lane = threadIdx.x;
  const int64_t ng = blockIdx.x, n = ng / G;
  const int g = int(ng % G);
  Stats acc{0.f, 0.f, 0.f};
  for (int s = lane; s < S; s += 32) acc = merge(acc, partial[ng * S + s]);
  acc = warp_merge(acc);
  const float mean = __shfl_sync(0xffffffffu, acc.mean, 0);
  const float rstd = rsqrtf(__shfl_sync(0xffffffffu, acc.m2 / acc.n, 0) + eps);
  const int group_size = C / G;
  for (int c = g * group_size + lane; c < (g + 1) * group_size; c += 32) {
    const float a = rstd * (gamma ? to_float(gamma[c]) : 1.f);
    ab[n * C + c] = a;
    ab[N * C + n * C + c] = (beta ? to_float(beta[c]) : 0.f) - mean * a;
  }
}

// y = a·x + b per (image, channel), then SiLU. V values per thread step: V consecutive
// channels (NHWC, V divides C) or V pixels of one channel (NCHW, V divides H·W).
template <typename T, int V, bool NHWC, bool SILU, typename I>
__global__ void apply(const T* __restrict__ x, T* __restrict__ y, const float* __restrict__ ab, I total, I HW,
                      I C, I NC) {
  for (I i = (I(blockIdx.x) * blockDim.x + threadIdx.x) * V; i < total; i += I(gridDim.x) * blockDim.x * V) {
    const auto in = *reinterpret_cast<const Pack<T, V>*>(x + i);
    const I n = i / (HW * C);
    const I c = NHWC ? i % C : (i / HW) % C;
    Pack<T, V> out;
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const I nc = n * C + (NHWC ? c + j : c);
      float v = to_float(in.v[j]) * ab[nc] + ab[NC + nc];
      if (SILU) v = v / (1.f + __expf(-v));
      out.v[j] = from_float<T>(v);
    }
    *reinterpret_cast<Pack<T, V>*>(y + i) = out;
  }
}


int64_t nhwc_stats_packs(const GroupNormArgs& a) {
  return a.C / pack_width(element_size(a.dtype), a.C / a.groups, {a.x});
}

template <typename T, bool NHWC, bool SILU, typename I>
void launch_apply(const GroupNormArgs& a, const float* ab, cudaStream_t stream) {
  const int64_t total = a.N * a.C * a.HW;
  const int v = pack_width(sizeof(T), NHWC ? a.C : a.HW, {a.x, a.y});
  with_width(v, [&](auto V) {
    const int64_t blocks = std::min<int64_t>(ceil_div(total / decltype(V)::value, kThreads), int64_t(sm_count()) * 16);
    apply<T, decltype(V)::value, NHWC, SILU, I><<<unsigned(std::max<int64_t>(blocks, 1)), kThreads, 0, stream>>>(
        static_cast<const T*>(a.x), static_cast<T*>(a.y), ab, I(total), I(a.HW), I(a.C), I(a.N * a.C));
  });
}

template <typename T>
const char* run(const GroupNormArgs& a, cudaStream_t stream) {
  const T* x = static_cast<const T*>(a.x);
  auto* partial = reinterpret_cast<Stats*>(a.workspace);
  float* ab = a.workspace + a.N * a.groups * kMaxSlices * 3;
  const int G = int(a.groups), C = int(a.C);
  const int64_t want = int64_t(sm_count()) * 4;  // statistics blocks: a few per SM
  int64_t S = 1;
  if (a.channels_last) {
    const int v = pack_width(sizeof(T), a.C / a.groups, {a.x});
    const int64_t CV = a.C / v, R = std::max<int64_t>(1, kThreads / CV);
    S = std::clamp<int64_t>(ceil_div(want, a.N), 1, std::min<int64_t>(kMaxSlices, std::max<int64_t>(1, a.HW / (R * 4))));
    const int64_t chunk = ceil_div(a.HW, S);
    S = ceil_div(a.HW, chunk);
    with_width(v, [&](auto V) {
      stats_nhwc<T, decltype(V)::value><<<dim3(unsigned(S), unsigned(a.N)), unsigned(CV * R), 0, stream>>>(x, partial, a.HW, C, G, chunk);
    });
  } else {
    const int64_t len = a.C / a.groups * a.HW;  // one group's run
    const int v = pack_width(sizeof(T), a.HW, {a.x});
    S = std::clamp<int64_t>(ceil_div(want, a.N * a.groups), 1,
                            std::min<int64_t>(kMaxSlices, std::max<int64_t>(1, len / (kThreads * v * 4))));
    const int64_t chunk = ceil_div(ceil_div(len, S), v) * v;
    S = ceil_div(len, chunk);
    with_width(v, [&](auto V) {
      stats_nchw<T, decltype(V)::value><<<dim3(unsigned(S), unsigned(a.N * a.groups)), kThreads, 0, stream>>>(x, partial, len, chunk);
    });
  }
  finalize<T><<<unsigned(a.N * G), 32, 0, stream>>>(partial, static_cast<const T*>(a.gamma),
                                                       static_cast<const T*>(a.beta), ab, a.N, C, G, int(S), a.eps);
  const bool small = a.N * a.C * a.HW < (int64_t(1) << 31);
  auto go = [&](auto nhwc, auto silu) {
    if (small) launch_apply<T, decltype(nhwc)::value, decltype(silu)::value, uint32_t>(a, ab, stream);
    else launch_apply<T, decltype(nhwc)::value, decltype(silu)::value, int64_t>(a, ab, stream);
  };
  using On = std::true_type;
  using Off = std::false_type;
  if (a.channels_last) a.silu ? go(On{}, On{}) : go(On{}, Off{});
  else a.silu ? go(Off{}, On{}) : go(Off{}, Off{});
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

}  // namespace

size_t group_norm_workspace_floats(int64_t N, int64_t C, int64_t groups) {
  return size_t(N * groups * kMaxSlices * 3 + 2 * N * C);
}

bool group_norm_supported(const GroupNormArgs& a) {
  if (a.groups < 1 || a.groups > kMaxGroups || a.C % a.groups || a.C > kMaxChannels || a.N < 1 || a.HW < 1)
    return false;
  if (a.N > 65535 || (!a.channels_last && a.N * a.groups > 65535)) return false;  // grid's y
  return !a.channels_last || nhwc_stats_packs(a) <= 1024;  // one thread per channel pack
}

const char* group_norm(const GroupNormArgs& a, void* stream) {
  if (!group_norm_supported(a)) return "group_norm: unsupported shape";
  auto s = static_cast<cudaStream_t>(stream);
  switch (a.dtype) {
    case DType::f16: return run<__half>(a, s);
    case DType::bf16: return run<__nv_bfloat16>(a, s);
    default: return run<float>(a, s);
  }
}

}  // namespace sigma::models::cuda
