// The pipeline's bookkeeping without a model: request JSON, PNG metadata round trips,
// A1111 parameters text, seed conventions, job files, sharding and resume.
#include <doctest/doctest.h>

#include <fstream>
#include <random>
#include <set>

#include "app/image_io.h"
#include "app/cli/jobs.h"
#include "app/parameters.h"
#include "app/pipeline.h"
#include "tests/support.h"

using namespace sigma;
using namespace sigma::app;

namespace {
Request sample_request() {
  Request r;
  r.prompt = "a (red:1.2) circle, ünïcode 東京";
  r.negative = "blurry, \"quoted\"";
  r.width = 128;
  r.height = 96;
  r.steps = 12;
  r.cfg = 5.5;
  r.sampler = "euler_ancestral";
  r.scheduler = "exponential";
  r.seed = 1234;
  r.clip_skip = 2;
  r.batch_size = 2;
  r.controlnets.push_back({"cn.safetensors", "edges.png", "canny", 0.8, 0.1, 0.9, "fit", {{"low", 50}, {"high", 150}}});
  return r;
}
}  // namespace

TEST_SUITE("unit.app") {
  TEST_CASE("request JSON round trip, aliases and errors") {
    const auto r = sample_request();
    CHECK(request_from_json(to_json(r)) == r);
    auto j = nlohmann::json::parse(R"({"cfg_scale": 3, "sampling-method": "euler", "negative_prompt": "x", "batch_size": 3})");
    auto q = request_from_json(j);
    CHECK(q.cfg == 3);
    CHECK(q.sampler == "euler");
    CHECK(q.negative == "x");
    CHECK(q.batch_size == 3);
    CHECK_THROWS_WITH(request_from_json(nlohmann::json::parse(R"({"stepz": 3})")), doctest::Contains("unknown job field 'stepz'"));
    CHECK_THROWS_WITH(request_from_json(nlohmann::json::parse(R"({"steps": "many"})")),
                      doctest::Contains("job field 'steps': expected a number"));
  }

  TEST_CASE("validation names the flag and the fix") {
    Request r;
    r.width = 100;
    CHECK_THROWS_WITH(validate(r), doctest::Contains("--width 100 is not a multiple of 8"));
    r.width = 128;
    r.strength = 1.5;
    CHECK_THROWS_WITH(validate(r), doctest::Contains("--strength must be in (0, 1]"));
    r.strength = 0.5;
    r.mask = "m.png";
    CHECK_THROWS_WITH(validate(r), doctest::Contains("--mask needs --init-img"));
  }

  TEST_CASE("PNG metadata: write -> read gives the identical request; A1111 text parses back") {
    const auto r = sample_request();
    ImageRecord rec;
    rec.seed = r.seed;
    rec.width = r.width;
    rec.height = r.height;
    rec.model_name = "tiny";
    rec.model_hash = "0123456789";
    rec.sigmas = {14.6, 1.2, 0.0};
    const auto params = format_parameters(r, rec);
    Image img(8, 8, 3, 200);
    const auto dir = test::scratch("meta");
    const auto path = (dir / "m.png").string();
    write_file_atomic(path, encode_png(img, {{"parameters", params}, {"sigma-request", to_json(r).dump()}}), false);
    CHECK(request_from_png(path) == r);
    const auto text = read_png_text(path);
    CHECK(text.at("parameters") == params);  // UTF-8 survives (iTXt)
    CHECK(load_image(path) == img);

    // The A1111 text alone (as other tools read it) carries the main settings.
    std::map<std::string, std::string> extra;
    auto p = parse_parameters(params, &extra);
    CHECK(p.prompt == r.prompt);
    CHECK(p.negative == r.negative);
    CHECK(p.steps == r.steps);
    CHECK(p.cfg == r.cfg);
    CHECK(p.sampler == r.sampler);
    CHECK(p.scheduler == r.scheduler);
    CHECK(p.seed == r.seed);
    CHECK(p.width == 128);
    CHECK(p.height == 96);
    CHECK(p.clip_skip == 2);
    CHECK(extra.at("Model hash") == "0123456789");
    CHECK(extra.at("Sigmas") == "14.6 1.2 0");
  }

  TEST_CASE("PNG encoding is lossless for gray, RGB and RGBA, smooth and noisy, and names its colour type") {
    std::mt19937 rng(11);
    for (int channels : {1, 3, 4})
      for (int noise : {0, 3, 255}) {  // smooth rows pick Sub/Up/Paeth, noise None: every filter gets decoded
        Image img(37, 23, channels);
        for (int y = 0; y < img.height; ++y)
          for (int x = 0; x < img.width; ++x)
            for (int c = 0; c < channels; ++c)
              img.pixels[img.row_bytes() * y + static_cast<size_t>(x * channels + c)] =
                  static_cast<uint8_t>(3 * x + 5 * y + 40 * c + (noise ? static_cast<int>(rng() % (noise + 1)) : 0));
        const std::string png = encode_png(img, {{"parameters", "a cat"}});
        INFO(channels << " channels, noise " << noise);
        CHECK(static_cast<int>(png[25]) == (channels == 1 ? 0 : channels == 3 ? 2 : 6));  // IHDR colour type
        CHECK(decode_image(png, "encoded", channels) == img);
        CHECK(png_text_chunks(png, "encoded").at("parameters") == "a cat");
      }
  }

  TEST_CASE("AUTOMATIC1111's own parameters text, old and new sampler naming") {
    const std::string a1111 =
        "masterpiece, (cat:1.2)\nsecond line\nNegative prompt: lowres\nSteps: 30, Sampler: DPM++ 2M Karras, CFG scale: 6.5, "
        "Seed: 777, Size: 512x768, Model hash: abcdef0123, Model: v1-5, Clip skip: 2, Version: v1.6.0";
    auto r = parse_parameters(a1111);
    CHECK(r.prompt == "masterpiece, (cat:1.2)\nsecond line");
    CHECK(r.negative == "lowres");
    CHECK(r.steps == 30);
    CHECK(r.sampler == "dpmpp_2m");
    CHECK(r.scheduler == "karras");
    CHECK(r.cfg == 6.5);
    CHECK(r.seed == 777);
    CHECK(r.width == 512);
    CHECK(r.height == 768);
    auto n = parse_parameters("x\nSteps: 20, Sampler: Euler a, Schedule type: Exponential, CFG scale: 7, Seed: 1, Size: 64x64");
    CHECK(n.sampler == "euler_ancestral");
    CHECK(n.scheduler == "exponential");
  }

  TEST_CASE("seed conventions: LibTorch CPU draws equal PyTorch's") {
    auto five = seeded_noise({5}, 42, "batch");
    const std::vector<float> torch_manual_seed_42 = {0.3367f, 0.1288f, 0.2345f, 0.2303f, -1.1229f};
    for (int i = 0; i < 5; ++i) CHECK(five[i].item<float>() == doctest::Approx(torch_manual_seed_42[i]).epsilon(1e-4));
    // Same seed, same noise; batch mode is one draw of the batch shape, per-image mode seed + i.
    CHECK(torch::equal(seeded_noise({2, 4, 8, 8}, 7, "batch"), seeded_noise({2, 4, 8, 8}, 7, "batch")));
    auto per = seeded_noise({3, 4, 8, 8}, 7, "per-image");
    CHECK(torch::equal(per[2], seeded_noise({1, 4, 8, 8}, 9, "batch")[0]));
    CHECK_FALSE(torch::equal(per[0], per[1]));
    auto batch = seeded_noise({3, 4, 8, 8}, 7, "batch");
    CHECK(torch::equal(batch[0], per[0]));  // the first row of a batch draw is the single-image draw
  }

  TEST_CASE("shards cover every job exactly once; env conventions") {
    const auto dir = test::scratch("jobs");
    const auto path = (dir / "jobs.jsonl").string();
    {
      std::ofstream out(path);
      for (int i = 0; i < 23; ++i) out << R"({"prompt": "job )" << i << R"(", "steps": 2})" << "\n" << (i % 5 == 0 ? "\n# note\n" : "");
      out << R"({"prompt": "bad", "width": 100})" << "\n";
    }
    const auto jobs = read_jobs(path);
    REQUIRE(jobs.size() == 24);
    CHECK(jobs.back().error.find("--width 100 is not a multiple of 8") != std::string::npos);
    for (int n : {1, 3, 5}) {
      std::multiset<int> seen;
      for (int i = 0; i < n; ++i)
        for (const auto& j : shard_jobs(jobs, {i, n})) seen.insert(j.line);
      CHECK(seen.size() == jobs.size());
      for (const auto& j : jobs) CHECK(seen.count(j.line) == 1);
    }
    CHECK(resolve_shard("2/4", 0, {}).index == 2);
    CHECK_THROWS_WITH(resolve_shard("4/4", 0, {}), doctest::Contains("outside 0..3"));
    auto slurm = resolve_shard("", 0, {{"SLURM_ARRAY_TASK_ID", "5"}, {"SLURM_ARRAY_TASK_MIN", "1"}, {"SLURM_ARRAY_TASK_COUNT", "8"}});
    CHECK(slurm.index == 4);
    CHECK(slurm.count == 8);
    auto k8s = resolve_shard("", 0, {{"JOB_COMPLETION_INDEX", "3"}, {"SIGMA_SHARD_COUNT", "10"}});
    CHECK(k8s.index == 3);
    CHECK(k8s.count == 10);
    CHECK_THROWS_WITH(resolve_shard("", 0, {{"JOB_COMPLETION_INDEX", "3"}}), doctest::Contains("--shard-count"));
  }

  TEST_CASE("job outputs are fixed paths, so a rerun can skip finished jobs") {
    Job job;
    job.line = 7;
    job.request.batch_size = 2;
    auto out = job_outputs(job, "out", "jobs");
    REQUIRE(out.size() == 2);
    CHECK(out[0] == "out/jobs-00007.png");
    CHECK(out[1] == "out/jobs-00007-2.png");
    job.request.output = "x/y.png";
    CHECK(job_outputs(job, "out", "jobs")[1] == "x/y-2.png");
  }

  TEST_CASE("atomic writes never replace an existing file and leave no temporary") {
    const auto dir = test::scratch("atomic");
    const auto path = (dir / "a.png").string();
    write_file_atomic(path, "one", false);
    CHECK_THROWS_WITH(write_file_atomic(path, "two", false), doctest::Contains("the file exists"));
    write_file_atomic(path, "three", true);
    std::ifstream in(path);
    std::string s;
    in >> s;
    CHECK(s == "three");
    int files = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) ++files;
    CHECK(files == 1);
    CHECK(write_numbered_png(dir.string(), 5, "x") == (dir / "00001-5.png").string());
    CHECK(write_numbered_png(dir.string(), 5, "x") == (dir / "00002-5.png").string());
  }

  TEST_CASE("oversized and unreadable images are refused before decoding") {
    const auto dir = test::scratch("imgs");
    const auto bad = (dir / "bad.png").string();
    std::ofstream(bad) << "not an image";
    CHECK_THROWS_WITH(load_image(bad), doctest::Contains("not a readable image"));
    // A PNG header claiming 20000 x 20000 pixels (only the IHDR is needed to refuse it).
    Image small(1, 1);
    auto png = encode_png(small);
    auto put = [&](size_t at, uint32_t v) {
      for (int i = 0; i < 4; ++i) png[at + i] = static_cast<char>((v >> (24 - 8 * i)) & 0xFF);
    };
    put(16, 20000);
    put(20, 20000);
    const auto huge = (dir / "huge.png").string();
    write_file_atomic(huge, png, false);
    CHECK_THROWS_WITH(load_image(huge), doctest::Contains("larger than the 8192x8192 limit"));
  }
}
