// The actions behind the buttons (see actions.h). They edit AppState and hand work to the
// job runner; the only file they write themselves is a painted inpainting mask, saved
// beside the outputs so the request (and the PNG metadata that records it) stays valid.
#include "ui/actions.h"

#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <random>
#include <thread>

#include "app/image_io.h"
#include "app/parameters.h"

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

}  // namespace

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
  s.runner->submit(r);
  s.dismissed_error.clear();
  persist(s);  // the last request survives a crash
  s.message = s.snap.busy ? "Queued behind the running job" : "";
}

void cancel(AppState& s) {
  s.runner->cancel();
  s.message = "Cancel requested: stops after the current step";
}

void load_model(AppState& s) {
  app::Request r = s.request;
  r.device = s.settings.device;
  r.dtype = s.settings.dtype;
  r.lowvram = s.settings.lowvram;
  s.runner->load_model(r);
  s.dismissed_error.clear();
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

void handle_drop(AppState& s, const std::vector<std::string>& paths) {
  for (const auto& p : paths) {
    if (s.tab == Tab::controlnet && lower_ext(p) == ".safetensors" && !s.request.controlnets.empty()) {
      const int i = std::clamp(s.selected_unit, 0, static_cast<int>(s.request.controlnets.size()) - 1);
      s.request.controlnets[static_cast<size_t>(i)].model = p;
      s.message = "ControlNet unit " + std::to_string(i + 1) + " model: " + fs::path(p).filename().string();
    } else if (is_model(p)) {
      s.request.model = p;
      load_model(s);
      s.message = "Loading the dropped model " + fs::path(p).filename().string();
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
      // Elsewhere, an image with generation metadata brings its settings; any other image
      // becomes the img2img input.
      try {
        std::vector<std::string> not_taken;
        app::Request r = app::request_from_png(p, &not_taken);
        app::JobResult res;
        res.request = r;
        res.path = p;
        use_settings(s, res);
        if (!not_taken.empty()) {
          // Say what the re-run will not reproduce, as the CLI's --from-png warns.
          std::string list;
          for (const auto& w : not_taken) list += (list.empty() ? "" : "; ") + w;
          s.message = "Settings from " + fs::path(p).filename().string() + "; not taken: " + list;
        }
      } catch (const std::exception&) {
        send_to_img2img(s, p);
        s.message = "No generation settings in " + fs::path(p).filename().string() + "; using it for image to image";
      }
    }
  }
}

}  // namespace sigma::ui
