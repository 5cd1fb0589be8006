// End to end against diffusers' own pipelines (refs/pipelines.safetensors): the same
// prompt, negative prompt, initial latents, DDIM (leading, steps_offset 1, ᾱ_0 end) and
// CFG 7.5 through our pipeline, from both checkpoint layouts, with and without ControlNet.
#include <doctest/doctest.h>

#include "app/image_io.h"
#include "app/pipeline.h"
#include "tests/reference_request.h"

using namespace sigma;

TEST_SUITE("e2e.pipeline") {
  TEST_CASE("diffusers StableDiffusionPipeline and ControlNet pipeline, both layouts") {
    auto refs = models::SafeTensors::open(test::sd15() + "/refs/pipelines.safetensors");
    const double tol = test::tolerance(1e-3);
    test::CaseReport report("pipelines");
    const auto dir = test::scratch("pipeline");
    // The binary hint survives 8-bit PNG exactly; the pipeline reads condition images from files.
    const auto hint_png = (dir / "hint.png").string();
    app::write_file_atomic(hint_png, app::encode_png(app::tensor_to_images(refs->load("control.hint") * 2 - 1)[0]), true);
    REQUIRE(torch::equal(app::image_to_tensor(app::load_image(hint_png)), refs->load("control.hint")));

    const auto m = test::sd15() + "/models/";
    for (const auto& [layout, model, cn] :
         {std::tuple{"single-file", m + "tiny-sd15.safetensors", m + "tiny-controlnet.safetensors"},
          std::tuple{"diffusers", m + "tiny-sd15-diffusers", m + "tiny-controlnet-diffusers"}}) {
      auto request = test::diffusers_ddim8_request(model, test::sd15() + "/models/tiny-sd15-diffusers/tokenizer");
      auto engine = app::Engine::load(app::model_spec(request));
      app::GenerateHooks hooks;
      hooks.initial_noise = refs->load("latents");
      auto out = app::generate(*engine, request, hooks);
      REQUIRE(out.images.size() == 1);
      CHECK(report.add(std::string("sd.ddim8.latent [") + layout + "]", test::rel_error(out.latents, refs->load("sd.ddim8.latent")), tol));
      c10::InferenceMode guard;
      auto image = app::decode_latents(*engine, out.latents);
      CHECK(report.add(std::string("sd.ddim8.image [") + layout + "]", test::rel_error(image, refs->load("sd.ddim8.image")), tol));

      request.controlnets.push_back({cn, hint_png, "none", 0.8, 0.0, 1.0, "crop", {}});
      auto controlled = app::generate(*engine, request, hooks);
      CHECK(report.add(std::string("sdcn.ddim8.latent [") + layout + "]",
                       test::rel_error(controlled.latents, refs->load("sdcn.ddim8.latent")), tol));
    }
    report.close();
  }
}
