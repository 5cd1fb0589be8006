// Sigma Studio's own CPU kernels: plain C++ without LibTorch headers, in AVX-512 (chosen at
// run time; the caller keeps LibTorch's operators on CPUs without it, where these are not
// compiled to be faster). They exist because LibTorch 1.13's CPU softmax and GELU run its
// 8-wide AVX2 Sleef functions over several passes, and on the bundled model's small tensors
// and SD's 4096-token attention alike those passes were the largest part of a bf16 step
// (docs/performance.md, CPU). Arithmetic is float32 whatever the storage; bf16 results are
// rounded to nearest even, as c10::BFloat16 does.
#pragma once

#include <cstdint>

namespace sigma::models::cpu {

enum class DType { f32, bf16 };

// Whether this CPU (and its OS) runs the AVX-512 F/BW/VL/DQ code below.
bool avx512_available();

// softmax over each of `rows` rows of `cols` numbers, row r at in + r * stride (elements), into
// out at the same offsets; in == out is allowed. exp() is Cephes' polynomial (~1 ulp in
// float32); an all -inf row gives NaN, as LibTorch's softmax does.
void softmax_rows(const void* in, void* out, DType dtype, int64_t rows, int64_t cols, int64_t stride);

// GEGLU's second half (Shazeer 2020), row by row: h's rows are [a | b], 2F numbers each
// (h_stride apart), and out's row r (F numbers, out_stride apart) is a * GELU(b), the exact
// (erf) GELU with erf from Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7, the formula
// PyTorch 2.x's AVX-512 erf uses).
void geglu_rows(const void* h, void* out, DType dtype, int64_t rows, int64_t F, int64_t h_stride,
                int64_t out_stride);

}  // namespace sigma::models::cpu
