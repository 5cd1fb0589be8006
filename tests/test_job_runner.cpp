// The job runner on the tiny fixture model: what the GUI relies on. A run saves a PNG
// carrying the CLI's metadata; a cancel stops mid-run, saves nothing, and the next run
// works; a bad model becomes an error in the snapshot (not an exception, not a crash);
// hint previews run in the background and are not redone for an unchanged request.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "app/image_io.h"
#include "app/job_runner.h"
#include "app/parameters.h"
#include "tests/support.h"

using namespace sigma;
using namespace sigma::app;
namespace fs = std::filesystem;

namespace {

Request tiny_request(int64_t steps = 4) {
  Request r;
  r.model = test::sd15() + "/models/tiny-sd15-diffusers";
  r.prompt = "a red circle";
  r.negative = "blurry";
  r.width = r.height = 64;
  r.steps = steps;
  r.sampler = "euler";
  r.scheduler = "karras";
  r.seed = 42;
  r.device = "cpu";
  return r;
}

size_t files_in(const fs::path& dir) {
  if (!fs::exists(dir)) return 0;
  return static_cast<size_t>(std::distance(fs::directory_iterator(dir), fs::directory_iterator{}));
}

// Polls the snapshot until `pred` holds; false after `seconds`.
template <class Pred>
bool wait_for(const JobRunner& runner, Pred pred, double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (pred(runner.snapshot())) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return false;
}

}  // namespace

TEST_SUITE("unit.jobrunner") {
  TEST_CASE("a run loads the model, previews, and saves a numbered PNG with the CLI's metadata") {
    const auto out = test::scratch("runner-run");
    RunnerOptions options;
    options.output_dir = out.string();
    options.preview_every = 1;
    std::atomic<int> notified{0};  // notify comes from the worker and from submit()'s thread (TSan found the plain int)
    options.notify = [&] { ++notified; };
    JobRunner runner(options);
    const auto id = runner.submit(tiny_request());
    REQUIRE(runner.wait_idle(300));
    const auto s = runner.snapshot();
    CHECK(s.last_error == "");
    CHECK(s.state == RunnerState::idle);
    CHECK_FALSE(s.busy);
    CHECK(s.jobs_done == 1);
    CHECK(s.step == 4);
    CHECK(s.total == 4);
    CHECK(s.its > 0);
    REQUIRE(s.model != nullptr);
    CHECK(s.model->summary.find("Stable Diffusion 1.x") != std::string::npos);
    CHECK(s.model->details.find("family:") != std::string::npos);
    CHECK(s.model->tokenizer.has_value());
    REQUIRE(s.preview != nullptr);
    // 64 px: decoded with the VAE at full size (a cheap decode), or latent colours at 8 x 8.
    CHECK(s.preview->width == (s.preview_decoded ? 64 : 8));
    CHECK(s.preview_version >= 2);  // the first and the last step at least (VAE previews are rationed)
    CHECK(s.preview_version <= 4);
    CHECK(notified > 4);
    REQUIRE(s.results.size() == 1);
    const auto& res = *s.results[0];
    CHECK(res.job == id);
    CHECK(res.seed == 42);
    CHECK(res.image.width == 64);
    CHECK(res.save_error == "");
    REQUIRE(fs::exists(res.path));
    CHECK(fs::path(res.path).parent_path() == out);
    CHECK(fs::path(res.path).filename() == "00001-42.png");
    const auto text = read_png_text(res.path);
    REQUIRE(text.count("parameters"));
    REQUIRE(text.count("sigma-request"));
    CHECK(text.at("parameters") == res.parameters);
    CHECK(res.parameters.find("Seed: 42") != std::string::npos);
    const auto back = request_from_png(res.path);
    CHECK(back == res.request);
    CHECK(back.prompt == "a red circle");
    CHECK(load_image(res.path) == res.image);
  }

  TEST_CASE("cancel mid-run saves nothing; the next run completes") {
    const auto out = test::scratch("runner-cancel");
    RunnerOptions options;
    options.output_dir = out.string();
    JobRunner runner(options);
    runner.submit(tiny_request(1000));
    REQUIRE(wait_for(runner, [](const RunnerSnapshot& s) { return s.state == RunnerState::generating && s.step >= 2; }, 300));
    runner.cancel();
    REQUIRE(runner.wait_idle(60));
    auto s = runner.snapshot();
    CHECK(s.last_cancelled);
    CHECK(s.jobs_cancelled == 1);
    CHECK(s.jobs_done == 0);
    CHECK(s.step < 1000);
    CHECK(s.results.empty());
    CHECK(files_in(out) == 0);  // not even a temporary file
    CHECK(s.last_error == "");

    runner.submit(tiny_request(3));
    REQUIRE(runner.wait_idle(120));
    s = runner.snapshot();
    CHECK(s.jobs_done == 1);
    CHECK_FALSE(s.last_cancelled);
    REQUIRE(s.results.size() == 1);
    CHECK(fs::exists(s.results[0]->path));
    CHECK(files_in(out) == 1);
  }

  TEST_CASE("queued jobs are dropped by cancel and counted") {
    RunnerOptions options;
    options.output_dir = test::scratch("runner-queue").string();
    options.preview_every = 0;
    JobRunner runner(options);
    runner.submit(tiny_request(1000));
    runner.submit(tiny_request(3));
    runner.submit(tiny_request(3));
    REQUIRE(wait_for(runner, [](const RunnerSnapshot& s) { return s.step >= 1; }, 300));
    CHECK(runner.snapshot().queued == 2);
    runner.cancel();
    REQUIRE(runner.wait_idle(60));
    const auto s = runner.snapshot();
    CHECK(s.jobs_cancelled == 3);
    CHECK(s.results.empty());
    CHECK(s.preview == nullptr);  // preview_every 0: none
  }

  TEST_CASE("per-job events arrive in order; cancel(job) drops a queued job and stops the running one") {
    std::mutex m;
    std::vector<JobEvent> events;
    RunnerOptions options;
    options.output_dir = test::scratch("runner-events").string();
    options.preview_every = 2;
    options.on_event = [&](const JobEvent& e) {
      std::lock_guard<std::mutex> l(m);
      events.push_back(e);
    };
    JobRunner runner(options);
    const uint64_t a = runner.submit(tiny_request(4));
    REQUIRE(runner.wait_idle(120));
    {
      std::lock_guard<std::mutex> l(m);
      REQUIRE(events.size() >= 7);  // started, 4 steps, image, done
      CHECK(events.front().type == JobEvent::Type::started);
      CHECK(events.back().type == JobEvent::Type::done);
      int step = 0, previews = 0;
      double sigma = 1e9;
      for (const auto& e : events) {
        CHECK(e.job == a);
        if (e.type != JobEvent::Type::step) continue;
        CHECK(e.step == ++step);
        CHECK(e.sigma < sigma);
        sigma = e.sigma;
        previews += e.preview != nullptr;
      }
      CHECK(step == 4);
      CHECK(previews == 2);  // steps 2 and 4
      CHECK(events[events.size() - 2].type == JobEvent::Type::image);
      events.clear();
    }
    const uint64_t running = runner.submit(tiny_request(1000));
    const uint64_t queued = runner.submit(tiny_request(3));
    REQUIRE(wait_for(runner, [&](const RunnerSnapshot& s) { return s.job == running && s.state == RunnerState::generating && s.step >= 1; }, 300));
    CHECK(runner.cancel(queued));
    CHECK(runner.queued() == 0);
    CHECK(runner.cancel(running));
    CHECK_FALSE(runner.cancel(999));
    REQUIRE(runner.wait_idle(60));
    std::lock_guard<std::mutex> l(m);
    int cancelled = 0;
    for (const auto& e : events) cancelled += e.type == JobEvent::Type::cancelled;
    CHECK(cancelled == 2);
    CHECK(runner.snapshot().jobs_cancelled == 2);
  }

  TEST_CASE("many queued jobs with cancels and snapshots from other threads: each job ends exactly once") {
    // Issue 14's concurrency case, run under ThreadSanitizer (-DSIGMA_TSAN=ON, docs/reliability.md):
    // one thread submits, one cancels single jobs and now and then everything, one reads
    // snapshots, while the worker runs. Afterwards every job has exactly one final event,
    // the counters agree with them, and the folder holds one PNG per finished job.
    const auto out = test::scratch("runner-stress");
    std::mutex m;
    std::map<uint64_t, int> finals;
    size_t done_events = 0, cancelled_events = 0, failed_events = 0;
    RunnerOptions options;
    options.output_dir = out.string();
    options.preview_every = 1;
    options.on_event = [&](const JobEvent& e) {
      std::lock_guard<std::mutex> l(m);
      if (e.type == JobEvent::Type::done || e.type == JobEvent::Type::cancelled || e.type == JobEvent::Type::failed) {
        ++finals[e.job];
        done_events += e.type == JobEvent::Type::done;
        cancelled_events += e.type == JobEvent::Type::cancelled;
        failed_events += e.type == JobEvent::Type::failed;
      }
    };
    JobRunner runner(options);
    constexpr int kJobs = 40;
    std::vector<uint64_t> ids;
    std::mutex ids_mutex;
    std::atomic<bool> submitting{true};
    std::thread submitter([&] {
      for (int i = 0; i < kJobs; ++i) {
        auto r = tiny_request(1 + i % 3);
        r.seed = i;
        const auto id = runner.submit(r);
        {
          std::lock_guard<std::mutex> l(ids_mutex);
          ids.push_back(id);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(i % 4));
      }
      submitting = false;
    });
    std::thread canceller([&] {
      std::mt19937 rng(14);
      while (submitting) {
        uint64_t victim = 0;
        {
          std::lock_guard<std::mutex> l(ids_mutex);
          if (!ids.empty()) victim = ids[rng() % ids.size()];
        }
        if (victim) runner.cancel(victim);  // queued, running or already finished: all fine
        if (rng() % 25 == 0) runner.cancel();
        std::this_thread::sleep_for(std::chrono::milliseconds(3));
      }
    });
    std::thread reader([&] {
      while (submitting) {
        const auto snap = runner.snapshot();
        CHECK(snap.jobs_done + snap.jobs_cancelled + snap.jobs_failed <= uint64_t(kJobs));
        (void)runner.queued();
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    });
    submitter.join();
    canceller.join();
    reader.join();
    REQUIRE(runner.wait_idle(600));
    const auto snap = runner.snapshot();
    std::lock_guard<std::mutex> l(m);
    CHECK(finals.size() == size_t(kJobs));
    for (const auto id : ids) {
      CAPTURE(id);
      CHECK(finals[id] == 1);
    }
    CHECK(failed_events == 0);
    CHECK(snap.jobs_done == done_events);
    CHECK(snap.jobs_cancelled == cancelled_events);
    CHECK(snap.jobs_failed == 0);
    CHECK(done_events + cancelled_events == size_t(kJobs));
    CHECK(files_in(out) == done_events);  // one image per finished job, nothing from cancelled ones
    std::printf("unit.jobrunner stress: %zu done, %zu cancelled of %d\n", done_events, cancelled_events, kJobs);
  }

  TEST_CASE("a bad model path is an error state with the path in it; the runner keeps working") {
    const auto out = test::scratch("runner-bad");
    RunnerOptions options;
    options.output_dir = out.string();
    JobRunner runner(options);
    auto bad = tiny_request();
    bad.model = (out / "no-such-model.safetensors").string();
    runner.submit(bad);
    REQUIRE(runner.wait_idle(60));
    auto s = runner.snapshot();
    CHECK(s.state == RunnerState::error);
    CHECK(s.jobs_failed == 1);
    CHECK(s.last_error.find("no-such-model.safetensors") != std::string::npos);
    CHECK(s.model == nullptr);
    CHECK(files_in(out) == 0);

    auto unknown = tiny_request();
    unknown.sampler = "eulr";
    runner.submit(unknown);
    REQUIRE(runner.wait_idle(120));
    s = runner.snapshot();
    CHECK(s.jobs_failed == 2);
    CHECK(s.last_error.find("eulr") != std::string::npos);

    runner.load_model(tiny_request());
    REQUIRE(runner.wait_idle(120));
    s = runner.snapshot();
    CHECK(s.state == RunnerState::idle);
    CHECK(s.last_error == "");
    REQUIRE(s.model != nullptr);
    CHECK(s.model->name == "tiny-sd15-diffusers");
    runner.submit(tiny_request(2));
    REQUIRE(runner.wait_idle(120));
    CHECK(runner.snapshot().results.size() == 1);
  }

  TEST_CASE("hint previews run in the background, once per distinct request") {
    const auto dir = test::scratch("runner-hint");
    Image img(96, 64, 3, 0);
    for (int y = 16; y < 48; ++y)
      for (int x = 24; x < 72; ++x)
        for (int c = 0; c < 3; ++c) img.at(x, y, c) = 255;
    const auto path = (dir / "square.png").string();
    write_file_atomic(path, encode_png(img), false);
    JobRunner runner;
    ImageTask task{path, "canny", {}, 64, 64, "crop"};
    runner.request_image("cn0", task);
    REQUIRE(wait_for(runner, [](const RunnerSnapshot& s) { return s.images.count("cn0") && s.images.at("cn0").version > 0; }, 60));
    auto r = runner.snapshot().images.at("cn0");
    CHECK(r.error == "");
    CHECK_FALSE(r.busy);
    REQUIRE(r.source != nullptr);
    CHECK(r.source->width == 96);
    REQUIRE(r.processed != nullptr);
    CHECK(r.processed->width == 64);
    CHECK(r.processed->height == 64);
    int edges = 0;
    for (auto v : r.processed->pixels) edges += v > 0;
    CHECK(edges > 0);
    CHECK(edges < 64 * 64 * 3 / 2);
    runner.request_image("cn0", task);  // unchanged: nothing to do
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    CHECK(runner.snapshot().images.at("cn0").version == 1);

    ImageTask missing;
    missing.path = (dir / "missing.png").string();
    runner.request_image("init", missing);
    REQUIRE(wait_for(runner, [](const RunnerSnapshot& s) { return s.images.count("init") && s.images.at("init").version > 0; }, 60));
    CHECK(runner.snapshot().images.at("init").error.find("missing.png") != std::string::npos);
    runner.forget_image("init");
    CHECK(runner.snapshot().images.count("init") == 0);
  }

  TEST_CASE("catalogs list the solvers, schedules and preprocessors by name") {
    auto has = [](const auto& list, const std::string& name) {
      for (const auto& e : list)
        if (e.name == name) return !e.description.empty();
      return false;
    };
    CHECK(has(sampler_catalog(), "euler"));
    CHECK(has(sampler_catalog(), "dpmpp_2m"));
    CHECK(has(schedule_catalog(), "karras"));
    CHECK(has(preprocessor_catalog(), "none"));
#ifdef SIGMA_WITH_OPENCV
    CHECK(has(preprocessor_catalog(), "canny"));
#endif
  }
}
