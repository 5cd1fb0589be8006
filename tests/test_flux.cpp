// The Flux.1 family on flux-tiny (../shared/fixtures/flux-tiny/README.md), part by part against
// the references diffusers and transformers computed in float32 on the same weights, and T5's
// tokenization against Hugging Face's fast tokenizer on T5's real vocabulary
// (../shared/t5-tokenizer/cases.json).
#include <doctest/doctest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "models/adapters/lora.h"
#include "models/io/safetensors.h"
#include "models/io/weights.h"
#include "models/nn/layers.h"
#include "models/diffusion/dit/flux.h"
#include "models/families/checkpoint.h"
#include "models/families/loader.h"
#include "models/text/clip_text.h"
#include "models/text/t5_encoder.h"
#include "models/text/t5_tokenizer.h"
#include "models/vae/tiling.h"
#include "samplers/model_sampling.h"
#include "samplers/registry.h"
#include "samplers/schedules.h"
#include "tests/support.h"

namespace {
using namespace sigma;
std::string flux() { return test::fixtures() + "/flux-tiny"; }

models::T5Encoder load_t5(const std::string& path, torch::Device device, torch::ScalarType dtype) {
  const auto index = models::index_file(models::SafeTensors::open(path));
  auto t5 = models::build_uninitialised<models::T5Encoder>(models::infer_t5_config(index, path));
  // encoder.embed_tokens is `shared` again (tied), stored twice by Hugging Face.
  models::load_module(*t5, index, "T5 of " + path, dtype, device, {"encoder.embed_tokens.weight"});
  return t5;
}

models::FluxTransformer load_flux(const std::string& path, torch::Device device, torch::ScalarType dtype) {
  const auto index = models::index_file(models::SafeTensors::open(path));
  auto tr = models::build_uninitialised<models::FluxTransformer>(models::infer_flux_config(index, path));
  models::load_module(*tr, index, "Flux transformer of " + path, dtype, device);
  return tr;
}

std::vector<int64_t> flat(const std::vector<std::vector<int>>& rows) {
  std::vector<int64_t> out;
  for (const auto& r : rows) out.insert(out.end(), r.begin(), r.end());
  return out;
}

// The fixture's references and the suite's device and dtype, as every case reads them.
struct FluxRefs {
  decltype(models::SafeTensors::open(std::string())) refs = models::SafeTensors::open(flux() + "/refs/refs.safetensors");
  decltype(models::SafeTensors::open(std::string())) variants = models::SafeTensors::open(flux() + "/refs/variants.safetensors");
  torch::Device device = test::test_device();
  torch::ScalarType dtype = test::test_dtype();
  torch::Tensor ref(const std::string& n) const { return refs->load(n, torch::kFloat32); }
  torch::Tensor in(const std::string& n) const { return ref(n).to(device, dtype); }  // an input, on the suite's device
};

}  // namespace

TEST_SUITE("conformance.t5_tokenizer") {
  TEST_CASE("T5's bundled vocabulary gives Hugging Face's fast tokenizer's ids for every reference string") {
    const auto tok = models::T5Tokenizer::from_file(test::source_dir() + std::string("/assets/t5-tokenizer/spiece.model"));
    CHECK(tok.vocab_size() == 32100);
    const auto cases = nlohmann::json::parse(std::ifstream(test::fixtures() + "/../t5-tokenizer/cases.json"))["cases"];
    REQUIRE(cases.size() > 100);
    int same = 0;
    for (const auto& c : cases) {
      const auto text = c["text"].get<std::string>();
      INFO(text);
      const bool ok = tok.encode(text) == c["ids"].get<std::vector<int>>();
      CHECK(ok);
      same += ok;
    }
    std::printf("t5 tokenizer: %d/%d strings give the reference ids\n", same, static_cast<int>(cases.size()));
    // The same vocabulary as Hugging Face's tokenizer.json (--t5-tokenizer takes either file).
    const auto json_tok = models::T5Tokenizer::from_file(test::fixtures() + "/../t5-tokenizer/tokenizer.json");
    CHECK(json_tok.vocab_size() == 32100);
    int same_json = 0;
    for (const auto& c : cases) same_json += json_tok.encode(c["text"].get<std::string>()) == c["ids"].get<std::vector<int>>();
    CHECK(same_json == static_cast<int>(cases.size()));
    std::printf("t5 tokenizer from tokenizer.json: %d/%d strings give the reference ids\n", same_json, static_cast<int>(cases.size()));
    // Truncated to the length with </s> kept last, or padded with <pad>.
    CHECK(tok.encode_padded("a photograph of an astronaut riding a horse", 16) ==
          std::vector<int>{3, 9, 6419, 13, 46, 30059, 7494, 3, 9, 4952, 1, 0, 0, 0, 0, 0});
    CHECK(tok.encode_padded("a photograph of an astronaut riding a horse", 4) == std::vector<int>{3, 9, 6419, 1});
    CHECK_THROWS_WITH_AS(models::T5Tokenizer::from_file(test::source_dir() + std::string("/assets/clip-bpe/vocab.json")),
                         doctest::Contains("--t5-tokenizer"), std::runtime_error);
  }
}

TEST_SUITE("conformance.flux") {
  TEST_CASE("Flux parts: the T5 encoder") {
    const FluxRefs f;
    const auto device = f.device;
    const auto dtype = f.dtype;
    auto ref = [&](const std::string& n) { return f.ref(n); };
    std::printf("flux on %s, %s:\n", device.str().c_str(), c10::toString(dtype));
    test::CaseReport report("flux");

    // The fixture's own small SentencePiece model, padded to the fixture's 64 tokens.
    const auto tok = models::T5Tokenizer::from_file(flux() + "/models/t5-spiece.model");
    const auto ids = torch::tensor(flat({tok.encode_padded("a red circle on the left", 64), tok.encode_padded("", 64)})).view({2, 64});
    CHECK(report.add_exact("t5 ids (the fixture's tokenizer, padded to 64)", torch::equal(ids, f.refs->load("t5.ids"))));

    c10::InferenceMode guard;
    auto t5 = load_t5(flux() + "/models/t5xxl.safetensors", device, dtype);
    CHECK(t5->config.layers == 2);
    CHECK(report.add("t5.last_hidden", test::rel_error(t5->forward(ids.to(device)), ref("t5.last_hidden")),
                     test::tolerance(1e-4)));
    CHECK(test::error_of([&] { t5->forward(torch::full({1, 4}, 300, torch::kLong)); }).find("--t5-tokenizer") !=
          std::string::npos);
    report.close();
    CHECK(report.passed == report.total);
  }

  TEST_CASE("Flux parts: the transformer (dev and schnell), packing and ids") {
    const FluxRefs f;
    const auto device = f.device;
    const auto dtype = f.dtype;
    auto ref = [&](const std::string& n) { return f.ref(n); };
    auto in = [&](const std::string& n) { return f.in(n); };
    test::CaseReport report("flux");
    c10::InferenceMode guard;
    CHECK(report.add_exact("2x2 packing of tr.latent", torch::equal(models::flux_pack(ref("tr.latent")), ref("tr.hidden_states"))));
    const auto ids = models::flux_image_ids(16, 16, 2, torch::TensorOptions().dtype(torch::kFloat32));
    CHECK(report.add_exact("image ids (0, row, col)", torch::equal(ids[0], ref("tr.img_ids"))));
    CHECK(torch::equal(models::flux_unpack(ref("tr.hidden_states"), 16, 16), ref("tr.latent")));

    auto dev = load_flux(flux() + "/models/flux-tiny.safetensors", device, dtype);
    CHECK(dev->config.guidance_embed);
    CHECK((dev->config.axes_dim == std::vector<int64_t>{4, 6, 6}));
    const auto t = ref("tr.timestep").to(device) * 1000;
    auto packed = dev->forward_packed(in("tr.hidden_states"), in("tr.img_ids").unsqueeze(0), in("tr.encoder_hidden_states"),
                                      in("tr.txt_ids").unsqueeze(0), t, in("tr.pooled"), ref("tr.guidance").to(device) * 1000);
    const double tol = test::tolerance(1e-4);
    CHECK(report.add("tr.out (dev, packed tokens)", test::rel_error(packed, ref("tr.out")), tol));
    // The same through the DiffusionModel interface: the unpacked latent, σ·1000, the guidance value.
    models::DiffusionConditioning c;
    c.context = in("tr.encoder_hidden_states");
    c.y = in("tr.pooled");
    c.guidance = ref("tr.guidance").to(device);
    auto out = dev->forward(in("tr.latent"), t, c);
    CHECK(report.add("tr.out (dev, DiffusionModel on the latent)", test::rel_error(models::flux_pack(out), ref("tr.out")), tol));
    c.guidance = torch::Tensor();
    CHECK(test::error_of([&] { dev->forward(in("tr.latent"), t, c); }).find("--guidance") != std::string::npos);

    auto schnell = load_flux(flux() + "/models/flux-tiny-schnell.safetensors", device, dtype);
    CHECK_FALSE(schnell->config.guidance_embed);
    CHECK(report.add("schnell.tr.out", test::rel_error(models::flux_pack(schnell->forward(in("tr.latent"), t, c)),
                                                       f.variants->load("schnell.tr.out", torch::kFloat32)), tol));
    report.close();
    CHECK(report.passed == report.total);
  }

  TEST_CASE("Flux parts: CLIP-L's pooled vector and the 16-channel VAE without quant convs") {
    const FluxRefs f;
    const auto device = f.device;
    const auto dtype = f.dtype;
    auto ref = [&](const std::string& n) { return f.ref(n); };
    auto in = [&](const std::string& n) { return f.in(n); };
    const double tol = test::tolerance(1e-4);
    test::CaseReport report("flux");
    c10::InferenceMode guard;

    const auto clip_path = flux() + "/models/clip_l.safetensors";
    const auto clip_index = models::index_file(models::SafeTensors::open(clip_path));
    // CLIP-L as SD 1.x reads it (quick GELU, end token 49407): Flux's first encoder.
    auto clip = models::build_uninitialised<models::ClipTextModel>(
        models::infer_clip_config(clip_index, models::Family::SD1, clip_path));
    models::load_module(*clip, clip_index, "CLIP-L of " + clip_path, dtype, device);
    const auto pooled = clip->forward_pooled(f.refs->load("clip.ids").to(device), 1, true).second;
    CHECK(report.add("clip.pooled (no projection)", test::rel_error(pooled, ref("clip.pooled")), tol));

    auto vae = models::load_vae_file(flux() + "/models/flux-tiny-ae.safetensors", 0.3611, {device, dtype});
    CHECK_FALSE(vae->config.quant_convs);
    CHECK(vae->config.z_channels == 16);
    CHECK(report.add("vae.decoded", test::rel_error(vae->decode(in("vae.z")), ref("vae.decoded")), tol));
    const auto [mean, logvar] = vae->encode_moments(in("vae.image"));
    CHECK(report.add("vae.mean", test::rel_error(mean, ref("vae.mean")), tol));
    CHECK(report.add("vae.logvar", test::rel_error(logvar, ref("vae.logvar")), tol));
    models::VaeTiling tiling;
    tiling.tile = 8;  // 4 tiles of the 16x16 latent: the tiled path without quant convs too
    CHECK(report.add("vae.decoded, tiled", test::rel_error(models::tiled_decode(*vae, in("vae.z"), tiling), ref("vae.decoded")), tol));
    report.close();
    CHECK(report.passed == report.total);
  }

  TEST_CASE("Flux pipelines: dev (shifted by the image's tokens, guidance 3.5) and schnell (shift 1), 4 Euler steps") {
    const FluxRefs f;
    const auto device = f.device;
    const auto dtype = f.dtype;
    auto in = [&](const std::string& n) { return f.in(n); };
    const double tol = test::tolerance(1e-3);
    test::CaseReport report("flux");
    c10::InferenceMode guard;
    auto vae = models::load_vae_file(flux() + "/models/flux-tiny-ae.safetensors", 0.3611, {device, dtype});
    constexpr double kScale = 0.3611, kShift = 0.1159;  // latent = (z − shift)·scale

    struct Case {
      std::string name, model, prefix;
      const models::SafeTensors* refs;
      bool dynamic_shift;
    };
    for (const Case& k : {Case{"dev", "flux-tiny.safetensors", "pipe.euler4.", f.refs.get(), true},
                          Case{"schnell", "flux-tiny-schnell.safetensors", "schnell.pipe.euler4.", f.variants.get(), false}}) {
      auto tr = load_flux(flux() + "/models/" + k.model, device, dtype);
      // 128x128: a 16x16 latent, 64 packed tokens.
      const double mu = samplers::flux_mu(64);
      CHECK(mu == doctest::Approx(0.4675).epsilon(1e-12));  // the fixture's case.json
      const auto ms = samplers::ModelSampling::flow(k.dynamic_shift ? std::exp(mu) : 1.0);
      const auto sigmas = samplers::make_sigmas("simple", ms, 4);
      const auto ref_sigmas = k.refs->load(k.prefix + "sigmas", torch::kFloat64);
      CHECK(report.add(k.name + " sigmas (simple schedule)", test::rel_error(torch::tensor(sigmas, torch::kFloat64), ref_sigmas), 1e-6));
      models::DiffusionConditioning c;
      c.context = in("tr.encoder_hidden_states");
      c.y = in("tr.pooled");
      if (tr->config.guidance_embed) c.guidance = torch::full({1}, 3.5, torch::TensorOptions().device(device));
      const samplers::Denoiser denoiser = [&](const torch::Tensor& x, double sigma) {
        const auto t = torch::full({x.size(0)}, ms.c_noise(sigma), torch::TensorOptions().device(device));
        return ms.denoise(x, sigma, tr->forward(x, t, c));
      };
      samplers::SamplerOptions options;
      ms.configure(options);
      auto x = ms.noise_scaling(sigmas.front(), in("pipe.latents"), torch::zeros_like(in("pipe.latents")), true);
      auto out = samplers::sample(samplers::find_sampler("euler"), denoiser, x, sigmas, options).x;
      CHECK(report.add(k.name + " latent_packed", test::rel_error(models::flux_pack(out), k.refs->load(k.prefix + "latent_packed", torch::kFloat32)), tol));
      auto image = ((vae->decode(out / kScale + kShift) + 1) / 2).clamp(0, 1);
      CHECK(report.add(k.name + " image", test::rel_error(image, k.refs->load(k.prefix + "image", torch::kFloat32)), tol));
    }
    report.close();
    CHECK(report.passed == report.total);
  }
}

namespace {

// tr.out of a checkpoint's transformer on the fixture's inputs (dev: guidance 3.5).
torch::Tensor transformer_out(const models::Checkpoint& ck, const FluxRefs& f) {
  auto tr = models::load_flux(ck, {f.device, f.dtype});
  const auto t = f.ref("tr.timestep").to(f.device) * 1000;
  const auto guidance = tr->config.guidance_embed ? f.ref("tr.guidance").to(f.device) * 1000 : torch::Tensor();
  return tr->forward_packed(f.in("tr.hidden_states"), f.in("tr.img_ids").unsqueeze(0), f.in("tr.encoder_hidden_states"),
                            f.in("tr.txt_ids").unsqueeze(0), t, f.in("tr.pooled"), guidance);
}

// CLIP-L's pooled vector and T5's states of a checkpoint's text encoders on the fixture's ids.
torch::Tensor clip_pooled(const models::Checkpoint& ck, const FluxRefs& f) {
  auto clip = models::load_text_encoder(ck, {f.device, f.dtype}, 0);
  return clip->forward_pooled(f.refs->load("clip.ids").to(f.device), 1, true).second;
}
torch::Tensor t5_states(const models::Checkpoint& ck, const FluxRefs& f) {
  auto t5 = models::load_t5_encoder(ck, {f.device, f.dtype}, 1);
  return t5->forward(f.refs->load("t5.ids").to(f.device));
}

}  // namespace

TEST_SUITE("conformance.flux") {
  TEST_CASE("Flux files as people have them: transformer alone + parts, fp8 (plain, scaled, comfy_quant), all-in-one, diffusers") {
    const FluxRefs f;
    const double tol = test::tolerance(1e-4);
    test::CaseReport report("flux");
    c10::InferenceMode guard;
    const std::string m = flux() + "/models/";
    auto variant = [&](const std::string& n) { return f.variants->load(n, torch::kFloat32); };
    // The BFL transformer with its parts named by flag (sd.cpp's --clip_l, --t5xxl, --vae).
    const models::ComponentFiles parts{m + "clip_l.safetensors", m + "t5xxl.safetensors", m + "flux-tiny-ae.safetensors", ""};
    const auto bfl = models::open_checkpoint(m + "flux-tiny.safetensors", parts);
    CHECK(bfl.family == models::Family::Flux);
    CHECK(bfl.flux_config.guidance_embed);
    CHECK(bfl.vae_file == m + "flux-tiny-ae.safetensors");
    CHECK(report.add("BFL file + parts: tr.out", test::rel_error(transformer_out(bfl, f), f.ref("tr.out")), tol));
    CHECK(report.add("BFL file + parts: clip.pooled", test::rel_error(clip_pooled(bfl, f), f.ref("clip.pooled")), tol));
    CHECK(report.add("BFL file + parts: t5.last_hidden", test::rel_error(t5_states(bfl, f), f.ref("t5.last_hidden")), tol));
    // The same parts found by name beside it (its folder holds clip_l, t5xxl and the ae file).
    const auto found = models::open_checkpoint(m + "flux-tiny.safetensors");
    CHECK(found.text_encoders[0].file == m + "clip_l.safetensors");
    CHECK(found.text_encoders[1].file == m + "t5xxl.safetensors");  // full precision before the fp8 file
    CHECK(found.vae_file == m + "flux-tiny-ae.safetensors");
    CHECK(found.notes.size() == 3);
    CHECK(report.add("schnell: tr.out", test::rel_error(transformer_out(models::open_checkpoint(m + "flux-tiny-schnell.safetensors"), f),
                                                        variant("schnell.tr.out")), tol));
    // fp8: the stored value (times its scale) exactly, in the compute dtype.
    for (const auto& [file, ref] : {std::pair<std::string, std::string>{"flux-tiny-fp8-e4m3fn.safetensors", "fp8.tr.out"},
                                    {"flux-tiny-fp8-scaled.safetensors", "fp8_scaled.tr.out"},
                                    {"flux-tiny-fp8-comfyquant.safetensors", "fp8_scaled.tr.out"}}) {
      const auto ck = models::open_checkpoint(m + file, parts);
      CHECK(report.add(file + ": " + ref, test::rel_error(transformer_out(ck, f), variant(ref)), tol));
    }
    // Kept in fp8 in memory: one byte a weight, dequantized per layer.
    {
      auto tr = models::load_flux(models::open_checkpoint(m + "flux-tiny-fp8-scaled.safetensors", parts), {f.device, f.dtype});
      int fp8 = 0, linears = 0;
      for (const auto& item : tr->named_modules("", false))
        if (auto* lin = dynamic_cast<models::layers::LinearImpl*>(item.value().get())) {
          ++linears;
          fp8 += lin->is_fp8();
          if (lin->is_fp8()) CHECK(lin->fp8_bytes.element_size() == 1);
        }
      CHECK(linears > 10);
      CHECK(fp8 == linears);  // every 2-D weight of the file is F8_E4M3
    }
    // ComfyUI's all-in-one file: the fp8 transformer, CLIP-L, the fp8 T5 and the ae in one.
    const auto aio = models::open_checkpoint(m + "flux-tiny-comfy-aio.safetensors");
    CHECK(aio.notes.empty());
    CHECK(aio.text_encoders[1].file.empty());
    CHECK(report.add("all-in-one: fp8.tr.out", test::rel_error(transformer_out(aio, f), variant("fp8.tr.out")), tol));
    CHECK(report.add("all-in-one: clip.pooled", test::rel_error(clip_pooled(aio, f), f.ref("clip.pooled")), tol));
    CHECK(report.add("all-in-one: t5_fp8.last_hidden", test::rel_error(t5_states(aio, f), variant("t5_fp8.last_hidden")), tol));
    const auto t5_fp8 = models::open_checkpoint(m + "flux-tiny.safetensors", {"", m + "t5xxl_fp8_e4m3fn.safetensors", "", ""});
    CHECK(report.add("t5xxl_fp8_e4m3fn file: t5_fp8.last_hidden", test::rel_error(t5_states(t5_fp8, f), variant("t5_fp8.last_hidden")), tol));
    // diffusers: separate q/k/v fused back, the final modulation's halves swapped, RoPE axes from the config.
    const auto folder = models::open_checkpoint(m + "tiny-flux-diffusers");
    CHECK(folder.layout == models::Layout::Diffusers);
    CHECK((folder.flux_config.axes_dim == std::vector<int64_t>{4, 6, 6}));
    CHECK(folder.description.vae_shift == doctest::Approx(0.1159));
    CHECK(report.add("diffusers folder: tr.out", test::rel_error(transformer_out(folder, f), f.ref("tr.out")), tol));
    CHECK(report.add("diffusers folder: clip.pooled", test::rel_error(clip_pooled(folder, f), f.ref("clip.pooled")), tol));
    CHECK(report.add("diffusers folder: t5.last_hidden", test::rel_error(t5_states(folder, f), f.ref("t5.last_hidden")), tol));
    auto vae = models::load_vae(folder, {f.device, f.dtype});
    CHECK(report.add("diffusers folder: vae.decoded", test::rel_error(vae->decode(f.in("vae.z")), f.ref("vae.decoded")), tol));
    report.close();
    CHECK(report.passed == report.total);
  }

  TEST_CASE("Flux files: what is not a Flux part is refused by name") {
    const std::string m = flux() + "/models/";
    using models::ModelLoadError;
    CHECK_THROWS_WITH_AS(models::open_checkpoint(m + "flux-tiny.safetensors", {m + "t5xxl.safetensors", "", "", ""}),
                         doctest::Contains("not a CLIP text encoder; --clip_l"), ModelLoadError);
    CHECK_THROWS_WITH_AS(models::open_checkpoint(m + "flux-tiny.safetensors", {"", m + "clip_l.safetensors", "", ""}),
                         doctest::Contains("not a T5 encoder; --t5xxl"), ModelLoadError);
    // Separate text encoders belong to Flux: an SD checkpoint says so.
    CHECK_THROWS_WITH_AS(models::open_checkpoint(test::sd15() + "/models/tiny-sd15.safetensors", {m + "clip_l.safetensors", "", "", ""}),
                         doctest::Contains("separate text encoders are for Flux models"), ModelLoadError);
    // An SD VAE (4 channels) where Flux's 16-channel one belongs.
    CHECK_THROWS_WITH_AS(models::open_checkpoint(m + "flux-tiny.safetensors", {"", "", test::sd15() + "/models/tiny-sd15.safetensors", ""}),
                         doctest::Contains("Flux's has 16"), ModelLoadError);
  }

  TEST_CASE("Flux LoRAs: kohya on the fused BFL modules (with its CLIP-L part), BFL/ComfyUI names, diffusers/PEFT names on row slices") {
    const FluxRefs f;
    const double tol = test::tolerance(1e-4);
    test::CaseReport report("flux");
    c10::InferenceMode guard;
    const std::string m = flux() + "/models/";
    const auto ck = models::open_checkpoint(m + "flux-tiny.safetensors");
    auto tr = models::load_flux(ck, {f.device, f.dtype});
    auto clip = models::load_text_encoder(ck, {f.device, f.dtype}, 0);
    models::AdapterModel model;
    model.family = models::to_string(ck.family);
    model.components[models::kUnet] = models::adapter_target(*tr);
    model.components[models::kTextEncoder] = models::adapter_target(*clip);
    models::ModelPatcher patcher;
    patcher.add_component(models::kUnet, tr.ptr());
    patcher.add_component(models::kTextEncoder, clip.ptr());
    const auto t = f.ref("tr.timestep").to(f.device) * 1000;
    auto out = [&] {
      return tr->forward_packed(f.in("tr.hidden_states"), f.in("tr.img_ids").unsqueeze(0), f.in("tr.encoder_hidden_states"),
                                f.in("tr.txt_ids").unsqueeze(0), t, f.in("tr.pooled"), f.ref("tr.guidance").to(f.device) * 1000);
    };
    const auto base = out();
    for (const auto& [file, strength, ref] : {std::tuple<std::string, double, std::string>{"kohya", 1.0, "lora.kohya.s1.0.tr.out"},
                                              {"kohya", 0.7, "lora.kohya.s0.7.tr.out"},
                                              {"bfl", 1.0, "lora.bfl.s1.0.tr.out"},
                                              {"peft", 1.0, "lora.peft.s1.0.tr.out"}}) {
      const auto adapter = models::load_adapter(flux() + "/lora/flux-tiny-lora-" + file + ".safetensors", model);
      patcher.apply(models::adapter_patches(adapter, strength, strength));
      CHECK(report.add(file + " LoRA at " + std::to_string(strength).substr(0, 3) + ": " + ref,
                       test::rel_error(out(), f.variants->load(ref, torch::kFloat32)), tol));
      if (file == "kohya" && strength == 1.0)
        CHECK(report.add("kohya LoRA's CLIP-L part: clip.pooled",
                         test::rel_error(clip->forward_pooled(f.refs->load("clip.ids").to(f.device), 1, true).second,
                                         f.variants->load("lora.kohya.s1.0.clip.pooled", torch::kFloat32)), tol));
    }
    patcher.apply({});
    CHECK(torch::equal(out(), base));  // taken out bit for bit
    // diffusers/PEFT names: separate q/k/v (and the single blocks' proj_mlp) on row slices of the fused weights.
    const auto peft = models::load_adapter(flux() + "/lora/flux-tiny-lora-peft.safetensors", model);
    int sliced = 0;
    for (const auto& mod : peft->modules) sliced += mod.rows > 0;
    CHECK(sliced >= 4);
    // diffusers' norm_out.linear keeps (scale, shift), BFL's final modulation (shift, scale):
    // a PEFT LoRA there lands with its rows' halves swapped.
    {
      const std::string final_mod = "final_layer.adaLN_modulation.1.weight";
      const auto shape = model.components[models::kUnet].weights.at(final_mod);
      const int64_t rank = 2, half = shape[0] / 2;
      const auto a = torch::randn({rank, shape[1]}), b = torch::randn({shape[0], rank});
      const auto file = (test::scratch("flux-lora-norm-out") / "norm-out.safetensors").string();
      models::save_safetensors(file, {{"transformer.norm_out.linear.lora_A.weight", a}, {"transformer.norm_out.linear.lora_B.weight", b}});
      const auto adapter = models::load_adapter(file, model);
      REQUIRE(adapter->modules.size() == 1);
      CHECK(adapter->modules[0].target == final_mod);
      const auto w = tr->named_parameters()[final_mod];
      const auto before = w.to(torch::kFloat32).clone();
      patcher.apply(models::adapter_patches(adapter, 0.5, 0.5));
      const auto delta = torch::mm(b, a) * 0.5;  // diffusers' row order
      const auto expected = torch::cat({delta.narrow(0, half, half), delta.narrow(0, 0, half)});
      CHECK(test::rel_error(w.to(torch::kFloat32) - before, expected) <= test::tolerance(1e-5));
      patcher.apply({});
    }
    report.close();
    CHECK(report.passed == report.total);
  }

  TEST_CASE("Flux LoRAs on fp8 weights: added as each call dequantizes, as if merged into the dequantized weights") {
    // No reference computed a LoRA on fp8 weights, so the kept-fp8 model is held against the
    // same file loaded dense (each weight its fp8 value in the compute dtype), with the LoRA
    // merged the way every other weight takes it.
    const FluxRefs f;
    c10::InferenceMode guard;
    const std::string m = flux() + "/models/";
    const std::string file = m + "flux-tiny-fp8-e4m3fn.safetensors";
    auto kept = models::load_flux(models::open_checkpoint(file, {m + "clip_l.safetensors", m + "t5xxl.safetensors", "", ""}),
                                  {f.device, f.dtype});
    auto dense = load_flux(file, f.device, f.dtype);
    models::AdapterModel model;
    model.family = "Flux.1";
    model.components[models::kUnet] = models::adapter_target(*kept);
    CHECK(model.components[models::kUnet].weights == models::adapter_target(*dense).weights);  // fp8 weights by their stored shape
    models::ModelPatcher on_kept, on_dense;
    on_kept.add_component(models::kUnet, kept.ptr());
    on_dense.add_component(models::kUnet, dense.ptr());
    const auto t = f.ref("tr.timestep").to(f.device) * 1000;
    auto out = [&](models::FluxTransformer& tr) {
      return tr->forward_packed(f.in("tr.hidden_states"), f.in("tr.img_ids").unsqueeze(0), f.in("tr.encoder_hidden_states"),
                                f.in("tr.txt_ids").unsqueeze(0), t, f.in("tr.pooled"), f.ref("tr.guidance").to(f.device) * 1000);
    };
    const auto base = out(kept);
    for (const auto& [name, strength] : {std::pair<std::string, double>{"kohya", 1.0}, {"peft", 0.7}, {"bfl", 1.0}}) {
      INFO(name);
      // (kohya's CLIP-L module has no text encoder to land on here: only the transformer is loaded)
      const auto adapter = models::load_adapter(flux() + "/lora/flux-tiny-lora-" + name + ".safetensors", model, {.allow_unmatched = true});
      const auto patches = models::adapter_patches(adapter, strength, strength);
      on_kept.apply(patches);
      on_dense.apply(patches);
      CHECK(on_kept.backed_up() == 0);  // nothing merged into the fp8 bytes
      CHECK(on_kept.patched_on_the_fly() > 0);
      const auto with = out(kept);
      CHECK(test::rel_error(with, out(dense)) <= test::tolerance(1e-5));
      CHECK(test::rel_error(with, base) > 2e-2);  // the LoRA did change the output (by 5.5%, 13%, 45% here)
    }
    on_kept.apply({});
    CHECK(on_kept.patched_on_the_fly() == 0);
    CHECK(torch::equal(out(kept), base));  // taken off exactly
  }
}
