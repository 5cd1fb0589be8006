// The `sigma` binary on an NVIDIA GPU, the whole way a user's run goes (request -> seeded
// noise -> sampling -> VAE decode -> PNG), in each dtype. The conformance suites inject
// their initial noise and call the networks directly, so a fault that only this path has
// (an all-black picture in float32 on CUDA was one) is caught here. The reference is the
// same command on the CPU in float32.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>

#include "app/engine.h"
#include "app/image_io.h"
#include "app/parameters.h"
#include "app/pipeline.h"
#include "models/cuda_graph.h"
#include "models/loader.h"
#include "models/safetensors.h"
#include "tests/support.h"

namespace {
using namespace sigma;

Image generate(const std::string& device, const std::string& dtype) {
  const auto out = (test::scratch("gpu-cli-" + device + "-" + dtype) / "out.png").string();
  const auto [code, log] = test::sigma_cli("generate -p \"a large red circle on the left on a white background\" -s 7 -q --device " + device +
                           " --dtype " + dtype + " -o " + out);
  INFO(log);
  REQUIRE(code == 0);
  return app::load_image(out);
}

struct Stats {
  double mean = 0, stddev = 0;
};
Stats stats(const Image& img) {
  Stats s;
  for (uint8_t v : img.pixels) s.mean += v;
  s.mean /= static_cast<double>(img.pixels.size());
  for (uint8_t v : img.pixels) s.stddev += (v - s.mean) * (v - s.mean);
  s.stddev = std::sqrt(s.stddev / static_cast<double>(img.pixels.size()));
  return s;
}

double psnr(const Image& a, const Image& b) {
  REQUIRE(a.pixels.size() == b.pixels.size());
  double mse = 0;
  for (size_t i = 0; i < a.pixels.size(); ++i) mse += std::pow(double(a.pixels[i]) - double(b.pixels[i]), 2);
  mse /= static_cast<double>(a.pixels.size());
  return mse == 0 ? INFINITY : 10 * std::log10(255.0 * 255.0 / mse);
}
}  // namespace

TEST_SUITE("gpu.cli_path") {
  TEST_CASE("sigma generate on CUDA in fp32, fp16 and bf16 writes the CPU's picture, never a black or NaN one") {
    const Image cpu = generate("cpu", "fp32");
    const Stats ref = stats(cpu);
    // The bundled model draws a red circle on white: a bright picture with structure.
    REQUIRE(ref.mean > 100);
    REQUIRE(ref.stddev > 20);
    Image gpu_fp32;
    for (const char* dtype : {"fp32", "fp16", "bf16"}) {
      CAPTURE(dtype);
      const Image gpu = generate("cuda", dtype);
      if (std::string(dtype) == "fp32") gpu_fp32 = gpu;
      // Issue 13's parity gate: the fp16 picture stays >= 35 dB from the fp32 one.
      if (std::string(dtype) == "fp16") CHECK(psnr(gpu, gpu_fp32) >= 35.0);
      const Stats s = stats(gpu);
      const double db = psnr(gpu, cpu);
      std::printf("gpu.cli_path %s: mean %.1f (cpu %.1f), stddev %.1f (cpu %.1f), PSNR vs cpu fp32 %.1f dB\n", dtype, s.mean,
                  ref.mean, s.stddev, ref.stddev, db);
      // A black (NaN decoded) or flat picture fails these whatever the dtype's rounding.
      CHECK(s.mean > 100);
      CHECK(s.stddev > 20);
      // The same seed and request: the same picture up to the dtype's rounding.
      CHECK(db >= 30.0);
    }
  }
}

TEST_SUITE("gpu.cli_path") {
  TEST_CASE("a float16 VAE decode that overflows is redone in float32: the picture is finite and says so") {
    // The tiny fixture with a decoder whose first convolution leaves float16's range
    // (|x| > 65504) while staying well inside float32's: the float16 decode gives Inf,
    // then NaN after the GroupNorm; float32 decodes it.
    const auto dir = test::scratch("fp16-vae-overflow");
    const auto base = models::SafeTensors::open(test::sd15() + "/models/tiny-sd15.safetensors");
    std::vector<std::pair<std::string, torch::Tensor>> tensors;
    for (const auto& t : base->tensors()) {
      auto v = base->load(t.name, torch::kFloat32);
      if (t.name == "first_stage_model.decoder.conv_in.bias") v.fill_(60000);
      if (t.name == "first_stage_model.decoder.conv_in.weight") v.fill_(2000);
      tensors.emplace_back(t.name, v);
    }
    const auto model = (dir / "overflowing-vae.safetensors").string();
    models::save_safetensors(model, tensors);

    app::Request r;
    r.model = model;
    r.tokenizer = test::sd15() + "/models/tiny-sd15-diffusers/tokenizer";
    r.prompt = "a red circle";
    r.width = r.height = 64;
    r.steps = 2;
    r.seed = 3;
    r.device = "cuda";
    r.dtype = "fp16";
    auto engine = app::Engine::load(app::model_spec(r));
    {
      // The float16 decode alone really is not finite (else this test proves nothing).
      c10::InferenceMode guard;
      auto z = torch::randn({1, 4, 8, 8}).to(engine->device(), engine->dtype());
      CHECK(!torch::isfinite(app::decode_latents(*engine, z)).all().item<bool>());
    }
    const auto out = app::generate(*engine, r);
    REQUIRE(out.images.size() == 1);
    CHECK(out.images[0].record.vae_retry == "float32 (float16 overflowed)");
    CHECK(out.images[0].parameters.find("VAE retry: float32 (float16 overflowed)") != std::string::npos);
    const Stats s = stats(out.images[0].image);
    std::printf("gpu.cli_path fp16 VAE overflow: retried in float32, mean %.1f stddev %.1f\n", s.mean, s.stddev);
  }
}

TEST_SUITE("gpu.cli_path") {
  TEST_CASE("the CUDA-graph UNet step equals the eager step (fp16, <= 1e-3 relative) and is captured once per shape") {
    REQUIRE(models::GraphCache::enabled());
    c10::InferenceMode guard;
    auto ck = models::open_checkpoint(test::sd15() + "/models/tiny-sd15.safetensors");
    auto unet = models::load_unet(ck, models::LoadOptions{torch::Device(torch::kCUDA), torch::kFloat16});
    const auto h = torch::TensorOptions().device(torch::kCUDA).dtype(torch::kFloat16);
    const auto f = torch::TensorOptions().device(torch::kCUDA).dtype(torch::kFloat32);
    models::GraphCache graphs;
    auto call = [&](const std::vector<torch::Tensor>& in) { return unet->forward(in[0], in[1], in[2], nullptr, in[3]); };
    torch::manual_seed(5);
    for (int i = 0; i < 3; ++i) {  // new inputs each time: the replay must read them, not the captured ones
      auto x = torch::randn({2, 4, 16, 16}, h), t = torch::full({2}, 100.0 + 300 * i, f);
      auto ctx = torch::randn({2, 77, unet->config.context_dim}, h);
      const auto eager = unet->forward(x, t, ctx);
      const auto graphed = graphs.run({x, t, ctx, torch::Tensor()}, call);
      const double err = test::rel_error(graphed, eager);
      std::printf("gpu.cli_path CUDA graph vs eager, call %d: rel err %.2e\n", i, err);
      CHECK(err <= 1e-3);
    }
    CHECK(graphs.captured() == 1);
    graphs.run({torch::randn({4, 4, 16, 16}, h), torch::full({4}, 10.0, f), torch::randn({4, 77, unet->config.context_dim}, h),
                torch::Tensor()},
               call);
    CHECK(graphs.captured() == 2);  // another batch size: its own graph
  }
}
