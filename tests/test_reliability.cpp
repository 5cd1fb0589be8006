// No silent bad output: every number a user can give is finite and in range, checked
// where the request is validated with the flag named; settings a PNG carries that cannot
// be taken are said; a NaN anywhere in a generation fails it by stage, and no PNG is
// written for it.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>

#include "app/engine.h"
#include "app/image_io.h"
#include "app/parameters.h"
#include "app/pipeline.h"
#include "models/io/safetensors.h"
#include "tests/support.h"

namespace {
using namespace sigma;
using namespace sigma::app;

std::string error_of_validate(const Request& r) {
  return test::error_of([&] { validate(r); });
}

using sigma::test::has;
}  // namespace

TEST_SUITE("unit.reliability") {
  TEST_CASE("every real-valued field must be finite and in range, and the error names the flag") {
    const double nan = std::nan(""), inf = INFINITY;
    struct Case {
      const char* flag;
      std::function<void(Request&, double)> set;
    };
    const std::vector<Case> cases = {
        {"--cfg", [](Request& r, double v) { r.cfg = v; }},
        {"--cfg-rescale", [](Request& r, double v) { r.cfg_rescale = v; }},
        {"--cfg-sigma-low", [](Request& r, double v) { r.cfg_sigma_low = v; }},
        {"--cfg-sigma-high", [](Request& r, double v) { r.cfg_sigma_high = v; }},
        {"--eta", [](Request& r, double v) { r.eta = v; }},
        {"--strength", [](Request& r, double v) { r.strength = v; }},
        {"--control-strength", [](Request& r, double v) { r.controlnets = {{"cn.safetensors", "hint.png", "none", v, 0, 1, "crop", {}}}; }},
        {"--control-start", [](Request& r, double v) { r.controlnets = {{"cn.safetensors", "hint.png", "none", 1, v, 1, "crop", {}}}; }},
    };
    for (const auto& c : cases) {
      for (double v : {nan, inf, -inf}) {
        CAPTURE(c.flag);
        CAPTURE(v);
        Request r;
        c.set(r, v);
        const auto err = error_of_validate(r);
        CHECK(has(err, c.flag));
        CHECK((has(err, "finite") || has(err, "(0, 1]")));
      }
    }
    Request ok;
    CHECK(error_of_validate(ok).empty());
    Request big_cfg;
    big_cfg.cfg = 1e6;
    CHECK(has(error_of_validate(big_cfg), "--cfg must be between 0 and 100"));
    Request sigmas;
    sigmas.scheduler = "custom";
    sigmas.sigmas = {14.6, std::nan(""), 0};
    CHECK(has(error_of_validate(sigmas), "--sigmas must be a finite number"));
    Request param;
    param.controlnets = {{"cn.safetensors", "hint.png", "canny", 1, 0, 1, "crop", {{"low", std::nan("")}}}};
    CHECK(has(error_of_validate(param), "--control-param low must be a finite number"));
  }

  TEST_CASE("a size above the limit is named as such before the multiple of 8") {
    Request r;
    r.width = 99999;
    const auto err = error_of_validate(r);
    CHECK(has(err, "--width 99999 is outside 8..4096"));
    CHECK(!has(err, "try 100000"));
    r.width = 4100;
    CHECK(has(error_of_validate(r), "outside 8..4096"));
    r.width = 100;
    CHECK(has(error_of_validate(r), "--width 100 is not a multiple of 8"));
  }

  TEST_CASE("A1111 text with a NaN is refused where the request is validated; settings not taken are listed") {
    auto r = parse_parameters("a red circle\nSteps: 20, Sampler: Euler a, CFG scale: nan, Seed: 1, Size: 512x512");
    CHECK(has(error_of_validate(r), "--cfg must be a finite number, got nan"));

    std::vector<std::string> not_taken;
    r = parse_parameters(
        "a red circle\nSteps: 20, Sampler: Restart, Schedule type: Align Your Steps, CFG scale: 7, Seed: 1, Size: 512x512, "
        "Model hash: 0123456789, Hires upscale: 2, Version: v1.10.0",
        nullptr, &not_taken);
    REQUIRE(not_taken.size() == 2);
    CHECK(has(not_taken[0], "Hires upscale: 2"));
    CHECK(has(not_taken[1], "Sampler: Restart (no equivalent here; using the model's default)"));
    CHECK(r.cfg == 7);  // what could be taken was
    CHECK(r.scheduler == "align_your_steps_a1111");  // A1111's own variant of the schedule

    not_taken.clear();
    parse_parameters("x\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1, Size: 512x512, Model hash: 01",
                     nullptr, &not_taken);
    CHECK(not_taken.empty());
  }
}

TEST_SUITE("e2e.reliability") {
  TEST_CASE("a VAE that decodes to NaN fails the job naming the VAE, and no PNG is written") {
    // The tiny fixture with one NaN in the decoder's last bias: every decoded pixel is NaN.
    const auto dir = test::scratch("nan-vae");
    const auto base = models::SafeTensors::open(test::sd15() + "/models/tiny-sd15.safetensors");
    std::vector<std::pair<std::string, torch::Tensor>> tensors;
    for (const auto& t : base->tensors()) {
      auto v = base->load(t.name);
      if (t.name == "first_stage_model.decoder.conv_out.bias") v[0] = std::nan("");
      tensors.emplace_back(t.name, v);
    }
    const auto model = (dir / "nan-vae.safetensors").string();
    models::save_safetensors(model, tensors);
    const auto tokenizer = test::sd15() + "/models/tiny-sd15-diffusers/tokenizer";

    Request r;
    r.model = model;
    r.tokenizer = tokenizer;
    r.prompt = "a red circle";
    r.width = r.height = 64;
    r.steps = 2;
    r.seed = 1;
    r.device = test::test_device().is_cuda() ? "cuda" : "cpu";
    auto engine = Engine::load(model_spec(r));
    bool wrote = false;
    GenerateHooks hooks;
    hooks.on_image = [&](const GeneratedImage&) { wrote = true; };
    std::string err;
    try {
      generate(*engine, r, hooks);
    } catch (const GenerationError& e) {
      err = e.what();
    }
    CHECK(has(err, "the VAE decode produced NaN/Inf"));
    CHECK(!wrote);

    const auto out = (dir / "out.png").string();
    const auto [code, log] = test::sigma_cli("generate -m " + model + " --tokenizer " + tokenizer + " -W 64 -H 64 --steps 2 -q -p x -o " + out);
    INFO(log);
    CHECK(code == 1);
    CHECK(has(log, "VAE decode produced NaN/Inf"));
    CHECK(!std::filesystem::exists(out));
    size_t left = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir)) left += e.path().extension() == ".png";
    CHECK(left == 0);
  }

  TEST_CASE("--cfg nan on the command line is refused before any work, with no file") {
    const auto dir = test::scratch("nan-cfg");
    const auto out = (dir / "out.png").string();
    for (const char* flags : {"--cfg nan", "--cfg inf", "--eta nan", "--cfg-sigma-low nan"}) {
      const auto [code, log] = test::sigma_cli(std::string("generate -p x -q ") + flags + " -o " + out);
      CAPTURE(flags);
      INFO(log);
      CHECK(code == 1);
      CHECK(has(log, "must be a finite number"));
      CHECK(!std::filesystem::exists(out));
    }
  }
}
