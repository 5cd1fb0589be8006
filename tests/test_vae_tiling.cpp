// Tiled VAE decode/encode (models/vae/tiling.h) against the untiled networks: the same
// numbers up to the order of sums, on shapes that cut into uneven tiles, and far from them
// when the margin is too small (so the comparison can fail).
#include <cmath>

#include "app/engine.h"
#include "app/pipeline.h"
#include "models/families/checkpoint.h"
#include "models/families/loader.h"
#include "models/nn/ops.h"
#include "models/runtime/torch_compat.h"
#include "models/vae/tiling.h"
#include "tests/support.h"

using namespace sigma;

namespace {

models::VaeConfig small_vae() {
  models::VaeConfig c;
  c.ch = 32, c.ch_mult = {1, 2, 2}, c.num_res_blocks = 1;  // downscale 4
  return c;
}

// PSNR of two images whose values span `range` (2: the decoder's [-1, 1]).
double psnr(const torch::Tensor& a, const torch::Tensor& b, double range = 2) {
  auto d = ((a.to(torch::kFloat64) - b.to(torch::kFloat64)) / range).clamp(-1, 1);
  const double mse = d.pow(2).mean().item<double>();
  return mse == 0 ? INFINITY : 10 * std::log10(1.0 / mse);
}

}  // namespace

TEST_SUITE("unit.vae_tiling") {
  TEST_CASE("the margins cover the convolutions' reach of SD's VAE") {
    const models::VaeConfig sd;  // ch 128, ch_mult 1,2,4,4, 2 ResBlocks: 6 + 3.5 + 1.75 + 1 latent px
    CHECK(models::decoder_margin(sd) == 13);
    CHECK(models::encoder_margin(sd) == 80);  // 75 image px, on the 8-px latent grid
    CHECK(models::encoder_margin(small_vae()) % small_vae().downscale() == 0);
  }

  TEST_CASE("tiled decode equals the whole-image decode; too small a margin does not") {
    torch::manual_seed(3);
    c10::InferenceMode guard;
    models::AutoencoderKL vae(small_vae());
    auto z = torch::randn({2, 4, 20, 28});  // 3 x 4 uneven tiles of ~7 latent px
    const auto whole = vae->decode(z);
    models::VaeTiling t;
    t.tile = 7;
    const auto tiled = models::tiled_decode(*vae, z, t);
    REQUIRE(tiled.sizes() == whole.sizes());
    const double err = test::rel_error(tiled, whole);
    MESSAGE("tiled decode rel err " << err << ", margin " << models::decoder_margin(vae->config));
    CHECK(err < 1e-5);
    t.margin = 1;
    CHECK(test::rel_error(models::tiled_decode(*vae, z, t), whole) > 1e-3);
    t.margin = -1, t.tile = 64;  // one tile: the untiled arithmetic but for GroupNorm's
    CHECK(test::rel_error(models::tiled_decode(*vae, z, t), whole) < 1e-5);
  }

  TEST_CASE("tiled encode equals the whole-image encode; too small a margin does not") {
    torch::manual_seed(4);
    c10::InferenceMode guard;
    models::AutoencoderKL vae(small_vae());
    auto image = torch::rand({1, 3, 72, 104}) * 2 - 1;  // latent 18 x 26
    const auto [mean, logvar] = vae->encode_moments(image);
    models::VaeTiling t;
    t.tile = 8;
    const auto [tmean, tlogvar] = models::tiled_encode_moments(*vae, image, t);
    const double err = std::max(test::rel_error(tmean, mean), test::rel_error(tlogvar, logvar));
    MESSAGE("tiled encode rel err " << err << ", margin " << models::encoder_margin(vae->config) << " px");
    CHECK(err < 1e-5);
    t.margin = 0;
    CHECK(test::rel_error(models::tiled_encode_moments(*vae, image, t).first, mean) > 1e-3);
  }

  // In float32 the tiles reproduce the untiled decode to rounding. In bfloat16 both decodes
  // carry bf16's own error, which on the fixture's random weights is large (one attention
  // alone is ~5% off float32, in plain LibTorch matmul/softmax too) and lands differently with
  // the tiles' other convolution shapes; so there the test is that tiling adds no error: the
  // tiled decode is as close to the float32 one as the untiled decode is. Seams would not be.
  TEST_CASE("the fixture's VAE (SD's layout) decodes in tiles as exactly as untiled, in float32 and bfloat16") {
    c10::InferenceMode guard;
    const auto ck = models::open_checkpoint(test::sd15() + "/models/tiny-sd15.safetensors");
    auto reference = models::load_vae(ck, models::LoadOptions{});
    for (auto dtype : {torch::kFloat32, torch::kBFloat16}) {
      models::LoadOptions opt;
      opt.dtype = dtype;
      auto vae = models::load_vae(ck, opt);
      torch::manual_seed(5);
      auto z = torch::randn({1, 4, 40, 56}).to(dtype);  // a 448x320 picture in 3 x 4 tiles
      const auto truth = reference->decode(z.to(torch::kFloat32));
      models::VaeTiling t;
      t.tile = 16;
      const auto whole = vae->decode(z).to(torch::kFloat32), tiled = models::tiled_decode(*vae, z, t).to(torch::kFloat32);
      const double whole_db = psnr(whole, truth), tiled_db = psnr(tiled, truth);
      t.margin = 0;  // seams: each tile's convolutions see zeros where its neighbours are
      const double seams_db = psnr(models::tiled_decode(*vae, z, t).to(torch::kFloat32), truth);
      const std::string name = dtype == torch::kFloat32 ? "float32" : "bfloat16";
      MESSAGE(name << " vs float32 untiled: untiled " << whole_db << " dB, tiled " << tiled_db << " dB, tiled without margin "
                   << seams_db << " dB; tiled vs untiled " << psnr(tiled, whole) << " dB");
      if (dtype == torch::kFloat32) CHECK(test::rel_error(tiled, whole) < 1e-5);  // whole == truth here
      else CHECK(tiled_db >= whole_db - 0.5);
      CHECK(seams_db < whole_db - 3);
    }
  }

  TEST_CASE("generate with vae_tiling (--vae-tiling) writes the untiled picture; img2img encodes in tiles too") {
    c10::InferenceMode guard;
    app::Request r;
    r.model = test::sd15() + "/models/tiny-sd15.safetensors";
    r.prompt = "a red circle";
    r.width = 640, r.height = 128;  // latent 80 x 16: two 64-px tiles across
    r.steps = 2, r.seed = 7, r.device = "cpu", r.dtype = "fp32";
    auto engine = app::Engine::load(app::model_spec(r));
    CHECK_FALSE(app::vae_tiled(*engine, r, {1, 4, 16, 80}));  // 640x128 fits this machine whole
    const auto whole = app::generate(*engine, r);
    r.vae_tiling = true;
    CHECK(app::vae_tiled(*engine, r, {1, 4, 16, 80}));
    const auto tiled = app::generate(*engine, r);
    REQUIRE(whole.images.size() == 1);
    REQUIRE(tiled.images.size() == 1);
    const double db = psnr(app::image_to_tensor(tiled.images[0].image), app::image_to_tensor(whole.images[0].image), 1);
    MESSAGE("generate, tiled vs untiled VAE: " << db << " dB");
    CHECK(db >= 40.0);
    // The request field round-trips through the job-file / metadata JSON.
    CHECK(app::request_from_json(app::to_json(r)).vae_tiling);
    auto encoded = [&](bool tiled_encode) {
      auto image = app::image_to_tensor(whole.images[0].image) * 2 - 1;
      return app::encode_image(*engine, image, tiled_encode);
    };
    CHECK(test::rel_error(encoded(true), encoded(false)) < 1e-5);
  }
}

TEST_SUITE("gpu.vae_tiling") {
  TEST_CASE("on CUDA with the tiles parked in host memory: fp16 decode and encode >= 40 dB from untiled") {
    c10::InferenceMode guard;
    const auto ck = models::open_checkpoint(test::sd15() + "/models/tiny-sd15.safetensors");
    models::LoadOptions opt;
    opt.device = torch::kCUDA, opt.dtype = torch::kFloat16;
    auto vae = models::load_vae(ck, opt);
    torch::manual_seed(6);
    auto z = torch::randn({2, 4, 64, 96}).to(torch::kCUDA, torch::kFloat16);
    models::VaeTiling t;
    t.tile = 32, t.offload = true;
    const auto whole = vae->decode(z), tiled = models::tiled_decode(*vae, z, t);
    CHECK(tiled.device().is_cuda());
    const double db = psnr(tiled.cpu(), whole.cpu());
    MESSAGE("fp16 CUDA tiled vs untiled decode " << db << " dB");
    CHECK(db >= 40.0);
    auto image = (torch::rand({1, 3, 512, 768}) * 2 - 1).to(torch::kCUDA, torch::kFloat16);
    const auto mean = vae->encode_moments(image).first, tmean = models::tiled_encode_moments(*vae, image, t).first;
    const double err = test::rel_error(tmean, mean);
    MESSAGE("fp16 CUDA tiled vs untiled encode mean rel err " << err);
    CHECK(err < 1e-2);
  }
}

#if TORCH_VERSION_MAJOR >= 2  // the fused kernel exists from LibTorch 2.0
TEST_SUITE("gpu.vae_tiling") {
  TEST_CASE("the VAE's 512-wide attention in query slices equals one fused call") {
    c10::InferenceMode guard;
    torch::manual_seed(8);
    const auto opt = torch::TensorOptions().device(torch::kCUDA).dtype(torch::kFloat16);
    // 4 x 8192 x 8192 weights: above the slice budget, so models::attention slices the rows.
    auto q = torch::randn({4, 1, 8192, 512}, opt), k = torch::randn({4, 1, 8192, 512}, opt), v = torch::randn({4, 1, 8192, 512}, opt);
    const auto sliced = models::attention(q, k, v);
    const auto whole = at::scaled_dot_product_attention(q, k, v);
    const double err = test::rel_error(sliced, whole);
    MESSAGE("sliced vs whole attention rel err " << err);
    CHECK(err < 1e-3);
  }
}
#endif
