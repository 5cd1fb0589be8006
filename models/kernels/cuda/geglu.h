// GEGLU's gate (Shazeer 2020) as one CUDA kernel, for CUDA builds (models/kernels/cpu_ops.cpp calls it
// through models/kernels/cuda_ops.h; this header needs neither CUDA's nor LibTorch's headers).
//
// Why: LibTorch computes h[.., :F] * gelu(h[.., F:]) as two passes over chunked, strided halves
// that its elementwise kernels do not vectorise: 0.55 ms of SD 1.5's 8 ms CFG step on an H200.
#pragma once

#include <cstdint>

#include "models/kernels/cuda/group_norm.h"  // DType

namespace sigma::models::cuda {

// out[r, j] = h[r, j] * GELU(h[r, F + j]) (the exact, erf GELU) for `rows` rows of h [rows, 2F]
// and out [rows, F], both contiguous, of one dtype; float32 arithmetic, rounded once. Returns an
// error message or nullptr.
const char* geglu(const void* h, void* out, DType dtype, int64_t rows, int64_t F, void* stream);

}  // namespace sigma::models::cuda
