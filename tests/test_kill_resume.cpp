// Kill and resume (issue 14): a `sigma batch` job file on the bundled model, split over 4
// shard processes that run at once, each killed with SIGKILL at random moments and
// restarted until it finishes on its own. Then: every job's files exist exactly once, the
// folder holds nothing else (no temporary file), every PNG decodes and carries the
// metadata of its own job, and each shard's last summary accounts for all of its jobs.
//
// SIGMA_SOAK_JOBS (default 48), SIGMA_SOAK_KILLS (per shard, default 6) and SIGMA_SOAK_SEED (default 14) scale and vary it:
// scripts/soak.sh runs this suite with 1,000 jobs.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "app/image_io.h"
#include "app/parameters.h"
#include "tests/support.h"

namespace fs = std::filesystem;
using namespace sigma;

namespace {

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}

struct Shard {
  int index = 0;
  pid_t pid = -1;
  std::string log;                // this run's stdout+stderr
  std::chrono::steady_clock::time_point kill_at;  // max() until this run has written a file
  int files_at_start = 0;         // of this shard's outputs, when this run started
  bool finished = false;
  int kills = 0, runs = 0;
  std::string last_output;        // of the run that finished
};

// Starts `sigma batch` for one shard with its output in a file (read when it ends).
pid_t start_shard(const std::vector<std::string>& args, const std::string& log) {
  const pid_t pid = fork();
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    setenv("OMP_NUM_THREADS", "1", 1);  // four shards share two cores
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

TEST_SUITE("e2e.kill_resume") {
  TEST_CASE("4 shards killed with SIGKILL at random moments and restarted finish every job exactly once") {
    const int n_jobs = env_int("SIGMA_SOAK_JOBS", 48);
    const int max_kills = env_int("SIGMA_SOAK_KILLS", 6);  // per shard; after that it runs to the end
    std::mt19937 rng(static_cast<unsigned>(env_int("SIGMA_SOAK_SEED", 14)));
    const auto dir = test::scratch("kill-resume");
    const auto jobs = (dir / "jobs.jsonl").string();
    const auto out = dir / "out";
    struct Expect {
      std::string prompt;
      int64_t seed;
      int images;
    };
    std::map<int, Expect> expect;  // by line
    {
      static const char* shapes[] = {"circle", "square", "triangle", "star", "ring", "cross"};
      static const char* colours[] = {"red", "blue", "green", "yellow", "purple", "orange"};
      std::ofstream f(jobs);
      f << "# kill/resume soak\n";
      int line = 1;
      for (int i = 0; i < n_jobs; ++i) {
        ++line;
        const std::string prompt = std::string("a ") + colours[i % 6] + " " + shapes[(i / 6) % 6];
        const int images = i % 7 == 3 ? 2 : 1;  // some jobs write two files
        f << R"({"prompt": ")" << prompt << R"(", "seed": )" << 1000 + i << (images == 2 ? R"(, "batch-size": 2)" : "") << "}\n";
        expect[line] = {prompt, 1000 + i, images};
      }
    }
    std::vector<Shard> shards(4);
    auto args = [&](int i) {
      return std::vector<std::string>{SIGMA_CLI_PATH, "batch", jobs, "--shard", std::to_string(i) + "/4", "-W", "64", "-H", "64",
                                      "--steps", "8", "-q", "-o", out.string()};
    };
    // Kill moments follow the work, not the clock: a run is killed a random 0-300 ms after it
    // has written its first new file (mid-sampling or mid-PNG-write of a later job), or, one
    // run in four, 50-600 ms after its start (while it loads). A fixed window after the start
    // stopped killing anything once the bundled model got fast (shards ended before it).
    std::uniform_int_distribution<int> after_progress_ms(0, 300), early_ms(50, 600), coin(0, 3);
    // Shard i takes every 4th job from the i-th (jobs-LLLLL.png, line = job index + 2).
    auto files_of = [&](int shard) {
      int n = 0;
      for (const auto& [line, e] : expect)
        if ((line - 2) % 4 == shard)
          for (int k = 0; k < e.images; ++k) {
            char name[48];
            std::snprintf(name, sizeof name, k == 0 ? "jobs-%05d.png" : "jobs-%05d-%d.png", line, k + 1);
            n += fs::exists(out / name);
          }
      return n;
    };
    constexpr auto kNever = std::chrono::steady_clock::time_point::max();
    const auto t0 = std::chrono::steady_clock::now();
    int total_kills = 0;
    for (int i = 0; i < 4; ++i) shards[i].index = i;
    while (std::any_of(shards.begin(), shards.end(), [](const Shard& s) { return !s.finished; })) {
      for (auto& s : shards) {
        if (s.finished) continue;
        if (s.pid < 0) {
          s.log = (dir / ("shard-" + std::to_string(s.index) + ".log")).string();
          s.pid = start_shard(args(s.index), s.log);
          REQUIRE(s.pid > 0);
          ++s.runs;
          s.files_at_start = files_of(s.index);
          s.kill_at = coin(rng) == 0 ? std::chrono::steady_clock::now() + std::chrono::milliseconds(early_ms(rng)) : kNever;
          continue;
        }
        int status = 0;
        const pid_t r = waitpid(s.pid, &status, WNOHANG);
        if (r == s.pid) {
          s.pid = -1;
          const std::string text = read_text(s.log);
          if (WIFEXITED(status)) {
            INFO("shard " << s.index << " output: " << text);
            REQUIRE(WEXITSTATUS(status) == 0);  // it ran to its end: no job may fail
            s.finished = true;
            s.last_output = text;
          }
          continue;
        }
        if (s.kill_at == kNever && files_of(s.index) > s.files_at_start)
          s.kill_at = std::chrono::steady_clock::now() + std::chrono::milliseconds(after_progress_ms(rng));
        if (s.kills < max_kills && std::chrono::steady_clock::now() >= s.kill_at) {
          kill(s.pid, SIGKILL);
          waitpid(s.pid, &status, 0);
          CHECK(WIFSIGNALED(status));
          s.pid = -1;
          ++s.kills;
          ++total_kills;
        }
      }
      REQUIRE(std::chrono::steady_clock::now() - t0 < std::chrono::minutes(n_jobs > 100 ? 600 : 10));
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    int runs = 0;
    for (const auto& s : shards) runs += s.runs;
    MESSAGE("kill_resume: " << n_jobs << " jobs, 4 shards, " << total_kills << " SIGKILLs, " << runs << " runs, "
                            << secs << " s");
    for (const auto& s : shards) {
      INFO("shard " << s.index << " was never killed: it finished within 300 ms of its first file");
      CHECK(s.kills >= 1);
    }

    // Every expected file, exactly once, and nothing else in the folder.
    std::set<std::string> want;
    for (const auto& [line, e] : expect)
      for (int k = 0; k < e.images; ++k) {
        char name[48];
        std::snprintf(name, sizeof name, k == 0 ? "jobs-%05d.png" : "jobs-%05d-%d.png", line, k + 1);
        want.insert(name);
      }
    std::set<std::string> have;
    for (const auto& e : fs::directory_iterator(out)) have.insert(e.path().filename().string());
    std::vector<std::string> missing, extra;
    std::set_difference(want.begin(), want.end(), have.begin(), have.end(), std::back_inserter(missing));
    std::set_difference(have.begin(), have.end(), want.begin(), want.end(), std::back_inserter(extra));
    INFO("missing: " << missing.size() << (missing.empty() ? "" : " e.g. " + missing.front()));
    INFO("extra (temporaries?): " << extra.size() << (extra.empty() ? "" : " e.g. " + extra.front()));
    CHECK(missing.empty());
    CHECK(extra.empty());

    // Every PNG decodes and carries its own job's request.
    int checked = 0;
    for (const auto& [line, e] : expect) {
      for (int k = 0; k < e.images; ++k) {
        char name[48];
        std::snprintf(name, sizeof name, k == 0 ? "jobs-%05d.png" : "jobs-%05d-%d.png", line, k + 1);
        const auto path = (out / name).string();
        if (!fs::exists(path)) continue;
        INFO(path);
        const auto img = app::load_image(path);
        CHECK(img.width == 64);
        CHECK(img.height == 64);
        const auto text = app::read_png_text(path);
        CHECK(text.count("parameters") == 1);
        const auto r = app::request_from_png(path);
        CHECK(r.prompt == e.prompt);
        CHECK((r.seed == e.seed || r.seed == e.seed + k));  // image k of a batch: the job's seed (+k per image)
        ++checked;
      }
    }
    CHECK(checked == static_cast<int>(want.size()));

    // Each shard's last run accounts for all of its jobs, none failed.
    const std::regex summary(R"(sigma batch: (\d+) done, (\d+) skipped \(output exists\), (\d+) failed, of (\d+) jobs in shard (\d)/4)");
    int total = 0;
    for (const auto& s : shards) {
      INFO(s.last_output);
      std::smatch m;
      REQUIRE(std::regex_search(s.last_output, m, summary));
      CHECK(std::stoi(m[1]) + std::stoi(m[2]) == std::stoi(m[4]));
      CHECK(std::stoi(m[3]) == 0);
      CHECK(std::stoi(m[5]) == s.index);
      total += std::stoi(m[4]);
    }
    CHECK(total == n_jobs);
  }
}
