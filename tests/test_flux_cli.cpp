// Flux.1 from the command line, on flux-tiny (../shared/fixtures/flux-tiny/README.md): each file
// layout people have makes a picture with the family's defaults and its metadata, which
// --from-png turns back into the same picture; what is missing or does not fit is a clear error.
#include <doctest/doctest.h>

#include <fstream>

#include "app/image_io.h"
#include "tests/support.h"

namespace {
using namespace sigma;
using test::has;
using test::sigma_cli;

std::string models() { return test::fixtures() + "/flux-tiny/models/"; }
// The fixture's T5 reads its own small SentencePiece model (real T5 files use the bundled one).
std::string t5_tokenizer() { return " --t5-tokenizer " + models() + "t5-spiece.model"; }

}  // namespace

TEST_SUITE("e2e.flux") {
  TEST_CASE("sd.cpp-style separate files, the all-in-one file and the diffusers folder each make a picture --from-png makes again") {
    const auto dir = test::scratch("flux-cli");
    struct Layout {
      std::string name, flags;
    };
    const std::vector<Layout> layouts = {
        {"separate", "--diffusion-model " + models() + "flux-tiny.safetensors --clip_l " + models() + "clip_l.safetensors --t5xxl " +
                         models() + "t5xxl.safetensors --vae " + models() + "flux-tiny-ae.safetensors" + t5_tokenizer()},
        {"all-in-one", "-m " + models() + "flux-tiny-comfy-aio.safetensors" + t5_tokenizer()},
        {"diffusers", "-m " + models() + "tiny-flux-diffusers"},  // brings its own tokenizer_2/spiece.model
    };
    for (const auto& l : layouts) {
      INFO(l.name);
      const auto out = (dir / (l.name + ".png")).string();
      const auto run = sigma_cli("generate -q " + l.flags + " -p \"a red circle on the left\" -W 64 -H 80 -s 7 -o " + out);
      INFO(run.output);
      REQUIRE(run.code == 0);
      const auto img = app::load_image(out);
      CHECK(img.width == 64);
      CHECK(img.height == 80);
      const auto text = app::read_png_text(out).at("parameters");
      INFO(text);
      // The family's defaults: dev's 28 Euler steps on the simple schedule, CFG 1, guidance 3.5.
      CHECK(has(text, "Steps: 28, Sampler: Euler, Schedule type: Simple, CFG scale: 1, Distilled CFG Scale: 3.5, Seed: 7"));
      if (l.name == "separate") CHECK(has(text, "Module 1: flux-tiny-ae, Module 2: clip_l, Module 3: t5xxl"));
      const auto again = (dir / (l.name + "-again.png")).string();
      const auto rerun = sigma_cli("generate -q --from-png " + out + " -o " + again);
      INFO(rerun.output);
      REQUIRE(rerun.code == 0);
      CHECK(app::load_image(again) == img);
    }
    // A LoRA on the all-in-one file's fp8 transformer: added per call to the fp8 weights, named
    // in the metadata, and made again from it.
    const auto lora = (dir / "lora.png").string(), lora_again = (dir / "lora-again.png").string();
    const auto with_lora = sigma_cli("generate -q " + layouts[1].flags + " --lora-dir " + test::fixtures() +
                                     "/flux-tiny/lora -p \"a red circle on the left <lora:flux-tiny-lora-bfl:0.8>\" -W 64 -H 80 -s 7 -o " + lora);
    INFO(with_lora.output);
    REQUIRE(with_lora.code == 0);
    CHECK_FALSE(app::load_image(lora) == app::load_image((dir / "all-in-one.png").string()));
    CHECK(has(app::read_png_text(lora).at("parameters"), "Lora hashes: \"flux-tiny-lora-bfl: "));
    REQUIRE(sigma_cli("generate -q --from-png " + lora + " --lora-dir " + test::fixtures() + "/flux-tiny/lora -o " + lora_again).code == 0);
    CHECK(app::load_image(lora_again) == app::load_image(lora));
    // The guidance value is part of the picture.
    const auto g = (dir / "guidance.png").string();
    REQUIRE(sigma_cli("generate -q " + layouts[1].flags + " -p \"a red circle on the left\" -W 64 -H 80 -s 7 --guidance 1.5 -o " + g).code == 0);
    CHECK_FALSE(app::load_image(g) == app::load_image((dir / "all-in-one.png").string()));
    CHECK(has(app::read_png_text(g).at("parameters"), "Distilled CFG Scale: 1.5"));
  }

  TEST_CASE("schnell's defaults, true CFG with a negative prompt, and what is refused") {
    const auto dir = test::scratch("flux-cli-2");
    const auto schnell = "--diffusion-model " + models() + "flux-tiny-schnell.safetensors" + t5_tokenizer();
    const auto out = (dir / "schnell.png").string();
    auto run = sigma_cli("generate -q " + schnell + " -p cat -W 64 -H 64 -s 1 -o " + out);
    INFO(run.output);
    REQUIRE(run.code == 0);
    const auto text = app::read_png_text(out).at("parameters");
    CHECK(has(text, "Steps: 4, Sampler: Euler"));
    CHECK_FALSE(has(text, "Distilled CFG Scale"));  // schnell has no guidance embedding
    // --cfg above 1 with a negative prompt: two transformer passes a step (true CFG).
    const auto cfg = (dir / "cfg.png").string();
    REQUIRE(sigma_cli("generate -q " + schnell + " -p cat -n dog --cfg 3 -W 64 -H 64 -s 1 -o " + cfg).code == 0);
    CHECK_FALSE(app::load_image(cfg) == app::load_image(out));
    CHECK(has(app::read_png_text(cfg).at("parameters"), "CFG scale: 3"));

    // img2img and inpainting through the 16-channel VAE with its shift: a picture of the size
    // asked, its own metadata, and the prompt's change kept inside the mask.
    const auto i2i = (dir / "i2i.png").string(), inpainted = (dir / "inpaint.png").string(), mask = (dir / "mask.png").string();
    Image m(64, 64, 1);
    for (int y = 16; y < 48; ++y)
      for (int x = 16; x < 48; ++x) m.pixels[static_cast<size_t>(y * 64 + x)] = 255;
    std::ofstream(mask, std::ios::binary) << app::encode_png(m, {});
    REQUIRE(sigma_cli("generate -q " + schnell + " -p dog -i " + out + " --strength 0.6 -W 64 -H 64 -s 2 -o " + i2i).code == 0);
    CHECK(has(app::read_png_text(i2i).at("parameters"), "Denoising strength: 0.6"));
    REQUIRE(sigma_cli("generate -q " + schnell + " -p dog -i " + out + " --mask " + mask + " -W 64 -H 64 -s 2 -o " + inpainted).code == 0);
    const auto a = app::load_image(out), b = app::load_image(inpainted);
    REQUIRE(b.width == 64);
    auto diff = [&](int x0, int x1) {  // mean absolute difference over columns [x0, x1) of rows 20..44
      double d = 0;
      int n = 0;
      for (int y = 20; y < 44; ++y)
        for (int x = x0; x < x1; ++x)
          for (int c = 0; c < 3; ++c, ++n) d += std::abs(a.pixels[static_cast<size_t>((y * 64 + x) * 3 + c)] - b.pixels[static_cast<size_t>((y * 64 + x) * 3 + c)]);
      return d / n;
    };
    CHECK(diff(24, 40) > diff(0, 4));  // repainted inside, kept (up to the VAE's round trip) outside

    auto refused = [&](const std::string& args, const std::string& message) {
      const auto r = sigma_cli("generate -q " + args + " -p cat -o " + (dir / "refused.png").string());
      INFO(args);
      INFO(r.output);
      CHECK(r.code == 1);
      CHECK(has(r.output, message));
      CHECK_FALSE(std::filesystem::exists(dir / "refused.png"));
    };
    refused(schnell + " -W 72 -H 64", "must be multiples of 16 for Flux.1 (got 72x64); try 80x64");
    // The tiny T5's 256-row table with T5's real 32,100-id vocabulary (bundled): named, with the flag.
    refused("--diffusion-model " + models() + "flux-tiny.safetensors -W 64 -H 64", "--t5-tokenizer FILE");
    refused("-m " + models() + "flux-tiny-comfy-aio.safetensors --diffusion-model " + models() + "flux-tiny.safetensors",
            "--model and --diffusion-model both name the model");
  }
}
