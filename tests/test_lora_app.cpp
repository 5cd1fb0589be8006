// The app side of LoRA and textual inversion (app/adapters.h): A1111's <lora:...> tags, the
// request's lora list and folders, name resolution, the per-engine patcher (no re-merge,
// exact restore), A1111's `Lora hashes` / `TI hashes`, and the `sigma` CLI end to end.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <fstream>

#include "app/adapters.h"
#include "app/image_io.h"
#include "app/parameters.h"
#include "app/pipeline.h"
#include "models/adapters/embedding.h"
#include "models/families/loader.h"
#include "models/io/safetensors.h"
#include "tests/reference_request.h"
#include "tests/support.h"

using namespace sigma;
using namespace sigma::app;

namespace {

std::string lora_fixtures() { return test::sd15() + "/lora"; }
std::string emb_fixtures() { return test::sd15() + "/embeddings"; }
std::string tokenizer_dir() { return test::sd15() + "/models/tiny-sd15-diffusers/tokenizer"; }
std::string model_file() { return test::sd15() + "/models/tiny-sd15.safetensors"; }
using sigma::test::has;

// Any exception's message ("" when none).
std::string any_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// A small, fast request on the tiny model (the test device and dtype).
// The request's prompts as the pipeline reads them: parsed once, tokenized by the model's tokenizer.
RequestPrompts prompts_of(const Engine& engine, const Request& r) {
  auto p = read_prompts(r);
  tokenize(p, engine.tokenizer(), r.emphasis != "none");
  return p;
}

Request small_request() {
  auto r = test::diffusers_ddim8_request(model_file(), tokenizer_dir());
  r.width = r.height = 64;
  r.steps = 3;
  r.lora_dir = lora_fixtures();
  r.embeddings_dir = emb_fixtures();
  return r;
}

// SHA-256 of bytes [offset, end) of a file, through file_sha256 of a copy of that part.
std::string sha256_of_tail(const std::string& path, size_t offset, const std::string& scratch_name) {
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto copy = (test::scratch(scratch_name) / "tail.bin").string();
  std::ofstream(copy, std::ios::binary) << bytes.substr(offset);
  return file_sha256(copy);
}

size_t safetensors_data_offset(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  unsigned char len[8];
  in.read(reinterpret_cast<char*>(len), 8);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len[i];
  return static_cast<size_t>(8 + n);
}

using test::changed_parameters;
using test::snapshot_parameters;

using test::sigma_cli;

}  // namespace

TEST_SUITE("unit.lora_app") {
  TEST_CASE("extra-network tags are removed from the text only, as A1111's re.sub(<(\\w+):([^>]+)>, '')") {
    std::vector<ExtraNetworkTag> tags;
    CHECK(strip_extra_networks("a red circle <lora:x:0.8>, blue", &tags) == "a red circle , blue");
    REQUIRE(tags.size() == 1);
    CHECK(tags[0].type == "lora");
    CHECK((tags[0].items == std::vector<std::string>{"x", "0.8"}));
    tags.clear();
    CHECK(strip_extra_networks("<lora:a><hypernet:h:1>cat <lora:b:0.5:0.25> dog", &tags) == "cat  dog");
    REQUIRE(tags.size() == 3);
    CHECK(tags[1].type == "hypernet");
    CHECK((tags[2].items == std::vector<std::string>{"b", "0.5", "0.25"}));
    // Not tags: no word before ':', nothing after it, no closing '>'.
    CHECK(strip_extra_networks("i <3 you, <:x>, <lora:>, <lora:x") == "i <3 you, <:x>, <lora:>, <lora:x");
    CHECK(strip_extra_networks("(a <lora:x:1> b:1.2)") == "(a  b:1.2)");

    // The remaining prompt tokenizes exactly as the text without the tag.
    const auto tok = models::ClipTokenizer::from_dir(tokenizer_dir());
    const auto with_tag = tokenize_prompt(tok, prompt_text("a red circle <lora:x:0.8>, blue"));
    const auto plain = tokenize_prompt(tok, "a red circle , blue");
    CHECK((with_tag.ids == plain.ids));
    CHECK(with_tag.token_count == plain.token_count);
    CHECK((with_tag.ids != tokenize_prompt(tok, "a red circle <lora:x:0.8>, blue").ids));
  }

  TEST_CASE("a request's prompts are read once: text, tags with their places, LoRAs of the positive prompt") {
    Request r;
    r.prompt = "a cat <lora:a:0.5> (dog:-1) <hypernet:h:1> BREAK embedding:sub/tinyemb.safetensors";
    r.negative = "<lora:n:1> blurry";
    r.lora.push_back({"extra", 0.7, 0.7});
    const auto p = read_prompts(r);
    CHECK(p.positive.text == "a cat  (dog:-1)  BREAK tinyemb");
    REQUIRE(p.positive.tags.size() == 2);
    CHECK(r.prompt.substr(p.positive.tags[0].begin, p.positive.tags[0].length) == "<lora:a:0.5>");
    CHECK(r.prompt.substr(p.positive.tags[1].begin, p.positive.tags[1].length) == "<hypernet:h:1>");
    CHECK(p.negative.text == " blurry");
    REQUIRE(p.loras.size() == 2);  // the negative prompt's tag is not applied
    CHECK(p.loras[0].name == "a");
    CHECK(p.loras[0].unet == 0.5);
    CHECK(p.loras[1].name == "extra");

    // Tokenized once, the runs chunk into tokenize_prompt's chunks; a weight of -1 is a weight,
    // only BREAK ends a chunk.
    const auto tok = models::ClipTokenizer::from_dir(tokenizer_dir());
    auto t = p;
    tokenize(t, tok, true);
    const auto chunks = chunk_prompt(tok, t.positive_tokens);
    CHECK((chunks.ids == tokenize_prompt(tok, p.positive.text).ids));
    CHECK((chunks.weights == tokenize_prompt(tok, p.positive.text).weights));
    CHECK(chunks.ids.size() == 2);
    CHECK(std::count(chunks.weights[0].begin(), chunks.weights[0].end(), -1.0f) == 1);  // "dog"
  }

  TEST_CASE("tags and --lora entries resolve by name in the LoRA folder; A1111's strength order") {
    Request r;
    r.lora_dir = lora_fixtures();
    r.prompt = "a cat <lora:tiny-sd15-loha:0.9> <lora:tiny-sd15-lokr> <lora:tiny-sd15-lora-kohya:0.5:0.25> "
               "<lora:tiny-sd15-locon-kohya:unet=0.3:te=0.2>";
    r.negative = "<lora:tiny-sd15-lora-diffusers:1> blurry";  // ignored, as in A1111
    r.lora.push_back(parse_lora_ref(lora_fixtures() + "/tiny-sd15-lora-diffusers.safetensors:0.6"));
    const auto loras = request_loras(r, read_prompts(r));
    REQUIRE(loras.size() == 5);
    CHECK(loras[0].name == "tiny-sd15-loha");
    CHECK(loras[0].path == lora_fixtures() + "/tiny-sd15-loha.safetensors");
    CHECK(loras[0].unet == 0.9);
    CHECK(loras[0].text == 0.9);
    CHECK(loras[1].unet == 1.0);  // <lora:NAME>: 1
    CHECK(loras[2].text == 0.5);  // <lora:NAME:TE:UNET>
    CHECK(loras[2].unet == 0.25);
    CHECK(loras[3].unet == 0.3);
    CHECK(loras[3].text == 0.2);
    CHECK(loras[4].name == "tiny-sd15-lora-diffusers");  // a path: its stem
    CHECK(loras[4].unet == 0.6);
    CHECK(prompt_text(r.negative) == " blurry");

    // A subfolder is searched too.
    const auto dir = test::scratch("lora-folders");
    std::filesystem::create_directories(dir / "styles" / "deep");
    std::filesystem::copy_file(lora_fixtures() + "/tiny-sd15-loha.safetensors", dir / "styles" / "deep" / "my-style.safetensors");
    CHECK(resolve_lora("my-style", dir.string()) == (dir / "styles" / "deep" / "my-style.safetensors").string());
  }

  TEST_CASE("an unknown LoRA name lists the closest names; bad strengths name the field") {
    Request r;
    r.lora_dir = lora_fixtures();
    r.prompt = "<lora:tiny-sd15-lohaa:0.9>";
    const auto e = test::error_of([&] { request_loras(r, read_prompts(r)); });
    INFO(e);
    CHECK(has(e, "unknown LoRA 'tiny-sd15-lohaa'"));
    CHECK(has(e, "closest names: tiny-sd15-loha, tiny-sd15-lokr"));
    r.prompt = "<lora:tiny-sd15-loha:strong>";
    CHECK(has(test::error_of([&] { request_loras(r, read_prompts(r)); }), "'strong' is not a number"));
    r.lora_dir = (test::scratch("empty-loras")).string();
    r.prompt = "<lora:x>";
    CHECK(has(test::error_of([&] { request_loras(r, read_prompts(r)); }), "which has no LoRA files; set the folder with --lora-dir"));
    CHECK((closest_names("abd", {"xyz", "abc", "abcd", "q"}, 2) == std::vector<std::string>{"abc", "abcd"}));

    Request v;
    v.lora.push_back({"x", 11, 1});
    CHECK(has(test::error_of([&] { validate(v); }), "--lora x: strength"));
    v.lora[0].unet = std::nan("");
    CHECK(has(test::error_of([&] { validate(v); }), "must be a finite number between -10 and 10"));
    v.lora[0].unet = -2;
    CHECK_NOTHROW(validate(v));
    CHECK(has(test::error_of([&] { parse_lora_ref("x:lots"); }), "--lora x:lots: the strength after ':' must be a number"));
  }

  TEST_CASE("the lora field of job files: strings, objects, round trip, errors") {
    auto r = request_from_json(nlohmann::json::parse(
        R"({"lora": ["a:0.8", "b", {"name": "c", "strength": 0.5}, {"name": "d", "unet": 0.7, "text": 0.1}],
            "lora_dir": "/l", "embeddings-dir": "/e"})"));
    REQUIRE(r.lora.size() == 4);
    CHECK(r.lora[0] == LoraRef{"a", 0.8, 0.8});
    CHECK(r.lora[1] == LoraRef{"b", 1, 1});
    CHECK(r.lora[2] == LoraRef{"c", 0.5, 0.5});
    CHECK(r.lora[3] == LoraRef{"d", 0.7, 0.1});
    CHECK(r.lora_dir == "/l");
    CHECK(r.embeddings_dir == "/e");
    CHECK(request_from_json(to_json(r)) == r);
    CHECK(has(test::error_of([&] { request_from_json(nlohmann::json::parse(R"({"lora": [{"name": "x", "weigth": 1}]})")); }),
              "job field 'lora': unknown key 'weigth'"));
    CHECK(has(test::error_of([&] { request_from_json(nlohmann::json::parse(R"({"lora": "x"})")); }), "job field 'lora': expected a list"));
    CHECK(has(test::error_of([&] { request_from_json(nlohmann::json::parse(R"({"lora": [{"strength": 1}]})")); }), "has no name"));
  }

  TEST_CASE("A1111's hashes: LoRA = addnet hash (after the header), TI = whole-file SHA-256, 12 hex digits") {
    const auto lora = lora_fixtures() + "/tiny-sd15-loha.safetensors";
    const auto expected = sha256_of_tail(lora, safetensors_data_offset(lora), "addnet");
    CHECK(addnet_hash(lora) == expected);
    CHECK(addnet_hash(lora) != file_sha256(lora));
    models::Adapter a;
    a.path = lora;
    CHECK(lora_short_hash(a) == expected.substr(0, 12));
    a.metadata["sshs_model_hash"] = "0123456789abcdef0123";
    CHECK(lora_short_hash(a) == "0123456789ab");  // kohya's stored hash wins, as in A1111
    const auto emb = emb_fixtures() + "/tinyemb.safetensors";
    CHECK(embedding_short_hash(emb) == sha256_of_tail(emb, 0, "tihash").substr(0, 12));
  }

  TEST_CASE("parameters text carries Lora hashes and TI hashes; reading it does not report them as not taken") {
    Request r;
    r.prompt = "a cat <lora:style:0.8>";
    ImageRecord rec;
    rec.lora_hashes = {{"style", "aaaaaaaaaaaa"}, {"other", "bbbbbbbbbbbb"}};
    rec.ti_hashes = {{"tinyemb", "cccccccccccc"}};
    const auto text = format_parameters(r, rec);
    CHECK(has(text, "Lora hashes: \"style: aaaaaaaaaaaa, other: bbbbbbbbbbbb\""));
    CHECK(has(text, "TI hashes: \"tinyemb: cccccccccccc\""));
    std::map<std::string, std::string> unparsed;
    const auto back = parse_parameters(text, &unparsed);
    CHECK(back.prompt == r.prompt);
    CHECK(unparsed.count("Lora hashes") == 0);
    CHECK(unparsed.count("TI hashes") == 0);
    CHECK(unparsed.count("Model hash") == 1);  // still reported: the check above can fail
  }

  TEST_CASE("embedding vectors replace the word before chunking and stay whole at a chunk border") {
    const auto tok = models::ClipTokenizer::from_dir(tokenizer_dir());
    const std::vector<PromptEmbedding> emb = {{tok.encode("tinyemb"), 49408, 3}};
    const auto one = tokenize_prompt(tok, "a photo of tinyemb on the left", true, &emb);
    REQUIRE(one.ids.size() == 1);
    const auto plain = tok.encode("a photo of");
    CHECK(one.used[0] == static_cast<int>(plain.size()) + 3 + static_cast<int>(tok.encode("on the left").size()));
    CHECK(one.ids[0][plain.size() + 1] == 49408);
    CHECK(one.ids[0][plain.size() + 3] == 49410);
    std::string long_prompt;
    for (int i = 0; i < 74; ++i) long_prompt += "a ";
    const auto border = tokenize_prompt(tok, long_prompt + "tinyemb", true, &emb);
    REQUIRE(border.ids.size() == 2);
    CHECK(border.used[0] == 74);  // 74 + 3 > 75: the embedding starts the next chunk
    CHECK(border.ids[1][1] == 49408);
    CHECK(border.used[1] == 3);
  }

  TEST_CASE("ComfyUI's embedding:NAME is the word NAME") {
    CHECK(prompt_text("a photo of embedding:tinyemb, (embedding:sub/tinyemb.safetensors:1.2)") == "a photo of tinyemb, (tinyemb:1.2)");
    CHECK(prompt_text("myembedding:x") == "myembedding:x");
  }

  TEST_CASE("models root: $SIGMA_MODELS, else ~/models") {
    const char* old = std::getenv("SIGMA_MODELS");
    const std::string saved = old ? old : "";
    ::setenv("SIGMA_MODELS", "/srv/models", 1);
    Request r;
    CHECK(lora_folder(r) == "/srv/models/loras");
    CHECK(embeddings_folder(r) == "/srv/models/embeddings");
    ::unsetenv("SIGMA_MODELS");
    CHECK(has(lora_folder(r), "/models/loras"));
    r.lora_dir = "/x";
    CHECK(lora_folder(r) == "/x");
    if (old) ::setenv("SIGMA_MODELS", saved.c_str(), 1);
  }
}

TEST_SUITE("e2e.lora_app") {
  TEST_CASE("through the pipeline: strength 0 is the base exactly; the same set does not re-merge; switching restores bit for bit") {
    auto base_request = small_request();
    auto engine = Engine::load(model_spec(base_request));
    const auto fresh = Engine::load(model_spec(base_request));  // never patched
    const auto unet0 = snapshot_parameters(fresh->diffusion_model().module());
    const auto clip0 = snapshot_parameters(*fresh->text_encoder(0));

    const auto base = generate(*engine, base_request);
    auto zero = base_request;
    zero.prompt += " <lora:tiny-sd15-loha:0>";
    const auto at_zero = generate(*engine, zero);
    CHECK(torch::equal(at_zero.latents, base.latents));
    CHECK(engine_adapters(*engine).merges == 0);

    auto with = base_request;
    with.prompt += " <lora:tiny-sd15-loha:0.9>";
    const auto first = generate(*engine, with);
    CHECK(engine_adapters(*engine).merges == 1);
    CHECK_FALSE(torch::equal(first.latents, base.latents));
    CHECK(!changed_parameters(engine->diffusion_model().module(), unet0).empty());
    // The same set again: no merge, same picture.
    const auto second = generate(*engine, with);
    CHECK(engine_adapters(*engine).merges == 1);
    CHECK(torch::equal(second.latents, first.latents));
    CHECK(prepare_adapters(*engine, with, prompts_of(*engine, with)).merged == false);
    CHECK(engine_adapters(*engine).loras.size() == 1);

    // Another set (text encoder too): restore + merge, no reload.
    auto other = base_request;
    other.lora.push_back({"tiny-sd15-lora-kohya", 0.8, 0.8});
    const auto third = generate(*engine, other);
    CHECK(engine_adapters(*engine).merges == 2);
    CHECK(!changed_parameters(*engine->text_encoder(0), clip0).empty());
    CHECK_FALSE(torch::equal(third.latents, first.latents));

    // No LoRA: the base model, bit for bit, as freshly loaded.
    const auto back = generate(*engine, base_request);
    CHECK(changed_parameters(engine->diffusion_model().module(), unet0).empty());
    CHECK(changed_parameters(*engine->text_encoder(0), clip0).empty());
    CHECK(torch::equal(back.latents, base.latents));

    // The image records carry the hash of each LoRA used.
    REQUIRE(first.images.size() == 1);
    const auto hash = addnet_hash(lora_fixtures() + "/tiny-sd15-loha.safetensors").substr(0, 12);
    CHECK(has(first.images[0].parameters, "Lora hashes: \"tiny-sd15-loha: " + hash + "\""));
    CHECK(first.images[0].reproduce.lora_dir == std::filesystem::absolute(lora_fixtures()).lexically_normal().string());
    CHECK_FALSE(has(base.images[0].parameters, "Lora hashes"));
  }

  TEST_CASE("a LoRA through the app's request path matches the fixture's merged-weight references") {
    auto r = small_request();
    r.lora.push_back({"tiny-sd15-lora-kohya", 0.8, 0.8});
    auto engine = Engine::load(model_spec(r));
    prepare_adapters(*engine, r, prompts_of(*engine, r));
    auto comps = models::SafeTensors::open(test::sd15() + "/refs/components.safetensors");
    auto refs = models::SafeTensors::open(lora_fixtures() + "/lora_refs.safetensors");
    c10::InferenceMode guard;
    const auto dev = engine->device();
    const auto dt = engine->dtype();
    models::DiffusionConditioning c;
    c.context = comps->load("unet.context").to(dev, dt);
    auto out = engine->diffusion_model().forward(comps->load("unet.x").to(dev, dt), comps->load("unet.t").to(dev, dt), c);
    CHECK(test::rel_error(out, refs->load("unet.out_lora")) < test::tolerance(1e-4));
    auto hidden = engine->text_encoder(0)->forward(comps->load("clip.ids").to(dev));
    CHECK(test::rel_error(hidden, refs->load("clip.last_hidden_lora")) < test::tolerance(1e-4));
  }

  TEST_CASE("a LoRA for another family is the loader's clear error, and the model stays the base") {
    auto r = small_request();
    r.lora.push_back({test::fixtures() + "/sdxl-tiny/lora/tiny-sdxl-lora-kohya.safetensors", 1, 1});
    auto engine = Engine::load(model_spec(r));
    const auto unet0 = snapshot_parameters(engine->diffusion_model().module());
    const auto e = any_error([&] { generate(*engine, r); });
    INFO(e);
    CHECK(has(e, "tiny-sdxl-lora-kohya.safetensors: this LoRA is for SDXL, the model is Stable Diffusion 1.x"));
    CHECK(changed_parameters(engine->diffusion_model().module(), unet0).empty());
  }

  TEST_CASE("textual inversion through the app's prompt path equals ti.clip.last_hidden") {
    const auto c = nlohmann::json::parse(std::ifstream(emb_fixtures() + "/case.json"));
    auto r = small_request();
    r.prompt = c["ti_prompt"].get<std::string>();
    r.negative = "";
    auto engine = Engine::load(model_spec(r));
    const auto prompts = prompts_of(*engine, r);
    const auto pe = prompt_embeddings(*engine, r, prompts);
    REQUIRE(pe.tokens.size() == 1);
    CHECK(pe.tokens[0].count == c["ti_vectors"].get<int>());
    REQUIRE(pe.hashes.size() == 1);
    CHECK(pe.hashes[0].first == "tinyemb");
    auto refs = models::SafeTensors::open(lora_fixtures() + "/adapter_refs.safetensors");
    // The ids the reference fed: the word's place holds 49408..49410.
    const auto chunks = tokenize_prompt(engine->tokenizer(), prompt_text(r.prompt), true, &pe.tokens);
    REQUIRE(chunks.ids.size() == 1);
    const auto ref_ids = refs->load("ti.prompt_ids_expanded").to(torch::kLong).reshape({-1});
    std::vector<int64_t> ours(chunks.ids[0].begin(), chunks.ids[0].end());
    CHECK(torch::equal(torch::tensor(ours), ref_ids));
    c10::InferenceMode guard;
    const auto cond = encode_request(*engine, r, prompts, &pe);
    CHECK(test::rel_error(cond.cond, refs->load("ti.clip.last_hidden")) < test::tolerance(1e-4));
    // The ComfyUI spelling gives the same conditioning; without the folder the word is plain text.
    auto comfy = r;
    comfy.prompt = "a photo of embedding:tinyemb on the left";
    const auto comfy_prompts = prompts_of(*engine, comfy);
    const auto comfy_embeddings = prompt_embeddings(*engine, comfy, comfy_prompts);
    CHECK(torch::equal(encode_request(*engine, comfy, comfy_prompts, &comfy_embeddings).cond, cond.cond));
    auto plain = r;
    plain.embeddings_dir = test::scratch("no-embeddings").string();
    const auto none = prompt_embeddings(*engine, plain, prompts);
    CHECK(none.tokens.empty());
    CHECK(test::rel_error(encode_request(*engine, plain, prompts, &none).cond, cond.cond) > 1e-3);
  }

  TEST_CASE("sigma generate with a LoRA tag and an embedding in the negative prompt: hashes recorded, picture changed, --from-png repeats it") {
    const auto dir = test::scratch("lora-cli");
    const std::string common = "generate -m " + model_file() + " --tokenizer " + tokenizer_dir() +
                               " -W 64 -H 64 --steps 3 -s 7 -q --lora-dir " + lora_fixtures() + " --embeddings-dir " + emb_fixtures();
    const auto with = (dir / "with.png").string(), without = (dir / "without.png").string(), again = (dir / "again.png").string();
    auto run = sigma_cli(common + " -p \"a red circle <lora:tiny-sd15-loha:0.9>\" -n \"tinyemb\" -o " + with);
    INFO(run.output);
    REQUIRE(run.code == 0);
    const auto params = read_png_text(with).at("parameters");
    INFO(params);
    const auto lora_hash = addnet_hash(lora_fixtures() + "/tiny-sd15-loha.safetensors").substr(0, 12);
    const auto ti_hash = file_sha256(emb_fixtures() + "/tinyemb.safetensors").substr(0, 12);
    CHECK(has(params, "Lora hashes: \"tiny-sd15-loha: " + lora_hash + "\""));
    CHECK(has(params, "TI hashes: \"tinyemb: " + ti_hash + "\""));
    CHECK(has(params, "a red circle <lora:tiny-sd15-loha:0.9>\nNegative prompt: tinyemb\n"));

    auto plain = sigma_cli(common + " -p \"a red circle\" -n \"tinyemb\" -o " + without);
    REQUIRE(plain.code == 0);
    CHECK((load_image(with).pixels != load_image(without).pixels));

    // --from-png applies the LoRA again by name, from the folder recorded in the image.
    auto rerun = sigma_cli("generate -q --from-png " + with + " -o " + again);
    INFO(rerun.output);
    REQUIRE(rerun.code == 0);
    CHECK((load_image(again).pixels == load_image(with).pixels));

    // --lora FILE:W is the same as the tag.
    const auto flag = (dir / "flag.png").string();
    auto by_flag = sigma_cli(common + " -p \"a red circle\" -n \"tinyemb\" --lora " + lora_fixtures() + "/tiny-sd15-loha.safetensors:0.9 -o " + flag);
    REQUIRE(by_flag.code == 0);
    CHECK((load_image(flag).pixels == load_image(with).pixels));

    // An unknown name fails before the model loads, naming the closest files.
    auto bad = sigma_cli(common + " -p \"<lora:tiny-sd15-lokra>\" -o " + (dir / "bad.png").string());
    CHECK(bad.code != 0);
    CHECK(has(bad.output, "unknown LoRA 'tiny-sd15-lokra'"));
    CHECK(has(bad.output, "closest names: tiny-sd15-lokr"));
  }

  TEST_CASE("SDXL: sigma generate on the single file with no --tokenizer, a kohya LoRA tag and an SDXL embedding") {
    const auto dir = test::scratch("lora-cli-sdxl");
    const auto xl = test::fixtures() + "/sdxl-tiny";
    const std::string common = "generate -m " + xl + "/models/tiny-sdxl.safetensors -W 64 -H 64 --steps 3 -s 7 -q --lora-dir " +
                               xl + "/lora --embeddings-dir " + xl + "/embeddings";
    const auto with = (dir / "x.png").string(), without = (dir / "plain.png").string();
    auto run = sigma_cli(common + " -p \"a red circle <lora:tiny-sdxl-lora-kohya:0.8>\" -n \"tinyxlemb\" -o " + with);
    INFO(run.output);
    REQUIRE(run.code == 0);
    const auto params = read_png_text(with).at("parameters");
    INFO(params);
    const auto lora_hash = addnet_hash(xl + "/lora/tiny-sdxl-lora-kohya.safetensors").substr(0, 12);
    CHECK(has(params, "Lora hashes: \"tiny-sdxl-lora-kohya: " + lora_hash + "\""));
    CHECK(has(params, "TI hashes: \"tinyxlemb: "));
    auto plain = sigma_cli(common + " -p \"a red circle\" -n \"tinyxlemb\" -o " + without);
    REQUIRE(plain.code == 0);
    CHECK((load_image(with).pixels != load_image(without).pixels));
  }
}

// The embedding files and the text encoder's extra table, below the app (models/adapters/embedding.h).
TEST_SUITE("unit.adapters") {
  TEST_CASE("embeddings: layouts, widths and families are checked; the placeholder expands") {
    const auto sd15_emb = test::sd15() + "/embeddings/tinyemb.safetensors";
    const auto xl_emb = test::fixtures() + "/sdxl-tiny/embeddings/tinyxlemb.safetensors";
    auto ti = models::load_embedding(sd15_emb, {"Stable Diffusion 1.x", {32}});
    CHECK(ti.name == "tinyemb");
    CHECK(ti.vectors.size() == 1);
    CHECK(ti.vectors[0].sizes().vec() == std::vector<int64_t>{3, 32});
    const auto e = any_error([&] { models::load_embedding(sd15_emb, {"Stable Diffusion 2.x", {1024}}); });
    CHECK(has(e, "tinyemb.safetensors: the embedding's vectors are 32 wide, the text encoder of the "
                      "Stable Diffusion 2.x model is 1024 wide"));
    auto xl = models::load_embedding(xl_emb, {"SDXL", {16, 16}});
    CHECK(xl.vectors.size() == 2);
    CHECK(xl.vectors[0].sizes().vec() == std::vector<int64_t>{2, 16});
    CHECK(xl.vectors[1].sizes().vec() == std::vector<int64_t>{2, 16});
    CHECK(has(any_error([&] { models::load_embedding(xl_emb, {"Stable Diffusion 1.x", {16}}); }),
                   "tinyxlemb.safetensors: this embedding is for SDXL (clip_l + clip_g vectors), the model is Stable Diffusion 1.x"));
    CHECK(has(any_error([&] { models::load_embedding(sd15_emb, {"SDXL", {32, 16}}); }), "needs clip_l and clip_g"));
    // string_to_param-style names and a bare [width] vector.
    const auto dir = test::scratch("embeddings");
    const auto s2p = (dir / "oldstyle.safetensors").string();
    models::save_safetensors(s2p, {{"string_to_param.*", torch::ones({32})}});
    auto old = models::load_embedding(s2p, {"Stable Diffusion 1.x", {32}});
    CHECK(old.vectors[0].sizes().vec() == std::vector<int64_t>{1, 32});
    CHECK(old.name == "oldstyle");

    CHECK(models::expand_embedding({1, 7, 8, 2, 7, 8}, {7, 8}, 100, 3) == std::vector<int>{1, 100, 101, 102, 2, 100, 101, 102});
    CHECK(models::expand_embedding({1, 7, 2}, {7, 8}, 100, 3) == std::vector<int>{1, 7, 2});
  }

  TEST_CASE("extra token vectors: ids past the vocabulary read the extra table, the rest is unchanged") {
    c10::InferenceMode guard;
    const auto ck = models::open_checkpoint(test::sd15() + "/models/tiny-sd15.safetensors");
    auto clip = models::load_text_encoder(ck, {});
    auto ids = torch::full({1, 77}, 49407, torch::kLong);
    ids[0][0] = 49406;
    ids[0][1] = 320;
    const auto plain = clip->forward(ids);
    CHECK(torch::equal(clip->forward_with_extra_tokens(ids, torch::randn({2, 32})), plain));
    // An extra row equal to a vocabulary row gives the same states as that token.
    auto extra = torch::stack({torch::randn({32}), clip->text_model->embeddings->token_embedding->weight[320]});
    auto with = ids.clone();
    with[0][1] = 49409;
    CHECK(torch::equal(clip->forward_with_extra_tokens(with, extra), plain));
    with[0][1] = 49408;
    CHECK_FALSE(torch::equal(clip->forward_with_extra_tokens(with, extra), plain));
    with[0][1] = 49410;
    CHECK(test::error_of([&] { clip->forward_with_extra_tokens(with, extra); }) != "");
  }
}
