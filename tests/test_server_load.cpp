// A bounded load test of `sigma serve` (issue 15): 8 concurrent clients x 20 A1111 txt2img
// jobs each, 64x64 and 4 steps of the bundled model, over loopback, against a queue of 4.
// Every job must be done exactly once (its seed comes back once, one PNG per job on disk,
// the server's counters agree), every image valid, queue-full answers 429 (the client waits
// and retries), and no crash. Prints the throughput and latency figures docs/server.md quotes.
#include <algorithm>
#include <cstdint>
#include <mutex>
#include <set>

#include "tests/server_support.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace sigma {

TEST_SUITE("e2e.server_load") {
  TEST_CASE("8 clients x 20 jobs: each done once, images valid, 429 when full") {
    constexpr int kClients = 8, kJobs = 20;
    const auto dir = test::scratch("server-load");
    test::ServeProcess s(dir, "--max-queue 4");
    std::mutex m;
    std::vector<double> latencies;
    std::multiset<int64_t> seeds;
    int rejected = 0, errors = 0, bad_images = 0;
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> clients;
    for (int c = 0; c < kClients; ++c)
      clients.emplace_back([&, c] {
        auto http = s.client();
        for (int i = 0; i < kJobs; ++i) {
          const int64_t seed = 1000 * (c + 1) + i;
          const json body = {{"prompt", "a small blue square at the top right"}, {"seed", seed}, {"steps", 4},
                             {"width", 64}, {"height", 64}, {"sampler_name", "Euler"}, {"scheduler", "Karras"}};
          const auto start = std::chrono::steady_clock::now();
          for (int attempt = 0; attempt < 600; ++attempt) {  // bounded: ~2 minutes of retries at most
            auto r = http.Post("/sdapi/v1/txt2img", body.dump(), "application/json");
            if (r && r->status == 429) {
              std::lock_guard<std::mutex> l(m);
              ++rejected;
            }
            if (r && r->status == 429) {
              std::this_thread::sleep_for(std::chrono::milliseconds(200));
              continue;
            }
            const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            std::lock_guard<std::mutex> l(m);
            if (!r || r->status != 200) {
              ++errors;
              break;
            }
            const auto j = json::parse(r->body);
            const auto info = json::parse(j["info"].get<std::string>());
            seeds.insert(info["seed"].get<int64_t>());
            const auto img = test::decode_b64_png(j["images"][0], dir / ("c" + std::to_string(c) + ".png"));
            if (img.width != 64 || img.height != 64 || !img.valid()) ++bad_images;
            latencies.push_back(took);
            break;
          }
        }
      });
    for (auto& t : clients) t.join();
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const auto metrics = s.client().Get("/metrics")->body;
    CHECK(s.healthy());
    CHECK(s.stop() == 0);

    CHECK(errors == 0);
    CHECK(bad_images == 0);
    REQUIRE(latencies.size() == size_t(kClients * kJobs));
    std::set<int64_t> unique(seeds.begin(), seeds.end());
    CHECK(unique.size() == size_t(kClients * kJobs));  // each job answered once, with its own seed
    CHECK(seeds.size() == unique.size());
    CHECK(test::count_files(s.out) == size_t(kClients * kJobs));  // one PNG per job: none twice, none lost
    CHECK(metrics.find("sigma_jobs_total{state=\"done\"} " + std::to_string(kClients * kJobs) + "\n") != std::string::npos);
    CHECK(metrics.find("sigma_jobs_total{state=\"failed\"} 0") != std::string::npos);
    CHECK(rejected > 0);  // 8 clients against a queue of 4: some are told to wait
    CHECK(metrics.find("sigma_jobs_rejected_total " + std::to_string(rejected) + "\n") != std::string::npos);
    std::sort(latencies.begin(), latencies.end());
    const auto pct = [&](double p) { return latencies[std::min(latencies.size() - 1, size_t(p * latencies.size()))]; };
    std::printf("server_load: %d jobs in %.1f s = %.2f jobs/s; latency p50 %.2f s, p95 %.2f s, max %.2f s; %d answers 429\n",
                kClients * kJobs, wall, kClients * kJobs / wall, pct(0.50), pct(0.95), latencies.back(), rejected);
  }
}

}  // namespace sigma
