// AppState plumbing: settings as JSON (missing file -> defaults, corrupt file -> defaults
// and a visible message, never a crash), the per-frame snapshot and texture refresh, and
// the models-root scan. Everything here runs on the UI thread and is cheap, except the
// scan, which runs only when the root changes or the user asks.
#include "ui/app_state.h"

#include <imgui.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "app/image_io.h"
#include "models/io/json_text.h"

namespace fs = std::filesystem;

namespace sigma::ui {

const char* tab_name(Tab t) {
  switch (t) {
    case Tab::sampling: return "sampling";
    case Tab::img2img: return "img2img";
    case Tab::controlnet: return "controlnet";
    case Tab::model: return "model";
    case Tab::settings: return "settings";
  }
  return "?";
}

nlohmann::json settings_to_json(const Settings& s) {
  return {{"models_root", s.models_root},   {"output_dir", s.output_dir},       {"device", s.device},
          {"dtype", s.dtype},               {"window_width", s.window_width},   {"window_height", s.window_height},
          {"ui_scale", s.ui_scale},         {"preview_every", s.preview_every}, {"left_width", s.left_width},
          {"right_width", s.right_width},   {"lowvram", s.lowvram},             {"last_request", app::to_json(s.last_request)}};
}

Settings settings_from_json(const nlohmann::json& j) {
  if (!j.is_object()) throw std::invalid_argument("expected a JSON object");
  Settings s;
  for (const auto& [key, value] : j.items()) {
    auto get = [&](auto& field) {
      try {
        value.get_to(field);
      } catch (const nlohmann::json::exception&) {
        throw std::invalid_argument("'" + key + "' has the wrong type (" + value.type_name() + ")");
      }
    };
    if (key == "models_root") get(s.models_root);
    else if (key == "output_dir") get(s.output_dir);
    else if (key == "device") get(s.device);
    else if (key == "dtype") get(s.dtype);
    else if (key == "lowvram") get(s.lowvram);
    else if (key == "window_width") get(s.window_width);
    else if (key == "window_height") get(s.window_height);
    else if (key == "ui_scale") get(s.ui_scale);
    else if (key == "preview_every") get(s.preview_every);
    else if (key == "left_width") get(s.left_width);
    else if (key == "right_width") get(s.right_width);
    else if (key == "last_request") s.last_request = app::request_from_json(value);
    // unknown keys: settings of a newer version; ignored so downgrading keeps working
  }
  s.window_width = std::clamp(s.window_width, 640, 16384);
  s.window_height = std::clamp(s.window_height, 480, 16384);
  s.preview_every = std::clamp(s.preview_every, 0, 1000);
  return s;
}

std::string default_settings_path() {
  fs::path base;
  if (const char* x = std::getenv("XDG_CONFIG_HOME"); x && *x) base = x;
  else if (const char* h = std::getenv("HOME"); h && *h) base = fs::path(h) / ".config";
  else base = ".";
  return (base / "sigma-studio" / "settings.json").string();
}

std::string default_output_dir() {
  if (const char* h = std::getenv("HOME"); h && *h) return (fs::path(h) / "Pictures" / "sigma-studio").string();
  return "outputs";
}

std::string read_small_file(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot be read");
  std::string text;
  char buf[1 << 16];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    text.append(buf, static_cast<size_t>(in.gcount()));
    if (text.size() > max_bytes) throw std::runtime_error(path + ": larger than " + std::to_string(max_bytes) + " bytes");
  }
  if (in.bad()) throw std::runtime_error(path + ": cannot be read");
  return text;
}

LoadedSettings load_settings(const std::string& path) {
  LoadedSettings out;
  out.settings.output_dir = default_output_dir();
  std::error_code ec;
  if (!fs::exists(path, ec)) return out;
  try {
    // Through the depth-capped parser: a hand-edited or planted file nested a million levels
    // deep must give the defaults and a message, not a stack overflow at start (issue 25).
    const auto j = models::parse_json(read_small_file(path), fs::path(path).filename().string());
    out.settings = settings_from_json(j);
    if (out.settings.output_dir.empty()) out.settings.output_dir = default_output_dir();
  } catch (const std::exception& e) {
    out.settings = Settings{};
    out.settings.output_dir = default_output_dir();
    const std::string aside = path + ".corrupt";
    fs::rename(path, aside, ec);
    out.error = "Settings file " + path + " is corrupt (" + models::utf8_prefix(e.what(), 300) + "); using defaults." +
                (ec ? "" : " The old file was kept as " + aside + ".");
  }
  return out;
}

std::string save_settings(const std::string& path, const Settings& s) {
  try {
    fs::create_directories(fs::path(path).parent_path());
    app::write_file_atomic(path, settings_to_json(s).dump(2) + "\n", /*overwrite=*/true);
    return "";
  } catch (const std::exception& e) {
    return std::string("could not save settings: ") + e.what();
  }
}

void init_state(AppState& s, const std::string& settings_path, std::function<void()> wake) {
  s.settings_path = settings_path;
  auto loaded = load_settings(settings_path);
  s.settings = loaded.settings;
  s.settings_error = loaded.error;
  if (!loaded.error.empty()) s.settings_dirty = true;  // write the defaults back
  s.request = s.settings.last_request;
  s.size_from_model = s.request.width == 0 || s.request.height == 0;
  if (s.request.width == 0) s.request.width = 512;
  if (s.request.height == 0) s.request.height = 512;
  s.random_seed = s.request.seed < 0;
  if (s.request.seed < 0) s.request.seed = 0;
  app::RunnerOptions options;
  options.output_dir = s.settings.output_dir;
  options.preview_every = s.settings.preview_every;
  options.notify = std::move(wake);
  // Only the ends of jobs, copied small: the UI follows its model loads by them.
  options.on_event = [inbox = s.inbox](const app::JobEvent& e) {
    using T = app::JobEvent::Type;
    if (e.type != T::done && e.type != T::cancelled && e.type != T::failed) return;
    std::lock_guard<std::mutex> l(inbox->m);
    inbox->ended.push_back({e.job, e.type, e.error});
  };
  s.runner = std::make_unique<app::JobRunner>(options);
  s.samplers = app::sampler_catalog();
  s.schedules = app::schedule_catalog();
  s.preprocessors = app::preprocessor_catalog();
  scan_models(s);
}

void persist(AppState& s) {
  s.settings.last_request = s.request;
  if (s.random_seed) s.settings.last_request.seed = -1;
  const auto err = save_settings(s.settings_path, s.settings);
  if (!err.empty()) s.message = err;
  s.settings_dirty = false;
}

namespace {

void refresh(Texture& tex, const std::shared_ptr<const Image>& img, uint64_t version) {
  if (!img) {
    tex.reset();
    return;
  }
  if (tex.valid() && tex.version == version) return;
  tex.upload(*img);
  tex.version = version;
}

}  // namespace

void begin_frame(AppState& s) {
  ++s.frame;
  s.snap = s.runner->snapshot();
  if (s.snap.results.size() > s.seen_results) {  // a new image arrived: show it
    s.seen_results = s.snap.results.size();
    s.selected_result = 0;
  }
  if (s.snap.model && s.snap.model != s.defaults_of) {
    // A model of another family: the fields still at the last model's defaults (or unset) take
    // the new one's (SD: 20 steps, CFG 7, DPM++ 2M Karras; Flux: 28 or 4, CFG 1, Euler simple).
    auto& r = s.request;
    const auto* old = s.defaults_of.get();
    const auto& m = *s.snap.model;
    if (r.steps == 0 || (old && r.steps == old->default_steps)) r.steps = m.default_steps;
    if (r.cfg < 0 || (old && r.cfg == old->default_cfg)) r.cfg = m.default_cfg;
    if (r.sampler.empty() || (old && r.sampler == old->default_sampler)) r.sampler = m.default_sampler;
    if (r.scheduler.empty() || (old && r.scheduler == old->default_scheduler)) r.scheduler = m.default_scheduler;
    s.defaults_of = s.snap.model;
  }
  if (s.size_from_model && s.snap.model && s.snap.model->native_size > 0) {
    s.request.width = s.request.height = s.snap.model->native_size;
    s.size_from_model = false;
  }
  refresh(s.preview_tex, s.snap.preview, s.snap.preview_version);
  for (const auto& r : s.snap.results) {
    auto& tex = s.result_tex[r->id];
    if (!tex.valid()) tex.upload(r->image);
  }
  for (const auto& [key, res] : s.snap.images) {
    refresh(s.image_tex[key], res.source, res.version);
    refresh(s.image_tex[key + "/hint"], res.processed, res.version);
  }
  if (s.mask.dirty && !s.mask.mask.empty()) {  // red, half transparent where painted
    Image overlay(s.mask.mask.width, s.mask.mask.height, 4, 0);
    for (size_t i = 0; i < s.mask.mask.pixels.size(); ++i) {
      overlay.pixels[4 * i] = 255;
      overlay.pixels[4 * i + 1] = 60;
      overlay.pixels[4 * i + 2] = 60;
      overlay.pixels[4 * i + 3] = static_cast<uint8_t>(s.mask.mask.pixels[i] / 2);
    }
    s.mask_tex.upload(overlay);
    s.mask.dirty = false;
  }
}

void release_textures(AppState& s) {
  s.preview_tex.reset();
  s.result_tex.clear();
  s.image_tex.clear();
  s.mask_tex.reset();
}

bool looks_like_safetensors(const std::string& path) {
  // A little-endian u64 header length, then the JSON header itself: a text file, an image or
  // a pickle renamed .safetensors fails here without being parsed.
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return false;  // follows links: a link to a valid file is fine
  const auto size = fs::file_size(path, ec);
  std::ifstream in(path, std::ios::binary);
  unsigned char head[9];
  if (ec || !in.read(reinterpret_cast<char*>(head), sizeof head)) return false;
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = n << 8 | head[i];
  return n >= 2 && n <= size - 8 && n <= 100'000'000 && head[8] == '{';
}

bool is_diffusers_folder(const std::string& path) {
  std::error_code ec;
  const fs::path p(path);
  return fs::is_directory(p, ec) && (fs::is_regular_file(p / "model_index.json", ec) || fs::is_regular_file(p / "config.json", ec));
}

std::string model_path_problem(const std::string& path) {
  if (path.empty()) return "";
  std::error_code ec;
  const auto st = fs::status(path, ec);
  if (!fs::exists(st)) return path + " does not exist";
  if (fs::is_directory(st)) return "";  // a diffusers folder; the loader names what it lacks
  if (!fs::is_regular_file(st)) return path + " is not a regular file";
  std::string ext = fs::path(path).extension().string();
  for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (ext == ".safetensors" && !looks_like_safetensors(path))
    return path + " is not a safetensors file (it does not start with a safetensors header)";
  return "";  // other files: the loader says what they are and how to convert them
}

ModelFields model_fields(const AppState& s) {
  const auto& r = s.request;
  return {r.model,          r.tokenizer,      r.vae,    r.prediction, s.settings.device, s.settings.dtype,
          r.clip_l,         r.t5xxl,          r.t5_tokenizer, s.settings.lowvram};
}

void scan_models(AppState& s) {
  s.checkpoints.clear();
  s.controlnets.clear();
  s.vaes.clear();
  s.text_encoders.clear();
  s.loras.clear();
  if (s.settings.models_root.empty()) return;
  // A model is a safetensors file or a diffusers folder; at most 3 levels deep and 10,000
  // entries per folder, so a huge or linked-in tree cannot stall the UI thread (folder links
  // are not followed, so a link cycle is never walked).
  auto scan = [&](const fs::path& dir, std::vector<std::string>& out) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) return;
    int entries = 0;
    for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator() && ++entries <= 10000;
         it.increment(ec)) {
      if (it.depth() > 2) {
        it.disable_recursion_pending();
        continue;
      }
      const auto p = it->path().string();
      if (is_diffusers_folder(p)) {
        out.push_back(p);
        it.disable_recursion_pending();
      } else if (it->path().extension() == ".safetensors" && looks_like_safetensors(p)) {
        out.push_back(p);
      }
    }
    std::sort(out.begin(), out.end());
  };
  const fs::path root = s.settings.models_root;
  scan(root / "checkpoints", s.checkpoints);
  // A Flux transformer alone (ComfyUI's folders): its text encoders and VAE are found by name
  // in the root's text_encoders/ and vae/ when it loads.
  scan(root / "diffusion_models", s.checkpoints);
  scan(root / "unet", s.checkpoints);
  scan(root / "controlnet", s.controlnets);
  scan(root / "vae", s.vaes);
  scan(root / "text_encoders", s.text_encoders);
  scan(root / "clip", s.text_encoders);
  scan(root / "loras", s.loras);
  if (std::find(s.loras.begin(), s.loras.end(), s.lora_pick) == s.loras.end()) s.lora_pick.clear();
}

void mark(AppState& s, const std::string& name) {
  const ImVec2 a = ImGui::GetItemRectMin(), b = ImGui::GetItemRectMax();
  s.widgets[name] = {a.x, a.y, b.x, b.y};
}

void mark_region(AppState& s, const std::string& name) {
  const ImVec2 a = ImGui::GetWindowPos(), size = ImGui::GetWindowSize();
  s.regions[name] = {a.x, a.y, a.x + size.x, a.y + size.y};
}

std::shared_ptr<const app::JobResult> selected(const AppState& s) {
  if (s.snap.results.empty()) return nullptr;
  if (s.selected_result != 0)
    for (const auto& r : s.snap.results)
      if (r->id == s.selected_result) return r;
  return s.snap.results.back();
}

}  // namespace sigma::ui
