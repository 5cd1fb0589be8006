// The one AppState of Sigma Studio (DESIGN.md habit 7): the request being edited, the
// persisted settings, the job runner, the runner snapshot copied at the start of every
// frame, and the little UI state the panels share. Panels are functions of it; they
// never talk to each other. Settings live as JSON in the user's config folder.
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "app/job_runner.h"
#include "app/request.h"
#include "ui/texture.h"

namespace sigma::ui {

struct Settings {
  std::string models_root;     // ComfyUI layout: checkpoints/ controlnet/ vae/ loras/ embeddings/
  std::string output_dir;      // where results are saved (numbered PNGs with metadata)
  std::string device = "auto", dtype = "auto";
  bool lowvram = false;        // CUDA: weights in host memory, streamed in (generate --lowvram)
  int window_width = 1400, window_height = 900;
  float ui_scale = 0;          // 0: the monitor's content scale
  int preview_every = 1;       // live preview every N steps
  float left_width = 430, right_width = 340;  // column widths at scale 1
  app::Request last_request;   // restored at start, saved with every Generate
};

nlohmann::json settings_to_json(const Settings& s);
Settings settings_from_json(const nlohmann::json& j);  // throws naming the bad key
std::string default_settings_path();                   // $XDG_CONFIG_HOME or ~/.config, /sigma-studio/settings.json
std::string default_output_dir();                      // ~/Pictures/sigma-studio (or ./outputs without $HOME)

// A missing file gives defaults silently; a corrupt one gives defaults plus `error`, and
// the bad file is kept beside as settings.json.corrupt so nothing is lost.
struct LoadedSettings {
  Settings settings;
  std::string error;
};
LoadedSettings load_settings(const std::string& path);
// The bytes of a small text file (settings, a script); throws naming the file when it cannot
// be read or holds more than `max_bytes` (read no further: the path may name /dev/zero).
std::string read_small_file(const std::string& path, size_t max_bytes = 16u << 20);
std::string save_settings(const std::string& path, const Settings& s);  // "" or the error

enum class Tab { sampling, img2img, controlnet, model, settings };
const char* tab_name(Tab t);

struct Rect {
  float x0 = 0, y0 = 0, x1 = 0, y1 = 0;
};

// The image-to-image inputs the canvas edits: the mask is painted at the init image's size.
struct MaskState {
  bool enabled = false;          // inpaint: only the painted area is regenerated
  float brush = 24;              // radius in image pixels
  Image mask;                    // 1 channel, white = repaint; empty until an init image loads
  bool dirty = true;             // the overlay texture needs an upload
  bool painted = false;          // any pixel set
  std::string saved_path;        // the file the last request used (rewritten when painted again)
  float last_x = -1, last_y = -1;  // previous brush position of the current stroke (image pixels)
};

// What the runner's loaded model depends on: the request's model fields and the runtime
// settings (a change of either loads the model again).
struct ModelFields {
  std::string model, tokenizer, vae, prediction, device, dtype;
  std::string clip_l, t5xxl, t5_tokenizer;  // a Flux transformer's separate parts (empty: found by name)
  bool lowvram = false;
  bool operator==(const ModelFields&) const = default;
};

// The runner's model as the UI follows it (ui/actions.cpp). A change of model is loaded by a
// job of its own, and the generations that need it wait here until it is in: so a file that
// fails to load costs a message, not the model that worked, which is loaded again and stays
// selected, and the bad path is never saved. Only the UI submits to its runner, so what it
// asked for is what the runner holds.
struct ModelLoads {
  std::optional<ModelFields> loaded;   // the model in the runner; none before the first load
  uint64_t job = 0;                    // the load job in flight; 0: none
  ModelFields target;                  // what it loads
  bool restoring = false;              // it brings `loaded` back after a failed load
  std::vector<app::Request> waiting;   // generations submitted once it is in
};

// The end of each job (done, cancelled, failed), pushed by the runner's worker thread
// (RunnerOptions::on_event) and taken by the UI thread once per frame.
struct JobInbox {
  struct Ended {
    uint64_t job = 0;
    app::JobEvent::Type type = app::JobEvent::Type::done;
    std::string error;
  };
  std::mutex m;
  std::vector<Ended> ended;
};

struct AppState {
  // persistence
  std::string settings_path;
  Settings settings;
  std::string settings_error;    // shown until dismissed
  bool settings_dirty = false;

  // the generation being edited (the one description; panels edit its fields)
  app::Request request;
  bool random_seed = true;
  bool size_from_model = false;  // no size chosen yet: take the model's native size once it loads
  std::shared_ptr<const app::ModelInfo> defaults_of;  // the model whose sampling defaults the request shows
  bool aspect_lock = false;
  double aspect = 1.0;           // width / height while locked
  int selected_unit = 0;         // ControlNet unit that receives dropped images
  MaskState mask;

  // the engine, through the runner; `snap` is copied once per frame
  std::unique_ptr<app::JobRunner> runner;
  std::shared_ptr<JobInbox> inbox = std::make_shared<JobInbox>();  // shared with the worker's callback
  ModelLoads loads;
  app::RunnerSnapshot snap;
  std::vector<app::CatalogEntry> samplers, schedules;
  std::vector<app::PreprocessorEntry> preprocessors;
  std::vector<std::string> checkpoints, controlnets, vaes, loras;  // scanned under models_root
  std::vector<std::string> text_encoders;  // <models root>/text_encoders and clip/ (Flux's CLIP-L and T5-XXL files)
  std::string lora_pick;           // the LoRA chosen in the prompt panel's LoRA row (a path)
  float lora_weight = 0.8f;        // the strength its Insert button writes

  // view state
  Tab tab = Tab::sampling;
  std::optional<Tab> request_tab;  // select this tab on the next frame (drops, scripts)
  uint64_t selected_result = 0;    // result id shown large; 0 = the newest
  size_t seen_results = 0;
  std::string editing;             // the prompt box being edited ("##prompt"), else shown wrapped
  bool focus_editor = false;       // give it the keyboard on the next frame
  std::string message;             // last notice (drops, saves), shown in the status bar
  std::string error;               // the UI's own error (a model that did not load, unreadable
                                   // metadata), shown as a banner until dismissed
  std::string dismissed_error;     // the error text the user closed
  float scale = 1;                 // content scale (fonts and sizes)
  int frame = 0;
  int window_w = 0, window_h = 0;  // window size (ImGui coordinates) and framebuffer size (pixels)
  int fb_w = 0, fb_h = 0;
  std::vector<std::string> dropped;  // paths from the drop callback, handled at the next frame

  // textures, keyed by what they show; uploaded when the version changes
  Texture preview_tex;
  std::map<uint64_t, Texture> result_tex;
  std::map<std::string, Texture> image_tex;  // "<key>" source, "<key>/hint" processed
  Texture mask_tex;

  // prompt token counts, recomputed when the text changes
  std::string counted_prompt, counted_negative;
  std::vector<int> prompt_chunks, negative_chunks;
  const void* counted_tokenizer = nullptr;

  // where each named widget and panel was drawn this frame (scripted clicks, tests)
  std::map<std::string, Rect> widgets;
  std::map<std::string, Rect> regions;
};

// Builds the state: settings loaded (or defaults + error), runner started, catalogs read.
void init_state(AppState& s, const std::string& settings_path, std::function<void()> wake);
// Saves settings now (window size, the request); errors go to s.message.
void persist(AppState& s);
// Called first thing every frame: snapshot, new results selected, textures refreshed.
void begin_frame(AppState& s);
// Frees the GL textures (call while the GL context is still current).
void release_textures(AppState& s);
// Rescans models_root for checkpoints / controlnets / VAEs / LoRAs.
void scan_models(AppState& s);
// What the combos list as models, decided cheaply (no parse): a regular file (or a link to
// one) that starts like a safetensors file, or a diffusers folder.
bool looks_like_safetensors(const std::string& path);
bool is_diffusers_folder(const std::string& path);
// Why `path` cannot be loaded as a checkpoint, found without loading it; "" when it may be
// one (the bundled model, "", always may). The runner's load finds everything else.
std::string model_path_problem(const std::string& path);
// The model fields a load of the request now would use (the request's, the settings' runtime).
ModelFields model_fields(const AppState& s);

// A background task that only reads an image file.
inline app::ImageTask file_task(const std::string& path) {
  app::ImageTask t;
  t.path = path;
  return t;
}

// Records where the last ImGui item was drawn under `name` (for --script clicks).
void mark(AppState& s, const std::string& name);
void mark_region(AppState& s, const std::string& name);

// The result shown large and in the metadata panel (null when there is none).
std::shared_ptr<const app::JobResult> selected(const AppState& s);

}  // namespace sigma::ui
