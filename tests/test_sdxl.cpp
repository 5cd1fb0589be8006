// The SDXL family on sdxl-tiny: two text encoders (CLIP-L in Hugging Face names, OpenCLIP-bigG
// in OpenCLIP names with the stacked in_proj and the transposed text_projection), both read at
// the penultimate layer without the final LayerNorm, the pooled vector, and the UNet's
// additional embedding of [pooled, Fourier(time_ids)], and diffusers' StableDiffusionXLPipeline
// (Euler, leading, 8 steps, CFG 5) end to end, from both layouts.
#include <doctest/doctest.h>

#include "app/conditioning.h"
#include "app/pipeline.h"
#include "models/families/checkpoint_info.h"
#include "models/families/loader.h"
#include "tests/reference_request.h"

namespace {
using namespace sigma;
std::string sdxl() { return test::fixtures() + "/sdxl-tiny"; }

struct SdxlLayout {
  std::string name, model;
};
std::vector<SdxlLayout> sdxl_layouts() {
  return {{"single-file", sdxl() + "/models/tiny-sdxl.safetensors"}, {"diffusers", sdxl() + "/models/tiny-sdxl-diffusers"}};
}

// Both encoders as the family describes them: [context [B,77,sum of widths], pooled [B,P]].
std::pair<torch::Tensor, torch::Tensor> encode(const models::Checkpoint& ck, const models::LoadOptions& opt,
                                               const torch::Tensor& ids_1, const torch::Tensor& ids_2) {
  const auto& roles = ck.description.text_encoders;
  REQUIRE(roles.size() == 2);
  auto clip_1 = models::load_text_encoder(ck, opt, 0);
  auto clip_2 = models::load_text_encoder(ck, opt, 1);
  auto h1 = clip_1->forward(ids_1, roles[0].clip_skip, roles[0].final_norm);
  auto [h2, pooled] = clip_2->forward_pooled(ids_2, roles[1].clip_skip, roles[1].final_norm);
  return {torch::cat({h1, h2}, -1), pooled};
}

models::TensorIndex keys(const std::vector<std::string>& names) {
  models::TensorIndex index;
  for (const auto& n : names) index[n] = models::TensorRef{};
  return index;
}

}  // namespace

TEST_SUITE("conformance.sdxl") {
  TEST_CASE("SDXL: text encoders, pooled vector and UNet with micro-conditioning from both layouts") {
    auto refs = models::SafeTensors::open(sdxl() + "/refs/refs.safetensors");
    auto ref = [&](const std::string& n) { return refs->load(n, torch::kFloat32); };
    const auto device = test::test_device();
    const auto dtype = test::test_dtype();
    auto in = [&](const std::string& n) { return ref(n).to(device, dtype); };
    const double tol = test::tolerance(1e-4);
    std::printf("sdxl on %s, %s:\n", device.str().c_str(), c10::toString(dtype));
    test::CaseReport report("sdxl");
    for (const auto& layout : sdxl_layouts()) {
      const auto ck = models::open_checkpoint(layout.model);
      REQUIRE(ck.family == models::Family::SDXL);
      const auto& L = layout.name;
      c10::InferenceMode guard;
      const models::LoadOptions opt{device, dtype};
      auto [context, pooled] = encode(ck, opt, refs->load("clip.ids_1"), refs->load("clip.ids_2"));
      CHECK(report.add("clip.context [" + L + "]", test::rel_error(context, ref("clip.context")), tol));
      CHECK(report.add("clip.pooled [" + L + "]", test::rel_error(pooled, ref("clip.pooled")), tol));

      auto unet = models::load_unet(ck, opt);
      auto y = models::additional_embedding_input(in("unet.text_embeds"), ref("unet.time_ids"), ck.description.fourier_dim);
      auto out = unet->forward(in("unet.x"), ref("unet.t").to(device), in("unet.context"), nullptr, y);
      CHECK(report.add("unet.out [" + L + "]", test::rel_error(out, ref("unet.out")), tol));
    }
    // The app's conditioning (tokenizers, padding per encoder, chunks, penultimate states, pooled):
    // "a red circle on the left" and the empty negative prompt, encoded as text (not zeros).
    for (const auto& layout : sdxl_layouts()) {
      auto r = test::diffusers_ddim8_request(layout.model, "");
      auto engine = app::Engine::load(app::model_spec(r));
      c10::InferenceMode guard;
      auto c = app::encode_prompts(*engine, "a red circle on the left", "", 1, "original");
      const auto context = ref("clip.context"), pooled = ref("clip.pooled");
      const auto& L = layout.name;
      CHECK(report.add("app conditioning: context, pooled [" + L + "]",
                       std::max({test::rel_error(c.cond, context.narrow(0, 0, 1)), test::rel_error(c.uncond, context.narrow(0, 1, 1)),
                                 test::rel_error(c.pooled_cond, pooled.narrow(0, 0, 1)),
                                 test::rel_error(c.pooled_uncond, pooled.narrow(0, 1, 1))}),
                       tol));
    }
    // The pipeline: the single file finds no tokenizer beside it and uses the bundled CLIP
    // vocabulary (assets/clip-bpe, padded per encoder); the folder brings tokenizer/ and tokenizer_2/.
    const double pipe_tol = test::tolerance(1e-3);
    for (const auto& layout : sdxl_layouts()) {
      auto r = test::diffusers_ddim8_request(layout.model, "");
      r.sampler = "euler";
      r.cfg = 5.0;
      auto engine = app::Engine::load(app::model_spec(r));
      REQUIRE(engine->native_size() == 1024);
      app::GenerateHooks hooks;
      hooks.initial_noise = ref("pipe.latents");
      auto out = app::generate(*engine, r, hooks);
      REQUIRE(out.images.size() == 1);
      const auto& L = layout.name;
      CHECK(report.add("pipe.euler8.latent [" + L + "]", test::rel_error(out.latents, ref("pipe.euler8.latent")), pipe_tol));
      c10::InferenceMode guard;
      CHECK(report.add("pipe.euler8.image [" + L + "]",
                       test::rel_error(app::decode_latents(*engine, out.latents), ref("pipe.euler8.image")), pipe_tol));
    }
    report.close();
  }
}

TEST_SUITE("unit.sdxl") {
  TEST_CASE("SDXL configuration inferred from shapes, both layouts") {
    for (const auto& layout : sdxl_layouts()) {
      INFO(layout.name);
      const auto ck = models::open_checkpoint(layout.model);
      CHECK(ck.family == models::Family::SDXL);
      CHECK(ck.prediction == "eps");
      CHECK_FALSE(ck.zero_terminal_snr);
      const auto& u = ck.unet_config;
      CHECK(u.model_channels == 64);
      CHECK(u.channel_mult == std::vector<int64_t>{1, 1, 1});
      CHECK(u.transformer_depth == std::vector<int64_t>{0, 2, 2});  // the tensors (and unet/config.json) say 2 at both levels
      CHECK(u.middle_transformer_depth == 2);
      CHECK(u.linear_proj);
      CHECK(u.head_dim == 64);
      CHECK(u.context_dim == 32);
      CHECK(u.adm_in_channels == 64);
      const auto& d = ck.description;
      CHECK(d.context_dim == 32);
      CHECK(d.pooled_dim == 16);
      CHECK(d.fourier_dim == 8);
      CHECK(d.adm_in_channels == 64);
      CHECK(ck.vae_config.scaling_factor == doctest::Approx(0.13025));
      CHECK(d.vae_fp16_upcast);  // float16 pipelines keep SDXL's VAE in float32
      REQUIRE(d.text_encoders.size() == 2);
      CHECK(d.text_encoders[1].pooled);
      CHECK_FALSE(d.text_encoders[0].final_norm);
      CHECK(ck.text_encoders[0].config.width == 16);
      CHECK(ck.text_encoders[0].config.heads == 2);
      CHECK(ck.text_encoders[0].config.quick_gelu);
      CHECK(ck.text_encoders[0].config.projection_dim == 0);
      CHECK(ck.text_encoders[1].config.width == 16);
      CHECK(ck.text_encoders[1].config.heads == 2);
      CHECK(ck.text_encoders[1].config.layers == 3);
      CHECK_FALSE(ck.text_encoders[1].config.quick_gelu);
      CHECK(ck.text_encoders[1].config.projection_dim == 16);
      CHECK(ck.text_encoders[1].weights.count("text_projection.weight"));
      CHECK(ck.unused.empty());
    }
    const auto folder = models::open_checkpoint(sdxl_layouts()[1].model);
    CHECK(folder.text_encoders[1].tokenizer_dir.find("tokenizer_2") != std::string::npos);
  }

  TEST_CASE("real SDXL sizes are inferred from shapes alone (no weights needed)") {
    auto shaped = [](models::TensorIndex& idx, const std::string& k, std::vector<int64_t> shape) {
      idx[k] = models::TensorRef{nullptr, k, std::move(shape), {}, {}};
    };
    // sd_xl_base_1.0's UNet: 320 channels, mult (1, 2, 4), depth (0, 2, 10), middle 10,
    // linear projections, context 2048, label_emb input 2816.
    models::TensorIndex u;
    shaped(u, "input_blocks.0.0.weight", {320, 4, 3, 3});
    shaped(u, "out.2.weight", {4, 320, 3, 3});
    const std::vector<int64_t> ch = {320, 640, 1280}, depth = {0, 2, 10};
    int block = 1;
    for (size_t level = 0; level < 3; ++level) {
      for (int r = 0; r < 2; ++r, ++block) {
        const auto b = "input_blocks." + std::to_string(block) + ".";
        shaped(u, b + "0.out_layers.3.weight", {ch[level], ch[level], 3, 3});
        for (int64_t d = 0; d < depth[level]; ++d) {
          const auto t = b + "1.transformer_blocks." + std::to_string(d) + ".";
          shaped(u, t + "norm1.weight", {ch[level]});
          shaped(u, t + "attn2.to_k.weight", {ch[level], 2048});
        }
        if (depth[level]) shaped(u, b + "1.proj_in.weight", {ch[level], ch[level]});
      }
      if (level < 2) shaped(u, "input_blocks." + std::to_string(block++) + ".0.op.weight", {ch[level], ch[level], 3, 3});
    }
    for (int d = 0; d < 10; ++d) shaped(u, "middle_block.1.transformer_blocks." + std::to_string(d) + ".norm1.weight", {1280});
    shaped(u, "label_emb.0.0.weight", {1280, 2816});
    const auto c = models::infer_unet_config(u, models::Family::SDXL, "real SDXL");
    CHECK(c.channel_mult == std::vector<int64_t>{1, 2, 4});
    CHECK(c.transformer_depth == std::vector<int64_t>{0, 2, 10});
    CHECK(c.middle_transformer_depth == 10);
    CHECK(c.context_dim == 2048);
    CHECK(c.adm_in_channels == 2816);
    CHECK(c.linear_proj);
    CHECK(c.heads_for(640) == 10);
    CHECK(c.heads_for(1280) == 20);
    // OpenCLIP-bigG (encoder 2) and CLIP-L (encoder 1).
    auto clip = [&](int64_t width, int64_t layers, int64_t mlp, bool projection) {
      models::TensorIndex t;
      shaped(t, "text_model.embeddings.token_embedding.weight", {49408, width});
      shaped(t, "text_model.embeddings.position_embedding.weight", {77, width});
      for (int64_t i = 0; i < layers; ++i) shaped(t, "text_model.encoder.layers." + std::to_string(i) + ".layer_norm1.weight", {width});
      shaped(t, "text_model.encoder.layers.0.mlp.fc1.weight", {mlp, width});
      if (projection) shaped(t, "text_projection.weight", {width, width});
      return t;
    };
    const auto g = models::infer_clip_config(clip(1280, 32, 5120, true), models::Family::SDXL, "bigG", 1);
    CHECK(g.layers == 32);
    CHECK(g.heads == 20);
    CHECK(g.mlp == 5120);
    CHECK_FALSE(g.quick_gelu);
    CHECK(g.projection_dim == 1280);
    const auto l = models::infer_clip_config(clip(768, 12, 3072, false), models::Family::SDXL, "CLIP-L", 0);
    CHECK(l.heads == 12);
    CHECK(l.quick_gelu);
    CHECK(l.projection_dim == 0);
  }

  TEST_CASE("SDXL: both layouts load identical weights") {
    c10::InferenceMode guard;
    const auto single = models::open_checkpoint(sdxl_layouts()[0].model);
    const auto diffusers = models::open_checkpoint(sdxl_layouts()[1].model);
    const models::LoadOptions opt;
    test::check_same_parameters(*models::load_unet(single, opt), *models::load_unet(diffusers, opt));
    test::check_same_parameters(*models::load_vae(single, opt), *models::load_vae(diffusers, opt));
    test::check_same_parameters(*models::load_text_encoder(single, opt, 0), *models::load_text_encoder(diffusers, opt, 0));
    test::check_same_parameters(*models::load_text_encoder(single, opt, 1), *models::load_text_encoder(diffusers, opt, 1));
  }

  TEST_CASE("family detection from the keys and configs") {
    const std::string p = "m.safetensors";
    using models::Family;
    CHECK(models::detect_single_file_family(keys({"model.diffusion_model.input_blocks.0.0.weight",
                                                  "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"}),
                                            p) == Family::SD1);
    CHECK(models::detect_single_file_family(
              keys({"model.diffusion_model.input_blocks.0.0.weight", "cond_stage_model.model.token_embedding.weight"}), p) ==
          Family::SD2);
    CHECK(models::detect_single_file_family(keys({"model.diffusion_model.label_emb.0.0.weight",
                                                  "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight",
                                                  "conditioner.embedders.1.model.token_embedding.weight"}),
                                            p) == Family::SDXL);
    auto message = [](const std::function<void()>& f) {
      try {
        f();
      } catch (const models::ModelLoadError& e) {
        return std::string(e.what());
      }
      return std::string();
    };
    // The refiner: one OpenCLIP-bigG encoder in embedders.0.
    CHECK(message([&] {
            models::detect_single_file_family(
                keys({"model.diffusion_model.label_emb.0.0.weight", "conditioner.embedders.0.model.token_embedding.weight"}), p);
          }).find("refiner") != std::string::npos);
    CHECK(message([&] { models::detect_single_file_family(keys({"model.diffusion_model.input_blocks.0.0.weight"}), p); })
              .find("no text encoder") != std::string::npos);

    const nlohmann::json sdxl_unet = {{"addition_embed_type", "text_time"}};
    const nlohmann::json clip_l = {{"hidden_act", "quick_gelu"}}, open_clip = {{"hidden_act", "gelu"}};
    CHECK(models::detect_diffusers_family(sdxl_unet, clip_l, true, true, p) == Family::SDXL);
    CHECK(models::detect_diffusers_family(nlohmann::json::object(), clip_l, true, true, p) == Family::SDXL);
    CHECK(models::detect_diffusers_family(nlohmann::json::object(), clip_l, true, false, p) == Family::SD1);
    CHECK(models::detect_diffusers_family(nlohmann::json::object(), open_clip, true, false, p) == Family::SD2);
    CHECK(message([&] { models::detect_diffusers_family(sdxl_unet, open_clip, false, true, p); }).find("refiner") !=
          std::string::npos);
    CHECK(message([&] { models::detect_diffusers_family(sdxl_unet, clip_l, true, false, p); }).find("text_encoder_2") !=
          std::string::npos);

    // The descriptions are data: real SDXL sizes.
    const auto& xl = models::family_description(Family::SDXL);
    CHECK(xl.context_dim == 2048);
    CHECK(xl.adm_in_channels == xl.pooled_dim + xl.micro_conditioning * xl.fourier_dim);
    CHECK(xl.native_size == 1024);
    CHECK(xl.vae_scale == doctest::Approx(0.13025));
    CHECK(models::family_description(Family::SD1).vae_scale == doctest::Approx(0.18215));
  }

  TEST_CASE("SDXL engine: a tokenizer per encoder, micro-conditioning from the request, no ControlNet yet") {
    for (const auto& layout : sdxl_layouts()) {
      INFO(layout.name);
      auto r = test::diffusers_ddim8_request(layout.model, "");
      auto engine = app::Engine::load(app::model_spec(r));
      CHECK(engine->tokenizer(0).pad() == 49407);  // CLIP-L pads with the end token
      CHECK(engine->tokenizer(1).pad() == 0);      // OpenCLIP-bigG with "!"
      CHECK(engine->latent_format().scale == doctest::Approx(0.13025));
      CHECK(engine->latent_format().rgb[0][0].item<float>() == doctest::Approx(0.3651));  // SDXL's own preview colours
      std::string error;
      try {
        engine->controlnet(test::sd15() + "/models/tiny-controlnet.safetensors");
      } catch (const models::ModelLoadError& e) {
        error = e.what();
      }
      CHECK(error.find("not supported yet") != std::string::npos);
    }
    {
      // A1111's chunks and BREAK on both encoders; the pooled vector is the first chunk's.
      auto engine = app::Engine::load(app::model_spec(test::diffusers_ddim8_request(sdxl_layouts()[0].model, "")));
      c10::InferenceMode guard;
      auto two = app::encode_prompts(*engine, "a red circle BREAK on the (left:1.2)", "", 1, "original");
      auto one = app::encode_prompts(*engine, "a red circle", "", 1, "original");
      CHECK(two.chunks == 2);
      CHECK(two.cond.sizes() == torch::IntArrayRef({1, 154, 32}));
      CHECK(two.uncond.sizes() == torch::IntArrayRef({1, 154, 32}));
      CHECK(test::rel_error(two.cond.narrow(1, 0, 77), one.cond) < 1e-6);
      CHECK(test::rel_error(two.pooled_cond, one.pooled_cond) < 1e-6);
      CHECK(two.pooled_cond.sizes() == torch::IntArrayRef({1, 16}));
    }
    app::Request r;
    r.width = 1024;
    r.height = 768;
    CHECK(app::micro_conditioning(r) == std::array<double, 6>{768, 1024, 0, 0, 768, 1024});
    r.original_width = 2048;
    r.original_height = 1536;
    r.crop_top = 16;
    r.crop_left = 32;
    r.target_width = 512;
    r.target_height = 512;
    CHECK(app::micro_conditioning(r) == std::array<double, 6>{1536, 2048, 16, 32, 512, 512});
    CHECK(app::request_from_json(app::to_json(r)) == r);
    CHECK(app::request_from_json({{"crop_top", 8}, {"original-width", 4096}}).crop_top == 8);
    r.crop_left = -1;
    CHECK(test::error_of([&] { app::validate(r); }).find("--crop-left -1") != std::string::npos);
  }

  TEST_CASE("v_pred / ztsnr keys: v-prediction, zero-terminal SNR only with ztsnr (ComfyUI's rule)") {
    c10::InferenceMode guard;
    auto f = models::SafeTensors::open(sdxl_layouts()[0].model);
    std::vector<std::pair<std::string, torch::Tensor>> tensors;
    for (const auto& t : f->tensors()) tensors.emplace_back(t.name, f->load(t.name));
    const auto dir = test::scratch("sdxl-vpred");
    tensors.emplace_back("v_pred", torch::zeros({0}));
    models::save_safetensors((dir / "vpred.safetensors").string(), tensors);
    tensors.emplace_back("ztsnr", torch::zeros({0}));
    models::save_safetensors((dir / "vpred-ztsnr.safetensors").string(), tensors);
    const auto v = models::open_checkpoint((dir / "vpred.safetensors").string());
    CHECK(v.prediction == "v");
    CHECK_FALSE(v.zero_terminal_snr);
    CHECK(v.unused.empty());
    const auto z = models::open_checkpoint((dir / "vpred-ztsnr.safetensors").string());
    CHECK(z.prediction == "v");
    CHECK(z.zero_terminal_snr);
    CHECK(models::describe_checkpoint(z).find("v-prediction, zero-terminal SNR") != std::string::npos);
    // The engine's noise schedule then ends at zero SNR (sigma_max ~ 4.5e3 as ComfyUI's 4.9e-8 floor gives).
    app::Request r;
    r.model = (dir / "vpred-ztsnr.safetensors").string();
    r.device = "cpu";
    r.dtype = "fp32";
    auto engine = app::Engine::load(app::model_spec(r));
    CHECK(engine->sampling({}).prediction() == samplers::Prediction::v);
    CHECK(engine->sampling({}).sigma_max() > 1000);
  }

  TEST_CASE("an SDXL checkpoint is described by sigma info's text") {
    const auto ck = models::open_checkpoint(sdxl_layouts()[0].model);
    const auto text = models::describe_checkpoint(ck);
    INFO(text);
    CHECK(text.find("Stable Diffusion XL") != std::string::npos);
    CHECK(text.find("additional embedding 64 = pooled 16 + 6 x 8 Fourier") != std::string::npos);
    CHECK(text.find("transformer depth per level (0, 2, 2), middle 2") != std::string::npos);
    CHECK(text.find("text encoder 2:") != std::string::npos);
    CHECK(text.find("OpenCLIP-bigG") != std::string::npos);
  }
}
