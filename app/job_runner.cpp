// The job runner's two threads: the worker owns the Engine and runs load/generate jobs
// one at a time; the imager loads and preprocesses images (ControlNet hint previews) so
// they never wait behind a generation. Both publish into one snapshot under one mutex;
// every exception is caught at the job boundary and becomes `last_error`. The image
// work itself and the name catalogs are in job_runner_images.cpp.
#include "app/job_runner.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <limits>
#include <mutex>
#include <thread>

#include "app/engine.h"
#include "app/image_io.h"
#include "app/pipeline.h"
#include "models/families/checkpoint_info.h"
#include "models/runtime/options.h"

namespace fs = std::filesystem;

namespace sigma::app {

const char* to_string(RunnerState s) {
  switch (s) {
    case RunnerState::idle: return "idle";
    case RunnerState::loading: return "loading";
    case RunnerState::generating: return "generating";
    case RunnerState::error: return "error";
  }
  return "?";
}

const char* to_string(JobEvent::Type t) {
  switch (t) {
    case JobEvent::Type::started: return "started";
    case JobEvent::Type::step: return "step";
    case JobEvent::Type::image: return "image";
    case JobEvent::Type::done: return "done";
    case JobEvent::Type::cancelled: return "cancelled";
    case JobEvent::Type::failed: return "failed";
  }
  return "?";
}

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string format_seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, s < 10 ? "%.1f s" : "%.0f s", s);
  return buf;
}

std::shared_ptr<ModelInfo> describe(Engine& e, double seconds) {
  auto info = std::make_shared<ModelInfo>();
  const auto& ck = e.checkpoint();
  info->path = e.spec().model;
  info->name = e.name();
  info->details = models::describe_checkpoint(ck);
  info->device = e.spec().device;
  info->dtype = dtype_flag(e.dtype());
  info->native_size = static_cast<int>(e.native_size());
  info->latent_downscale = static_cast<int>(e.latent_format().downscale);
  info->size_presets = e.family().size_presets;
  info->size_multiple = static_cast<int>(e.size_multiple());
  info->default_steps = e.default_steps();
  info->default_cfg = e.family().defaults.cfg;
  info->default_sampler = e.family().defaults.sampler;
  info->default_scheduler = e.family().defaults.scheduler;
  info->takes_guidance = e.takes_guidance();
  info->load_seconds = seconds;
  info->tokenizer = e.tokenizer();
  const auto& network = ck.description.is_unet() ? ck.unet : ck.transformer;
  int64_t params = models::count_parameters(network) + models::count_parameters(ck.vae);
  for (const auto& te : ck.text_encoders) params += models::count_parameters(te.weights);
  info->summary = models::to_string(ck.family) + " " + ck.prediction + "-prediction \xC2\xB7 " +
                  models::format_count(params) + " parameters \xC2\xB7 stored " + models::dtype_summary(network) +
                  " \xC2\xB7 runs " + info->dtype + " on " + info->device;
  return info;
}

}  // namespace

struct JobRunner::Impl {
  enum class Kind { load, generate };
  struct Job {
    uint64_t id = 0;
    Kind kind = Kind::generate;
    Request request;
  };

  RunnerOptions options;
  mutable std::mutex m;
  mutable std::condition_variable cv_work, cv_idle, cv_images;
  std::deque<Job> queue;
  bool stop = false, running = false;
  uint64_t next_job = 1, next_result = 1;
  std::atomic<uint64_t> cancel_below{0};  // jobs with a smaller id are cancelled
  std::atomic<uint64_t> cancel_one{0};    // and this one (cancel(job) of the running job)
  RunnerSnapshot snap;
  Clock::time_point load_start, job_start;
  std::map<std::string, ImageTask> pending_images, inflight_images;

  std::shared_ptr<Engine> engine;  // the worker thread's alone: the current one
  std::deque<std::shared_ptr<Engine>> engines;  // loaded ones, most recently used first
  std::thread worker, imager;

  explicit Impl(RunnerOptions o) : options(std::move(o)) {
    worker = std::thread([this] { work(); });
    imager = std::thread([this] { image_work(); });
  }

  ~Impl() {
    {
      std::lock_guard<std::mutex> l(m);
      stop = true;
      queue.clear();
      cancel_below = std::numeric_limits<uint64_t>::max();
    }
    cv_work.notify_all();
    cv_images.notify_all();
    worker.join();
    imager.join();
  }

  void notify() const {
    if (options.notify) options.notify();
  }
  bool cancelled(uint64_t id) const { return id < cancel_below.load() || id == cancel_one.load(); }
  void emit(const JobEvent& e) const {
    if (options.on_event) options.on_event(e);
  }
  void emit(JobEvent::Type type, uint64_t id, const std::string& error = "") const {
    JobEvent e;
    e.type = type;
    e.job = id;
    e.error = error;
    emit(e);
  }

  // ---- the queue (any thread) ---------------------------------------------------------
  uint64_t enqueue(Kind kind, const Request& r);
  void cancel();
  bool cancel(uint64_t id);

  // ---- the worker ----------------------------------------------------------------------
  void work();
  bool run(const Job& job);  // one job; never throws; false when it failed
  void fail(uint64_t id, const std::string& message);
  void ensure_engine(const ModelSpec& spec);
  bool generate_job(const Job& job);
  struct JobProgress;  // what the generation hooks keep between calls, for one job
  void begin_job(const Request& r, JobProgress& progress);
  void on_step(const Job& job, const app::Progress& p, JobProgress& progress);
  // The step's preview, or none: a VAE decode for small latents, the latent colours otherwise.
  std::shared_ptr<const Image> step_preview(const app::Progress& p, double its, JobProgress& progress, bool& decoded);
  void on_image(const Job& job, const GeneratedImage& g, JobProgress& progress);
  bool finish_job(const Job& job, const GenerateResult& result, const JobProgress& progress);

  // ---- the imager ----------------------------------------------------------------------
  void request_image(const std::string& key, const ImageTask& task);
  void forget_image(const std::string& key);
  void image_work();
};

uint64_t JobRunner::Impl::enqueue(Kind kind, const Request& r) {
  uint64_t id;
  {
    std::lock_guard<std::mutex> l(m);
    id = next_job++;
    queue.push_back({id, kind, r});
  }
  cv_work.notify_one();
  notify();
  return id;
}

void JobRunner::Impl::cancel() {
  std::deque<Job> dropped;
  {
    std::lock_guard<std::mutex> l(m);
    cancel_below = next_job;
    snap.jobs_cancelled += queue.size();  // dropped unstarted; the running one counts itself
    dropped.swap(queue);
    if (running) snap.activity = "Cancelling after the current step...";
  }
  for (const auto& j : dropped) emit(JobEvent::Type::cancelled, j.id);
  cv_idle.notify_all();
  notify();
}

bool JobRunner::Impl::cancel(uint64_t id) {
  bool was_queued = false, was_running = false;
  {
    std::lock_guard<std::mutex> l(m);
    for (auto it = queue.begin(); it != queue.end(); ++it)
      if (it->id == id) {
        queue.erase(it);
        ++snap.jobs_cancelled;
        was_queued = true;
        break;
      }
    if (!was_queued && running && snap.job == id) {
      cancel_one = id;
      snap.activity = "Cancelling after the current step...";
      was_running = true;
    }
  }
  if (was_queued) emit(JobEvent::Type::cancelled, id);
  if (was_queued || was_running) {
    cv_idle.notify_all();
    notify();
  }
  return was_queued || was_running;
}

void JobRunner::Impl::work() {
  models::init_runtime();  // LibTorch's thread count is per thread: set it on the one that computes
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> l(m);
      cv_work.wait(l, [&] { return stop || !queue.empty(); });
      if (stop) return;
      job = std::move(queue.front());
      queue.pop_front();
      running = true;
      snap.job = job.id;
    }
    const bool ok = run(job);
    {
      std::lock_guard<std::mutex> l(m);
      running = false;
      if (queue.empty()) snap.state = ok ? RunnerState::idle : RunnerState::error;
    }
    cv_idle.notify_all();
    notify();
  }
}

void JobRunner::Impl::fail(uint64_t id, const std::string& message) {
  {
    std::lock_guard<std::mutex> l(m);
    snap.last_error = message;
    snap.activity = "Failed: " + message.substr(0, message.find('\n'));
    ++snap.jobs_failed;
  }
  emit(JobEvent::Type::failed, id, message);
}

bool JobRunner::Impl::run(const Job& job) {
  emit(JobEvent::Type::started, job.id);
  try {
    if (!cancelled(job.id)) ensure_engine(model_spec(job.request));
    if (job.kind == Kind::load) {
      {
        std::lock_guard<std::mutex> l(m);
        snap.last_error.clear();
        if (snap.model) snap.activity = "Loaded " + snap.model->name + " in " + format_seconds(snap.model->load_seconds);
      }
      emit(JobEvent::Type::done, job.id);
      return true;
    }
    if (cancelled(job.id)) {  // cancelled while its model loaded (a load cannot be interrupted)
      {
        std::lock_guard<std::mutex> l(m);
        ++snap.jobs_cancelled;
        snap.last_cancelled = true;
        snap.activity = "Cancelled before the first step";
      }
      emit(JobEvent::Type::cancelled, job.id);
      return true;
    }
    return generate_job(job);
  } catch (const std::exception& e) {
    fail(job.id, e.what());
  } catch (...) {
    fail(job.id, "unknown error (not a std::exception)");
  }
  return false;
}

void JobRunner::Impl::ensure_engine(const ModelSpec& spec) {
  if (engine && engine->spec() == spec) return;
  for (auto it = engines.begin(); it != engines.end(); ++it)
    if ((*it)->spec() == spec) {  // kept from before: no load, most recently used again
      engine = *it;
      engines.erase(it);
      engines.push_front(engine);
      auto info = describe(*engine, 0);
      std::lock_guard<std::mutex> l(m);
      snap.model = std::move(info);
      return;
    }
  {
    std::lock_guard<std::mutex> l(m);
    snap.state = RunnerState::loading;
    snap.loading_path = spec.model;
    snap.activity = "Loading " + fs::path(spec.model).filename().string();
    snap.model.reset();
    load_start = Clock::now();
  }
  notify();
  // Free the least recently used models before loading the next (two SD models may not fit).
  engine.reset();
  while (!engines.empty() && engines.size() >= std::max<size_t>(1, options.max_engines)) engines.pop_back();
  const auto t0 = Clock::now();
  auto loaded = Engine::load(spec);
  auto info = describe(*loaded, seconds_since(t0));
  engine = std::move(loaded);
  engines.push_front(engine);
  std::lock_guard<std::mutex> l(m);
  snap.model = std::move(info);
  snap.loading_path.clear();
}

struct JobRunner::Impl::JobProgress {
  std::string dir;                               // where the images go
  int preview_every = 0;                         // steps between previews (0: none)
  Clock::time_point last_event = Clock::now();   // job start, then each decoded batch
  std::vector<Clock::time_point> step_times;     // this batch's step ends
  int current_batch = -1;
  // Small latents (the bundled 128 px model) are decoded with the VAE for the preview, as
  // often as keeps the decodes under a quarter of the sampling time; larger ones (SD at
  // 512 px on a CPU) get the latent-colour approximation, which costs nothing.
  int vae_every = 1, last_vae = -1000;
  bool save_failed = false;
};

bool JobRunner::Impl::generate_job(const Job& job) {
  JobProgress progress;
  begin_job(job.request, progress);
  GenerateHooks hooks;
  hooks.cancelled = [&] { return cancelled(job.id); };
  hooks.on_progress = [&](const app::Progress& p) { on_step(job, p, progress); };
  hooks.on_image = [&](const GeneratedImage& g) { on_image(job, g, progress); };
  return finish_job(job, generate(*engine, job.request, hooks), progress);
}

void JobRunner::Impl::begin_job(const Request& r, JobProgress& progress) {
  {
    std::lock_guard<std::mutex> l(m);
    progress.dir = r.output.empty() ? options.output_dir : r.output;
    progress.preview_every = options.preview_every;
    snap.state = RunnerState::generating;
    snap.activity = "Generating";
    snap.step = 0;
    snap.total = static_cast<int>(r.steps);
    snap.batch = 0;
    snap.batches = static_cast<int>(r.batch_count);
    snap.its = 0;
    snap.eta_seconds = -1;
    snap.preview.reset();
    job_start = Clock::now();
  }
  notify();
}

std::shared_ptr<const Image> JobRunner::Impl::step_preview(const app::Progress& p, double its, JobProgress& progress,
                                                          bool& decoded) {
  const int every = progress.preview_every;
  if (every <= 0 || !p.denoised || (p.step % every != 0 && p.step != p.total)) return nullptr;
  const auto& d = *p.denoised;
  if (d.dim() != 4 || d.size(2) * d.size(3) > 32 * 32) return std::make_shared<Image>(preview_image(*engine, d));
  if (p.step - progress.last_vae < progress.vae_every && p.step != p.total) return nullptr;
  const auto t0 = Clock::now();
  auto preview = std::make_shared<Image>(tensor_to_images(decode_latents(*engine, d.narrow(0, 0, 1)) * 2 - 1)[0]);
  decoded = true;
  progress.last_vae = p.step;
  progress.vae_every = std::max(1, static_cast<int>(std::ceil(seconds_since(t0) * its / 0.25)));
  return preview;
}

void JobRunner::Impl::on_step(const Job& job, const app::Progress& p, JobProgress& progress) {
  const auto now = Clock::now();
  if (p.batch != progress.current_batch) {
    progress.current_batch = p.batch;
    progress.step_times.clear();
  }
  auto& step_times = progress.step_times;
  step_times.push_back(now);
  // Steps per second over the last few steps (the first one includes text encoding).
  const size_t n = step_times.size(), k = std::min<size_t>(n - 1, 8);
  double its = 0;
  if (k > 0) its = static_cast<double>(k) / std::chrono::duration<double>(step_times[n - 1] - step_times[n - 1 - k]).count();
  else its = 1.0 / std::max(1e-6, std::chrono::duration<double>(now - progress.last_event).count());
  const int remaining = (p.total - p.step) + (p.batches - 1 - p.batch) * p.total;
  const double step_seconds = std::chrono::duration<double>(now - (n >= 2 ? step_times[n - 2] : progress.last_event)).count();
  bool decoded = false;
  std::shared_ptr<const Image> preview = step_preview(p, its, progress, decoded);
  {
    std::lock_guard<std::mutex> l(m);
    snap.step = p.step;
    snap.total = p.total;
    snap.batch = p.batch;
    snap.batches = p.batches;
    snap.its = its;
    snap.eta_seconds = its > 0 ? remaining / its : -1;
    if (preview) {
      snap.preview = preview;
      snap.preview_decoded = decoded;
      ++snap.preview_version;
    }
  }
  if (options.on_event) {
    JobEvent e;
    e.type = JobEvent::Type::step;
    e.job = job.id;
    e.step = p.step;
    e.total = p.total;
    e.batch = p.batch;
    e.batches = p.batches;
    e.sigma = p.sigma;
    e.step_seconds = step_seconds;
    e.elapsed_seconds = seconds_since(job_start);
    e.eta_seconds = its > 0 ? remaining / its : -1;
    e.preview = std::move(preview);
    e.preview_decoded = decoded;
    emit(e);
  }
  notify();
}

void JobRunner::Impl::on_image(const Job& job, const GeneratedImage& g, JobProgress& progress) {
  progress.last_event = Clock::now();
  auto res = std::make_shared<JobResult>();
  res->job = job.id;
  res->image = g.image;
  res->parameters = g.parameters;
  res->request = g.reproduce;
  res->seed = g.record.seed;
  try {  // exactly what `sigma generate` writes
    fs::create_directories(progress.dir);
    const auto png = encode_png(g.image, {{"parameters", g.parameters}, {"sigma-request", to_json(g.reproduce).dump()}});
    res->path = write_numbered_png(progress.dir, g.record.seed, png);
  } catch (const std::exception& e) {
    res->save_error = std::string("could not save the image to ") + progress.dir + ": " + e.what();
  }
  {
    std::lock_guard<std::mutex> l(m);
    res->id = next_result++;
    if (!res->save_error.empty()) {
      snap.last_error = res->save_error;
      progress.save_failed = true;
    }
    snap.results.push_back(res);
    while (snap.results.size() > options.keep_results) snap.results.erase(snap.results.begin());
  }
  if (options.on_event) {
    JobEvent e;
    e.type = JobEvent::Type::image;
    e.job = job.id;
    e.result = res;
    emit(e);
  }
  notify();
}

bool JobRunner::Impl::finish_job(const Job& job, const GenerateResult& result, const JobProgress& progress) {
  const bool save_failed = progress.save_failed;
  struct EmitAtEnd {  // after the lock below is released
    const Impl* self;
    JobEvent e;
    ~EmitAtEnd() { self->emit(e); }
  } at_end{this, {}};
  at_end.e.job = job.id;
  at_end.e.elapsed_seconds = seconds_since(job_start);
  at_end.e.type = result.cancelled ? JobEvent::Type::cancelled : save_failed ? JobEvent::Type::failed : JobEvent::Type::done;
  std::lock_guard<std::mutex> l(m);
  if (save_failed) at_end.e.error = snap.last_error;
  snap.last_cancelled = result.cancelled;
  if (result.cancelled) {
    ++snap.jobs_cancelled;
    snap.activity = "Cancelled after step " + std::to_string(snap.step) + "; nothing partial was saved";
  } else {
    ++snap.jobs_done;
    snap.eta_seconds = 0;
    if (!save_failed) snap.last_error.clear();
    snap.activity = "Done: " + std::to_string(result.images.size()) + (result.images.size() == 1 ? " image" : " images") +
                    " in " + format_seconds(seconds_since(job_start));
  }
  return !save_failed;
}

void JobRunner::Impl::request_image(const std::string& key, const ImageTask& task) {
  {
    std::lock_guard<std::mutex> l(m);
    if (auto p = pending_images.find(key); p != pending_images.end()) {
      p->second = task;
      return;
    }
    if (auto s = snap.images.find(key); s != snap.images.end()) {
      auto f = inflight_images.find(key);
      if (f != inflight_images.end() ? f->second == task : s->second.task == task) return;
    }
    pending_images[key] = task;
    snap.images[key].busy = true;
  }
  cv_images.notify_one();
}

void JobRunner::Impl::forget_image(const std::string& key) {
  std::lock_guard<std::mutex> l(m);
  pending_images.erase(key);
  snap.images.erase(key);
}

void JobRunner::Impl::image_work() {
  for (;;) {
    std::string key;
    ImageTask task;
    {
      std::unique_lock<std::mutex> l(m);
      cv_images.wait(l, [&] { return stop || !pending_images.empty(); });
      if (stop) return;
      auto it = pending_images.begin();
      key = it->first;
      task = it->second;
      pending_images.erase(it);
      inflight_images[key] = task;
    }
    auto out = run_image_task(task);
    {
      std::lock_guard<std::mutex> l(m);
      inflight_images.erase(key);
      auto s = snap.images.find(key);
      if (s == snap.images.end()) continue;  // forgotten meanwhile
      out.version = s->second.version + 1;
      out.busy = pending_images.count(key) > 0;
      s->second = std::move(out);
    }
    notify();
  }
}

JobRunner::JobRunner(RunnerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
JobRunner::~JobRunner() = default;

uint64_t JobRunner::load_model(const Request& model_fields) { return impl_->enqueue(Impl::Kind::load, model_fields); }
uint64_t JobRunner::submit(const Request& request) { return impl_->enqueue(Impl::Kind::generate, request); }
void JobRunner::cancel() { impl_->cancel(); }
bool JobRunner::cancel(uint64_t job) { return impl_->cancel(job); }
size_t JobRunner::queued() const {
  std::lock_guard<std::mutex> l(impl_->m);
  return impl_->queue.size();
}

void JobRunner::set_output_dir(const std::string& dir) {
  std::lock_guard<std::mutex> l(impl_->m);
  impl_->options.output_dir = dir;
}
void JobRunner::set_preview_every(int steps) {
  std::lock_guard<std::mutex> l(impl_->m);
  impl_->options.preview_every = steps;
}

void JobRunner::request_image(const std::string& key, const ImageTask& task) { impl_->request_image(key, task); }
void JobRunner::forget_image(const std::string& key) { impl_->forget_image(key); }

RunnerSnapshot JobRunner::snapshot() const {
  std::lock_guard<std::mutex> l(impl_->m);
  RunnerSnapshot s = impl_->snap;
  s.busy = impl_->running || !impl_->queue.empty();
  s.queued = impl_->queue.size();
  if (s.state == RunnerState::loading) s.loading_seconds = seconds_since(impl_->load_start);
  if (s.state == RunnerState::generating) s.elapsed_seconds = seconds_since(impl_->job_start);
  return s;
}

bool JobRunner::wait_idle(double timeout_seconds) const {
  std::unique_lock<std::mutex> l(impl_->m);
  return impl_->cv_idle.wait_for(l, std::chrono::duration<double>(timeout_seconds),
                                 [&] { return !impl_->running && impl_->queue.empty(); });
}

}  // namespace sigma::app
