// What the AVX-512 kernels in models/kernels/cpu/*.cpp share: masked loads and stores of float32 and
// bf16, exp and erf. Include only from files whose functions carry SIGMA_AVX512 and are
// called after avx512_available().
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <limits>

#include "models/kernels/cpu/kernels.h"

namespace sigma::models::cpu::detail {

// Every function that touches zmm registers carries this, so the rest of the binary stays
// runnable on any x86-64.
#define SIGMA_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))

constexpr int64_t kLanes = 16;

SIGMA_AVX512 inline __mmask16 tail_mask(int64_t n) { return static_cast<__mmask16>((1u << n) - 1u); }

// bf16 is float32's upper half: widen by a 16-bit shift; narrow with round-to-nearest-even and
// NaN kept quiet (c10::BFloat16's round_to_nearest_even, lane by lane).
SIGMA_AVX512 inline __m512 load_bf16(const uint16_t* p, __mmask16 m) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}
SIGMA_AVX512 inline void store_bf16(uint16_t* p, __m512 v, __mmask16 m) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
  r = _mm512_mask_blend_epi32(_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), r, _mm512_set1_epi32(0x7fc0));
  _mm256_mask_storeu_epi16(p, m, _mm512_cvtepi32_epi16(r));
}

template <DType D>
SIGMA_AVX512 inline __m512 load(const void* base, int64_t i, __mmask16 m, float fill) {
  if constexpr (D == DType::f32)
    return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), m, static_cast<const float*>(base) + i);
  else
    return _mm512_mask_blend_ps(m, _mm512_set1_ps(fill), load_bf16(static_cast<const uint16_t*>(base) + i, m));
}
template <DType D>
SIGMA_AVX512 inline void store(void* base, int64_t i, __m512 v, __mmask16 m) {
  if constexpr (D == DType::f32)
    _mm512_mask_storeu_ps(static_cast<float*>(base) + i, m, v);
  else
    store_bf16(static_cast<uint16_t*>(base) + i, v, m);
}

// exp(x): Cephes' expf (range reduction by ln 2 in two parts, degree-5 polynomial), scaled by
// 2^n with scalef, which also gives the overflow to inf and the gradual underflow. Below
// ln(2^-150) the result is 0 (exp(-inf) too); NaN stays NaN (min's second operand).
SIGMA_AVX512 inline __m512 exp512(__m512 x) {
  const __mmask16 zero = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-103.972084f), _CMP_LT_OQ);
  x = _mm512_min_ps(_mm512_set1_ps(88.7228394f), x);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_maskz_mov_ps(static_cast<__mmask16>(~zero), _mm512_scalef_ps(p, n));
}

// erf(x) by Abramowitz & Stegun 7.1.26 on |x|, sign restored.
SIGMA_AVX512 inline __m512 erf512(__m512 x) {
  const __m512 sign = _mm512_and_ps(x, _mm512_set1_ps(-0.0f));
  const __m512 ax = _mm512_andnot_ps(_mm512_set1_ps(-0.0f), x);
  const __m512 t = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_fmadd_ps(ax, _mm512_set1_ps(0.3275911f), _mm512_set1_ps(1.0f)));
  __m512 r = _mm512_set1_ps(1.061405429f);
  r = _mm512_fmadd_ps(r, t, _mm512_set1_ps(-1.453152027f));
  r = _mm512_fmadd_ps(r, t, _mm512_set1_ps(1.421413741f));
  r = _mm512_fmadd_ps(r, t, _mm512_set1_ps(-0.284496736f));
  r = _mm512_fmadd_ps(r, t, _mm512_set1_ps(0.254829592f));
  const __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(ax, ax)));
  const __m512 y = _mm512_fnmadd_ps(_mm512_mul_ps(r, t), e, _mm512_set1_ps(1.0f));
  return _mm512_or_ps(y, sign);
}

// softmax's first two passes over x[0, n) (D-typed at `in`): e[j] = exp(x[j] - max x) in
// float32 for j < n and 0 for n <= j < zero_to; returns the sum. e may be `in` itself (float32,
// in place). softmax_rows and the fused attention both start from it.
template <DType D>
SIGMA_AVX512 inline float exp_minus_max(const void* in, float* e, int64_t n, int64_t zero_to) {
  const float ninf = -std::numeric_limits<float>::infinity();
  __m512 vmax = _mm512_set1_ps(ninf);
  for (int64_t j = 0; j < n; j += kLanes)
    vmax = _mm512_max_ps(vmax, load<D>(in, j, tail_mask(std::min(kLanes, n - j)), ninf));
  const __m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
  __m512 vsum = _mm512_setzero_ps();
  for (int64_t j = 0; j < std::max(n, zero_to); j += kLanes) {
    const __mmask16 m = j < n ? tail_mask(std::min(kLanes, n - j)) : __mmask16(0);
    const __m512 v = _mm512_maskz_mov_ps(m, exp512(_mm512_sub_ps(load<D>(in, j, m, ninf), mx)));
    _mm512_mask_storeu_ps(e + j, tail_mask(std::min(kLanes, std::max(n, zero_to) - j)), v);
    vsum = _mm512_add_ps(vsum, v);
  }
  return _mm512_reduce_add_ps(vsum);
}

}  // namespace sigma::models::cpu::detail
