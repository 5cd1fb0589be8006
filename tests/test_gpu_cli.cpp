// The `sigma` binary on an NVIDIA GPU, the whole way a user's run goes (request -> seeded
// noise -> sampling -> VAE decode -> PNG), in each dtype. The conformance suites inject
// their initial noise and call the networks directly, so a fault that only this path has
// (an all-black picture in float32 on CUDA was one) is caught here. The reference is the
// same command on the CPU in float32.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>

#include "app/engine.h"
#include "app/image_io.h"
#include "app/job_runner.h"
#include "app/parameters.h"
#include "app/pipeline.h"
#include "models/families/loader.h"
#include "models/io/safetensors.h"
#include "models/runtime/cuda_graph.h"
#include "models/runtime/torch_compat.h"
#include "tests/support.h"

namespace {
using namespace sigma;

Image generate(const std::string& device, const std::string& dtype) {
  const auto out = (test::scratch("gpu-cli-" + device + "-" + dtype) / "out.png").string();
  const auto [code, log] = test::sigma_cli("generate -p \"a large red circle on the left on a white background\" -s 7 -q --device " + device +
                           " --dtype " + dtype + " -o " + out);
  INFO(log);
  REQUIRE(code == 0);
  return app::load_image(out);
}

struct Stats {
  double mean = 0, stddev = 0;
};
Stats stats(const Image& img) {
  Stats s;
  for (uint8_t v : img.pixels) s.mean += v;
  s.mean /= static_cast<double>(img.pixels.size());
  for (uint8_t v : img.pixels) s.stddev += (v - s.mean) * (v - s.mean);
  s.stddev = std::sqrt(s.stddev / static_cast<double>(img.pixels.size()));
  return s;
}

double psnr(const Image& a, const Image& b) {
  REQUIRE(a.pixels.size() == b.pixels.size());
  double mse = 0;
  for (size_t i = 0; i < a.pixels.size(); ++i) mse += std::pow(double(a.pixels[i]) - double(b.pixels[i]), 2);
  mse /= static_cast<double>(a.pixels.size());
  return mse == 0 ? INFINITY : 10 * std::log10(255.0 * 255.0 / mse);
}
}  // namespace

TEST_SUITE("gpu.cli_path") {
  TEST_CASE("sigma generate on CUDA in fp32, fp16 and bf16 writes the CPU's picture, never a black or NaN one") {
    const Image cpu = generate("cpu", "fp32");
    const Stats ref = stats(cpu);
    // The bundled model draws a red circle on white: a bright picture with structure.
    REQUIRE(ref.mean > 100);
    REQUIRE(ref.stddev > 20);
    Image gpu_fp32;
    for (const char* dtype : {"fp32", "fp16", "bf16"}) {
      CAPTURE(dtype);
      const Image gpu = generate("cuda", dtype);
      if (std::string(dtype) == "fp32") gpu_fp32 = gpu;
      // Issue 13's parity gate: the fp16 picture stays >= 35 dB from the fp32 one.
      if (std::string(dtype) == "fp16") CHECK(psnr(gpu, gpu_fp32) >= 35.0);
      const Stats s = stats(gpu);
      const double db = psnr(gpu, cpu);
      std::printf("gpu.cli_path %s: mean %.1f (cpu %.1f), stddev %.1f (cpu %.1f), PSNR vs cpu fp32 %.1f dB\n", dtype, s.mean,
                  ref.mean, s.stddev, ref.stddev, db);
      // A black (NaN decoded) or flat picture fails these whatever the dtype's rounding.
      CHECK(s.mean > 100);
      CHECK(s.stddev > 20);
      // The same seed and request: the same picture up to the dtype's rounding.
      CHECK(db >= 30.0);
    }
  }
}

TEST_SUITE("gpu.cli_path") {
  TEST_CASE("a float16 VAE decode that overflows is redone in float32: the picture is finite and says so") {
    // The tiny fixture with a decoder whose first convolution leaves float16's range
    // (|x| > 65504) while staying well inside float32's: the float16 decode gives Inf,
    // then NaN after the GroupNorm; float32 decodes it.
    const auto dir = test::scratch("fp16-vae-overflow");
    const auto base = models::SafeTensors::open(test::sd15() + "/models/tiny-sd15.safetensors");
    std::vector<std::pair<std::string, torch::Tensor>> tensors;
    for (const auto& t : base->tensors()) {
      auto v = base->load(t.name, torch::kFloat32);
      if (t.name == "first_stage_model.decoder.conv_in.bias") v.fill_(60000);
      if (t.name == "first_stage_model.decoder.conv_in.weight") v.fill_(2000);
      tensors.emplace_back(t.name, v);
    }
    const auto model = (dir / "overflowing-vae.safetensors").string();
    models::save_safetensors(model, tensors);

    app::Request r;
    r.model = model;
    r.tokenizer = test::sd15() + "/models/tiny-sd15-diffusers/tokenizer";
    r.prompt = "a red circle";
    r.width = r.height = 64;
    r.steps = 2;
    r.seed = 3;
    r.device = "cuda";
    r.dtype = "fp16";
    auto engine = app::Engine::load(app::model_spec(r));
    {
      // The float16 decode alone really is not finite (else this test proves nothing).
      c10::InferenceMode guard;
      auto z = torch::randn({1, 4, 8, 8}).to(engine->device(), engine->dtype());
      CHECK(!torch::isfinite(app::decode_latents(*engine, z)).all().item<bool>());
    }
    const auto out = app::generate(*engine, r);
    REQUIRE(out.images.size() == 1);
    CHECK(out.images[0].record.vae_retry == "float32 (float16 overflowed)");
    CHECK(out.images[0].parameters.find("VAE retry: float32 (float16 overflowed)") != std::string::npos);
    const Stats s = stats(out.images[0].image);
    std::printf("gpu.cli_path fp16 VAE overflow: retried in float32, mean %.1f stddev %.1f\n", s.mean, s.stddev);
  }
}

TEST_SUITE("gpu.cli_path") {
  TEST_CASE("the CUDA-graph UNet step equals the eager step (fp16, <= 1e-3 relative) and is captured once per shape") {
    REQUIRE(models::GraphCache::enabled());
    c10::InferenceMode guard;
    auto ck = models::open_checkpoint(test::sd15() + "/models/tiny-sd15.safetensors");
    auto unet = models::load_unet(ck, models::LoadOptions{torch::Device(torch::kCUDA), torch::kFloat16});
    const auto h = torch::TensorOptions().device(torch::kCUDA).dtype(torch::kFloat16);
    const auto f = torch::TensorOptions().device(torch::kCUDA).dtype(torch::kFloat32);
    models::GraphCache graphs;
    auto call = [&](const std::vector<torch::Tensor>& in) { return unet->forward(in[0], in[1], in[2], nullptr, in[3]); };
    torch::manual_seed(5);
    for (int i = 0; i < 3; ++i) {  // new inputs each time: the replay must read them, not the captured ones
      auto x = torch::randn({2, 4, 16, 16}, h), t = torch::full({2}, 100.0 + 300 * i, f);
      auto ctx = torch::randn({2, 77, unet->config.context_dim}, h);
      const auto eager = unet->forward(x, t, ctx);
      const auto graphed = graphs.run({x, t, ctx, torch::Tensor()}, call);
      const double err = test::rel_error(graphed, eager);
      std::printf("gpu.cli_path CUDA graph vs eager, call %d: rel err %.2e\n", i, err);
      CHECK(err <= 1e-3);
    }
    CHECK(graphs.captured() == 1);
    graphs.run({torch::randn({4, 4, 16, 16}, h), torch::full({4}, 10.0, f), torch::randn({4, 77, unet->config.context_dim}, h),
                torch::Tensor()},
               call);
    CHECK(graphs.captured() == 2);  // another batch size: its own graph
  }

  TEST_CASE("the CUDA-graph text encoder equals the eager one (fp16, <= 1e-3 relative), pooled vector included") {
    REQUIRE(models::GraphCache::enabled());
    app::Request r;
    r.model = test::sd15() + "/models/tiny-sd15.safetensors";
    r.tokenizer = test::sd15() + "/models/tiny-sd15-diffusers/tokenizer";
    r.device = "cuda";
    r.dtype = "fp16";
    auto engine = app::Engine::load(app::model_spec(r));
    c10::InferenceMode guard;
    auto& clip = engine->text_encoder(0);
    const auto ids_on = torch::TensorOptions().device(torch::kCUDA).dtype(torch::kLong);
    torch::manual_seed(6);
    for (int i = 0; i < 3; ++i) {  // new ids each time, and both skips: the replay reads its inputs
      const auto ids = torch::randint(0, clip->config.vocab_size, {2, 77}, ids_on);
      const int64_t skip = 1 + i % 2;
      const auto eager = clip->forward(ids, skip, true);
      const auto [graphed, none] = engine->encode_tokens(0, ids, skip, true, false);
      CHECK(!none.defined());
      const double err = test::rel_error(graphed, eager);
      std::printf("gpu.cli_path text encoder graph vs eager, call %d (skip %lld): rel err %.2e\n", i, static_cast<long long>(skip), err);
      CHECK(err <= 1e-3);
    }
    // SDXL's encoder 2 path (forward_pooled: the end token's state, projected) through the
    // same cache call Engine::encode_tokens makes, on a small encoder with a projection.
    models::ClipTextConfig c;
    c.vocab_size = 1000, c.width = 64, c.layers = 3, c.heads = 2, c.mlp = 128, c.projection_dim = 32, c.eos_token_id = 999;
    c.quick_gelu = false;
    models::ClipTextModel g(c);
    g->to(torch::kCUDA, torch::kFloat16);
    models::GraphCache graphs;
    auto call = [&](const std::vector<torch::Tensor>& in) {
      auto [hidden, pooled] = g->forward_pooled(in[0], 2, false);
      return std::vector<torch::Tensor>{hidden, pooled};
    };
    for (int i = 0; i < 2; ++i) {
      auto ids = torch::randint(0, 998, {2, 77}, ids_on);
      ids.index_put_({0, 10 + 20 * i}, 999);  // row 0 ends at a different place each call; row 1 has no end token
      const auto [hidden, pooled] = g->forward_pooled(ids, 2, false);
      const auto out = graphs.run_all({ids}, call, "pooled skip 2");
      CHECK(test::rel_error(out[0], hidden) <= 1e-3);
      CHECK(test::rel_error(out[1], pooled) <= 1e-3);
    }
    CHECK(graphs.captured() == 1);
  }
}

// ---- gpu.oom ----------------------------------------------------------------------
// Out of GPU memory (issue 14): a request that cannot fit fails with a message naming the
// stage, the request's size, what was asked and what to try; no file is written; the next
// job runs, in the pipeline, in the job runner (the GUI's and the server's) and in
// `sigma batch`. "Cannot fit" is made the same on every card: this process may use only
// 2 GiB (the per-process memory fraction, SIGMA_CUDA_MEMORY_FRACTION for the CLI), and a
// 4096x4096 batch of 8 needs far more (the tiny model's VAE alone: 8 GiB per activation at
// full resolution).
namespace {
using namespace sigma;
namespace fs = std::filesystem;

constexpr double kCapBytes = 2.0 * 1024 * 1024 * 1024;

// The share of this GPU that is 2 GiB.
double cap_fraction() {
  const auto [free, total] = compat::cuda_memory_info();
  REQUIRE(total > 0);
  return kCapBytes / static_cast<double>(total);
}

app::Request request(int64_t size, int64_t batch) {
  app::Request r;
  r.model = test::sd15() + "/models/tiny-sd15.safetensors";
  r.tokenizer = test::sd15() + "/models/tiny-sd15-diffusers/tokenizer";
  r.prompt = "a red circle";
  r.width = r.height = size;
  r.batch_size = batch;
  r.steps = 2;
  r.seed = 11;
  r.device = "cuda";
  r.dtype = "fp16";
  return r;
}

using sigma::test::has;

// What every out-of-memory message must say: where, for what, and what to do.
void check_oom_message(const std::string& message) {
  INFO(message);
  CHECK(has(message, "out of GPU memory in "));
  CHECK(has(message, "4096x4096 image, batch size 8, float16 on cuda"));
  CHECK(has(message, "asked for "));
  CHECK(has(message, "this process may use 2.00 GiB of the GPU's "));  // the cap, not the device's free memory
  CHECK(has(message, "try a smaller --width/--height or --batch-size"));
  CHECK(has(message, "the next job runs"));
}

size_t pngs_in(const fs::path& dir) {
  size_t n = 0;
  if (fs::exists(dir))
    for (const auto& e : fs::directory_iterator(dir)) n += e.path().extension() == ".png";
  return n;
}

// Restores the whole GPU to this process when a test case ends, pass or fail.
struct MemoryCap {
  explicit MemoryCap(double fraction) { compat::cuda_set_memory_fraction(fraction); }
  ~MemoryCap() {
    compat::cuda_set_memory_fraction(1.0);
    compat::cuda_empty_cache();
  }
};

}  // namespace

TEST_SUITE("gpu.oom") {
  TEST_CASE("the pipeline: a request that cannot fit is a clear error, and the next one on the same engine works") {
    auto engine = app::Engine::load(app::model_spec(request(64, 1)));
    MemoryCap cap(cap_fraction());
    std::string message;
    try {
      app::generate(*engine, request(4096, 8));
      FAIL("a 4096x4096 batch of 8 fitted in 2 GiB");
    } catch (const app::GenerationError& e) {
      message = e.what();
    }
    std::printf("gpu.oom pipeline: %s\n", message.c_str());
    check_oom_message(message);
    // The same engine, a job that fits: a finite picture (the NaN guard would throw otherwise).
    const auto out = app::generate(*engine, request(64, 1));
    REQUIRE(out.images.size() == 1);
    CHECK(out.images[0].image.width == 64);
  }

  TEST_CASE("the job runner: the failed job is an error event and in the snapshot, the next job is saved") {
    const auto dir = test::scratch("gpu-oom-runner");
    std::mutex m;
    std::vector<app::JobEvent> failed;
    app::RunnerOptions options;
    options.output_dir = dir.string();
    options.on_event = [&](const app::JobEvent& e) {
      std::lock_guard<std::mutex> lock(m);
      if (e.type == app::JobEvent::Type::failed) failed.push_back(e);
    };
    app::JobRunner runner(options);
    runner.load_model(request(64, 1));
    REQUIRE(runner.wait_idle(300));
    MemoryCap cap(cap_fraction());
    const auto big = runner.submit(request(4096, 8));
    runner.submit(request(64, 1));
    REQUIRE(runner.wait_idle(300));
    const auto s = runner.snapshot();
    CHECK(s.jobs_failed == 1);
    CHECK(s.jobs_done == 1);
    CHECK(s.last_error.empty());  // cleared by the success after it
    std::lock_guard<std::mutex> lock(m);
    REQUIRE(failed.size() == 1);
    CHECK(failed[0].job == big);
    check_oom_message(failed[0].error);
    CHECK(pngs_in(dir) == 1);  // the small job's picture only
  }

  TEST_CASE("sigma batch: the job that cannot fit fails alone, writes nothing, and the next job's picture is written") {
    const auto dir = test::scratch("gpu-oom-batch");
    const auto jobs = (dir / "jobs.jsonl").string();
    {
      std::ofstream f(jobs);
      f << R"({"prompt": "a red circle", "width": 4096, "height": 4096, "batch-size": 8})" << "\n";
      f << R"({"prompt": "a red circle", "width": 64, "height": 64})" << "\n";
    }
    char env[96];
    std::snprintf(env, sizeof env, "SIGMA_CUDA_MEMORY_FRACTION=%.6f ", cap_fraction());
    const auto r = request(64, 1);
    const auto run = test::run_command(std::string(env) + SIGMA_CLI_PATH + " batch " + jobs + " -m " + r.model +
                                       " --tokenizer " + r.tokenizer + " --steps 2 --device cuda --dtype fp16 -q -o " +
                                       (dir / "out").string());
    INFO(run.output);
    CHECK(run.code == 1);  // a job failed
    check_oom_message(run.output);
    CHECK(has(run.output, "jobs.jsonl:1: "));
    CHECK(has(run.output, "1 done, 0 skipped"));
    CHECK(has(run.output, "1 failed"));
    CHECK(!fs::exists(dir / "out" / "jobs-00001.png"));
    CHECK(fs::exists(dir / "out" / "jobs-00002.png"));
    CHECK(pngs_in(dir / "out") == 1);
  }

  TEST_CASE("SIGMA_CUDA_MEMORY_FRACTION outside (0, 1] is refused, naming the variable") {
    const auto r = request(64, 1);
    const auto run = test::run_command("SIGMA_CUDA_MEMORY_FRACTION=1.5 " + std::string(SIGMA_CLI_PATH) + " generate -m " +
                                       r.model + " --tokenizer " + r.tokenizer + " -p x -W 64 -H 64 --steps 1 --device cuda -q -o " +
                                       (test::scratch("gpu-oom-env") / "x.png").string());
    INFO(run.output);
    CHECK(run.code != 0);
    CHECK(has(run.output, "SIGMA_CUDA_MEMORY_FRACTION=1.5: expected a fraction of the GPU's memory in (0, 1]"));
    CHECK(!fs::exists(test::scratch("gpu-oom-env") / "x.png"));
  }
}

TEST_SUITE("gpu.lowvram") {
  TEST_CASE("--lowvram: the weights wait in host memory, and the picture is the resident engine's") {
    auto r = request(256, 1);
    r.steps = 4;
    auto allocated = [] { return compat::cuda_reserved_allocated().second; };
    compat::cuda_empty_cache();
    const double before = allocated();
    auto resident = app::Engine::load(app::model_spec(r));
    const double resident_bytes = allocated() - before;
    r.lowvram = true;
    auto low = app::Engine::load(app::model_spec(r));
    const double low_bytes = allocated() - before - resident_bytes;
    MESSAGE("weights on the GPU after load: resident " << resident_bytes / 1e6 << " MB, --lowvram " << low_bytes / 1e6 << " MB");
    CHECK(low->lowvram());
    CHECK(low_bytes < resident_bytes / 4);
    CHECK(dynamic_cast<models::UNetImpl&>(low->diffusion_model()).input_blocks[1]->parameters()[0].device().is_cpu());
    CHECK(low->vae()->parameters()[0].device().is_cpu());
    const auto a = dynamic_cast<models::UNetImpl&>(low->diffusion_model()).input_blocks[1]->parameters()[0].data_ptr();
    r.lowvram = false;
    const auto expected = app::generate(*resident, r);
    r.lowvram = true;
    const auto got = app::generate(*low, r);
    REQUIRE(got.images.size() == 1);
    const double db = psnr(got.images[0].image, expected.images[0].image);
    MESSAGE("--lowvram vs resident picture: " << db << " dB");
    CHECK(db >= 40.0);
    // Back in host memory after the run, the same storage as before it.
    CHECK(dynamic_cast<models::UNetImpl&>(low->diffusion_model()).input_blocks[1]->parameters()[0].device().is_cpu());
    CHECK(dynamic_cast<models::UNetImpl&>(low->diffusion_model()).input_blocks[1]->parameters()[0].data_ptr() == a);
    CHECK(low->text_encoder(0)->parameters()[0].device().is_cpu());
  }
}
