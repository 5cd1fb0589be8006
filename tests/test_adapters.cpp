// Adapters (models/adapters/lora.h) and textual inversion (models/adapters/embedding.h): conformance of every
// adapter format against the fixtures' merged-weight references (lora/lora_refs.safetensors,
// lora/adapter_refs.safetensors), and the patcher's exactness rules (strength 0, restore,
// re-apply), the boundary errors and the SDXL key map.
#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>

#include "models/adapters/embedding.h"
#include "models/adapters/lora.h"
#include "models/families/loader.h"
#include "models/io/keymaps.h"
#include "models/text/clip_tokenizer.h"
#include "tests/support.h"

namespace {

using namespace sigma;

std::string lora_dir() { return test::sd15() + "/lora/"; }
std::string sd15_model() { return test::sd15() + "/models/tiny-sd15.safetensors"; }
std::string sdxl() { return test::fixtures() + "/sdxl-tiny"; }

// The tiny SD 1.5 model with its UNet and text encoder registered in a patcher.
struct Sd15 {
  models::Checkpoint ck;
  models::UNet unet{nullptr};
  models::ClipTextModel clip{nullptr};
  models::AdapterModel model;
  models::ModelPatcher patcher;
  Sd15(torch::Device device, torch::ScalarType dtype) : ck(models::open_checkpoint(sd15_model())) {
    const models::LoadOptions opt{device, dtype};
    unet = models::load_unet(ck, opt);
    clip = models::load_text_encoder(ck, opt);
    model.family = models::to_string(ck.family);
    model.components[models::kUnet] = models::adapter_target(*unet);
    model.components[models::kTextEncoder] = models::adapter_target(*clip);
    patcher.add_component(models::kUnet, unet.ptr());
    patcher.add_component(models::kTextEncoder, clip.ptr());
  }
  std::shared_ptr<const models::Adapter> load(const std::string& file) { return models::load_adapter(lora_dir() + file, model); }
};

using test::changed_parameters;
using test::snapshot_parameters;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const models::ModelLoadError& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Copies an adapter file's tensors, changed by `edit`, to a scratch file.
std::string rewrite(const std::string& from, const std::string& to,
                    const std::function<void(std::vector<std::pair<std::string, torch::Tensor>>&)>& edit) {
  auto f = models::SafeTensors::open(from);
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& t : f->tensors()) tensors.emplace_back(t.name, f->load(t.name));
  edit(tensors);
  models::save_safetensors(to, tensors);
  return to;
}

// The SDXL fixture's components as the loader names them (LDM UNet names; Hugging Face
// CLIP names for both text encoders), before any network is built.
models::AdapterModel sdxl_model() {
  const auto ck = models::open_checkpoint(sdxl() + "/models/tiny-sdxl.safetensors");
  models::AdapterModel m;
  m.family = models::to_string(ck.family);
  m.components[models::kUnet] = models::adapter_target(ck.unet);
  m.components[models::kTextEncoder] = models::adapter_target(ck.text_encoders[0].weights);
  m.components[models::kTextEncoder2] = models::adapter_target(ck.text_encoders[1].weights);
  return m;
}

struct FormatCase {
  std::string tag, file, refs, unet_ref, clip_ref, multiplier;
};

std::vector<FormatCase> sd15_cases() {
  const auto refs = lora_dir() + "lora_refs.safetensors", more = lora_dir() + "adapter_refs.safetensors";
  std::vector<FormatCase> cases = {{"kohya", "tiny-sd15-lora-kohya.safetensors", refs, "unet.out_lora",
                                    "clip.last_hidden_lora", "multiplier"}};
  for (const auto& [tag, file] : std::vector<std::pair<std::string, std::string>>{
           {"locon", "tiny-sd15-locon-kohya.safetensors"},
           {"loha", "tiny-sd15-loha.safetensors"},
           {"lokr", "tiny-sd15-lokr.safetensors"},
           {"peft", "tiny-sd15-lora-diffusers.safetensors"}})
    cases.push_back({tag, file, more, tag + ".unet.out", tag + ".clip.last_hidden", tag + ".multiplier"});
  return cases;
}

}  // namespace

TEST_SUITE("conformance.adapters") {
  TEST_CASE("every adapter format and the embedding match the merged-weight references") {
    c10::InferenceMode guard;
    const auto device = test::test_device();
    const auto dtype = test::test_dtype();
    const double tol = test::tolerance(1e-4);
    auto comp = models::SafeTensors::open(test::sd15() + "/refs/components.safetensors");
    auto ref = [&](const std::string& name) { return comp->load(name, torch::kFloat32); };
    auto in = [&](const std::string& name) { return ref(name).to(device, dtype); };
    const auto ids = comp->load("clip.ids");
    std::printf("adapters on %s, %s:\n", device.str().c_str(), c10::toString(dtype));
    test::CaseReport report("adapters");

    Sd15 m(device, dtype);
    const auto base_unet = snapshot_parameters(*m.unet);
    const auto base_clip = snapshot_parameters(*m.clip);
    // The base model's outputs: each reference must differ from them (the adapter does something).
    const auto eps_base = m.unet->forward(in("unet.x"), ref("unet.t").to(device), in("unet.context"));
    const auto hidden_base = m.clip->forward(ids, 1);
    for (const auto& c : sd15_cases()) {
      auto refs = models::SafeTensors::open(c.refs);
      const double mult = refs->load(c.multiplier, torch::kFloat64).item<double>();
      auto adapter = m.load(c.file);
      const auto start = std::chrono::steady_clock::now();
      m.patcher.apply(models::adapter_patches(adapter, mult, mult));
      if (device.is_cuda()) torch::cuda::synchronize();
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
      std::printf("  %s: %s, %zu modules, m = %.2f, merged %zu tensors in %.1f ms\n", c.tag.c_str(),
                  adapter->format.c_str(), adapter->modules.size(), mult, m.patcher.backed_up(), ms);
      const auto unet_ref = refs->load(c.unet_ref, torch::kFloat32), clip_ref = refs->load(c.clip_ref, torch::kFloat32);
      const bool has_text = std::any_of(adapter->modules.begin(), adapter->modules.end(),
                                        [](const auto& x) { return x.component == models::kTextEncoder; });
      std::printf("  %s: base vs reference: unet %.2e, text %.2e\n", c.tag.c_str(), test::rel_error(eps_base, unet_ref),
                  test::rel_error(hidden_base, clip_ref));
      CHECK(test::rel_error(eps_base, unet_ref) > 1e-3);
      if (has_text) CHECK(test::rel_error(hidden_base, clip_ref) > 1e-3);
      auto eps = m.unet->forward(in("unet.x"), ref("unet.t").to(device), in("unet.context"));
      CHECK(report.add(c.tag + ".unet.out", test::rel_error(eps, unet_ref), tol));
      CHECK(report.add(c.tag + ".clip.last_hidden", test::rel_error(m.clip->forward(ids, 1), clip_ref), tol));
    }
    m.patcher.restore();
    CHECK(report.add_exact("restore after all formats: base UNet and text encoder",
                           changed_parameters(*m.unet, base_unet).empty() && changed_parameters(*m.clip, base_clip).empty()));

    // Textual inversion: "a photo of tinyemb on the left" with the word replaced by its 3 vectors.
    auto refs = models::SafeTensors::open(lora_dir() + "adapter_refs.safetensors");
    const auto ti = models::load_embedding(test::sd15() + "/embeddings/tinyemb.safetensors",
                                           {models::to_string(m.ck.family), {m.ck.text_encoders[0].config.width}});
    const auto tok = models::ClipTokenizer::from_dir(test::sd15() + "/models/tiny-sd15-diffusers/tokenizer");
    const int vocab = static_cast<int>(m.ck.text_encoders[0].config.vocab_size);
    auto prompt = models::expand_embedding(tok.encode("a photo of tinyemb on the left"), tok.encode(ti.name), vocab, ti.count());
    std::vector<int64_t> padded = {tok.bos()};
    padded.insert(padded.end(), prompt.begin(), prompt.end());
    padded.push_back(tok.eos());
    padded.resize(77, tok.pad());
    const auto ti_ids = torch::tensor(padded, torch::kLong).unsqueeze(0);
    const auto ti_ref = refs->load("ti.clip.last_hidden", torch::kFloat32);
    CHECK(test::rel_error(m.clip->forward(ti_ids.clamp_max(vocab - 1), 1), ti_ref) > 1e-3);  // the vectors matter
    CHECK(report.add_exact("ti.prompt_ids_expanded", torch::equal(ti_ids, refs->load("ti.prompt_ids_expanded"))));
    CHECK(report.add("ti.clip.last_hidden",
                     test::rel_error(m.clip->forward_with_extra_tokens(ti_ids, ti.vectors[0], 1), ti_ref), tol));

    // SDXL (sdxl-tiny/lora/adapter_refs.safetensors): the kohya LoRA on the UNet and both
    // text encoders (te1 = CLIP-L, te2 = OpenCLIP-bigG, both in Hugging Face names), and an
    // embedding whose clip_l / clip_g vectors go to each encoder.
    {
      auto xrefs = models::SafeTensors::open(sdxl() + "/refs/refs.safetensors");
      auto xr = [&](const std::string& n) { return xrefs->load(n, torch::kFloat32); };
      auto aref = models::SafeTensors::open(sdxl() + "/lora/adapter_refs.safetensors");
      auto ar = [&](const std::string& n) { return aref->load(n, torch::kFloat32); };
      const auto ck = models::open_checkpoint(sdxl() + "/models/tiny-sdxl.safetensors");
      const models::LoadOptions opt{device, dtype};
      auto unet = models::load_unet(ck, opt);
      auto clip_1 = models::load_text_encoder(ck, opt, 0), clip_2 = models::load_text_encoder(ck, opt, 1);
      const auto& roles = ck.description.text_encoders;
      auto encode = [&](const torch::Tensor& ids_1, const torch::Tensor& ids_2, const torch::Tensor& extra_1,
                        const torch::Tensor& extra_2) {
        auto h1 = clip_1->forward_with_extra_tokens(ids_1, extra_1, roles[0].clip_skip, roles[0].final_norm);
        auto [h2, pooled] = clip_2->forward_pooled(ids_2, roles[1].clip_skip, roles[1].final_norm, extra_2);
        return std::pair{torch::cat({h1, h2}, -1), pooled};
      };
      auto eps = [&] {
        auto y = models::additional_embedding_input(xr("unet.text_embeds").to(device, dtype), xr("unet.time_ids"),
                                                    ck.description.fourier_dim);
        return unet->forward(xr("unet.x").to(device, dtype), xr("unet.t").to(device), xr("unet.context").to(device, dtype),
                             nullptr, y);
      };
      models::AdapterModel xm;
      xm.family = models::to_string(ck.family);
      xm.components[models::kUnet] = models::adapter_target(*unet);
      xm.components[models::kTextEncoder] = models::adapter_target(*clip_1);
      xm.components[models::kTextEncoder2] = models::adapter_target(*clip_2);
      models::ModelPatcher xp;
      xp.add_component(models::kUnet, unet.ptr());
      xp.add_component(models::kTextEncoder, clip_1.ptr());
      xp.add_component(models::kTextEncoder2, clip_2.ptr());
      const auto base_xl = snapshot_parameters(*unet);
      const auto eps_base_xl = eps();
      auto [ctx_base, pooled_base] = encode(xrefs->load("clip.ids_1"), xrefs->load("clip.ids_2"), {}, {});

      auto lora = models::load_adapter(sdxl() + "/lora/tiny-sdxl-lora-kohya.safetensors", xm);
      const double mult = aref->load("lora.multiplier", torch::kFloat64).item<double>();
      xp.apply(models::adapter_patches(lora, mult, mult));
      std::printf("  sdxl kohya: %zu modules, m = %.2f\n", lora->modules.size(), mult);
      CHECK(test::rel_error(eps_base_xl, ar("lora.unet.out")) > 1e-3);
      CHECK(test::rel_error(ctx_base, ar("lora.clip.context")) > 1e-3);
      CHECK(test::rel_error(pooled_base, ar("lora.clip.pooled")) > 1e-3);
      CHECK(report.add("sdxl.lora.unet.out", test::rel_error(eps(), ar("lora.unet.out")), tol));
      auto [ctx, pooled] = encode(xrefs->load("clip.ids_1"), xrefs->load("clip.ids_2"), {}, {});
      CHECK(report.add("sdxl.lora.clip.context", test::rel_error(ctx, ar("lora.clip.context")), tol));
      CHECK(report.add("sdxl.lora.clip.pooled", test::rel_error(pooled, ar("lora.clip.pooled")), tol));
      xp.restore();
      CHECK(report.add_exact("sdxl restore: base UNet", changed_parameters(*unet, base_xl).empty()));

      // "a red tinyxlemb on the left", each encoder with its own tokenizer (and padding).
      const auto xti = models::load_embedding(sdxl() + "/embeddings/tinyxlemb.safetensors",
                                              {xm.family, {ck.text_encoders[0].config.width, ck.text_encoders[1].config.width}});
      const auto dir = sdxl() + "/models/tiny-sdxl-diffusers/";
      auto ids_for = [&](const models::ClipTokenizer& tk, int vocab_size) {
        auto words = models::expand_embedding(tk.encode("a red tinyxlemb on the left"), tk.encode(xti.name), vocab_size,
                                              xti.count());
        std::vector<int64_t> padded = {tk.bos()};
        padded.insert(padded.end(), words.begin(), words.end());
        padded.push_back(tk.eos());
        padded.resize(77, tk.pad());
        return torch::tensor(padded, torch::kLong).unsqueeze(0);
      };
      const auto tk1 = models::ClipTokenizer::from_dir(dir + "tokenizer"), tk2 = models::ClipTokenizer::from_dir(dir + "tokenizer_2");
      auto [ti_ctx, ti_pooled] = encode(ids_for(tk1, static_cast<int>(ck.text_encoders[0].config.vocab_size)),
                                        ids_for(tk2, static_cast<int>(ck.text_encoders[1].config.vocab_size)), xti.vectors[0], xti.vectors[1]);
      CHECK(report.add("sdxl.ti.clip.context", test::rel_error(ti_ctx, ar("ti.clip.context")), tol));
      CHECK(report.add("sdxl.ti.clip.pooled", test::rel_error(ti_pooled, ar("ti.clip.pooled")), tol));
    }
    report.close();
    CHECK(report.passed == report.total);
  }
}

TEST_SUITE("unit.adapters") {
  TEST_CASE("each format is read with its module count, kind and scale") {
    Sd15 m(torch::kCPU, torch::kFloat32);
    struct Expect {
      std::string file, format;
      size_t modules;
      double scale;  // of the first UNet module
    };
    for (const auto& e : std::vector<Expect>{{"tiny-sd15-lora-kohya.safetensors", "kohya LoRA", 150, 0.5},
                                             {"tiny-sd15-locon-kohya.safetensors", "kohya LoRA + LoCon", 186, 0.5},
                                             {"tiny-sd15-loha.safetensors", "LyCORIS LoHa", 132, 0.5},
                                             {"tiny-sd15-lokr.safetensors", "LyCORIS LoKr", 132, 0.5},
                                             {"tiny-sd15-lora-diffusers.safetensors", "diffusers/PEFT LoRA", 150, 1.0}}) {
      INFO(e.file);
      auto a = m.load(e.file);
      CHECK(a->format == e.format);
      CHECK(a->modules.size() == e.modules);
      CHECK(a->skipped.empty());
      const auto first = std::find_if(a->modules.begin(), a->modules.end(), [](const auto& x) { return x.component == models::kUnet; });
      REQUIRE(first != a->modules.end());
      CHECK(first->scale == doctest::Approx(e.scale));
    }
    // The ambiguous underscores resolve to the real module, and kohya's names to LDM ones.
    auto a = m.load("tiny-sd15-locon-kohya.safetensors");
    std::map<std::string, std::string> targets;
    for (const auto& x : a->modules) targets[x.source] = x.component + ":" + x.target;
    CHECK(targets["lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"] ==
          "unet:input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight");
    CHECK(targets["lora_unet_up_blocks_1_resnets_2_conv1"] == "unet:output_blocks.5.0.in_layers.2.weight");
    CHECK(targets["lora_unet_conv_out"] == "unet:out.2.weight");
    CHECK(targets["lora_unet_mid_block_resnets_1_conv2"] == "unet:middle_block.2.out_layers.3.weight");
    CHECK(targets["lora_te_text_model_encoder_layers_2_self_attn_out_proj"] ==
          "text_encoder:text_model.encoder.layers.2.self_attn.out_proj.weight");
  }

  TEST_CASE("one UNet key table, read both ways: diffusers -> LDM -> diffusers gives every name back") {
    for (const auto& file : {test::sd15() + "/models/tiny-sd15-diffusers/unet/diffusion_pytorch_model.safetensors",
                             test::fixtures() + "/sdxl-tiny/models/tiny-sdxl-diffusers/unet/diffusion_pytorch_model.safetensors",
                             test::sd15() + "/models/tiny-controlnet-diffusers/diffusion_pytorch_model.safetensors"}) {
      INFO(file);
      REQUIRE(std::filesystem::exists(file));
      auto f = models::SafeTensors::open(file);
      const auto ldm = models::unet_from_diffusers(models::index_file(f));
      REQUIRE(ldm.size() == f->tensors().size());
      std::vector<std::string> ldm_names;
      for (const auto& [name, ref] : ldm) ldm_names.push_back(name);
      const auto back = models::UnetKeyMap::from_ldm(ldm_names);
      for (const auto& [name, ref] : ldm) {
        INFO(name);
        CHECK(name.rfind("diffusers:", 0) == std::string::npos);  // every name is in the table
        CHECK(back.to_diffusers(name) == ref.key);
      }
    }
  }

  TEST_CASE("strength 0 is the base model bit for bit") {
    c10::InferenceMode guard;
    Sd15 m(torch::kCPU, torch::kFloat32);
    const auto base_unet = snapshot_parameters(*m.unet), base_clip = snapshot_parameters(*m.clip);
    auto a = m.load("tiny-sd15-locon-kohya.safetensors");
    CHECK(models::adapter_patches(a, 0.0, 0.0).empty());
    m.patcher.apply(models::adapter_patches(a, 0.0, 0.0));
    CHECK(changed_parameters(*m.unet, base_unet).empty());
    CHECK(changed_parameters(*m.clip, base_clip).empty());
    // Only the text encoder's strength set: the UNet stays exactly the base.
    CHECK(m.patcher.apply(models::adapter_patches(a, 0.0, 0.8)));
    CHECK(changed_parameters(*m.unet, base_unet).empty());
    CHECK(changed_parameters(*m.clip, base_clip).size() == 18);
    CHECK(m.patcher.apply(models::adapter_patches(a, 0.8, 0.0)));
    CHECK(changed_parameters(*m.clip, base_clip).empty());
    CHECK(changed_parameters(*m.unet, base_unet).size() == 168);  // 132 attention/ff/proj + 36 convs
  }

  TEST_CASE("apply then restore gives every base tensor back bit for bit, in float32 and float16") {
    c10::InferenceMode guard;
    for (auto dtype : {torch::kFloat32, torch::kFloat16}) {
      INFO(c10::toString(dtype));
      Sd15 m(torch::kCPU, dtype);
      const auto base_unet = snapshot_parameters(*m.unet), base_clip = snapshot_parameters(*m.clip);
      for (const auto* file : {"tiny-sd15-lora-kohya.safetensors", "tiny-sd15-locon-kohya.safetensors",
                               "tiny-sd15-loha.safetensors", "tiny-sd15-lokr.safetensors",
                               "tiny-sd15-lora-diffusers.safetensors"}) {
        INFO(file);
        auto a = m.load(file);
        CHECK(m.patcher.apply(models::adapter_patches(a, 1.0, 1.0)));
        CHECK(m.patcher.backed_up() == a->modules.size());
        const auto touched = changed_parameters(*m.unet, base_unet).size() + changed_parameters(*m.clip, base_clip).size();
        CHECK(touched == a->modules.size());
        for (const auto& p : m.unet->named_parameters()) CHECK((p.value().scalar_type() == dtype));
        m.patcher.restore();
        CHECK(m.patcher.backed_up() == 0);
        CHECK(changed_parameters(*m.unet, base_unet).empty());
        CHECK(changed_parameters(*m.clip, base_clip).empty());
      }
    }
  }

  TEST_CASE("applying the same set again is a no-op; a different set restores first") {
    c10::InferenceMode guard;
    Sd15 m(torch::kCPU, torch::kFloat32);
    const auto base_unet = snapshot_parameters(*m.unet);
    auto a = m.load("tiny-sd15-lora-kohya.safetensors");
    auto b = m.load("tiny-sd15-loha.safetensors");
    const auto set_a = models::adapter_patches(a, 0.8, 0.8);
    CHECK(m.patcher.apply(set_a));
    const auto once = snapshot_parameters(*m.unet);
    CHECK_FALSE(m.patcher.apply(set_a));                            // identity check: nothing merged again
    CHECK_FALSE(m.patcher.apply(models::adapter_patches(a, 0.8, 0.8)));  // an equal set built anew
    CHECK(changed_parameters(*m.unet, once).empty());                          // not merged twice
    CHECK(m.patcher.apply(models::adapter_patches(a, 0.5, 0.8)));   // another strength is another set
    CHECK_FALSE(changed_parameters(*m.unet, once).empty());
    // b alone, from a patched model, equals b from the base model: the set was restored first.
    CHECK(m.patcher.apply(models::adapter_patches(b, 1.0, 1.0)));
    const auto b_after_a = snapshot_parameters(*m.unet);
    m.patcher.restore();
    CHECK(changed_parameters(*m.unet, base_unet).empty());
    CHECK(m.patcher.apply(models::adapter_patches(b, 1.0, 1.0)));
    CHECK(changed_parameters(*m.unet, b_after_a).empty());
    // Two adapters at once: their deltas add up on the weights they share.
    auto both = models::adapter_patches(a, 0.8, 0.8);
    const auto pb = models::adapter_patches(b, 1.0, 1.0);
    both.insert(both.end(), pb.begin(), pb.end());
    CHECK(m.patcher.apply(both));
    CHECK(m.patcher.backed_up() == 150);  // b's UNet weights are a subset of a's
    m.patcher.restore();
    CHECK(changed_parameters(*m.unet, base_unet).empty());
  }

  TEST_CASE("a LoRA for another family is one clear error") {
    Sd15 m(torch::kCPU, torch::kFloat32);
    const auto e = error_of([&] { models::load_adapter(sdxl() + "/lora/tiny-sdxl-lora-kohya.safetensors", m.model); });
    INFO(e);
    CHECK(contains(e, "tiny-sdxl-lora-kohya.safetensors: this LoRA is for SDXL, the model is Stable Diffusion 1.x"));
    // And the other way: an SD 1.x LoRA on the SDXL model.
    const auto e2 = error_of([&] { models::load_adapter(lora_dir() + "tiny-sd15-lora-kohya.safetensors", sdxl_model()); });
    INFO(e2);
    CHECK(contains(e2, "this LoRA is for Stable Diffusion 1.x/2.x, the model is Stable Diffusion XL"));
  }

  TEST_CASE("a key that matches no module is reported by name; shape mismatches name key and shapes") {
    Sd15 m(torch::kCPU, torch::kFloat32);
    const auto dir = test::scratch("adapters");
    const auto kohya = lora_dir() + "tiny-sd15-lora-kohya.safetensors";
    const auto unknown = rewrite(kohya, (dir / "unknown.safetensors").string(), [](auto& t) {
      t.emplace_back("lora_unet_down_blocks_7_attentions_0_proj_in.lora_down.weight", torch::zeros({4, 32}, torch::kHalf));
      t.emplace_back("lora_unet_down_blocks_7_attentions_0_proj_in.lora_up.weight", torch::zeros({32, 4}, torch::kHalf));
    });
    const auto e = error_of([&] { models::load_adapter(unknown, m.model); });
    INFO(e);
    CHECK(contains(e, "1 of 151 modules match no weight of the Stable Diffusion 1.x model: lora_unet_down_blocks_7_attentions_0_proj_in"));
    models::AdapterOptions lenient;
    lenient.allow_unmatched = true;
    auto a = models::load_adapter(unknown, m.model, lenient);
    CHECK(a->modules.size() == 150);
    CHECK(a->unmatched == std::vector<std::string>{"lora_unet_down_blocks_7_attentions_0_proj_in"});

    const auto wrong = rewrite(kohya, (dir / "wrong.safetensors").string(), [](auto& t) {
      for (auto& [k, v] : t)
        if (k == "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight")
          v = torch::zeros({48, 4}, torch::kHalf);
    });
    const auto e2 = error_of([&] { models::load_adapter(wrong, m.model); });
    INFO(e2);
    CHECK(contains(e2, "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q "
                       "(unet input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight): delta [48, 32] vs weight [32, 32]"));

    const auto bad_rank = rewrite(kohya, (dir / "rank.safetensors").string(), [](auto& t) {
      for (auto& [k, v] : t)
        if (k == "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight") v = torch::zeros({64, 3}, torch::kHalf);
    });
    CHECK(contains(error_of([&] { models::load_adapter(bad_rank, m.model); }), "do not share a rank"));

    const auto dora = rewrite(kohya, (dir / "dora.safetensors").string(), [](auto& t) {
      t.emplace_back("lora_te_text_model_encoder_layers_0_mlp_fc1.dora_scale", torch::ones({1, 32}, torch::kHalf));
    });
    CHECK(contains(error_of([&] { models::load_adapter(dora, m.model); }), "lora_te_text_model_encoder_layers_0_mlp_fc1.dora_scale"));
  }

  TEST_CASE("Tucker LoCon (lora_mid), Tucker LoHa, full-factor LoKr and full diffs follow their formulas") {
    c10::InferenceMode guard;
    Sd15 m(torch::kCPU, torch::kFloat32);
    torch::manual_seed(3);
    auto r = [](std::vector<int64_t> shape) { return torch::randn(shape).mul(0.1).to(torch::kHalf); };
    // Targets: conv_in [32, 4, 3, 3], a resnet conv [32, 32, 3, 3], attn1.to_q [32, 32], attn1.to_k [32, 32].
    const std::string conv_in = "lora_unet_conv_in", conv1 = "lora_unet_down_blocks_0_resnets_0_conv1";
    const std::string to_q = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q";
    const std::string to_k = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_k";
    std::vector<std::pair<std::string, torch::Tensor>> t = {
        {conv_in + ".lora_down.weight", r({2, 4, 1, 1})}, {conv_in + ".lora_mid.weight", r({2, 2, 3, 3})},
        {conv_in + ".lora_up.weight", r({32, 2, 1, 1})},  {conv_in + ".alpha", torch::tensor(1.0).to(torch::kHalf)},
        {conv1 + ".hada_w1_a", r({3, 32})}, {conv1 + ".hada_w1_b", r({3, 32})}, {conv1 + ".hada_t1", r({3, 3, 3, 3})},
        {conv1 + ".hada_w2_a", r({3, 32})}, {conv1 + ".hada_w2_b", r({3, 32})}, {conv1 + ".hada_t2", r({3, 3, 3, 3})},
        {conv1 + ".alpha", torch::tensor(1.5).to(torch::kHalf)},
        {to_q + ".lokr_w1", r({4, 2})}, {to_q + ".lokr_w2", r({8, 16})}, {to_q + ".alpha", torch::tensor(7.0).to(torch::kHalf)},
        {to_k + ".diff", r({32, 32})}};
    const auto path = (test::scratch("adapter-formulas") / "mixed.safetensors").string();
    models::save_safetensors(path, t);
    auto a = models::load_adapter(path, m.model);
    REQUIRE(a->modules.size() == 4);
    std::map<std::string, const models::AdapterModule*> by;
    for (const auto& x : a->modules) by[x.source] = &x;
    auto f = [&](const std::string& key) {
      for (const auto& [k, v] : t)
        if (k == key) return v.to(torch::kFloat64);
      throw std::runtime_error(key);
    };
    auto close = [](const torch::Tensor& ours, const torch::Tensor& ref) { return test::rel_error(ours, ref) < 1e-6; };
    // Tucker LoCon: ΔW[o,i] = (alpha/r) Σ up[o,a] mid[a,b] down[b,i], r = 2.
    auto want = torch::einsum("oa,abkl,bi->oikl", {f(conv_in + ".lora_up.weight").flatten(1), f(conv_in + ".lora_mid.weight"),
                                                   f(conv_in + ".lora_down.weight").flatten(1)}) * 0.5;
    CHECK(by.at(conv_in)->kind == models::AdapterKind::LoRA);
    CHECK(close(by.at(conv_in)->delta({32, 4, 3, 3}, torch::kCPU), want));
    // Tucker LoHa: each factor Σ t[a,b,k,l] w_a[a,o] w_b[b,i]; scale alpha / rank = 1.5 / 3.
    auto factor = [&](const std::string& n) {
      return torch::einsum("abkl,ao,bi->oikl", {f(conv1 + ".hada_t" + n), f(conv1 + ".hada_w" + n + "_a"), f(conv1 + ".hada_w" + n + "_b")});
    };
    CHECK(by.at(conv1)->scale == doctest::Approx(0.5));
    CHECK(close(by.at(conv1)->delta({32, 32, 3, 3}, torch::kCPU), factor("1") * factor("2") * 0.5));
    // LoKr with both factors full: no low-rank factor, so the alpha is not used (ComfyUI).
    CHECK(by.at(to_q)->scale == 1.0);
    CHECK(close(by.at(to_q)->delta({32, 32}, torch::kCPU), torch::kron(f(to_q + ".lokr_w1"), f(to_q + ".lokr_w2"))));
    CHECK(by.at(to_k)->kind == models::AdapterKind::Diff);
    CHECK(close(by.at(to_k)->delta({32, 32}, torch::kCPU), f(to_k + ".diff")));
    // Merged: W + strength·ΔW.
    const auto base = snapshot_parameters(*m.unet);
    m.patcher.apply(models::adapter_patches(a, 0.7, 0.0));
    const auto params = m.unet->named_parameters();
    CHECK(close(params["input_blocks.0.0.weight"], base.at("input_blocks.0.0.weight").to(torch::kFloat64) + 0.7 * want));
    m.patcher.restore();
    CHECK(changed_parameters(*m.unet, base).empty());
  }

  TEST_CASE("modules aimed at weights the model does not run are dropped, not reported") {
    // As SD 2.x's last text layer (Checkpoint::text_encoder_ignored): here the tiny model's layer 2.
    Sd15 m(torch::kCPU, torch::kFloat32);
    auto& te = m.model.components[models::kTextEncoder];
    for (auto it = te.weights.begin(); it != te.weights.end();) {
      if (it->first.rfind("text_model.encoder.layers.2.", 0) == 0) {
        te.skipped.insert(it->first);
        it = te.weights.erase(it);
      } else {
        ++it;
      }
    }
    auto a = m.load("tiny-sd15-lora-kohya.safetensors");
    CHECK(a->modules.size() == 144);
    CHECK(a->skipped.size() == 6);
    CHECK(a->skipped.front().rfind("lora_te_text_model_encoder_layers_2_", 0) == 0);
  }

  TEST_CASE("pickle adapters and embeddings are refused with the conversion hint") {
    Sd15 m(torch::kCPU, torch::kFloat32);
    const auto dir = test::scratch("adapters-pickle");
    const auto pt = (dir / "style.pt").string();
    std::ofstream(pt) << "not read";
    const auto e = error_of([&] { models::load_adapter(pt, m.model); });
    CHECK(contains(e, "style.pt: pickle files (.pt) can run code when loaded and are not supported; convert it to .safetensors"));
    const auto e2 = error_of([&] { models::load_embedding(pt, {"Stable Diffusion 1.x", {32}}); });
    CHECK(contains(e2, "convert it to .safetensors"));
    // A base model is not an adapter.
    CHECK(contains(error_of([&] { models::load_adapter(sd15_model(), m.model); }), "not a LoRA/LyCORIS adapter"));
  }

  TEST_CASE("SDXL kohya keys all map to weights of the SDXL single file") {
    const auto model = sdxl_model();
    REQUIRE(model.components.at(models::kTextEncoder2).weights.count("text_model.encoder.layers.0.self_attn.q_proj.weight"));
    const auto path = sdxl() + "/lora/tiny-sdxl-lora-kohya.safetensors";
    auto f = models::SafeTensors::open(path);
    std::set<std::string> file_modules;
    for (const auto& t : f->tensors()) file_modules.insert(t.name.substr(0, t.name.find('.')));
    auto a = models::load_adapter(path, model);  // throws on any unmatched key or shape
    CHECK(a->modules.size() == file_modules.size());
    CHECK(a->format == "kohya LoRA");
    std::map<std::string, std::string> targets;
    size_t te1 = 0, te2 = 0;
    for (const auto& x : a->modules) {
      targets[x.source] = x.target;
      te1 += x.component == models::kTextEncoder;
      te2 += x.component == models::kTextEncoder2;
      CHECK(x.scale == doctest::Approx(1.0));  // alpha 4, rank 4
    }
    CHECK(te1 == 18);
    CHECK(te2 == 18);
    CHECK(targets["lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q"] ==
          "input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight");
    CHECK(targets["lora_te2_text_model_encoder_layers_1_mlp_fc2"] == "text_model.encoder.layers.1.mlp.fc2.weight");
    // An SDXL LoRA needs the second text encoder: without it, the family error.
    auto one_encoder = model;
    one_encoder.components.erase(models::kTextEncoder2);
    one_encoder.family = "Stable Diffusion 1.x";
    CHECK(contains(error_of([&] { models::load_adapter(path, one_encoder); }), "this LoRA is for SDXL"));
  }
}

// Not registered in CTest (it builds a full-size SD 1.5 UNet, 3.4 GB in float32): the time
// a typical SD 1.5 kohya LoRA (rank 32, every attention, feed-forward and proj layer of the
// UNet) takes to merge and restore. Run: sigma_tests --test-suite=bench.adapters
TEST_SUITE("bench.adapters") {
  TEST_CASE("merging a rank-32 kohya LoRA into a full-size SD 1.5 UNet") {
    c10::InferenceMode guard;
    models::UNet unet(models::UNetConfig{});  // the defaults are SD 1.5's
    models::AdapterModel model;
    model.family = "Stable Diffusion 1.x";
    model.components[models::kUnet] = models::adapter_target(*unet);
    const int64_t rank = 32;
    std::vector<std::pair<std::string, torch::Tensor>> tensors;
    for (const auto& [key, target] : models::adapter_key_map(model)) {
      const auto& name = target.second;
      const bool layer = name.find("transformer_blocks") != std::string::npos || name.find("proj_in") != std::string::npos ||
                         name.find("proj_out") != std::string::npos;
      const bool diffusers_spelling = key.rfind("lora_unet_down_", 0) == 0 || key.rfind("lora_unet_mid_", 0) == 0 ||
                                      key.rfind("lora_unet_up_", 0) == 0;
      if (!layer || !diffusers_spelling || name.find("norm") != std::string::npos)
        continue;  // the diffusers spelling of each attention/ff/proj weight, once
      auto shape = model.components[models::kUnet].weights.at(name);
      std::vector<int64_t> down = {rank, shape[1]}, up = {shape[0], rank};
      if (shape.size() == 4) down.insert(down.end(), {1, 1}), up.insert(up.end(), {1, 1});
      tensors.emplace_back(key + ".lora_down.weight", torch::randn(down).mul(0.01).to(torch::kHalf));
      tensors.emplace_back(key + ".lora_up.weight", torch::randn(up).mul(0.01).to(torch::kHalf));
      tensors.emplace_back(key + ".alpha", torch::tensor(16.0).to(torch::kHalf));
    }
    const auto path = (test::scratch("bench-adapters") / "sd15-rank32.safetensors").string();
    models::save_safetensors(path, tensors);
    auto t0 = std::chrono::steady_clock::now();
    auto lora = models::load_adapter(path, model);
    auto t1 = std::chrono::steady_clock::now();
    models::ModelPatcher patcher;
    patcher.add_component(models::kUnet, unet.ptr());
    CHECK(patcher.apply(models::adapter_patches(lora, 0.8, 0.8)));
    auto t2 = std::chrono::steady_clock::now();
    patcher.restore();
    auto t3 = std::chrono::steady_clock::now();
    auto ms = [](auto a, auto b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
    std::printf("SD 1.5 UNet, rank-32 kohya LoRA, %zu modules: load %.0f ms, merge %.0f ms, restore %.0f ms (%d threads)\n",
                lora->modules.size(), ms(t0, t1), ms(t1, t2), ms(t2, t3), at::get_num_threads());
    CHECK(lora->modules.size() > 100);
  }
}
