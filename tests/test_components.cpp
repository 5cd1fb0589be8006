// Conformance of the four networks against refs/components.safetensors (diffusers /
// transformers outputs in float32), from both checkpoint layouts, on the device and
// dtype the environment selects (SIGMA_TEST_DEVICE, SIGMA_TEST_DTYPE).
#include <doctest/doctest.h>

#include "controlnet/controlnet.h"
#include "models/families/loader.h"
#include "tests/support.h"

namespace {

using namespace sigma;

struct Layout {
  std::string name, model, controlnet;
};

std::vector<Layout> layouts() {
  const auto m = test::sd15() + "/models/";
  return {{"single-file", m + "tiny-sd15.safetensors", m + "tiny-controlnet.safetensors"},
          {"diffusers", m + "tiny-sd15-diffusers", m + "tiny-controlnet-diffusers"}};
}

}  // namespace

TEST_SUITE("conformance.components") {
  TEST_CASE("UNet, ControlNet, VAE and CLIP match the reference from both layouts") {
    c10::InferenceMode guard;
    const auto device = test::test_device();
    const auto dtype = test::test_dtype();
    const double tol = test::tolerance(1e-4);
    auto refs = models::SafeTensors::open(test::sd15() + "/refs/components.safetensors");
    auto ref = [&](const std::string& name) { return refs->load(name, torch::kFloat32); };
    auto in = [&](const std::string& name) { return ref(name).to(device, dtype); };
    std::printf("components on %s, %s:\n", device.str().c_str(), c10::toString(dtype));
    test::CaseReport report("conformance");

    for (const auto& layout : layouts()) {
      const auto ck = models::open_checkpoint(layout.model);
      const models::LoadOptions opt{device, dtype};
      auto unet = models::load_unet(ck, opt);
      auto vae = models::load_vae(ck, opt);
      auto clip = models::load_text_encoder(ck, opt);
      auto cn = controlnet::load_controlnet(controlnet::open_controlnet(layout.controlnet), device, dtype);
      const auto& L = layout.name;

      auto eps = unet->forward(in("unet.x"), ref("unet.t").to(device), in("unet.context"));
      CHECK(report.add("unet.out [" + L + "]", test::rel_error(eps, ref("unet.out")), tol));

      auto residuals = cn->forward(in("unet.x"), ref("unet.t").to(device), in("unet.context"), in("controlnet.hint"));
      double worst = test::rel_error(residuals.mid, ref("controlnet.mid"));
      REQUIRE(residuals.down.size() == 9);
      for (size_t i = 0; i < residuals.down.size(); ++i)
        worst = std::max(worst, test::rel_error(residuals.down[i], ref("controlnet.down." + std::to_string(i))));
      CHECK(report.add("controlnet.down.0-8 + mid (worst) [" + L + "]", worst, tol));

      auto controlled = unet->forward(in("unet.x"), ref("unet.t").to(device), in("unet.context"), &residuals);
      CHECK(report.add("unet.out_with_control [" + L + "]", test::rel_error(controlled, ref("unet.out_with_control")), tol));

      CHECK(report.add("vae.decoded [" + L + "]", test::rel_error(vae->decode(in("vae.z")), ref("vae.decoded")), tol));
      auto [mean, logvar] = vae->encode_moments(in("vae.image"));
      CHECK(report.add("vae.mean [" + L + "]", test::rel_error(mean, ref("vae.mean")), tol));
      CHECK(report.add("vae.logvar [" + L + "]", test::rel_error(logvar, ref("vae.logvar")), tol));

      auto ids = refs->load("clip.ids");
      CHECK(report.add("clip.last_hidden [" + L + "]", test::rel_error(clip->forward(ids, 1), ref("clip.last_hidden")), tol));
      CHECK(report.add("clip.penultimate_normed [" + L + "]",
                       test::rel_error(clip->forward(ids, 2), ref("clip.penultimate_normed")), tol));
    }
    report.close();
  }
}

TEST_SUITE("unit.checkpoint") {
  TEST_CASE("both layouts load to identical weights") {
    c10::InferenceMode guard;
    const auto single = models::open_checkpoint(layouts()[0].model);
    const auto diffusers = models::open_checkpoint(layouts()[1].model);
    const models::LoadOptions opt;
    test::check_same_parameters(*models::load_unet(single, opt), *models::load_unet(diffusers, opt));
    test::check_same_parameters(*models::load_vae(single, opt), *models::load_vae(diffusers, opt));
    test::check_same_parameters(*models::load_text_encoder(single, opt), *models::load_text_encoder(diffusers, opt));
    auto cn_a = controlnet::load_controlnet(controlnet::open_controlnet(layouts()[0].controlnet), torch::kCPU, torch::kFloat32);
    auto cn_b = controlnet::load_controlnet(controlnet::open_controlnet(layouts()[1].controlnet), torch::kCPU, torch::kFloat32);
    test::check_same_parameters(*cn_a, *cn_b);
  }

  TEST_CASE("configuration inferred from shapes") {
    for (const auto& layout : layouts()) {
      INFO(layout.name);
      const auto ck = models::open_checkpoint(layout.model);
      CHECK(ck.family == models::Family::SD1);
      CHECK(ck.unet_config.model_channels == 32);
      CHECK(ck.unet_config.channel_mult == std::vector<int64_t>{1, 2, 2});
      CHECK(ck.unet_config.num_res_blocks == 2);
      CHECK(ck.unet_config.transformer_depth == std::vector<int64_t>{1, 1, 0});
      CHECK(ck.unet_config.context_dim == 32);
      CHECK(ck.unet_config.num_heads == 8);
      CHECK_FALSE(ck.unet_config.linear_proj);
      CHECK(ck.vae_config.ch == 32);
      CHECK(ck.vae_config.ch_mult == std::vector<int64_t>{1, 1, 2, 2});
      CHECK(ck.vae_config.z_channels == 4);
      CHECK(ck.text_encoders[0].config.width == 32);
      CHECK(ck.text_encoders[0].config.layers == 3);
      CHECK(ck.text_encoders[0].config.heads == 4);
      CHECK(ck.unused.empty());
    }
  }
}
