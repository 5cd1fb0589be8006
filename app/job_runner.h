// The job runner: the one place that owns loaded models and runs generations off the
// caller's thread. The GUI (and anything else interactive) talks to it through plain
// calls that return at once (load, submit, cancel, preprocess) and reads its state as
// a snapshot copied under a mutex, so a frame never waits for the engine (DESIGN.md
// habit 7). Errors are data in the snapshot, never exceptions escaping a thread;
// cancellation is a result, not an error (habit 8).
//
// This header must stay free of LibTorch: ui/ includes it, and ui/ may not see engine
// internals. Heavy images are shared (shared_ptr) so a snapshot copy costs pointers.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "app/request.h"
#include "imaging/image.h"
#include "models/families/family.h"
#include "models/text/clip_tokenizer.h"

namespace sigma::app {

enum class RunnerState { idle, loading, generating, error };
const char* to_string(RunnerState s);

// What the model panel shows about the loaded model (what `sigma info` prints).
struct ModelInfo {
  std::string path;                              // the checkpoint as loaded
  std::string name;                              // file/folder name without extension
  std::string summary;                           // one line: family, prediction, parameters, dtype
  std::string details;                           // the full `sigma info` text
  std::string device, dtype;                     // where it runs
  int native_size = 0;                           // the model's default width/height
  int latent_downscale = 8;                      // pixels per latent pixel (the VAE's factor)
  std::vector<models::FamilyDescription::SizePreset> size_presets;  // the family's usual canvases
  int size_multiple = 8;                         // canvas sizes step by this (Flux: 16)
  // What a request that leaves them out gets (Request: steps 0, cfg < 0, empty sampler/scheduler).
  int64_t default_steps = 20;
  double default_cfg = 7;
  std::string default_sampler, default_scheduler;
  bool takes_guidance = false;                   // Flux dev: the distilled guidance value is read
  double load_seconds = 0;
  std::optional<models::ClipTokenizer> tokenizer;  // for the prompt's token counts (cheap to copy)
};

// One finished image of a job, as saved.
struct JobResult {
  uint64_t id = 0;                 // increasing over the session
  uint64_t job = 0;                // the submit() that made it
  Image image;
  std::string parameters;          // AUTOMATIC1111 text, as in the PNG's `parameters` chunk
  Request request;                 // the request that makes exactly this image again
  int64_t seed = 0;
  std::string path;                // the saved PNG; empty when saving failed
  std::string save_error;          // why saving failed (the image is still kept here)
};

// A background image task: read a file and, for ControlNet hints, fit it to the generation
// size and run a preprocessor on it. Cheap, so it has its own thread and never waits
// behind a generation.
struct ImageTask {
  std::string path;
  std::string preprocessor;        // "" = only load; else a name from preprocessor_catalog()
  std::map<std::string, double> params;
  int width = 0, height = 0;       // hints: the generation size (0 = keep the image's size)
  std::string resize = "crop";     // crop | fit | stretch
  bool operator==(const ImageTask&) const = default;
};

struct ImageTaskResult {
  ImageTask task;
  std::shared_ptr<const Image> source;     // the file as loaded (RGB)
  std::shared_ptr<const Image> processed;  // fitted + preprocessed (hints only)
  std::string error;                       // names the file and the problem
  bool busy = false;                       // a newer task for this key is pending or running
  uint64_t version = 0;                    // changes whenever source/processed/error change
};

struct RunnerSnapshot {
  RunnerState state = RunnerState::idle;
  bool busy = false;                       // a job runs or waits (state may still read idle/error)
  std::string activity;                    // one line for a status bar
  std::shared_ptr<const ModelInfo> model;  // null until a model has loaded
  std::string loading_path;                // the model being loaded (state loading)
  double loading_seconds = 0;

  // The running job (or the last one, once idle).
  uint64_t job = 0;
  int step = 0, total = 0;                 // steps of the current batch
  int batch = 0, batches = 1;              // 0-based batch of batch_count
  double its = 0;                          // steps per second over this batch so far
  double eta_seconds = -1;                 // the rest of the job, all batches; < 0 unknown
  double elapsed_seconds = 0;              // since the job started
  size_t queued = 0;                       // jobs waiting behind the running one
  std::shared_ptr<const Image> preview;    // the denoised estimate as a picture
  bool preview_decoded = false;            // true: VAE-decoded (small latents); false: latent colours
  uint64_t preview_version = 0;

  std::vector<std::shared_ptr<const JobResult>> results;  // this session's images, oldest first
  std::string last_error;                  // the last failure; cleared by the next success
  uint64_t jobs_done = 0, jobs_cancelled = 0, jobs_failed = 0;
  bool last_cancelled = false;

  std::map<std::string, ImageTaskResult> images;  // by the caller's key
};

// What happened to one job, as it happens: for front ends that follow jobs one by one
// (the HTTP server's event streams) rather than reading the snapshot. Delivered in order
// per job: started, step..., image..., then exactly one of done, cancelled, failed.
struct JobEvent {
  enum class Type { started, step, image, done, cancelled, failed };
  Type type = Type::started;
  uint64_t job = 0;
  int step = 0, total = 0;                 // step events: steps done in this batch, of total
  int batch = 0, batches = 1;
  double sigma = 0;                        // the noise level reached by this step
  double step_seconds = 0;                 // this step's wall time (the first includes text encoding)
  double elapsed_seconds = 0;              // since the job started
  double eta_seconds = -1;                 // the rest of the job; < 0 unknown
  std::shared_ptr<const Image> preview;    // step events: a new live preview, else null
  bool preview_decoded = false;
  std::shared_ptr<const JobResult> result; // image events
  std::string error;                       // failed: the message
};
const char* to_string(JobEvent::Type t);

struct RunnerOptions {
  std::string output_dir = "outputs";      // where images go when the request names no output
  int preview_every = 1;                   // a live preview every N steps (0 = none); VAE-decoded
                                           // when that is cheap (small latents), else latent colours
  // Called after the snapshot changed, from a worker thread or from the thread that called
  // submit/cancel/load (so it must be thread-safe): a GUI wakes its event loop here
  // (glfwPostEmptyEvent, which may be called from any thread) so an idle UI can sleep.
  std::function<void()> notify;
  // Called (from the worker thread, or from the thread that cancels a queued job) for every
  // job event, outside the runner's lock; it must not call back into the runner.
  std::function<void(const JobEvent&)> on_event;
  // Loaded models kept at once; the least recently used is dropped first. 1 (the GUI):
  // the old model is freed before the next one loads, as two SD models may not fit.
  size_t max_engines = 1;
  // Results kept in the snapshot (oldest dropped first); a long-running server keeps few.
  size_t keep_results = static_cast<size_t>(-1);
};

class JobRunner {
 public:
  explicit JobRunner(RunnerOptions options = {});
  ~JobRunner();  // cancels the running job and joins the threads
  JobRunner(const JobRunner&) = delete;
  JobRunner& operator=(const JobRunner&) = delete;

  // Loads the model the request's model fields name (model, tokenizer, vae, prediction,
  // device, dtype), after any job already queued. Returns the job id.
  uint64_t load_model(const Request& model_fields);
  // Queues a generation: loads its model if needed, runs it, saves every image as the CLI
  // does (numbered PNGs with `parameters` + `sigma-request` chunks). Returns the job id.
  uint64_t submit(const Request& request);
  // The running job stops after its current step (nothing partial is saved) and the queued
  // ones are dropped. Jobs submitted afterwards run normally.
  void cancel();
  // Cancels one job: a queued one is dropped (its cancelled event comes at once), the running
  // one stops after its current step. False when the job is neither queued nor running.
  bool cancel(uint64_t job);
  size_t queued() const;   // jobs waiting behind the running one

  void set_output_dir(const std::string& dir);
  void set_preview_every(int steps);

  // Background image work keyed by the caller ("init", "mask", "cn0", ...). Calling it
  // again with an equal task is free, so a UI may call it every frame with what it shows.
  void request_image(const std::string& key, const ImageTask& task);
  void forget_image(const std::string& key);

  RunnerSnapshot snapshot() const;
  // Blocks until nothing runs or waits (tests, headless callers). False on timeout.
  bool wait_idle(double timeout_seconds) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The imager's work, synchronously: load `task.path` and, with a preprocessor, fit it to
// the size and preprocess it. Never throws: failures are in `error`.
ImageTaskResult run_image_task(const ImageTask& task);

// The names the GUI offers, with one-line descriptions, without LibTorch in the caller.
struct CatalogEntry {
  std::string name, description, detail;   // detail: the paper / source
};
std::vector<CatalogEntry> sampler_catalog();
std::vector<CatalogEntry> schedule_catalog();

struct PreprocessorEntry {
  struct Param {
    std::string name, description;
    double default_value = 0, min = 0, max = 0;
  };
  std::string name, description;
  std::vector<Param> params;
};
// "none" only, when this build has no OpenCV.
std::vector<PreprocessorEntry> preprocessor_catalog();

}  // namespace sigma::app
