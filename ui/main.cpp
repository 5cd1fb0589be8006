// `sigma-studio`: the window, the ImGui frame loop and the idle policy. The loop sleeps in
// glfwWaitEventsTimeout while nothing happens (vsync does not throttle under Xvfb/llvmpipe,
// and an idle UI must not take one of two cores from generation); it draws at up to 60 fps
// while a job runs, a script runs or the user interacts. The job runner wakes it with
// glfwPostEmptyEvent when its snapshot changes.
#define GLFW_INCLUDE_NONE
#include <GL/gl.h>
#include <GLFW/glfw3.h>
#include <backends/imgui_impl_glfw.h>
#include <backends/imgui_impl_opengl3.h>
#include <imgui.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include <unistd.h>

#include "app/process.h"
#include "ui/actions.h"
#include "ui/app_state.h"
#include "ui/panels.h"
#include "ui/script.h"
#include "ui/style.h"

namespace {

using namespace sigma::ui;

const char* kUsage =
    "usage: sigma-studio [--script FILE] [--settings FILE]\n"
    "  Sigma Studio desktop app: text-to-image, image-to-image, inpainting and ControlNet with a live preview.\n"
    "  --script FILE    run the JSON steps in FILE against the UI, then quit (tests, screenshots; see ui/script.h)\n"
    "  --settings FILE  settings file (default: $XDG_CONFIG_HOME/sigma-studio/settings.json or ~/.config/...)\n";

void on_glfw_error(int code, const char* text) { std::fprintf(stderr, "sigma-studio: GLFW error %d: %s\n", code, text); }

void on_drop(GLFWwindow* window, int count, const char** paths) {
  auto* s = static_cast<AppState*>(glfwGetWindowUserPointer(window));
  for (int i = 0; i < count; ++i) s->dropped.emplace_back(paths[i]);
}

// Set by any user input (the ImGui backend chains to these callbacks): input gets a few
// settle frames; the runner's wake-ups (a step, a result) get exactly one.
bool g_input = false;
void note_input(GLFWwindow*) { g_input = true; }
void install_input_notes(GLFWwindow* w) {
  glfwSetCursorPosCallback(w, [](GLFWwindow* win, double, double) { note_input(win); });
  glfwSetMouseButtonCallback(w, [](GLFWwindow* win, int, int, int) { note_input(win); });
  glfwSetScrollCallback(w, [](GLFWwindow* win, double, double) { note_input(win); });
  glfwSetKeyCallback(w, [](GLFWwindow* win, int, int, int, int) { note_input(win); });
  glfwSetCharCallback(w, [](GLFWwindow* win, unsigned) { note_input(win); });
  glfwSetWindowSizeCallback(w, [](GLFWwindow* win, int, int) { note_input(win); });
  glfwSetWindowFocusCallback(w, [](GLFWwindow* win, int) { note_input(win); });
}

bool anything_busy(const AppState& s) {
  if (s.snap.busy) return true;
  for (const auto& [k, img] : s.snap.images)
    if (img.busy) return true;
  return false;
}

void frame(AppState& s, GLFWwindow* window, Script* script) {
  glfwGetWindowSize(window, &s.window_w, &s.window_h);
  glfwGetFramebufferSize(window, &s.fb_w, &s.fb_h);
  ImGui_ImplOpenGL3_NewFrame();
  ImGui_ImplGlfw_NewFrame();
  follow_jobs(s);  // before the snapshot: a load that just ended has released what waited for it
  begin_frame(s);
  if (!s.dropped.empty()) {
    auto paths = std::move(s.dropped);
    s.dropped.clear();
    handle_drop(s, paths);
  }
  if (script) script->before_frame(s);
  ImGui::NewFrame();
  s.widgets.clear();
  s.regions.clear();
  draw_main(s);
  ImGui::Render();
  glViewport(0, 0, s.fb_w, s.fb_h);
  glClearColor(0.08f, 0.085f, 0.095f, 1.0f);
  glClear(GL_COLOR_BUFFER_BIT);
  ImGui_ImplOpenGL3_RenderDrawData(ImGui::GetDrawData());
  if (script) script->after_render(s);
  glfwSwapBuffers(window);
}

}  // namespace

int main(int argc, char** argv) {
  // Under Xvfb the tiny model took 8 s instead of 0.4 s while the preview was drawn.
  sigma::app::reexec_with_passive_openmp(argv);
  std::string script_path, settings_path = default_settings_path();
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "--script" || a == "--settings") && i + 1 < argc) (a == "--script" ? script_path : settings_path) = argv[++i];
    else if (a == "--help" || a == "-h") return std::printf("%s", kUsage), 0;
    else if (a == "--version") return std::printf("sigma-studio %s\n", SIGMA_VERSION), 0;
    else return std::fprintf(stderr, "sigma-studio: unknown argument '%s'\n%s", a.c_str(), kUsage), 2;
  }
  std::optional<Script> script;
  if (!script_path.empty()) {
    try {
      script = Script::load(script_path);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "sigma-studio: %s\n", e.what());
      return 2;
    }
  }

  glfwSetErrorCallback(on_glfw_error);
  if (!glfwInit()) {
    std::fprintf(stderr, "sigma-studio: cannot open a display. Run it on a desktop session, or headless under "
                         "xvfb-run -a -s \"-screen 0 1400x900x24\" sigma-studio\n");
    return 1;
  }
  glfwWindowHint(GLFW_CONTEXT_VERSION_MAJOR, 3);
  glfwWindowHint(GLFW_CONTEXT_VERSION_MINOR, 3);
  glfwWindowHint(GLFW_OPENGL_PROFILE, GLFW_OPENGL_CORE_PROFILE);
  glfwWindowHint(GLFW_OPENGL_FORWARD_COMPAT, GLFW_TRUE);
  glfwWindowHint(GLFW_SCALE_TO_MONITOR, GLFW_TRUE);  // HiDPI on Windows / Wayland; X11 reports its scale

  {
    AppState s;
    init_state(s, settings_path, [] { glfwPostEmptyEvent(); });
    GLFWwindow* window = glfwCreateWindow(s.settings.window_width, s.settings.window_height, "Sigma Studio", nullptr, nullptr);
    if (!window) {
      std::fprintf(stderr, "sigma-studio: cannot create an OpenGL 3.3 core window (is the GPU driver or Mesa installed?)\n");
      s.runner.reset();
      glfwTerminate();
      return 1;
    }
    glfwMakeContextCurrent(window);
    glfwSwapInterval(1);
    glfwSetWindowUserPointer(window, &s);
    glfwSetDropCallback(window, on_drop);

    float sx = 1, sy = 1;
    glfwGetWindowContentScale(window, &sx, &sy);
    s.scale = s.settings.ui_scale > 0 ? s.settings.ui_scale : std::clamp(std::max(sx, sy), 1.0f, 4.0f);

    IMGUI_CHECKVERSION();
    ImGui::CreateContext();
    ImGuiIO& io = ImGui::GetIO();
    io.IniFilename = nullptr;  // the layout is fixed; our own settings file holds the rest
    io.ConfigFlags |= ImGuiConfigFlags_NavEnableKeyboard;
    load_fonts(s.scale);
    apply_theme(s.scale);
    install_input_notes(window);  // before the backend, which chains to them
    ImGui_ImplGlfw_InitForOpenGL(window, true);
    ImGui_ImplOpenGL3_Init("#version 330 core");
    std::printf("sigma-studio: %s, OpenGL %s, scale %.2f, font %s\n", reinterpret_cast<const char*>(glGetString(GL_RENDERER)),
                reinterpret_cast<const char*>(glGetString(GL_VERSION)), s.scale, g_fonts.dejavu ? "DejaVu Sans" : "ImGui default");
    std::fflush(stdout);

    using Clock = std::chrono::steady_clock;
    // Frames are drawn on demand: after input, when the runner posts its empty event (a
    // step, a preview, a result), on a slow tick while a job runs (elapsed/ETA) or a fast
    // one while a model loads (the busy bar moves), and every frame during a script or a
    // drag. Never faster than 60 fps: software GL (llvmpipe under Xvfb) costs about a core
    // at 60 fps, which would halve generation speed on a 2-core machine.
    constexpr double kFrame = 1.0 / 60;
    int settle = 3;  // frames to draw after an event so hover/active states catch up
    auto last = Clock::now();
    while (!glfwWindowShouldClose(window)) {
      for (double left; (left = kFrame - std::chrono::duration<double>(Clock::now() - last).count()) > 0.001;)
        glfwWaitEventsTimeout(left);  // the 60 fps cap; events meanwhile are queued for the next frame
      if ((script && script->continuous()) || ImGui::IsAnyMouseDown() || settle > 0) {
        glfwPollEvents();
        --settle;
      } else {
        const bool busy = anything_busy(s);
        const double timeout = script                                              ? 0.1  // a waiting script polls
                               : s.snap.state == sigma::app::RunnerState::loading ? 0.05
                               : busy                                              ? 1.0
                               : io.WantTextInput                                  ? 0.5  // the text cursor blinks
                                                                                   : 30.0;
        const auto before = Clock::now();
        g_input = false;
        glfwWaitEventsTimeout(timeout);
        const bool timed_out = std::chrono::duration<double>(Clock::now() - before).count() >= timeout - 0.002;
        if (timed_out && !busy && !io.WantTextInput && !script) continue;  // nothing happened: draw nothing
        if (g_input) settle = 2;
      }
      last = Clock::now();
      frame(s, window, script ? &*script : nullptr);
      if (script && script->finished()) glfwSetWindowShouldClose(window, GLFW_TRUE);
      if (s.settings_dirty && !ImGui::IsAnyItemActive() && !ImGui::IsAnyMouseDown()) persist(s);
    }

    glfwGetWindowSize(window, &s.settings.window_width, &s.settings.window_height);
    persist(s);
    s.runner.reset();         // cancels a running job and joins the worker threads
    release_textures(s);
    ImGui_ImplOpenGL3_Shutdown();
    ImGui_ImplGlfw_Shutdown();
    ImGui::DestroyContext();
    glfwDestroyWindow(window);
    glfwTerminate();
    if (script) return script->exit_code();
  }
  return 0;
}
