// The scripted test mode (see script.h). Steps act through the same functions and widgets
// a person uses: a click is a real ImGui mouse click on the widget's last drawn rectangle
// (ImGui 1.86 still reads io.MousePos / io.MouseDown, set here after the GLFW backend),
// so a script proves the button is on screen, enabled, and wired to its action.
#include "ui/script.h"

#include <imgui.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <stdexcept>

#include "models/io/json_text.h"
#include "ui/actions.h"

namespace fs = std::filesystem;

namespace sigma::ui {

Script Script::load(const std::string& path) {
  // The depth-capped parser, as for every JSON the project reads (issue 25); its message
  // names the file.
  const nlohmann::json j = models::parse_json(read_small_file(path), path);
  if (!j.is_array()) throw std::runtime_error(path + ": a script is a JSON list of steps");
  Script s;
  for (auto& step : j) {
    if (!step.is_object() || step.empty()) throw std::runtime_error(path + ": every step is an object such as {\"click\": \"generate\"}");
    s.steps_.push_back(step);
  }
  return s;
}

void Script::fail(const std::string& why) {
  std::fprintf(stderr, "sigma-studio: script step %zu %s failed: %s\n", pc_ + 1,
               pc_ < steps_.size() ? steps_[pc_].dump().c_str() : "", why.c_str());
  std::fflush(stderr);
  exit_code_ = 2;
  done_ = true;
}

void Script::before_frame(AppState& s) {
  if (done_ || !screenshot_.empty()) return;  // a screenshot is waiting to be rendered
  for (int guard = 0; guard < 64 && pc_ < steps_.size() && !done_; ++guard) {
    const auto& step = steps_[pc_];
    if (phase_ == 0) {
      started_ = Clock::now();
      std::printf("script: [%zu] %s\n", pc_ + 1, step.dump().c_str());
      std::fflush(stdout);
    }
    bool complete = false;
    try {
      complete = run_step(s, step);
    } catch (const std::exception& e) {
      fail(e.what());
      return;
    }
    if (!complete) {
      ++phase_;
      return;
    }
    ++pc_;
    phase_ = 0;
    if (!screenshot_.empty() || step.contains("click") || step.contains("tab")) return;  // let a frame show it
  }
  if (pc_ >= steps_.size()) done_ = true;
}

bool Script::continuous() const {
  if (done_ || !screenshot_.empty() || pc_ >= steps_.size()) return true;
  return !(steps_[pc_].contains("wait") || steps_[pc_].contains("sleep"));
}

void Script::after_render(AppState& s) {
  if (screenshot_.empty() || --screenshot_in_ > 0) return;
  const auto err = save_screenshot(screenshot_, s.fb_w, s.fb_h);
  if (!err.empty()) fail(err);
  else std::printf("script: screenshot %s (%d x %d)\n", screenshot_.c_str(), s.fb_w, s.fb_h);
  std::fflush(stdout);
  screenshot_.clear();
}

bool Script::run_step(AppState& s, const nlohmann::json& step) {
  // The step's verb: its one key that names a step (others, like "timeout", are options).
  static const char* verbs[] = {"set", "settings", "ui", "click", "tab", "drop", "wait", "frames",
                                "sleep", "screenshot", "dump", "expect", "quit"};
  std::string key;
  for (const char* v : verbs)
    if (step.contains(v)) key = v;
  if (key.empty()) throw std::runtime_error("no known step in " + step.dump());
  const auto& arg = step.at(key);
  if (key == "set") {
    app::merge_json(s.request, arg);
    if (arg.contains("width") || arg.contains("height")) s.size_from_model = false;
  } else if (key == "settings") {
    for (const auto& [k, v] : arg.items()) {
      if (k == "output_dir") set_output_dir(s, v.get<std::string>());
      else if (k == "models_root") s.settings.models_root = v.get<std::string>(), scan_models(s);
      else if (k == "preview_every") set_preview_every(s, v.get<int>());
      else if (k == "device") s.settings.device = v.get<std::string>();
      else if (k == "dtype") s.settings.dtype = v.get<std::string>();
      else if (k == "lowvram") s.settings.lowvram = v.get<bool>();
      else throw std::runtime_error("unknown setting '" + k + "'");
    }
  } else if (key == "ui") {
    for (const auto& [k, v] : arg.items()) {
      if (k == "random_seed") s.random_seed = v.get<bool>();
      else if (k == "aspect_lock") s.aspect_lock = v.get<bool>();
      else if (k == "selected_unit") s.selected_unit = v.get<int>();
      else if (k == "lora_pick") s.lora_pick = v.get<std::string>();
      else if (k == "lora_weight") s.lora_weight = v.get<float>();
      else throw std::runtime_error("unknown ui field '" + k + "'");
    }
  } else if (key == "click") {
    return click(s, arg.get<std::string>());
  } else if (key == "tab") {
    return click(s, "tab:" + arg.get<std::string>());
  } else if (key == "drop") {
    handle_drop(s, arg.get<std::vector<std::string>>());
  } else if (key == "wait") {
    return wait(s, step);
  } else if (key == "frames") {
    return phase_ >= arg.get<int>();
  } else if (key == "sleep") {
    return std::chrono::duration<double>(Clock::now() - started_).count() >= arg.get<double>();
  } else if (key == "screenshot") {
    screenshot_ = arg.get<std::string>();
    screenshot_in_ = 2;  // textures uploaded and layout settled
  } else if (key == "dump") {
    const auto path = arg.get<std::string>();
    std::ofstream(path) << dump(s).dump(2) << "\n";
    if (!fs::exists(path)) throw std::runtime_error("cannot write " + path);
  } else if (key == "expect") {
    expect(s, arg);
  } else if (key == "quit") {
    done_ = true;
  }
  return true;
}

bool Script::click(AppState& s, const std::string& widget) {
  if (phase_ == 0) click_phase_ = 0;
  const auto it = s.widgets.find(widget);
  if (it == s.widgets.end()) {
    if (phase_ < 30) return false;  // it may appear once a tab or a result shows
    std::string known;
    for (const auto& [name, r] : s.widgets) known += " " + name;
    throw std::runtime_error("no widget '" + widget + "' on screen; drawn:" + known);
  }
  ImGuiIO& io = ImGui::GetIO();
  io.MousePos = ImVec2((it->second.x0 + it->second.x1) / 2, (it->second.y0 + it->second.y1) / 2);
  io.MouseDown[0] = click_phase_ == 1;  // frame 0: hover, 1: press, 2: release (ImGui buttons fire on release)
  return click_phase_++ == 2;
}

bool Script::wait(AppState& s, const nlohmann::json& step) {
  const std::string what = step.at("wait").get<std::string>();
  const int value = step.value("value", 1);
  const double timeout = step.value("timeout", 300.0);
  const auto& sn = s.snap;
  bool ok = false;
  if (what == "idle") {
    ok = !sn.busy && !ui_pending(s);
    for (const auto& [k, img] : sn.images) ok = ok && !img.busy;
  } else if (what == "step") {
    ok = sn.state == app::RunnerState::generating && sn.step >= value;
  } else if (what == "preview") {
    ok = sn.state == app::RunnerState::generating && sn.step >= value && s.preview_tex.valid();
  } else if (what == "results") {
    ok = sn.results.size() >= static_cast<size_t>(value);
  } else if (what == "images") {
    ok = !sn.images.empty();
    for (const auto& [k, img] : sn.images) ok = ok && !img.busy && img.version > 0;
  } else {
    throw std::runtime_error("unknown wait '" + what + "' (idle, step, preview, results, images)");
  }
  if (ok) return true;
  const double waited = std::chrono::duration<double>(Clock::now() - started_).count();
  if (waited > timeout)
    throw std::runtime_error("timed out after " + std::to_string(static_cast<int>(waited)) + " s; runner: " +
                             app::to_string(sn.state) + ", step " + std::to_string(sn.step) + "/" + std::to_string(sn.total) +
                             ", last error: " + sn.last_error);
  return false;
}

void Script::expect(AppState& s, const nlohmann::json& want) {
  const auto& sn = s.snap;
  for (const auto& [k, v] : want.items()) {
    std::string got;
    bool ok = false;
    if (k == "results") {
      ok = sn.results.size() == v.get<size_t>();
      got = std::to_string(sn.results.size());
    } else if (k == "state") {
      got = app::to_string(sn.state);
      ok = got == v.get<std::string>();
    } else if (k == "error_contains") {
      got = sn.last_error;
      ok = got.find(v.get<std::string>()) != std::string::npos;
    } else if (k == "ui_error_contains") {
      got = s.error;
      ok = got.find(v.get<std::string>()) != std::string::npos;
    } else if (k == "no_error") {
      got = sn.last_error;
      ok = got.empty() == v.get<bool>();
    } else if (k == "files_in_output") {
      size_t n = 0;
      std::error_code ec;
      for (const auto& e : fs::directory_iterator(s.settings.output_dir, ec)) n += e.is_regular_file();
      got = std::to_string(n);
      ok = n == v.get<size_t>();
    } else if (k == "tab") {
      got = tab_name(s.tab);
      ok = got == v.get<std::string>();
    } else {
      throw std::runtime_error("unknown expectation '" + k + "'");
    }
    if (!ok) throw std::runtime_error("expected " + k + " = " + v.dump() + ", got '" + got + "'");
  }
}

namespace {
// VmRSS of this process in kB (the GUI soak test watches it for leaks), -1 where unknown.
long resident_kb() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}
}  // namespace

nlohmann::json Script::dump(const AppState& s) const {
  auto rect = [](const Rect& r) { return nlohmann::json::array({r.x0, r.y0, r.x1, r.y1}); };
  nlohmann::json regions = nlohmann::json::object(), widgets = nlohmann::json::object(), results = nlohmann::json::array(),
                 images = nlohmann::json::object();
  for (const auto& [name, r] : s.regions) regions[name] = rect(r);
  for (const auto& [name, r] : s.widgets) widgets[name] = rect(r);
  const auto& sn = s.snap;
  for (const auto& r : sn.results) results.push_back({{"id", r->id}, {"path", r->path}, {"seed", r->seed}, {"job", r->job}});
  for (const auto& [key, img] : sn.images)
    images[key] = {{"error", img.error},
                   {"busy", img.busy},
                   {"version", img.version},
                   {"processed", img.processed ? nlohmann::json::array({img.processed->width, img.processed->height}) : nullptr}};
  return {{"frame", s.frame},
          {"rss_kb", resident_kb()},
          {"window", {{"width", s.window_w}, {"height", s.window_h}}},
          {"framebuffer", {{"width", s.fb_w}, {"height", s.fb_h}}},
          {"scale", s.scale},
          {"regions", regions},
          {"widgets", widgets},
          {"tab", tab_name(s.tab)},
          {"settings_path", s.settings_path},
          {"settings_error", s.settings_error},
          {"message", s.message},
          {"error", s.error},
          {"checkpoints", s.checkpoints},
          {"text_encoders", s.text_encoders},
          {"loaded_model", s.loads.loaded ? nlohmann::json(s.loads.loaded->model) : nlohmann::json(nullptr)},
          {"request", app::to_json(s.request)},
          {"runner",
           {{"state", app::to_string(sn.state)},
            {"busy", sn.busy},
            {"activity", sn.activity},
            {"last_error", sn.last_error},
            {"jobs_done", sn.jobs_done},
            {"jobs_cancelled", sn.jobs_cancelled},
            {"jobs_failed", sn.jobs_failed},
            {"step", sn.step},
            {"total", sn.total},
            {"model", sn.model ? nlohmann::json(sn.model->name) : nlohmann::json(nullptr)},
            {"results", results},
            {"images", images}}}};
}

}  // namespace sigma::ui
