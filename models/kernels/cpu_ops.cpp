#include "models/kernels/cpu_ops.h"

#include <ATen/Parallel.h>

#include <cmath>

#include "models/kernels/cpu/attention.h"
#include "models/kernels/cpu/kernels.h"
#include "models/runtime/options.h"

namespace sigma::models {

bool cpu_kernels_enabled() {
  static const bool on = runtime_options().cpu_kernels && cpu::avx512_available();
  return on;
}

namespace {

// The kernels' storage type for x, or nullopt where LibTorch runs (another device or dtype,
// autograd, kernels off).
std::optional<cpu::DType> storage_dtype(const torch::Tensor& x) {
  if (!x.is_cpu() || !cpu_kernels_enabled()) return std::nullopt;
  if (torch::GradMode::is_enabled() && x.requires_grad()) return std::nullopt;
  if (x.scalar_type() == torch::kFloat32) return cpu::DType::f32;
  if (x.scalar_type() == torch::kBFloat16) return cpu::DType::bf16;
  return std::nullopt;
}

std::optional<cpu::DType> kernel_dtype(const torch::Tensor& x) {
  return x.is_contiguous() ? storage_dtype(x) : std::nullopt;
}

// at::parallel_for over rows of `cols` numbers, in tasks of at least ~32 K numbers (less
// work than that costs more to hand to another thread than it saves).
template <class Fn>
void over_rows(int64_t rows, int64_t cols, Fn&& fn) {
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(1, cols));
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) { fn(begin, end - begin); });
}

}  // namespace

torch::Tensor cpu_softmax_lastdim_(torch::Tensor x) {
  const auto dtype = kernel_dtype(x);
  if (!dtype || x.dim() == 0 || x.numel() == 0) return {};
  const int64_t cols = x.size(-1), rows = x.numel() / cols;
  char* base = static_cast<char*>(x.data_ptr());
  const int64_t row_bytes = cols * static_cast<int64_t>(x.element_size());
  over_rows(rows, cols, [&](int64_t r, int64_t n) {
    cpu::softmax_rows(base + r * row_bytes, base + r * row_bytes, *dtype, n, cols, cols);
  });
  return x;
}

torch::Tensor cpu_geglu(const torch::Tensor& h) {
  const auto dtype = kernel_dtype(h);
  const int64_t F = h.size(-1) / 2;
  if (!dtype || h.dim() == 0 || h.size(-1) % 2 != 0 || h.numel() == 0) return {};
  auto sizes = h.sizes().vec();
  sizes.back() = F;
  auto out = torch::empty(sizes, h.options());
  const int64_t rows = h.numel() / (2 * F);
  const auto* in = static_cast<const char*>(h.data_ptr());
  auto* o = static_cast<char*>(out.data_ptr());
  const int64_t es = static_cast<int64_t>(h.element_size());
  over_rows(rows, 2 * F, [&](int64_t r, int64_t n) {
    cpu::geglu_rows(in + r * 2 * F * es, o + r * F * es, *dtype, n, F, 2 * F, F);
  });
  return out;
}

torch::Tensor fused_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, bool causal,
                              bool only_where_faster) {
  const auto dtype = storage_dtype(q);
  if (!dtype || q.dim() != 4 || k.dim() != 4 || v.dim() != 4) return {};
  for (const auto* t : {&k, &v})
    if (storage_dtype(*t) != dtype) return {};
  for (const auto* t : {&q, &k, &v})
    if (t->stride(3) != 1) return {};
  cpu::AttentionArgs a;
  a.dtype = *dtype;
  a.B = q.size(0), a.H = q.size(1), a.Lq = q.size(2), a.Lk = k.size(2), a.D = q.size(3);
  if (k.size(0) != a.B || k.size(1) != a.H || k.size(3) != a.D || v.sizes() != k.sizes()) return {};
  a.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(a.D)));
  a.causal = causal;
  if (!cpu::attention_supported(a)) return {};
  // Where the kernel pays (2-core Sapphire Rapids, docs/performance.md): float32 at every head
  // size (its FMA loops beat bmm + softmax + bmm up to 3x, tie at 160-wide heads), bf16 up to
  // 16-wide heads (the bundled model's 4: 2.5x). Wider bf16 heads go faster through oneDNN's
  // bf16 matrix units in the three-operator path (SD's 40-wide 4096-token heads: 2.7x).
  if (only_where_faster && a.dtype == cpu::DType::bf16 && a.D > 16 && cpu_has_bf16_units()) return {};
  auto out = torch::empty({a.B, a.Lq, a.H, a.D}, q.options());
  const torch::Tensor* ts[] = {&q, &k, &v};
  int64_t* strides[] = {a.q_strides, a.k_strides, a.v_strides};
  for (int i = 0; i < 3; ++i)
    for (int d = 0; d < 3; ++d) strides[i][d] = ts[i]->stride(d);
  a.out_strides[0] = out.stride(0), a.out_strides[1] = out.stride(2), a.out_strides[2] = out.stride(1);
  a.q = q.data_ptr(), a.k = k.data_ptr(), a.v = v.data_ptr(), a.out = out.data_ptr();
  auto ws = torch::empty({static_cast<int64_t>(cpu::attention_workspace_floats(a))}, q.options().dtype(torch::kFloat32));
  float* w = ws.data_ptr<float>();
  at::parallel_for(0, a.B * a.H, 1, [&](int64_t b, int64_t e) { cpu::attention_prepare(a, w, b, e); });
  at::parallel_for(0, cpu::attention_tasks(a), 1, [&](int64_t b, int64_t e) { cpu::attention_run(a, w, b, e); });
  return out.transpose(1, 2);
}

}  // namespace sigma::models
