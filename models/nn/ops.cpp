#include "models/nn/ops.h"

#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>

#include "models/kernels/cpu_ops.h"
#include "models/kernels/cuda_ops.h"
#include "models/runtime/options.h"
#include "models/runtime/torch_compat.h"

namespace sigma::models {

namespace {

bool records_grad(const torch::Tensor& x, const torch::Tensor& weight) {
  return torch::GradMode::is_enabled() && (x.requires_grad() || (weight.defined() && weight.requires_grad()));
}

// The written-out attention. The heads come as transposed views; one copy each into
// [B·H, L, D] here, not one per slice inside matmul (which copied all of k and v again for
// every slice of rows). The scale goes on q (as PyTorch's own math SDPA does), not in a pass
// over the weights; not baddbmm's alpha either: with beta 0 LibTorch 1.13's small-matrix CPU
// kernel still reads the uninitialised input and turns it into NaN.
torch::Tensor math_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, bool causal) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  const int64_t Lq = q.size(-2), Lk = k.size(-2);
  const auto q3 = q.contiguous().view({-1, Lq, q.size(-1)}).mul(scale);
  const auto kt3 = k.contiguous().view({-1, Lk, k.size(-1)}).transpose(1, 2);
  const auto v3 = v.contiguous().view({-1, Lk, v.size(-1)});
  auto rows = [&](int64_t start, int64_t n) {
    auto w = torch::bmm(q3.narrow(1, start, n), kt3);
    if (causal) {
      auto mask = torch::ones({n, Lk}, q.options().dtype(torch::kBool)).triu(start + 1);
      w = w.masked_fill(mask, -std::numeric_limits<float>::infinity());
    }
    return torch::bmm(softmax_lastdim_(w), v3);
  };
  // The weights are [.., Lq, Lk]: at SD's 4096 latent pixels (512²) and 8 heads x CFG pair
  // that is 268 M numbers, twice over with the softmax. The rows are taken in slices of at
  // most kAttentionChunk weights: the same numbers, a bounded peak (A1111's split attention
  // on the CPU). 2 M weights (8 MB in float32) stay under glibc's largest mmap threshold
  // (32 MB), so the slices reuse heap memory instead of faulting in fresh pages for every
  // call, and a slice's bf16 weights stay in cache between the product, the softmax and the
  // product with v (SD 1.5's 4096-token bf16 attention on 2 cores: 566 ms with 2 M, 745 ms
  // with 4 M and the per-slice copies).
  const int64_t kAttentionChunk = int64_t(1) << 21;
  auto sizes = q.sizes().vec();
  sizes.back() = v.size(-1);
  return in_query_slices(q3, k, kAttentionChunk, rows).view(sizes);
}

}  // namespace

torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, bool causal) {
  if (compat::kHasFusedAttention) {
    const bool math = runtime_options().attention_math;
    // Flash attention takes head sizes up to 256; the VAE's one 512-wide head can fall to the
    // math kernel, whose weights at 1024² (16384 latent pixels) are 16384² floats: 1 GiB. Its
    // query rows go in slices of at most 64 M weights there.
    if (!math && q.size(-1) > 256 && !causal)
      return in_query_slices(q, k, int64_t(1) << 26, [&](int64_t start, int64_t n) {
        return compat::fused_sdpa(q.narrow(-2, start, n), k, v, false);
      });
    if (!math) return compat::fused_sdpa(q, k, v, causal);
  } else if (auto out = fused_attention(q, k, v, causal); out.defined()) {
    return out;  // our CPU kernel (models/kernels/cpu_ops.h)
  }
  return math_attention(q, k, v, causal);
}

torch::Tensor softmax_lastdim_(torch::Tensor x) {
  if (auto out = cpu_softmax_lastdim_(x); out.defined()) return out;
  return x.softmax(-1);
}

torch::Tensor geglu(const torch::Tensor& h) {
  if (auto out = cuda_geglu(h); out.defined()) return out;
  if (auto out = cpu_geglu(h); out.defined()) return out;
  auto halves = h.chunk(2, -1);
  return halves[0] * torch::gelu(halves[1]);
}

torch::Tensor layer_norm(torch::nn::LayerNormImpl& ln, const torch::Tensor& x) {
  const bool half = x.scalar_type() == torch::kBFloat16 || x.scalar_type() == torch::kFloat16;
  if (!x.is_cpu() || !half || records_grad(x, ln.weight)) return ln.forward(x);
  const auto f32 = [](const torch::Tensor& t) { return t.defined() ? t.to(torch::kFloat32) : t; };
  return torch::layer_norm(x.to(torch::kFloat32), ln.options.normalized_shape(), f32(ln.weight), f32(ln.bias),
                           ln.options.eps())
      .to(x.scalar_type());
}

torch::Tensor group_norm_act(torch::nn::GroupNormImpl& gn, const torch::Tensor& x, bool silu) {
  const bool needs_grad = records_grad(x, gn.weight);
  if (!needs_grad)
    if (auto out = cuda_group_norm_act(x, gn.options.num_groups(), gn.weight, gn.bias, gn.options.eps(), silu);
        out.defined())
      return out;
  // bf16/fp16 on the CPU is normalised in float32 (in the input's layout) and rounded back once,
  // after the SiLU. LibTorch 1.13's CPU GroupNorm is wrong on channels-last bf16 input (its
  // statistics stay in bf16: off by ~3 at 64²) and slow on any bf16 (207 us for [2, 64, 16, 16]
  // that float32 does in 16 us); its float32 kernel is right in both layouts.
  const bool half = x.scalar_type() == torch::kBFloat16 || x.scalar_type() == torch::kFloat16;
  if (!x.is_cuda() && half && !needs_grad) {
    const auto f32 = [](const torch::Tensor& t) { return t.defined() ? t.to(torch::kFloat32) : t; };
    auto h = torch::group_norm(x.to(torch::kFloat32), gn.options.num_groups(), f32(gn.weight), f32(gn.bias),
                               gn.options.eps());
    if (silu) h = torch::silu_(h);
    return h.to(x.scalar_type());
  }
  auto h = gn.forward(x);
  return silu ? torch::silu(h) : h;
}

}  // namespace sigma::models
