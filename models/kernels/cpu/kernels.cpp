#include "models/kernels/cpu/kernels.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SIGMA_CPU_X86 1
#include "models/kernels/cpu/vec512.h"
#endif

namespace sigma::models::cpu {

#ifdef SIGMA_CPU_X86

bool avx512_available() {
  // libgcc's and compiler-rt's checks include the OS's XSAVE support of the zmm registers.
  static const bool yes = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  return yes;
}

namespace {

using namespace detail;

// One row: exp(x - max) into `e` (float32) with its sum, then e / sum into out.
template <DType D>
SIGMA_AVX512 void softmax_row(const void* in, void* out, float* e, int64_t n) {
  const __m512 inv = _mm512_set1_ps(1.0f / exp_minus_max<D>(in, e, n, n));
  for (int64_t j = 0; j < n; j += kLanes) {
    const __mmask16 m = tail_mask(std::min(kLanes, n - j));
    store<D>(out, j, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, e + j), inv), m);
  }
}

template <DType D>
SIGMA_AVX512 void geglu_row(const void* h, void* out, int64_t F) {
  for (int64_t j = 0; j < F; j += kLanes) {
    const __mmask16 m = tail_mask(std::min(kLanes, F - j));
    const __m512 a = load<D>(h, j, m, 0.0f), b = load<D>(h, F + j, m, 0.0f);
    const __m512 gelu = _mm512_mul_ps(_mm512_mul_ps(b, _mm512_set1_ps(0.5f)),
                                      _mm512_add_ps(_mm512_set1_ps(1.0f), erf512(_mm512_mul_ps(b, _mm512_set1_ps(0.70710678118654752f)))));
    store<D>(out, j, _mm512_mul_ps(a, gelu), m);
  }
}

size_t element_size(DType d) { return d == DType::f32 ? 4 : 2; }

const char* offset(const void* p, int64_t elements, DType d) {
  return static_cast<const char*>(p) + elements * static_cast<int64_t>(element_size(d));
}
char* offset(void* p, int64_t elements, DType d) {
  return static_cast<char*>(p) + elements * static_cast<int64_t>(element_size(d));
}

void require_avx512(const char* what) {
  if (!avx512_available()) throw std::logic_error(std::string(what) + ": this CPU has no AVX-512; use LibTorch's operator");
}

}  // namespace

void softmax_rows(const void* in, void* out, DType dtype, int64_t rows, int64_t cols, int64_t stride) {
  require_avx512("softmax_rows");
  thread_local std::vector<float> e;
  if (static_cast<int64_t>(e.size()) < cols) e.resize(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    const void* x = offset(in, r * stride, dtype);
    void* y = offset(out, r * stride, dtype);
    if (dtype == DType::f32) softmax_row<DType::f32>(x, y, e.data(), cols);
    else softmax_row<DType::bf16>(x, y, e.data(), cols);
  }
}

void geglu_rows(const void* h, void* out, DType dtype, int64_t rows, int64_t F, int64_t h_stride,
                int64_t out_stride) {
  require_avx512("geglu_rows");
  for (int64_t r = 0; r < rows; ++r) {
    const void* x = offset(h, r * h_stride, dtype);
    void* y = offset(out, r * out_stride, dtype);
    if (dtype == DType::f32) geglu_row<DType::f32>(x, y, F);
    else geglu_row<DType::bf16>(x, y, F);
  }
}

#else  // not x86-64: the callers keep LibTorch's operators

bool avx512_available() { return false; }
void softmax_rows(const void*, void*, DType, int64_t, int64_t, int64_t) {
  throw std::logic_error("softmax_rows: built without the x86-64 kernels");
}
void geglu_rows(const void*, void*, DType, int64_t, int64_t, int64_t, int64_t) {
  throw std::logic_error("geglu_rows: built without the x86-64 kernels");
}

#endif

}  // namespace sigma::models::cpu
