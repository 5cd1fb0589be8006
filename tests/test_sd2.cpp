// The SD 2.x family on sd2-tiny: OpenCLIP text encoder (stacked in_proj, GELU, the
// penultimate block), linear proj_in/proj_out with 64-wide heads, v-prediction, and
// diffusers' DDIM pipeline, from both layouts.
#include <doctest/doctest.h>

#include "app/pipeline.h"
#include "models/families/loader.h"
#include "tests/reference_request.h"

namespace {
using namespace sigma;
std::string sd2() { return test::fixtures() + "/sd2-tiny"; }
}  // namespace

TEST_SUITE("conformance.sd2") {
  TEST_CASE("SD 2.x: text encoder, v-prediction UNet and the DDIM v pipeline from both layouts") {
    auto refs = models::SafeTensors::open(sd2() + "/refs/refs.safetensors");
    auto ref = [&](const std::string& n) { return refs->load(n, torch::kFloat32); };
    const auto device = test::test_device();
    const auto dtype = test::test_dtype();
    test::CaseReport report("sd2");
    for (const auto& [layout, model] : {std::pair{"single-file", sd2() + "/models/tiny-sd2-v.safetensors"},
                                        std::pair{"diffusers", sd2() + "/models/tiny-sd2-diffusers"}}) {
      const auto ck = models::open_checkpoint(model);
      CHECK(ck.family == models::Family::SD2);
      CHECK(ck.prediction == "v");
      CHECK(ck.unet_config.linear_proj);
      {
        c10::InferenceMode guard;
        auto clip = models::load_text_encoder(ck, {device, dtype});
        auto unet = models::load_unet(ck, {device, dtype});
        CHECK(report.add(std::string("clip.context [") + layout + "]",
                         test::rel_error(clip->forward(refs->load("clip.ids")), ref("clip.context")), test::tolerance(1e-4)));
        auto out = unet->forward(ref("unet.x").to(device, dtype), ref("unet.t").to(device), ref("unet.context").to(device, dtype));
        CHECK(report.add(std::string("unet.out [") + layout + "]", test::rel_error(out, ref("unet.out")), test::tolerance(1e-4)));
      }
      const auto r = test::diffusers_ddim8_request(model, sd2() + "/models/tiny-sd2-diffusers/tokenizer");
      auto engine = app::Engine::load(app::model_spec(r));
      app::GenerateHooks hooks;
      hooks.initial_noise = ref("pipe.latents");
      auto out = app::generate(*engine, r, hooks);
      CHECK(report.add(std::string("pipe.ddim8_v.latent [") + layout + "]", test::rel_error(out.latents, ref("pipe.ddim8_v.latent")),
                       test::tolerance(1e-3)));
      c10::InferenceMode guard;
      CHECK(report.add(std::string("pipe.ddim8_v.image [") + layout + "]",
                       test::rel_error(app::decode_latents(*engine, out.latents), ref("pipe.ddim8_v.image")), test::tolerance(1e-3)));
    }
    report.close();
  }
}
