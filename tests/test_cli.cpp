// The `sigma` binary as a user runs it, on the tiny fixture model: files, metadata,
// --from-png, img2img, ControlNet with canny, batch files, Ctrl-C, and each error message.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <fstream>
#include <thread>

#include "app/image_io.h"
#include "app/parameters.h"
#include "tests/support.h"

namespace {
using namespace sigma;

using test::sigma_cli;

std::string model_flags() {
  return "-m " + test::sd15() + "/models/tiny-sd15.safetensors --tokenizer " + test::sd15() +
         "/models/tiny-sd15-diffusers/tokenizer -W 128 -H 128 --steps 4 -q ";
}

using sigma::test::has;
}  // namespace

TEST_SUITE("e2e.cli") {
  TEST_CASE("generate writes a 128x128 PNG whose parameters record the request; --from-png reproduces it") {
    const auto dir = test::scratch("cli-gen");
    const auto out = (dir / "a.png").string();
    auto run = sigma_cli("generate " + model_flags() + "-p \"a red circle on the left\" -n blurry -s 42 -o " + out);
    INFO(run.output);
    REQUIRE(run.code == 0);
    const auto img = app::load_image(out);
    CHECK(img.width == 128);
    CHECK(img.height == 128);
    const auto text = app::read_png_text(out);
    const auto params = text.at("parameters");
    CHECK(has(params, "a red circle on the left\nNegative prompt: blurry\nSteps: 4, Sampler: DPM++ 2M, Schedule type: Karras"));
    CHECK(has(params, "Seed: 42, Size: 128x128"));
    const auto req = app::request_from_png(out);
    CHECK(req.prompt == "a red circle on the left");
    CHECK(req.seed == 42);

    // The same file again is refused; --from-png into a new file gives the same pixels.
    auto again = sigma_cli("generate " + model_flags() + "-p x -o " + out);
    CHECK(again.code != 0);
    CHECK(has(again.output, "the file exists"));
    const auto out2 = (dir / "b.png").string();
    auto rerun = sigma_cli("generate -q --from-png " + out + " -o " + out2);
    INFO(rerun.output);
    REQUIRE(rerun.code == 0);
    CHECK(app::load_image(out2) == img);
    // An override changes only what it names.
    const auto out3 = (dir / "c.png").string();
    REQUIRE(sigma_cli("generate -q --from-png " + out + " -s 43 -o " + out3).code == 0);
    CHECK(app::load_image(out3) != img);
    CHECK(app::request_from_png(out3).prompt == "a red circle on the left");
    // --sigmas alone runs that list (it is --scheduler custom) and the metadata records it.
    const auto out4 = (dir / "d.png").string();
    const auto custom = sigma_cli("generate " + model_flags() + "-p x -s 42 --sigmas 14.6,3,0.8,0 -o " + out4);
    INFO(custom.output);
    REQUIRE(custom.code == 0);
    CHECK(has(app::read_png_text(out4).at("parameters"), "Sigmas: 14.6 3 0.8 0"));
    CHECK(app::request_from_png(out4).scheduler == "custom");
    CHECK(has(sigma_cli("generate " + model_flags() + "-p x --scheduler karras --sigmas 14.6,0 -o " + (dir / "e.png").string()).output,
              "drop --scheduler karras or --sigmas"));
  }

  TEST_CASE("img2img and a ControlNet with canny from an image run from the CLI") {
    const auto dir = test::scratch("cli-i2i");
    const auto src = (dir / "src.png").string();
    REQUIRE(sigma_cli("generate " + model_flags() + "-p \"a red circle\" -s 1 -o " + src).code == 0);
    const auto i2i = (dir / "i2i.png").string();
    auto r1 = sigma_cli("generate " + model_flags() + "-p \"a blue square\" -i " + src + " --strength 0.5 -o " + i2i);
    INFO(r1.output);
    CHECK(r1.code == 0);
    CHECK(has(app::read_png_text(i2i).at("parameters"), "Denoising strength: 0.5"));
    const auto edges = (dir / "edges.png").string();
    REQUIRE(sigma_cli("preprocess --preprocessor canny " + src + " -o " + edges).code == 0);
    const auto cn = (dir / "cn.png").string();
    auto r2 = sigma_cli("generate " + model_flags() + "-p x --control-net " + test::sd15() +
                        "/models/tiny-controlnet.safetensors --control-image " + src + " --preprocessor canny -o " + cn);
    INFO(r2.output);
    CHECK(r2.code == 0);
    CHECK(has(app::read_png_text(cn).at("parameters"), "ControlNet 0: \"Module: canny"));
  }

  TEST_CASE("errors name the problem and the fix") {
    const auto dir = test::scratch("cli-err");
    const auto out = (dir / "x.png").string();
    auto missing_model = sigma_cli("generate -m /nope/model.safetensors -p x -o " + out);
    CHECK(missing_model.code == 1);
    CHECK(has(missing_model.output, "/nope/model.safetensors: no such file or folder"));
    // A single file carries no tokenizer: with none beside it, the bundled CLIP vocabulary serves ...
    const std::string no_tok_cmd = "generate -m " + test::sd15() + "/models/tiny-sd15.safetensors -W 64 -H 64 --steps 1 -p x -q -o ";
    auto bundled = sigma_cli(no_tok_cmd + (dir / "bundled-tokenizer.png").string());
    CHECK_MESSAGE(bundled.code == 0, bundled.output);
    // ... and without that (assets elsewhere) the error says where it looked and what to do.
    const char* old_assets = std::getenv("SIGMA_ASSETS");
    const std::string saved = old_assets ? old_assets : "";
    setenv("SIGMA_ASSETS", dir.c_str(), 1);
    auto no_tok = sigma_cli(no_tok_cmd + out);
    if (old_assets) setenv("SIGMA_ASSETS", saved.c_str(), 1);
    else unsetenv("SIGMA_ASSETS");
    CHECK(has(no_tok.output, "carries no tokenizer"));
    CHECK(has(no_tok.output, "--tokenizer DIR"));
    CHECK(has(sigma_cli("generate " + model_flags() + "-W 100 -p x -o " + out).output, "--width 100 is not a multiple of 8"));
    auto bad_sampler = sigma_cli("generate " + model_flags() + "--sampler eulr -p x -o " + out);
    CHECK(has(bad_sampler.output, "eulr"));
    CHECK(has(bad_sampler.output, "dpmpp_2m"));  // lists the known ones
    CHECK(has(sigma_cli("generate " + model_flags() + "--scheduler karas -p x -o " + out).output, "unknown --scheduler 'karas'"));
    CHECK(has(sigma_cli("generate " + model_flags() + "-i /nope.png -p x -o " + out).output, "/nope.png: no such image file"));
    const auto junk = (dir / "junk.png").string();
    std::ofstream(junk) << "junk";
    CHECK(has(sigma_cli("generate " + model_flags() + "-i " + junk + " -p x -o " + out).output, "not a readable image"));
    CHECK(has(sigma_cli("info /nope").output, "no such file or folder"));
  }

  TEST_CASE("a ControlNet that does not fit the base model is refused by name") {
    const auto dir = test::scratch("cli-fit");
    const auto src = (dir / "src.png").string();
    sigma::Image img(128, 128, 3, 128);
    app::write_file_atomic(src, app::encode_png(img), false);
    auto r = sigma_cli("generate -m " + test::fixtures() + "/sd2-tiny/models/tiny-sd2-diffusers -W 128 -H 128 --steps 2 -q -p x "
                       "--control-net " + test::sd15() + "/models/tiny-controlnet.safetensors --control-image " + src +
                       " -o " + (dir / "o.png").string());
    INFO(r.output);
    CHECK(r.code == 1);
    CHECK(has(r.output, "does not fit the base model"));
  }

  TEST_CASE("Ctrl-C stops after the current step, writes nothing, exits 130") {
    const auto dir = test::scratch("cli-int");
    const auto out = (dir / "never.png").string();
    int pipefd[2];
    REQUIRE(pipe(pipefd) == 0);
    const pid_t pid = fork();
    if (pid == 0) {
      dup2(pipefd[1], 2);
      close(pipefd[0]);
      const std::string cmd = std::string(SIGMA_CLI_PATH) + " generate -m " + test::sd15() + "/models/tiny-sd15.safetensors --tokenizer " +
                              test::sd15() + "/models/tiny-sd15-diffusers/tokenizer -W 128 -H 128 --steps 1000 -p x -o " + out;
      execl("/bin/sh", "sh", "-c", ("exec " + cmd).c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    close(pipefd[1]);
    std::string err;
    char buf[256];
    // Wait until sampling has begun (the progress line appears), then interrupt.
    while (!has(err, "sampling")) {
      const ssize_t n = read(pipefd[0], buf, sizeof buf);
      if (n <= 0) break;
      err.append(buf, static_cast<size_t>(n));
    }
    REQUIRE(has(err, "sampling"));
    kill(pid, SIGINT);
    while (read(pipefd[0], buf, sizeof buf) > 0) {
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 130);
    CHECK_FALSE(std::filesystem::exists(out));
    int files = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) ++files;
    CHECK(files == 0);  // no temporary left behind either
  }

  TEST_CASE("batch: sharded runs cover every job, a rerun resumes, a bad line fails alone") {
    const auto dir = test::scratch("cli-batch");
    const auto jobs = (dir / "jobs.jsonl").string();
    {
      std::ofstream f(jobs);
      for (int i = 0; i < 4; ++i) f << R"({"prompt": "circle )" << i << R"(", "seed": )" << i << "}\n";
      f << R"({"prompt": "bad", "steps": 5000})" << "\n";
    }
    const auto common = "batch " + jobs + " -m " + test::sd15() + "/models/tiny-sd15.safetensors --tokenizer " + test::sd15() +
                        "/models/tiny-sd15-diffusers/tokenizer -W 64 -H 64 --steps 2 -q -o " + (dir / "out").string();
    auto s0 = sigma_cli(common + " --shard 0/2");
    auto s1 = sigma_cli(common + " --shard 1/2");
    INFO(s0.output);
    INFO(s1.output);
    CHECK(s0.code == 1);  // line 5 (ordinal 4) belongs to shard 0 and fails
    CHECK(has(s0.output, "jobs.jsonl:5: --steps must be between 1 and 1000"));
    CHECK(s1.code == 0);
    CHECK(has(s0.output, "2 done, 0 skipped"));
    CHECK(has(s1.output, "2 done, 0 skipped"));
    for (int line = 1; line <= 4; ++line) {
      char name[32];
      std::snprintf(name, sizeof name, "jobs-%05d.png", line);
      CHECK(std::filesystem::exists(dir / "out" / name));
    }
    auto resumed = sigma_cli(common);
    CHECK(has(resumed.output, "0 done, 4 skipped (output exists), 1 failed"));
  }

  TEST_CASE("info prints the inferred configuration of both layouts") {
    for (const auto& model : {test::sd15() + "/models/tiny-sd15.safetensors", test::sd15() + "/models/tiny-sd15-diffusers"}) {
      auto r = sigma_cli("info " + model);
      INFO(r.output);
      CHECK(r.code == 0);
      CHECK(has(r.output, "family:        Stable Diffusion 1.x (epsilon-prediction)"));
      CHECK(has(r.output, "model_channels 32, channel_mult (1, 2, 2), num_res_blocks 2, transformer depth per level (1, 1, 0), "
                          "middle 1, context_dim 32, 8 heads, conv proj_in/proj_out"));
      CHECK(has(r.output, "ch 32, ch_mult (1, 1, 2, 2), num_res_blocks 2, z_channels 4, factor 8"));
      CHECK(has(r.output, "CLIP width 32, 3 layers, 4 heads, MLP 64, quick_gelu"));
      CHECK(has(r.output, "unused keys: none"));
    }
    auto cn = sigma_cli("info " + test::sd15() + "/models/tiny-controlnet.safetensors");
    CHECK(has(cn.output, "ControlNet (single-file layout)"));
    CHECK(has(cn.output, "hint encoder (16, 32, 96, 256)"));
  }
}
