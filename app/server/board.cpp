#include "app/server/board.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "app/image_io.h"
#include "app/server/base64.h"

using json = nlohmann::json;

namespace sigma::server {

namespace {
double seconds_between(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// 128 bits from the system's entropy source: a page that guesses ids (DNS rebinding, a
// sequential scan) finds nothing.
std::string random_key() {
  static std::random_device device;
  static std::mutex m;
  std::lock_guard<std::mutex> l(m);
  static const char* hex = "0123456789abcdef";
  std::string key;
  for (int i = 0; i < 8; ++i) {
    const auto v = device();
    for (int k = 0; k < 4; ++k) key += hex[(v >> (4 * k)) & 15];
  }
  return key;
}

std::string frame(const std::string& event, size_t index, const json& data) {
  return "id: " + std::to_string(index) + "\nevent: " + event + "\ndata: " + data.dump() + "\n\n";
}
}  // namespace

JobBoard::JobBoard(const BoardOptions& options) : options_(options) {
  app::RunnerOptions ro;
  ro.output_dir = options.output_dir;
  ro.preview_every = options.preview_every;
  ro.max_engines = options.max_engines;
  ro.keep_results = 0;  // the board keeps what it needs per job; the snapshot stays small
  ro.on_event = [this](const app::JobEvent& e) { on_event(e); };
  runner_ = std::make_unique<app::JobRunner>(ro);
}

JobBoard::~JobBoard() {
  runner_.reset();  // joins the worker before the maps it writes go away
}

uint64_t JobBoard::submit(const app::Request& request, ServerJob job, std::string* key) {
  std::lock_guard<std::mutex> l(m_);
  if (!accepting_) throw NotAccepting("the server is shutting down");
  if (queued_ >= options_.max_queue) {
    ++rejected_;
    throw QueueFull("the queue is full (" + std::to_string(queued_) + " jobs waiting); retry later");
  }
  // runner_->submit emits nothing itself, so holding our lock here is safe; the worker's first
  // event for this job waits on the lock until the job is on the board.
  const uint64_t id = runner_->submit(request);
  auto j = std::make_shared<ServerJob>(std::move(job));
  j->id = id;
  do j->key = random_key();
  while (keys_.count(j->key));
  keys_[j->key] = id;
  if (key) *key = j->key;
  j->state = "queued";
  j->submitted = Clock::now();
  j->total = static_cast<int>(request.steps);
  j->batches = static_cast<int>(request.batch_count);
  j->events.push_back(frame("queued", 0, {{"id", j->key}, {"position", queued_}}));
  jobs_[id] = std::move(j);
  ++queued_;
  cv_.notify_all();
  return id;
}

uint64_t JobBoard::load(const app::Request& model_fields) {
  std::lock_guard<std::mutex> l(m_);
  const uint64_t id = runner_->load_model(model_fields);
  loads_[id] = true;
  return id;
}

uint64_t JobBoard::find(const std::string& key) const {
  std::lock_guard<std::mutex> l(m_);
  const auto it = keys_.find(key);
  return it == keys_.end() ? 0 : it->second;
}

std::optional<ServerJob> JobBoard::get(uint64_t id) const {
  std::lock_guard<std::mutex> l(m_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return std::nullopt;
  return *it->second;
}

bool JobBoard::cancel(uint64_t id) {
  {
    std::lock_guard<std::mutex> l(m_);
    auto it = jobs_.find(id);
    if (it == jobs_.end() || it->second->terminal()) return false;
  }
  return runner_->cancel(id);  // without our lock: a queued job's event comes from this call
}

uint64_t JobBoard::running() const {
  std::lock_guard<std::mutex> l(m_);
  return running_;
}

void JobBoard::stop_accepting() {
  std::lock_guard<std::mutex> l(m_);
  accepting_ = false;
  cv_.notify_all();
}

void JobBoard::cancel_all() { runner_->cancel(); }

bool JobBoard::wait_idle(double seconds) const { return runner_->wait_idle(seconds); }

std::optional<ServerJob> JobBoard::wait(uint64_t id, double seconds) const {
  std::unique_lock<std::mutex> l(m_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return std::nullopt;
  auto job = it->second;  // kept alive even if the board forgets it meanwhile
  cv_.wait_for(l, std::chrono::duration<double>(seconds), [&] { return job->terminal(); });
  return *job;
}

bool JobBoard::next_events(uint64_t id, size_t& from, std::vector<std::string>& out, double seconds) const {
  std::unique_lock<std::mutex> l(m_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return false;
  auto job = it->second;
  cv_.wait_for(l, std::chrono::duration<double>(seconds), [&] { return job->events.size() > from || job->terminal() || !accepting_; });
  for (; from < job->events.size(); ++from)
    if (!job->events[from].empty()) out.push_back(job->events[from]);
  return !(job->terminal() && from >= job->events.size());
}

void JobBoard::count_rejected() {
  std::lock_guard<std::mutex> l(m_);
  ++rejected_;
}

void JobBoard::finish(ServerJob& j, const std::string& state) {
  j.state = state;
  j.finished = Clock::now();
  if (state == "done") ++done_;
  if (state == "failed") ++failed_;
  if (state == "cancelled") ++cancelled_;
  job_seconds_sum_ += seconds_between(j.submitted, j.finished);
  for (auto& e : j.events)  // previews are only useful live; the log keeps its order without them
    if (e.find("\nevent: preview\n") != std::string::npos) e.clear();
  j.preview.reset();
  if (!j.upload_dir.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(j.upload_dir, ec);
  }
  last_image_at_.erase(j.id);
  finished_order_.push_back(j.id);
  while (finished_order_.size() > options_.keep_jobs) {
    if (auto it = jobs_.find(finished_order_.front()); it != jobs_.end()) keys_.erase(it->second->key);
    jobs_.erase(finished_order_.front());
    finished_order_.erase(finished_order_.begin());
  }
}

void JobBoard::on_event(const app::JobEvent& e) {
  // Encode outside the lock: a preview PNG costs a little.
  std::string preview_b64;
  if (e.type == app::JobEvent::Type::step && e.preview) preview_b64 = base64_encode(app::encode_png(*e.preview));
  std::lock_guard<std::mutex> l(m_);
  if (loads_.count(e.job)) {
    if (e.type == app::JobEvent::Type::done || e.type == app::JobEvent::Type::failed || e.type == app::JobEvent::Type::cancelled)
      loads_.erase(e.job);
    return;
  }
  auto it = jobs_.find(e.job);
  if (it == jobs_.end()) return;
  ServerJob& j = *it->second;
  if (j.terminal()) return;
  const size_t n = j.events.size();
  const auto now = Clock::now();
  using T = app::JobEvent::Type;
  switch (e.type) {
    case T::started:
      if (j.state == "queued" && queued_ > 0) --queued_;
      j.state = "running";
      j.started = now;
      running_ = j.id;
      last_image_at_[j.id] = 0;
      j.events.push_back(frame("started", n, {{"id", j.key}, {"model", j.model}}));
      break;
    case T::step:
      j.step = e.step;
      j.total = e.total;
      j.batch = e.batch;
      j.batches = e.batches;
      j.sigma = e.sigma;
      j.eta_seconds = e.eta_seconds;
      j.elapsed_seconds = e.elapsed_seconds;
      step_seconds_sum_ += e.step_seconds;
      ++steps_;
      j.events.push_back(frame("step", n, {{"step", e.step}, {"total", e.total}, {"batch", e.batch}, {"batches", e.batches},
                                           {"sigma", e.sigma}, {"step_seconds", e.step_seconds},
                                           {"elapsed_seconds", e.elapsed_seconds}, {"eta_seconds", e.eta_seconds}}));
      if (e.preview) {
        j.preview = e.preview;
        j.events.push_back(frame("preview", n + 1, {{"step", e.step}, {"decoded", e.preview_decoded},
                                                    {"width", e.preview->width}, {"height", e.preview->height},
                                                    {"image", "data:image/png;base64," + preview_b64}}));
      }
      break;
    case T::image: {
      const size_t index = j.results.size();
      j.results.push_back(e.result);
      ++images_;
      const double at = seconds_between(j.started, now);
      image_seconds_sum_ += at - last_image_at_[j.id];
      last_image_at_[j.id] = at;
      j.events.push_back(frame("image", n, {{"index", index}, {"seed", e.result->seed},
                                            {"url", "/v1/jobs/" + j.key + "/images/" + std::to_string(index)},
                                            {"parameters", e.result->parameters}}));
      break;
    }
    case T::done:
      if (running_ == j.id) running_ = 0;
      j.events.push_back(frame("done", n, {{"images", j.results.size()}, {"seconds", seconds_between(j.submitted, now)}}));
      finish(j, "done");
      break;
    case T::cancelled:
      if (j.state == "queued" && queued_ > 0) --queued_;
      if (running_ == j.id) running_ = 0;
      j.events.push_back(frame("cancelled", n, {{"step", j.step}}));
      finish(j, "cancelled");
      break;
    case T::failed:
      if (j.state == "queued" && queued_ > 0) --queued_;
      if (running_ == j.id) running_ = 0;
      j.error = options_.scrub ? options_.scrub(e.error) : e.error;
      j.events.push_back(frame("error", n, {{"message", j.error}}));
      finish(j, "failed");
      break;
  }
  cv_.notify_all();
}

std::string JobBoard::metrics() const {
  std::lock_guard<std::mutex> l(m_);
  std::string s;
  char buf[256];
  auto line = [&](const char* fmt, auto... v) {
    std::snprintf(buf, sizeof buf, fmt, v...);
    s += buf;
  };
  s += "# HELP sigma_queue_length Jobs waiting behind the running one.\n# TYPE sigma_queue_length gauge\n";
  line("sigma_queue_length %zu\n", queued_);
  s += "# HELP sigma_job_running 1 while a job runs.\n# TYPE sigma_job_running gauge\n";
  line("sigma_job_running %d\n", running_ ? 1 : 0);
  s += "# HELP sigma_jobs_total Finished jobs by outcome.\n# TYPE sigma_jobs_total counter\n";
  line("sigma_jobs_total{state=\"done\"} %llu\n", (unsigned long long)done_);
  line("sigma_jobs_total{state=\"failed\"} %llu\n", (unsigned long long)failed_);
  line("sigma_jobs_total{state=\"cancelled\"} %llu\n", (unsigned long long)cancelled_);
  s += "# HELP sigma_jobs_rejected_total Jobs refused with 429 (queue full).\n# TYPE sigma_jobs_rejected_total counter\n";
  line("sigma_jobs_rejected_total %llu\n", (unsigned long long)rejected_);
  s += "# HELP sigma_step_seconds Wall time of sampling steps.\n# TYPE sigma_step_seconds summary\n";
  line("sigma_step_seconds_sum %.6f\nsigma_step_seconds_count %llu\n", step_seconds_sum_, (unsigned long long)steps_);
  s += "# HELP sigma_image_seconds Wall time per image (sampling and decoding).\n# TYPE sigma_image_seconds summary\n";
  line("sigma_image_seconds_sum %.6f\nsigma_image_seconds_count %llu\n", image_seconds_sum_, (unsigned long long)images_);
  s += "# HELP sigma_job_seconds Submit-to-finish time of jobs (queueing included).\n# TYPE sigma_job_seconds summary\n";
  line("sigma_job_seconds_sum %.6f\nsigma_job_seconds_count %llu\n", job_seconds_sum_,
       (unsigned long long)(done_ + failed_ + cancelled_));
  return s;
}

}  // namespace sigma::server
