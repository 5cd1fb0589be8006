// The server's view of jobs, on top of app::JobRunner: a bounded queue (429 when full), the
// state of every recent job, its ordered event log for Server-Sent Events (replayed from the
// start to late subscribers, so events always arrive in order), and the counters behind
// /metrics. The runner's worker calls on_event(); HTTP threads read and wait here.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "app/job_runner.h"

namespace sigma::server {

using Clock = std::chrono::steady_clock;

struct ServerJob {
  uint64_t id = 0;               // the runner's (sequential, server-side only)
  std::string key;               // what clients see: 128 random bits in hex, so ids cannot be guessed
  std::string state = "queued";  // queued | running | done | failed | cancelled
  int step = 0, total = 0, batch = 0, batches = 1;
  double sigma = 0, eta_seconds = -1, elapsed_seconds = 0;
  std::string error;
  std::vector<std::shared_ptr<const app::JobResult>> results;
  std::shared_ptr<const Image> preview;
  std::vector<std::string> events;       // SSE frames in order; "" = a dropped preview
  std::vector<std::string> warnings;     // fields accepted but not honoured
  std::string model;                     // the client's name for the model
  std::string upload_dir;                // decoded input images, removed when the job ends
  Clock::time_point submitted, started, finished;
  bool terminal() const { return state == "done" || state == "failed" || state == "cancelled"; }
};

struct QueueFull : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct NotAccepting : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct BoardOptions {
  std::string output_dir;
  size_t max_queue = 16;        // waiting jobs (the running one not counted)
  size_t max_engines = 2;
  size_t keep_jobs = 256;       // finished jobs remembered for GET /v1/jobs/{id}
  int preview_every = 1;
  // Applied to error messages before clients see them (ModelCatalog::scrub: no server paths).
  std::function<std::string(const std::string&)> scrub;
};

class JobBoard {
 public:
  explicit JobBoard(const BoardOptions& options);
  ~JobBoard();

  // Throws QueueFull / NotAccepting. `job` carries warnings, model name and upload folder.
  // `key` (optional) receives the id clients see.
  uint64_t submit(const app::Request& request, ServerJob job, std::string* key = nullptr);
  // A model load queued like a job (POST /sdapi/v1/options); not counted against the queue.
  uint64_t load(const app::Request& model_fields);

  std::optional<ServerJob> get(uint64_t id) const;
  // A client's job id (ServerJob::key) -> the runner's id; 0 when unknown.
  uint64_t find(const std::string& key) const;
  bool cancel(uint64_t id);
  uint64_t running() const;      // 0 when idle
  void stop_accepting();         // shutdown: submit() throws NotAccepting from now on
  void cancel_all();
  bool wait_idle(double seconds) const;

  // Blocks until `id` is finished (or `seconds` pass, or shutdown); returns its state.
  std::optional<ServerJob> wait(uint64_t id, double seconds) const;
  // SSE: frames from index `from` on (waits up to `seconds` for one); false when the job is
  // finished and every frame was handed out, or unknown.
  bool next_events(uint64_t id, size_t& from, std::vector<std::string>& out, double seconds) const;

  std::string metrics() const;   // Prometheus text format
  void count_rejected();         // a 429
  const app::JobRunner& runner() const { return *runner_; }

 private:
  void on_event(const app::JobEvent& e);
  void finish(ServerJob& j, const std::string& state);

  BoardOptions options_;
  mutable std::mutex m_;
  mutable std::condition_variable cv_;
  std::map<uint64_t, std::shared_ptr<ServerJob>> jobs_;
  std::map<std::string, uint64_t> keys_;
  std::vector<uint64_t> finished_order_;
  std::map<uint64_t, bool> loads_;  // runner ids of model loads
  bool accepting_ = true;
  size_t queued_ = 0;
  uint64_t running_ = 0;
  // metrics
  uint64_t done_ = 0, failed_ = 0, cancelled_ = 0, rejected_ = 0, images_ = 0;
  double step_seconds_sum_ = 0, image_seconds_sum_ = 0, job_seconds_sum_ = 0;
  uint64_t steps_ = 0;
  std::map<uint64_t, double> last_image_at_;
  std::unique_ptr<app::JobRunner> runner_;  // last: its worker calls on_event until it is gone
};

}  // namespace sigma::server
