// The actions behind the buttons (see actions.h). They edit AppState and hand work to the
// job runner; the only file they write themselves is a painted inpainting mask, saved
// beside the outputs so the request (and the PNG metadata that records it) stays valid.
#include "ui/actions.h"

#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <random>
#include <thread>
#include <utility>

#include "app/image_io.h"
#include "app/parameters.h"
#include "models/io/json_text.h"
#include "ui/style.h"

extern char** environ;

namespace fs = std::filesystem;

namespace sigma::ui {
namespace {

std::string lower_ext(const std::string& path) {
  auto e = fs::path(path).extension().string();
  std::transform(e.begin(), e.end(), e.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return e;
}
bool is_image(const std::string& p) {
  const auto e = lower_ext(p);
  return e == ".png" || e == ".jpg" || e == ".jpeg" || e == ".bmp";
}
bool is_model(const std::string& p) {
  const auto e = lower_ext(p);
  return e == ".safetensors" || e == ".ckpt" || (fs::is_directory(p) && fs::exists(fs::path(p) / "model_index.json"));
}

// The painted mask as a PNG under <output>/masks/, named by time so queued jobs keep theirs.
std::string save_mask(AppState& s) {
  const auto dir = fs::path(s.settings.output_dir) / "masks";
  fs::create_directories(dir);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  const auto path = (dir / ("mask-" + std::to_string(ms) + ".png")).string();
  app::write_file_atomic(path, app::encode_png(s.mask.mask), false);
  return path;
}

// The request fields a load of `f` needs (the runner reads only the model fields).
app::Request load_request(const ModelFields& f) {
  app::Request r;
  r.model = f.model;
  r.tokenizer = f.tokenizer;
  r.vae = f.vae;
  r.clip_l = f.clip_l;
  r.t5xxl = f.t5xxl;
  r.t5_tokenizer = f.t5_tokenizer;
  r.prediction = f.prediction;
  r.device = f.device;
  r.dtype = f.dtype;
  r.lowvram = f.lowvram;
  return r;
}

std::string model_label(const std::string& model) { return model.empty() ? "the bundled model" : short_name(model); }

// What the runner will hold once its queue has run: the model being loaded, else the loaded one.
std::optional<ModelFields> expected_model(const AppState& s) {
  if (s.loads.job != 0) return s.loads.target;
  return s.loads.loaded;
}

// Puts the selection (and the runtime settings a load uses) back to `f`, or to the bundled
// model when there is none, and saves it: the settings file never keeps a path that failed.
void select_model(AppState& s, const std::optional<ModelFields>& f) {
  ModelFields m = f.value_or(ModelFields{});
  if (!f) m.device = s.settings.device, m.dtype = s.settings.dtype, m.lowvram = s.settings.lowvram;
  s.request.model = m.model;
  s.request.tokenizer = m.tokenizer;
  s.request.vae = m.vae;
  s.request.clip_l = m.clip_l;
  s.request.t5xxl = m.t5xxl;
  s.request.t5_tokenizer = m.t5_tokenizer;
  s.request.prediction = m.prediction;
  s.settings.device = m.device;
  s.settings.dtype = m.dtype;
  s.settings.lowvram = m.lowvram;
  persist(s);
}

void queue_load(AppState& s, const ModelFields& f, bool restoring) {
  // A load already in flight keeps the generations that wait for it in order: they run
  // after it, before this one.
  for (const auto& r : s.loads.waiting) s.runner->submit(r);
  s.loads.waiting.clear();
  s.loads.job = s.runner->load_model(load_request(f));
  s.loads.target = f;
  s.loads.restoring = restoring;
}

// Starts loading the selected model unless it is loaded or on its way. A path that cannot
// be a checkpoint is refused here, before the runner frees the model it holds for it.
bool start_load(AppState& s) {
  const auto f = model_fields(s);
  if (expected_model(s) == f) return true;
  if (const auto why = model_path_problem(f.model); !why.empty()) {
    const auto keep = expected_model(s);
    s.error = "Could not load " + model_label(f.model) + ": " + why + ". " +
              (keep ? "Kept " + model_label(keep->model) + "." : "Selected the bundled model.");
    select_model(s, keep);
    return false;
  }
  queue_load(s, f, false);
  return true;
}

// A load that ended: release what waited for it, or, when it failed, go back to the model
// that worked. The runner freed that model before trying (one SD model may be all that
// fits), so it is loaded again.
void load_ended(AppState& s, const JobInbox::Ended& e) {
  using T = app::JobEvent::Type;
  auto waiting = std::move(s.loads.waiting);
  s.loads.waiting.clear();
  s.loads.job = 0;
  const bool restoring = std::exchange(s.loads.restoring, false);
  if (e.type == T::done) {
    if (!restoring) s.error.clear();  // a success ends the last model error, except the one it repairs
    s.loads.loaded = s.loads.target;
    for (const auto& r : waiting) s.runner->submit(r);
    if (s.message.rfind("Generates once ", 0) == 0) s.message.clear();  // it does now
    return;
  }
  if (e.type == T::cancelled) return;  // dropped unstarted by Cancel (which dropped `waiting` too)
  s.dismissed_error = e.error;         // said once, in the UI's banner below, not also as the runner's
  const auto failed = s.loads.target;
  const auto previous = restoring ? std::nullopt : s.loads.loaded;
  s.loads.loaded.reset();
  const std::string why = models::utf8_prefix(e.error, 600);
  if (restoring) {
    s.error += "\n" + model_label(failed.model) + " could not be loaded again either: " + why;
    return;
  }
  const std::string not_run = waiting.empty() ? "" : " " + std::to_string(waiting.size()) + " generation(s) not started.";
  if (!previous && failed.model.empty()) {
    s.error = "Could not load the bundled model: " + why + not_run;
    return;
  }
  s.error = "Could not load " + model_label(failed.model) + ": " + why + "\n" +
            (previous ? "Back to " + model_label(previous->model) + " (loaded again: the failed load had freed it)."
                      : "Selected the bundled model.") + not_run;
  select_model(s, previous);
  if (previous) queue_load(s, *previous, true);
}

}  // namespace

void follow_jobs(AppState& s) {
  std::vector<JobInbox::Ended> ended;
  {
    std::lock_guard<std::mutex> l(s.inbox->m);
    ended.swap(s.inbox->ended);
  }
  for (const auto& e : ended)
    if (e.job != 0 && e.job == s.loads.job) load_ended(s, e);
}

bool ui_pending(const AppState& s) { return s.loads.job != 0 || !s.loads.waiting.empty(); }

void generate(AppState& s) {
  app::Request r = s.request;
  r.device = s.settings.device;
  r.dtype = s.settings.dtype;
  r.lowvram = s.settings.lowvram;
  r.output.clear();  // the runner's output folder
  // <lora:NAME> tags and embedding words are looked up in the models root's folders.
  if (!s.settings.models_root.empty()) {
    if (r.lora_dir.empty()) r.lora_dir = (fs::path(s.settings.models_root) / "loras").string();
    if (r.embeddings_dir.empty()) r.embeddings_dir = (fs::path(s.settings.models_root) / "embeddings").string();
  }
  if (s.random_seed) r.seed = -1;
  if (s.size_from_model) r.width = r.height = 0;  // nothing chosen yet: the model's native size
  if (r.init_image.empty() || !s.mask.enabled || !s.mask.painted) {
    r.mask.clear();
  } else {
    try {
      if (s.mask.saved_path.empty()) s.mask.saved_path = save_mask(s);
      r.mask = s.mask.saved_path;
    } catch (const std::exception& e) {
      s.message = std::string("Not generated: the mask could not be saved: ") + e.what();
      return;
    }
  }
  s.request.mask = r.mask;
  // A new model is loaded by a job of its own first (see ModelLoads); this one waits for it.
  if (!start_load(s)) return;  // refused: s.error says why
  if (s.loads.job != 0) s.loads.waiting.push_back(r);
  else s.runner->submit(r);
  s.dismissed_error.clear();
  persist(s);  // the last request survives a crash
  s.message = s.loads.job != 0 ? "Generates once " + model_label(s.loads.target.model) + " is loaded"
              : s.snap.busy   ? "Queued behind the running job"
                              : "";
}

void cancel(AppState& s) {
  s.runner->cancel();
  s.loads.waiting.clear();
  s.message = "Cancel requested: stops after the current step";
}

void load_model(AppState& s) {
  if (start_load(s)) s.dismissed_error.clear();
}

void use_settings(AppState& s, const app::JobResult& res) {
  app::Request r = res.request;
  // An AUTOMATIC1111 image names its model but not the file, and a PNG from another machine
  // may name a path that is not here: then the current model stays.
  std::string kept;
  if (r.model.empty() || !fs::exists(r.model)) {
    if (!r.model.empty()) kept = " (its model " + fs::path(r.model).filename().string() + " is not here; keeping the current one)";
    r.model = s.request.model;
    r.tokenizer = s.request.tokenizer;
  }
  s.request = r;
  s.random_seed = false;
  s.size_from_model = false;
  s.mask = MaskState{};
  if (!s.request.mask.empty()) {  // an inpainting result: reload its mask for editing
    s.mask.enabled = true;
    s.mask.saved_path = s.request.mask;
    s.runner->request_image("maskfile", file_task(s.request.mask));
  }
  s.message = "Loaded the settings of " + (res.path.empty() ? std::string("the selected image") : fs::path(res.path).filename().string()) + kept;
}

void send_to_img2img(AppState& s, const std::string& image_path) {
  s.request.init_image = image_path;
  s.request.mask.clear();
  s.mask = MaskState{};
  s.request_tab = Tab::img2img;
}

void reuse_last_seed(AppState& s) {
  if (auto r = selected(s)) {
    s.request.seed = r->seed;
    s.random_seed = false;
  }
}

void random_seed_now(AppState& s) {
  static std::mt19937_64 rng{std::random_device{}()};
  s.request.seed = static_cast<int64_t>(rng() & 0xffffffffu);
  s.random_seed = false;
}

void open_folder(AppState& s, const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  pid_t pid = 0;
  const char* argv[] = {"xdg-open", dir.c_str(), nullptr};
  if (posix_spawnp(&pid, "xdg-open", nullptr, nullptr, const_cast<char* const*>(argv), environ) != 0) {
    s.message = "Could not run xdg-open; the folder is " + dir;
    return;
  }
  std::thread([pid] { waitpid(pid, nullptr, 0); }).detach();  // reap it without waiting here
  s.message = "Opened " + dir;
}

void set_output_dir(AppState& s, const std::string& dir) {
  s.settings.output_dir = dir;
  s.runner->set_output_dir(dir);
  s.settings_dirty = true;
}

void set_preview_every(AppState& s, int steps) {
  s.settings.preview_every = steps;
  s.runner->set_preview_every(steps);
  s.settings_dirty = true;
}

namespace {

// An image dropped outside the img2img and ControlNet tabs: one with generation metadata
// brings its settings; damaged metadata (malformed, or a JSON bomb nested a million levels
// deep) is an error shown in the UI; any other image becomes the img2img input.
void take_png_settings(AppState& s, const std::string& p) {
  const auto name = fs::path(p).filename().string();
  std::map<std::string, std::string> text;
  try {
    text = app::read_png_text(p);
  } catch (const std::exception&) {
    // not a PNG (a JPEG, BMP) or unreadable: it has no settings to take
  }
  if (!text.count("sigma-request") && !text.count("parameters")) {
    send_to_img2img(s, p);
    s.message = "No generation settings in " + name + "; using it for image to image";
    return;
  }
  try {
    std::vector<std::string> not_taken;
    app::JobResult res;
    res.request = app::request_from_png_text(text, p, &not_taken);
    res.path = p;
    use_settings(s, res);
    if (!not_taken.empty()) {
      // Say what the re-run will not reproduce, as the CLI's --from-png warns.
      std::string list;
      for (const auto& w : not_taken) list += (list.empty() ? "" : "; ") + w;
      s.message = "Settings from " + name + "; not taken: " + list;
    }
  } catch (const std::exception& e) {
    s.error = "The settings in " + name + " cannot be used: " + models::utf8_prefix(e.what(), 400);
    s.message = "Nothing changed: the settings in " + name + " are damaged";
  }
}

}  // namespace

void handle_drop(AppState& s, const std::vector<std::string>& paths) {
  for (const auto& p : paths) {
    if (s.tab == Tab::controlnet && lower_ext(p) == ".safetensors" && !s.request.controlnets.empty()) {
      const int i = std::clamp(s.selected_unit, 0, static_cast<int>(s.request.controlnets.size()) - 1);
      s.request.controlnets[static_cast<size_t>(i)].model = p;
      s.message = "ControlNet unit " + std::to_string(i + 1) + " model: " + fs::path(p).filename().string();
    } else if (is_model(p)) {
      s.request.model = p;
      if (start_load(s)) s.message = "Loading the dropped model " + fs::path(p).filename().string();
    } else if (!is_image(p)) {
      s.message = "Dropped " + fs::path(p).filename().string() + ": not an image (PNG, JPEG, BMP) or a model";
    } else if (s.tab == Tab::controlnet) {
      if (s.request.controlnets.empty()) s.request.controlnets.emplace_back();
      const int i = std::clamp(s.selected_unit, 0, static_cast<int>(s.request.controlnets.size()) - 1);
      s.request.controlnets[static_cast<size_t>(i)].image = p;
      s.message = "Condition image of unit " + std::to_string(i + 1) + ": " + fs::path(p).filename().string();
    } else if (s.tab == Tab::img2img) {
      send_to_img2img(s, p);
      s.message = "Image to image from " + fs::path(p).filename().string();
    } else {
      take_png_settings(s, p);
    }
  }
}

}  // namespace sigma::ui
