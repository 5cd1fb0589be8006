#include "models/kernels/cpu/attention.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SIGMA_CPU_X86 1
#include "models/kernels/cpu/vec512.h"
#endif

namespace sigma::models::cpu {

namespace {

constexpr int64_t kTaskRows = 32;  // query rows per task: K's transposed block is reused across them
constexpr int64_t kBlockRows = 8;  // rows x kBlockKeys scores held in 16 zmm accumulators
constexpr int64_t kBlockKeys = 32;
constexpr int64_t kLanesPad = 16;

// Register blocks are arrays of zmm values: unrolled, they stay in registers (GCC's -O2 does
// not unroll them on its own, and spilled accumulators made the kernel 3x slower).
#define SIGMA_UNROLL _Pragma("GCC unroll 16")

int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }
// Keys rounded up to whole register blocks; rows of scores / transposed K and V lie `row_floats`
// apart, one vector more, so that 4096 keys do not put every row 16 KB apart: such rows share
// one L1 set, and a block's 40 rows of K then evicted each other (the kernel ran 3x slower).
int64_t padded_keys(const AttentionArgs& a) { return round_up(a.Lk, kBlockKeys); }
int64_t row_floats(const AttentionArgs& a) { return padded_keys(a) + kLanesPad; }
// Heads narrower than a vector take V transposed too (their weighted sum vectorises over keys),
// padded to 4, 8 or 16 rows.
int64_t small_head_rows(int64_t D) { return D <= 4 ? 4 : D <= 8 ? 8 : 16; }
bool small_head(const AttentionArgs& a) { return a.D < 16; }
int64_t floats_per_head(const AttentionArgs& a) {
  return (a.D + (small_head(a) ? small_head_rows(a.D) : 0)) * row_floats(a);
}

float scalar_at(const void* base, int64_t i, DType d) {
  if (d == DType::f32) return static_cast<const float*>(base)[i];
  const uint32_t bits = static_cast<uint32_t>(static_cast<const uint16_t*>(base)[i]) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

void scalar_store(void* base, int64_t i, float v, DType d) {
  if (d == DType::f32) {
    static_cast<float*>(base)[i] = v;
    return;
  }
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  const uint16_t b = v != v ? uint16_t(0x7fc0) : static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  static_cast<uint16_t*>(base)[i] = b;
}

int64_t head_offset(const int64_t* strides, int64_t b, int64_t h) { return b * strides[0] + h * strides[1]; }
int64_t row_tasks_per_head(const AttentionArgs& a) { return (a.Lq + kTaskRows - 1) / kTaskRows; }

}  // namespace

bool attention_supported(const AttentionArgs& a) {
  return avx512_available() && a.B > 0 && a.H > 0 && a.Lq > 0 && a.Lk > 0 && a.D > 0 && a.D <= kAttentionMaxHead &&
         (!a.causal || a.Lq == a.Lk);
}

size_t attention_workspace_floats(const AttentionArgs& a) {
  return static_cast<size_t>(a.B * a.H * floats_per_head(a));
}

int64_t attention_tasks(const AttentionArgs& a) { return a.B * a.H * row_tasks_per_head(a); }

void attention_prepare(const AttentionArgs& a, float* ws, int64_t bh_begin, int64_t bh_end) {
  const int64_t Lkp = row_floats(a);
  for (int64_t bh = bh_begin; bh < bh_end; ++bh) {
    const int64_t b = bh / a.H, h = bh % a.H;
    float* kT = ws + bh * floats_per_head(a);
    std::fill(kT, kT + floats_per_head(a), 0.0f);
    const int64_t k0 = head_offset(a.k_strides, b, h), v0 = head_offset(a.v_strides, b, h);
    for (int64_t j = 0; j < a.Lk; ++j)
      for (int64_t d = 0; d < a.D; ++d) kT[d * Lkp + j] = scalar_at(a.k, k0 + j * a.k_strides[2] + d, a.dtype);
    if (!small_head(a)) continue;
    float* vT = kT + a.D * Lkp;
    for (int64_t j = 0; j < a.Lk; ++j)
      for (int64_t d = 0; d < a.D; ++d) vT[d * Lkp + j] = scalar_at(a.v, v0 + j * a.v_strides[2] + d, a.dtype);
  }
}

#ifdef SIGMA_CPU_X86

namespace {

using namespace detail;

// scores[r][j0 .. j0+32) = q[r]·k[j] for the block's 8 rows; kT is [D][Lkp] (Lkp: the row stride).
SIGMA_AVX512 void scores_block(const float* q, int64_t D, const float* kT, int64_t Lkp, int64_t j0, float* s) {
  __m512 acc[kBlockRows][2];
  SIGMA_UNROLL
  for (auto& row : acc) row[0] = row[1] = _mm512_setzero_ps();
  for (int64_t d = 0; d < D; ++d) {
    const __m512 k0 = _mm512_loadu_ps(kT + d * Lkp + j0), k1 = _mm512_loadu_ps(kT + d * Lkp + j0 + kLanes);
    SIGMA_UNROLL
    for (int64_t r = 0; r < kBlockRows; ++r) {
      const __m512 qb = _mm512_set1_ps(q[r * D + d]);
      acc[r][0] = _mm512_fmadd_ps(qb, k0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(qb, k1, acc[r][1]);
    }
  }
  SIGMA_UNROLL
  for (int64_t r = 0; r < kBlockRows; ++r) {
    _mm512_storeu_ps(s + r * Lkp + j0, acc[r][0]);
    _mm512_storeu_ps(s + r * Lkp + j0 + kLanes, acc[r][1]);
  }
}

// out[r] = Σ_j p[r][j] v[j] for 4 rows, NV vectors of the head from d0 (V read in place).
template <DType T, int NV>
SIGMA_AVX512 void weighted_v_rows(const AttentionArgs& a, const float* p, int64_t Lkp, int64_t v0, int64_t d0,
                                  int64_t rows, const float* inv, int64_t out_row0) {
  __m512 acc[4][NV];
  __mmask16 mask[NV];
  SIGMA_UNROLL
  for (int c = 0; c < NV; ++c) mask[c] = tail_mask(std::clamp<int64_t>(a.D - d0 - c * kLanes, 0, kLanes));
  SIGMA_UNROLL
  for (auto& r : acc)
    for (auto& x : r) x = _mm512_setzero_ps();
  for (int64_t j = 0; j < a.Lk; ++j) {
    __m512 vv[NV];
    SIGMA_UNROLL
    for (int c = 0; c < NV; ++c) vv[c] = load<T>(a.v, v0 + j * a.v_strides[2] + d0 + c * kLanes, mask[c], 0.0f);
    SIGMA_UNROLL
    for (int r = 0; r < 4; ++r) {
      const __m512 pb = _mm512_set1_ps(p[r * Lkp + j]);
      SIGMA_UNROLL
      for (int c = 0; c < NV; ++c) acc[r][c] = _mm512_fmadd_ps(pb, vv[c], acc[r][c]);
    }
  }
  // Fixed trip counts: an accumulator indexed by a run-time row would live in memory.
  SIGMA_UNROLL
  for (int r = 0; r < 4; ++r) {
    if (r >= rows) break;
    SIGMA_UNROLL
    for (int c = 0; c < NV; ++c)
      store<T>(a.out, out_row0 + r * a.out_strides[2] + d0 + c * kLanes, _mm512_mul_ps(acc[r][c], _mm512_set1_ps(inv[r])),
               mask[c]);
  }
}

template <DType T>
SIGMA_AVX512 void weighted_v(const AttentionArgs& a, const float* p, int64_t Lkp, int64_t v0, int64_t rows,
                             const float* inv, int64_t out_row0) {
  for (int64_t g = 0; g < rows; g += 4)
    for (int64_t d0 = 0; d0 < a.D; d0 += 4 * kLanes) {
      const int64_t nv = std::min<int64_t>(4, (a.D - d0 + kLanes - 1) / kLanes);
      const float* pg = p + g * Lkp;
      const int64_t n = std::min<int64_t>(4, rows - g), o = out_row0 + g * a.out_strides[2];
      if (nv == 4) weighted_v_rows<T, 4>(a, pg, Lkp, v0, d0, n, inv + g, o);
      else if (nv == 3) weighted_v_rows<T, 3>(a, pg, Lkp, v0, d0, n, inv + g, o);
      else if (nv == 2) weighted_v_rows<T, 2>(a, pg, Lkp, v0, d0, n, inv + g, o);
      else weighted_v_rows<T, 1>(a, pg, Lkp, v0, d0, n, inv + g, o);
    }
}

// Heads narrower than a vector: out[r][d] = Σ_j p[r][j] vT[d][j], vectorised over keys, for
// NR = 16 / ND rows at a time (ND = the head padded to 4, 8 or 16; vT's padding rows are 0).
template <int ND>
SIGMA_AVX512 void weighted_v_small(const AttentionArgs& a, const float* p, int64_t Lkp, int64_t keys, const float* vT,
                                   int64_t rows, const float* inv, int64_t out_row0) {
  constexpr int NR = 16 / ND;
  for (int64_t g = 0; g < rows; g += NR) {
    __m512 acc[NR][ND];
    SIGMA_UNROLL
    for (auto& r : acc)
      for (auto& x : r) x = _mm512_setzero_ps();
    for (int64_t j = 0; j < keys; j += kLanes) {
      __m512 pr[NR];
      SIGMA_UNROLL
      for (int r = 0; r < NR; ++r) pr[r] = _mm512_loadu_ps(p + (g + r) * Lkp + j);
      SIGMA_UNROLL
      for (int d = 0; d < ND; ++d) {
        const __m512 vt = _mm512_loadu_ps(vT + d * Lkp + j);
        SIGMA_UNROLL
        for (int r = 0; r < NR; ++r) acc[r][d] = _mm512_fmadd_ps(pr[r], vt, acc[r][d]);
      }
    }
    SIGMA_UNROLL
    for (int r = 0; r < NR; ++r) {
      if (g + r >= rows) break;
      SIGMA_UNROLL
      for (int d = 0; d < ND; ++d)
        if (d < a.D)
          scalar_store(a.out, out_row0 + (g + r) * a.out_strides[2] + d, _mm512_reduce_add_ps(acc[r][d]) * inv[g + r],
                       a.dtype);
    }
  }
}

}  // namespace

SIGMA_AVX512 void attention_run(const AttentionArgs& a, const float* ws, int64_t task_begin, int64_t task_end) {
  if (!attention_supported(a)) throw std::logic_error("attention_run: arguments the kernel does not take");
  const int64_t keys = padded_keys(a), Lkp = row_floats(a), blocks = row_tasks_per_head(a);
  const int64_t q_rows = round_up(kTaskRows, kBlockRows);
  thread_local std::vector<float> s, q;
  s.resize(static_cast<size_t>(kTaskRows * Lkp));
  q.resize(static_cast<size_t>(q_rows * a.D));
  float inv[kTaskRows];
  for (int64_t t = task_begin; t < task_end; ++t) {
    const int64_t bh = t / blocks, r0 = (t % blocks) * kTaskRows, rows = std::min(kTaskRows, a.Lq - r0);
    const int64_t b = bh / a.H, h = bh % a.H;
    const float* kT = ws + bh * floats_per_head(a);
    // q rows scaled (as PyTorch's math attention does), zero past the last row.
    std::fill(q.begin(), q.end(), 0.0f);
    const int64_t q0 = head_offset(a.q_strides, b, h);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t d = 0; d < a.D; ++d)
        q[static_cast<size_t>(r * a.D + d)] = scalar_at(a.q, q0 + (r0 + r) * a.q_strides[2] + d, a.dtype) * a.scale;
    const int64_t sub_blocks = (rows + kBlockRows - 1) / kBlockRows;
    for (int64_t j0 = 0; j0 < keys; j0 += kBlockKeys)
      for (int64_t sb = 0; sb < sub_blocks; ++sb)
        scores_block(q.data() + sb * kBlockRows * a.D, a.D, kT, Lkp, j0, s.data() + sb * kBlockRows * Lkp);
    // Rows past the last (up to the 4-row groups below) weigh nothing.
    const int64_t padded_rows = std::min(kTaskRows, round_up(rows, 4));
    for (int64_t r = 0; r < padded_rows; ++r) {
      float* row = s.data() + r * Lkp;
      if (r >= rows) {
        std::fill(row, row + Lkp, 0.0f);
        inv[r] = 0;
        continue;
      }
      // exp(s - max) for the keys the row sees, 0 for the rest of the block's keys.
      inv[r] = 1.0f / exp_minus_max<DType::f32>(row, row, a.causal ? std::min(a.Lk, r0 + r + 1) : a.Lk, keys);
    }
    const int64_t out_row0 = head_offset(a.out_strides, b, h) + r0 * a.out_strides[2];
    if (small_head(a)) {
      const float* vT = kT + a.D * Lkp;
      const int64_t nd = small_head_rows(a.D);
      if (nd == 4) weighted_v_small<4>(a, s.data(), Lkp, keys, vT, rows, inv, out_row0);
      else if (nd == 8) weighted_v_small<8>(a, s.data(), Lkp, keys, vT, rows, inv, out_row0);
      else weighted_v_small<16>(a, s.data(), Lkp, keys, vT, rows, inv, out_row0);
    } else if (a.dtype == DType::f32) {
      weighted_v<DType::f32>(a, s.data(), Lkp, head_offset(a.v_strides, b, h), rows, inv, out_row0);
    } else {
      weighted_v<DType::bf16>(a, s.data(), Lkp, head_offset(a.v_strides, b, h), rows, inv, out_row0);
    }
  }
}

#else

void attention_run(const AttentionArgs&, const float*, int64_t, int64_t) {
  throw std::logic_error("attention_run: built without the x86-64 kernels");
}

#endif

}  // namespace sigma::models::cpu
