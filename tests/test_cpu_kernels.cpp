// The CPU kernels (models/kernels/cpu/kernels.h) and their LibTorch side (models/kernels/cpu_ops.h): softmax
// and GEGLU against float64 references, in float32 and bf16, over row widths that exercise the
// 16-lane loops and their masked tails; the bf16 LayerNorm / GroupNorm detours through float32.
#include <torch/torch.h>

#include <doctest/doctest.h>

#include <limits>

#include "models/diffusion/unet/blocks.h"
#include "models/kernels/cpu/kernels.h"
#include "models/kernels/cpu_ops.h"
#include "models/kernels/cuda_ops.h"
#include "models/nn/layers.h"
#include "models/nn/ops.h"
#include "models/runtime/options.h"

using namespace sigma;

namespace {

constexpr double kBf16HalfUlp = 1.0 / 256;  // round to nearest: |error| <= 2^-8 |x|

bool kernels_here() {
  if (models::cpu_kernels_enabled()) return true;
  MESSAGE("this CPU has no AVX-512 (or SIGMA_CPU_KERNELS=0): LibTorch's operators run, nothing to compare");
  return false;
}

// max over elements of |got - want| / (rel * |want| + abs_floor), want in float64; <= 1 passes.
double worst(const torch::Tensor& got, const torch::Tensor& want, double rel, double abs_floor) {
  const auto g = got.to(torch::kFloat64), w = want.to(torch::kFloat64);
  return ((g - w).abs() / (w.abs() * rel + abs_floor)).max().item<double>();
}

torch::Tensor gelu64(const torch::Tensor& b) {
  const auto x = b.to(torch::kFloat64);
  return 0.5 * x * (1 + torch::erf(x / std::sqrt(2.0)));
}

}  // namespace

TEST_SUITE("unit.cpu_kernels") {
  TEST_CASE("softmax rows in float32 are within a few ulp of float64, -inf masks and tails included") {
    if (!kernels_here()) return;
    c10::InferenceMode guard;
    torch::manual_seed(21);
    for (int64_t cols : {1, 4, 15, 16, 17, 77, 256, 1000, 4096}) {
      CAPTURE(cols);
      auto x = torch::randn({37, cols}) * 6;
      if (cols > 4) x.index_put_({torch::indexing::Slice(), torch::indexing::Slice(0, cols / 3)},
                                 -std::numeric_limits<float>::infinity());  // CLIP's causal mask
      const auto want = x.to(torch::kFloat64).softmax(-1);
      auto y = x.clone();
      const void* storage = y.data_ptr();
      auto out = models::softmax_lastdim_(y);
      CHECK(out.data_ptr() == storage);  // in place
      // exp ~1-2 ulp, the float32 sum of up to 4096 terms a few more: 4e-6 relative.
      CHECK(worst(out, want, 4e-6, 1e-30) <= 1.0);
      CHECK(out.sum(-1).sub(1).abs().max().item<double>() < 1e-5);
    }
  }

  TEST_CASE("softmax in bf16 is float32 arithmetic rounded once") {
    if (!kernels_here()) return;
    c10::InferenceMode guard;
    torch::manual_seed(22);
    for (int64_t cols : {7, 64, 77, 333}) {
      CAPTURE(cols);
      const auto x = (torch::randn({16, 3, cols}) * 4).to(torch::kBFloat16);
      const auto want = x.to(torch::kFloat64).softmax(-1);
      auto out = models::softmax_lastdim_(x.clone());
      CHECK((out.scalar_type() == torch::kBFloat16));
      CHECK(worst(out, want, kBf16HalfUlp + 1e-5, 1e-30) <= 1.0);
    }
  }

  TEST_CASE("an all -inf row gives NaN and large logits do not overflow, as in LibTorch") {
    if (!kernels_here()) return;
    c10::InferenceMode guard;
    auto x = torch::tensor({-INFINITY, -INFINITY, -INFINITY, 1000.0f, 999.0f, -1000.0f}).view({2, 3});
    auto lib = x.softmax(-1);
    auto ours = models::softmax_lastdim_(x.clone());
    CHECK(ours[0].isnan().all().item<bool>());
    CHECK(lib[0].isnan().all().item<bool>());
    CHECK(torch::allclose(ours[1], lib[1], 1e-6, 1e-7));
  }

  TEST_CASE("what the kernels do not take goes to LibTorch: other dtypes, strided views, autograd") {
    c10::InferenceMode guard;
    torch::manual_seed(23);
    const auto x = torch::randn({4, 9, 10});
    const auto strided = x.transpose(1, 2);
    const auto before = strided.clone();
    CHECK(torch::allclose(models::softmax_lastdim_(strided), before.softmax(-1), 1e-5, 1e-7));
    CHECK(torch::equal(strided, before));  // a view it did not take is left alone
    const auto h = x.to(torch::kFloat64);
    CHECK(torch::allclose(models::softmax_lastdim_(h), h.softmax(-1)));
  }

  TEST_CASE("autograd still flows through softmax and GEGLU (the training code calls them)") {
    torch::manual_seed(24);
    auto x = torch::randn({3, 8}, torch::requires_grad());
    auto s = models::softmax_lastdim_(x);
    (s * torch::arange(8)).sum().backward();
    REQUIRE(x.grad().defined());
    CHECK(x.grad().abs().sum().item<double>() > 0);
    auto h = torch::randn({2, 5, 12}, torch::requires_grad());
    models::geglu(h).sum().backward();
    REQUIRE(h.grad().defined());
  }

  TEST_CASE("GEGLU = a * GELU(b) within erf's 1.5e-7 and float32 rounding, tails included") {
    if (!kernels_here()) return;
    c10::InferenceMode guard;
    torch::manual_seed(25);
    for (int64_t F : {1, 15, 16, 33, 640}) {
      CAPTURE(F);
      const auto h = torch::randn({2, 11, 2 * F}) * 3;
      const auto a = h.narrow(-1, 0, F).to(torch::kFloat64), b = h.narrow(-1, F, F).to(torch::kFloat64);
      const auto want = a * gelu64(b);
      const auto got = models::geglu(h);
      CHECK(got.sizes() == want.sizes());
      // 1 + erf is off by A&S's 1.5e-7 plus two float32 roundings of numbers near 1 (2 x 1.2e-7),
      // which GELU scales by 0.5 |b| (and GEGLU by |a|); the products add a few ulp.
      const auto bound = a.abs() * b.abs() * 0.5 * 4e-7 + want.abs() * 6e-7 + 1e-30;
      CHECK(((got.to(torch::kFloat64) - want).abs() / bound).max().item<double>() <= 1.0);
      const auto hb = h.to(torch::kBFloat16);
      const auto ab = hb.narrow(-1, 0, F).to(torch::kFloat64), bb = hb.narrow(-1, F, F).to(torch::kFloat64);
      const auto want_b = ab * gelu64(bb);
      const auto bound_b = ab.abs() * bb.abs() * 1e-7 + want_b.abs() * (kBf16HalfUlp + 1e-5) + 1e-30;
      CHECK(((models::geglu(hb).to(torch::kFloat64) - want_b).abs() / bound_b).max().item<double>() <= 1.0);
    }
  }

  TEST_CASE("fused attention equals float64 attention: head sizes 1-160, cross, causal, strided views, bf16") {
    if (!kernels_here()) return;
    c10::InferenceMode guard;
    torch::manual_seed(27);
    struct Case {
      int64_t B, H, Lq, Lk, D;
      bool causal;
    };
    // The bundled model's 4-wide heads, SD's 40/64/160, CLIP's causal 77 tokens, and sizes that
    // leave every block, tail and small-head padding partly filled.
    for (const auto& c : {Case{2, 8, 256, 256, 4, false}, Case{2, 8, 256, 77, 4, false}, Case{1, 2, 70, 33, 1, false},
                          Case{2, 3, 45, 45, 7, false}, Case{1, 2, 40, 19, 12, false}, Case{2, 5, 100, 77, 40, false},
                          Case{1, 12, 77, 77, 64, true}, Case{1, 2, 33, 300, 160, false}, Case{1, 1, 9, 5, 256, false}}) {
      CAPTURE(c.D);
      CAPTURE(c.Lq);
      CAPTURE(c.Lk);
      CAPTURE(c.causal);
      // As the networks hold them: [B, L, H, D] projections viewed as [B, H, L, D].
      auto heads = [&](int64_t L) { return (torch::randn({c.B, L, c.H, c.D}) * 1.5).transpose(1, 2); };
      const auto q = heads(c.Lq), k = heads(c.Lk), v = heads(c.Lk);
      auto reference = [&](const torch::Tensor& q_, const torch::Tensor& k_, const torch::Tensor& v_) {
        auto w = torch::matmul(q_, k_.transpose(-1, -2)) / std::sqrt(double(c.D));
        if (c.causal) w = w.masked_fill(torch::ones({c.Lq, c.Lk}, torch::kBool).triu(1), -INFINITY);
        return torch::matmul(w.softmax(-1), v_);
      };
      const auto want = reference(q.to(torch::kFloat64), k.to(torch::kFloat64), v.to(torch::kFloat64));
      const auto got = models::fused_attention(q, k, v, c.causal, /*only_where_faster=*/false);
      REQUIRE(got.defined());
      CHECK(got.sizes() == want.sizes());
      CHECK(got.transpose(1, 2).is_contiguous());  // [B, L, H, D] underneath: the caller's reshape is free
      const double vmax = v.abs().max().item<double>();
      const double lib_err = (reference(q, k, v).to(torch::kFloat64) - want).abs().max().item<double>();
      const double err = (got.to(torch::kFloat64) - want).abs().max().item<double>();
      MESSAGE("fused " << err << " vs LibTorch float32 " << lib_err);
      CHECK(err <= std::max(4 * lib_err, 2e-6 * vmax));
      // bf16 storage: float32 arithmetic rounded once.
      const auto qb = q.to(torch::kBFloat16), kb = k.to(torch::kBFloat16), vb = v.to(torch::kBFloat16);
      const auto want_b = reference(qb.to(torch::kFloat64), kb.to(torch::kFloat64), vb.to(torch::kFloat64));
      const auto got_b = models::fused_attention(qb, kb, vb, c.causal, /*only_where_faster=*/false);
      REQUIRE(got_b.defined());
      CHECK(((got_b.to(torch::kFloat64) - want_b).abs() - want_b.abs() * kBf16HalfUlp).max().item<double>() <=
            1e-5 * vmax);
    }
  }

  TEST_CASE("fused attention declines what it does not take") {
    c10::InferenceMode guard;
    const auto q = torch::randn({1, 2, 8, 512});  // the VAE's 512-wide head
    CHECK_FALSE(models::fused_attention(q, q, q, false).defined());
    const auto h = torch::randn({1, 2, 8, 16}, torch::kFloat64);
    CHECK_FALSE(models::fused_attention(h, h, h, false).defined());
    const auto d_strided = torch::randn({1, 2, 16, 8}).transpose(2, 3);  // d not contiguous
    CHECK_FALSE(models::fused_attention(d_strided, d_strided, d_strided, false).defined());
    // Where it is slower: bf16 heads wider than 16 on a CPU with bf16 matrix units.
    const auto wide = torch::randn({1, 2, 8, 40}).to(torch::kBFloat16), narrow = torch::randn({1, 2, 8, 4}).to(torch::kBFloat16);
    if (models::cpu_kernels_enabled()) {
      CHECK(models::fused_attention(wide, wide, wide, false).defined() == !models::cpu_has_bf16_units());
      CHECK(models::fused_attention(narrow, narrow, narrow, false).defined());
      CHECK(models::fused_attention(wide.to(torch::kFloat32), wide.to(torch::kFloat32), wide.to(torch::kFloat32), false).defined());
    }
  }

  TEST_CASE("bf16 LayerNorm and GroupNorm + SiLU on the CPU are their float32 results rounded once") {
    c10::InferenceMode guard;
    torch::manual_seed(26);
    torch::nn::LayerNorm ln(torch::nn::LayerNormOptions({64}));
    ln->weight.uniform_(0.5, 1.5);
    ln->bias.uniform_(-0.5, 0.5);
    const auto x = (torch::randn({2, 256, 64}) * 3 + 1).to(torch::kBFloat16);
    const auto want_ln = ln->forward(x.to(torch::kFloat32));
    ln->to(torch::kBFloat16);
    const auto got_ln = models::layer_norm(*ln, x);
    CHECK((got_ln.scalar_type() == torch::kBFloat16));
    // The weights went through bf16 too: the reference uses the same rounded weights.
    const auto want_ln_b = torch::layer_norm(x.to(torch::kFloat32), {64}, ln->weight.to(torch::kFloat32),
                                             ln->bias.to(torch::kFloat32), 1e-5);
    CHECK(worst(got_ln, want_ln_b, kBf16HalfUlp + 1e-5, 1e-6) <= 1.0);
    CHECK(worst(got_ln, want_ln, 0.03, 0.03) <= 1.0);  // and near the float32-weight result

    auto gn = models::group_norm(64, 1e-6);
    gn->weight.uniform_(0.5, 1.5);
    gn->bias.uniform_(-0.5, 0.5);
    gn->to(torch::kBFloat16);
    const auto g = (torch::randn({2, 64, 9, 7}) * 3 + 1).to(torch::kBFloat16);
    const auto want_gn = torch::silu(torch::group_norm(g.to(torch::kFloat32), 32, gn->weight.to(torch::kFloat32),
                                                       gn->bias.to(torch::kFloat32), 1e-6));
    for (auto format : {torch::MemoryFormat::Contiguous, torch::MemoryFormat::ChannelsLast}) {
      const auto got = models::group_norm_act(*gn, g.contiguous(format), true);
      CHECK(got.is_contiguous(format));
      CHECK(worst(got, want_gn, kBf16HalfUlp + 1e-5, 1e-6) <= 1.0);
    }
  }
}
