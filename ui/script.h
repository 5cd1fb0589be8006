// `sigma-studio --script FILE`: drives the real UI without a human, for the GUI tests and
// the README screenshots. FILE is a JSON list of steps run between frames, in order:
//
//   {"set": {<request fields, as in job files>}}      edit the request like the widgets do
//   {"settings": {"output_dir": D, "models_root": R, "preview_every": N}}
//   {"ui": {"random_seed": false, "aspect_lock": true, "selected_unit": 0, "lora_pick": PATH, "lora_weight": 0.8}}
//   {"click": "generate"}          a real mouse click (moved, pressed, released over 3 frames)
//                                  on a widget drawn last frame: generate, cancel, load_model,
//                                  use_settings, add_unit, tab:<name>, gallery:<i> (0 = newest) ...
//   {"tab": "controlnet"}          = click "tab:controlnet"
//   {"drop": ["a.png", ...]}       what the window's file-drop callback does
//   {"wait": "idle" | "step" | "preview" | "results" | "images", "value": N, "timeout": S}
//   {"frames": N}  {"sleep": S}
//   {"screenshot": "out.png"}      glReadPixels of the back buffer, two frames later
//   {"dump": "state.json"}         window/framebuffer size, panel rectangles, runner state, rss_kb,
//                                  the request, the UI's error, the checkpoint list, the loaded model
//   {"expect": {"results": N, "state": "idle", "error_contains": "x", "files_in_output": N}}
//                                  error_contains: the runner's last error; ui_error_contains:
//                                  the UI's own (a refused or failed model load, damaged metadata)
//   {"quit": true}
//
// A step that fails (unknown widget, a wait that times out, an unmet expectation) ends
// the run with exit status 2 and one line on stderr naming the step.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <string>
#include <vector>

#include "ui/app_state.h"

namespace sigma::ui {

class Script {
 public:
  // Throws std::runtime_error naming the file and the problem.
  static Script load(const std::string& path);

  // After the platform backend's NewFrame, before ImGui::NewFrame: runs the steps that are
  // due and, during a click, overrides the mouse position and button.
  void before_frame(AppState& s);
  // After rendering, before the swap: takes a pending screenshot.
  void after_render(AppState& s);

  bool finished() const { return done_; }
  // False while the current step only waits (for the runner, or for time): the app may
  // then draw on demand as it does for a person, instead of at 60 fps.
  bool continuous() const;
  int exit_code() const { return exit_code_; }

 private:
  using Clock = std::chrono::steady_clock;
  bool run_step(AppState& s, const nlohmann::json& step);  // true: step complete
  bool click(AppState& s, const std::string& widget);
  bool wait(AppState& s, const nlohmann::json& step);
  void expect(AppState& s, const nlohmann::json& want);
  void fail(const std::string& why);
  nlohmann::json dump(const AppState& s) const;

  std::vector<nlohmann::json> steps_;
  size_t pc_ = 0;
  int phase_ = 0;                 // frames spent in the current step
  int click_phase_ = 0;           // hover / press / release of a click
  Clock::time_point started_;     // when the current step began
  std::string screenshot_;        // pending screenshot path
  int screenshot_in_ = 0;         // frames until it is taken
  bool done_ = false;
  int exit_code_ = 0;
};

}  // namespace sigma::ui
