// The UNet-driven sampler references (kdiff.*, kdiff_v.*, diffusers.*: 40 runs of 10 steps
// with CFG 7.5) through the real tiny SD 1.x UNet, on the test device and dtype.
#include <doctest/doctest.h>

#include "models/families/loader.h"
#include "tests/sampler_cases.h"

TEST_SUITE("conformance.samplers") {
  TEST_CASE("samplers on the tiny UNet: k-diffusion, v-prediction and diffusers scheduler references") {
    c10::InferenceMode guard;
    const auto ck = sigma::models::open_checkpoint(sigma::test::sd15() + "/models/tiny-sd15.safetensors");
    auto unet = sigma::models::load_unet(ck, {sigma::test::test_device(), sigma::test::test_dtype()});
    const sigma::test::EpsNetwork eps = [&](const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& context) {
      return unet->forward(x, t, context);
    };
    auto report = sigma::test::run_sampler_conformance(eps);
    CHECK(report.total == 51);  // 40 UNet runs + 11 closed-form ones
    CHECK(report.passed == report.total);
  }

  TEST_CASE("samplers2 on the tiny UNet: ComfyUI's samplers, schedules and seed rules, k-diffusion, diffusers") {
    c10::InferenceMode guard;
    const auto ck = sigma::models::open_checkpoint(sigma::test::sd15() + "/models/tiny-sd15.safetensors");
    auto unet = sigma::models::load_unet(ck, {sigma::test::test_device(), sigma::test::test_dtype()});
    const sigma::test::EpsNetwork eps = [&](const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& context) {
      return unet->forward(x, t, context);
    };
    const auto out = sigma::test::run_samplers2_cases(eps);
    CHECK(out.report.total == 80);
    // Every case this build can run is within tolerance; the rest are named in the report.
    CHECK(out.report.passed + out.not_built == out.report.total);
  }
}
