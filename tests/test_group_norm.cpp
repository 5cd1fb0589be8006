// group_norm_act (models/kernels/cuda_ops.h): LibTorch's GroupNorm + SiLU on the CPU (float32 bit for
// bit; bf16 through float32);
// on CUDA the fused kernels, in both layouts and the three dtypes, against a float64
// GroupNorm of the same input. And the channels-last convolution bias kernel (models/nn/layers.cpp).
#include <torch/torch.h>

#include <doctest/doctest.h>

#include <tuple>

#include "models/diffusion/unet/blocks.h"
#include "models/kernels/cpu_ops.h"
#include "models/kernels/cuda_ops.h"
#include "models/nn/layers.h"
#include "models/nn/ops.h"
#include "tests/support.h"

using namespace sigma;

namespace {

// torch.nn.GroupNorm in float64 (biased variance, eps inside the root), then SiLU.
torch::Tensor reference(const torch::Tensor& x, int64_t groups, const torch::Tensor& gamma, const torch::Tensor& beta,
                        double eps, bool silu) {
  auto y = torch::group_norm(x.to(torch::kCPU, torch::kFloat64).contiguous(), groups,
                             gamma.defined() ? gamma.to(torch::kCPU, torch::kFloat64) : torch::Tensor(),
                             beta.defined() ? beta.to(torch::kCPU, torch::kFloat64) : torch::Tensor(), eps);
  return silu ? torch::silu(y) : y;
}

double max_abs(const torch::Tensor& t) { return t.abs().max().item<double>(); }

}  // namespace

TEST_SUITE("unit.group_norm") {
  TEST_CASE("on the CPU group_norm_act is LibTorch's GroupNorm then SiLU, bit for bit") {
    torch::NoGradGuard no_grad;
    torch::manual_seed(3);
    auto gn = models::group_norm(64, 1e-6);
    gn->weight.uniform_(0.5, 1.5);
    gn->bias.uniform_(-0.5, 0.5);
    const auto x = torch::randn({2, 64, 9, 7}) * 3 + 1;
    CHECK(torch::equal(models::group_norm_act(*gn, x, true), torch::silu(gn->forward(x))));
    CHECK(torch::equal(models::group_norm_act(*gn, x, false), gn->forward(x)));
    const auto cl = x.contiguous(torch::MemoryFormat::ChannelsLast);
    CHECK(torch::equal(models::group_norm_act(*gn, cl, true), torch::silu(gn->forward(cl))));
  }

  TEST_CASE("on the CPU a channels-last bf16 input is normalised as well as an NCHW one") {
    // LibTorch 1.13's NHWC bf16 kernel alone was off by ~3 here (its statistics in bf16).
    torch::NoGradGuard no_grad;
    torch::manual_seed(4);
    auto gn = models::group_norm(320, 1e-5);
    gn->weight.uniform_(0.5, 1.5);
    gn->bias.uniform_(-0.5, 0.5);
    gn->to(torch::kBFloat16);
    const auto x = (torch::randn({2, 320, 64, 64}) * 3 + 1).to(torch::kBFloat16);
    // float32 from the same bf16 numbers: what is left is the bf16 arithmetic and output rounding.
    const auto ref = torch::silu(torch::group_norm(x.to(torch::kFloat32), 32, gn->weight.to(torch::kFloat32),
                                                   gn->bias.to(torch::kFloat32), 1e-5));
    const auto cl = x.contiguous(torch::MemoryFormat::ChannelsLast);
    const auto ours = models::group_norm_act(*gn, cl, true);
    CHECK(ours.is_contiguous(torch::MemoryFormat::ChannelsLast));
    const double err = (ours.to(torch::kFloat32) - ref).abs().max().item<double>();
    MESSAGE("bf16 channels-last GroupNorm + SiLU vs float32: max error " << err);
    // float32 arithmetic rounded to bf16 once (models/kernels/cuda_ops.cpp): half a bf16 ulp, 2^-8 |y|,
    // at outputs up to ~8; the NHWC bf16 kernel was off by ~3.
    CHECK(err < 0.04);
  }
}

TEST_SUITE("gpu.group_norm") {
  TEST_CASE("the fused CUDA kernels equal a float64 GroupNorm in NCHW and NHWC, fp32/fp16/bf16") {
    if (!models::fused_group_norm_enabled()) {
      MESSAGE("this build has no fused GroupNorm kernels (no nvcc): nothing to compare");
      return;
    }
    c10::InferenceMode guard;
    torch::manual_seed(11);
    struct Shape {
      int64_t N, C, H, W, G;
    };
    // UNet and VAE widths (C/G = 10, 20, 40, 80, 4, 8, 16), a concatenated 1920 (C/G = 60),
    // odd widths and sizes that defeat the vector loads (C/G = 3, H·W = 63), one pixel,
    // and a VAE-sized 128 x 256 x 256 image.
    const std::vector<Shape> shapes = {{2, 320, 64, 64, 32},  {2, 640, 32, 32, 32}, {2, 1280, 8, 8, 32},
                                       {2, 2560, 8, 8, 32},   {1, 128, 256, 256, 32}, {1, 256, 96, 64, 32},
                                       {1, 512, 64, 64, 32},  {2, 1920, 16, 16, 32}, {3, 96, 9, 7, 32},
                                       {1, 64, 1, 1, 32},     {2, 48, 5, 5, 16}};
    int cases = 0;
    for (const auto dtype : {torch::kFloat32, torch::kFloat16, torch::kBFloat16}) {
      // float16/bfloat16 round the output to ~2^-11 / 2^-8 of its size: a few units of that.
      const double tol = dtype == torch::kFloat32 ? 2e-6 : dtype == torch::kFloat16 ? 1.5e-3 : 1e-2;
      for (const auto& s : shapes) {
        const auto opt = torch::TensorOptions().device(torch::kCUDA).dtype(dtype);
        // A mean well away from 0 per channel, so a variance that cancels would show.
        const auto x = (torch::randn({s.N, s.C, s.H, s.W}) * 2 + torch::randn({1, s.C, 1, 1}) * 4 + 3).to(opt);
        const auto gamma = (torch::rand({s.C}) + 0.5).to(opt), beta = (torch::rand({s.C}) - 0.5).to(opt);
        for (const bool channels_last : {false, true}) {
          const auto in = channels_last ? x.contiguous(torch::MemoryFormat::ChannelsLast) : x.contiguous();
          for (const bool silu : {true, false}) {
            const bool affine = silu || s.C != 1280;  // one case without γ and β
            const auto g = affine ? gamma : torch::Tensor(), b = affine ? beta : torch::Tensor();
            const auto ours = models::fused_group_norm(in, s.G, g, b, 1e-6, silu);
            const auto ref = reference(in, s.G, g, b, 1e-6, silu);
            const double err = max_abs(ours.to(torch::kCPU, torch::kFloat64) - ref) / max_abs(ref);
            INFO(std::string(c10::toString(dtype)) << " [" << s.N << "," << s.C << "," << s.H << "," << s.W << "] G=" << s.G
                                      << (channels_last ? " NHWC" : " NCHW") << (silu ? " +SiLU" : "")
                                      << (affine ? "" : " no affine") << ": max err " << err);
            CHECK(err <= tol);
            CHECK((ours.scalar_type() == dtype));
            CHECK(ours.is_contiguous(channels_last ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous));
            ++cases;
          }
        }
      }
    }
    MESSAGE("fused GroupNorm: " << cases << " cases compared");
  }

  TEST_CASE("group_norm_act on CUDA takes the kernels and matches LibTorch's GroupNorm + SiLU") {
    if (!models::fused_group_norm_enabled()) {
      MESSAGE("this build has no fused GroupNorm kernels: nothing to compare");
      return;
    }
    torch::manual_seed(12);
    auto gn = models::group_norm(320, 1e-5);
    {
      torch::NoGradGuard no_grad;
      gn->to(torch::kCUDA, torch::kFloat16);
      gn->weight.uniform_(0.5, 1.5);
      gn->bias.uniform_(-0.5, 0.5);
    }
    c10::InferenceMode guard;
    const auto x = torch::randn({2, 320, 64, 64}, torch::TensorOptions().device(torch::kCUDA).dtype(torch::kFloat16))
                       .contiguous(torch::MemoryFormat::ChannelsLast);
    const auto ours = models::group_norm_act(*gn, x, true), theirs = torch::silu(gn->forward(x));
    const double err = test::rel_error(ours, theirs);
    MESSAGE("group_norm_act vs LibTorch, fp16 NHWC: rel err " << err);
    CHECK(err < 1e-3);
    CHECK(ours.is_contiguous(torch::MemoryFormat::ChannelsLast));
  }

  TEST_CASE("a channels-last convolution's bias, added by the kernel, is LibTorch's conv2d + bias bit for bit") {
    torch::manual_seed(13);
    for (const auto dtype : {torch::kFloat32, torch::kFloat16, torch::kBFloat16})
      for (const auto& [cin, cout, k] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{{4, 320, 3}, {320, 320, 1}, {64, 3, 3}, {12, 36, 3}}) {
        models::layers::Conv2d conv(models::layers::Conv2dOptions(cin, cout, k).padding(k / 2));
        {
          torch::NoGradGuard no_grad;
          conv->to(torch::kCUDA, dtype);
          conv->bias.uniform_(-2, 2);
          conv->weight.set_data(conv->weight.contiguous(torch::MemoryFormat::ChannelsLast));
        }
        c10::InferenceMode guard;
        const auto x = torch::randn({2, cin, 24, 40}, torch::TensorOptions().device(torch::kCUDA).dtype(dtype))
                           .contiguous(torch::MemoryFormat::ChannelsLast);
        const auto ours = conv->forward(x);
        const auto theirs = torch::conv2d(x, conv->weight, conv->bias, 1, k / 2);
        INFO(std::string(c10::toString(dtype)) << " " << cin << "->" << cout << " k" << k);
        CHECK(ours.is_contiguous(torch::MemoryFormat::ChannelsLast));
        CHECK(torch::equal(ours, theirs));
      }
  }

  TEST_CASE("the ResBlock's per-image bias rides on the conv's bias: within one rounding of float64") {
    if (!models::fused_bias_enabled()) {
      MESSAGE("this build has no bias kernel: nothing to compare");
      return;
    }
    torch::manual_seed(14);
    for (const auto dtype : {torch::kFloat32, torch::kFloat16, torch::kBFloat16})
      for (const bool with_bias : {true, false}) {
        models::layers::Conv2d conv(models::layers::Conv2dOptions(32, 320, 3).padding(1).bias(with_bias));
        {
          torch::NoGradGuard no_grad;
          conv->to(torch::kCUDA, dtype);
          if (with_bias) conv->bias.uniform_(-2, 2);
          conv->weight.set_data(conv->weight.contiguous(torch::MemoryFormat::ChannelsLast));
        }
        c10::InferenceMode guard;
        const auto opts = torch::TensorOptions().device(torch::kCUDA).dtype(dtype);
        const auto x = torch::randn({2, 32, 24, 40}, opts).contiguous(torch::MemoryFormat::ChannelsLast);
        const auto emb = torch::randn({2, 320}, opts) * 3;
        const auto ours = conv->forward_with_image_bias(x, emb);
        auto want = torch::conv2d(x, conv->weight, {}, 1, 1).to(torch::kFloat64) +
                    emb.to(torch::kFloat64).view({2, 320, 1, 1});
        if (with_bias) want = want + conv->bias.to(torch::kFloat64).view({1, 320, 1, 1});
        INFO(std::string(c10::toString(dtype)) << (with_bias ? " with" : " without") << " the conv's bias");
        CHECK(ours.is_contiguous(torch::MemoryFormat::ChannelsLast));
        // Rounded once: half an ulp of the result (2^-24 float32, 2^-11 fp16, 2^-8 bf16) plus
        // float32's error in the two additions.
        const double half_ulp = dtype == torch::kFloat32 ? 6e-8 : dtype == torch::kFloat16 ? 4.9e-4 : 3.9e-3;
        const auto err = (ours.to(torch::kFloat64) - want).abs() - want.abs() * half_ulp;
        CHECK(err.max().item<double>() <= 4e-6);
      }
  }

  TEST_CASE("the GEGLU kernel is a * GELU(b) in float32, rounded once") {
    c10::InferenceMode guard;
    torch::manual_seed(15);
    const auto probe = torch::zeros({1, 4}, torch::TensorOptions().device(torch::kCUDA));
    if (!models::cuda_geglu(probe).defined()) {
      MESSAGE("this build has no GEGLU kernel: nothing to compare");
      return;
    }
    for (const auto dtype : {torch::kFloat32, torch::kFloat16, torch::kBFloat16})
      for (const auto& shape : std::vector<std::vector<int64_t>>{{2, 4096, 2560}, {3, 7, 66}, {5, 2}}) {
        const auto h = (torch::randn(shape, torch::TensorOptions().device(torch::kCUDA)) * 3).to(dtype);
        const auto got = models::geglu(h);
        const int64_t F = shape.back() / 2;
        const auto h64 = h.to(torch::kFloat64);
        const auto a = h64.narrow(-1, 0, F), b = h64.narrow(-1, F, F);
        const auto want = a * 0.5 * b * (1 + torch::erf(b / std::sqrt(2.0)));
        INFO(std::string(c10::toString(dtype)) << " F " << F);
        REQUIRE(got.sizes() == want.sizes());
        // Half an ulp of the output; erff's 2 ulp and float32's roundings of 1 + erf (~4e-7 in
        // all, as in unit.cpu_kernels) scaled by GELU's 0.5 |b| and the gate's |a|.
        const double half_ulp = dtype == torch::kFloat32 ? 6e-8 : dtype == torch::kFloat16 ? 4.9e-4 : 3.9e-3;
        const auto bound = a.abs() * b.abs() * 0.5 * 4e-7 + want.abs() * (half_ulp + 1e-6) + 1e-7;
        CHECK(((got.to(torch::kFloat64) - want).abs() / bound).max().item<double>() <= 1.0);
      }
  }
}
