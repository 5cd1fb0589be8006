// The main window's layout, fixed so that nothing an artist needs is ever hidden behind a
// floating window: the model bar on top; prompts and settings tabs on the left; the
// canvas (live preview / selected image + progress) in the middle; the gallery and its
// metadata on the right; a status line at the bottom. The side columns are resizable
// from their inner edges and remember their width. ImGui 1.86 (Debian) has no docking.
#include <imgui.h>

#include <algorithm>
#include <cmath>

#include "ui/actions.h"
#include "ui/panels.h"
#include "ui/style.h"

namespace sigma::ui {
namespace {

constexpr ImGuiWindowFlags kPane = ImGuiWindowFlags_NoTitleBar | ImGuiWindowFlags_NoMove | ImGuiWindowFlags_NoCollapse |
                                   ImGuiWindowFlags_NoSavedSettings | ImGuiWindowFlags_NoBringToFrontOnFocus;

void shortcuts(AppState& s) {
  const ImGuiIO& io = ImGui::GetIO();
  if (io.KeyCtrl && ImGui::IsKeyPressed(ImGui::GetKeyIndex(ImGuiKey_Enter), false)) generate(s);
  if (s.snap.busy && ImGui::IsKeyPressed(ImGui::GetKeyIndex(ImGuiKey_Escape), false) && !ImGui::IsAnyItemActive()) cancel(s);
}

void tabs(AppState& s) {
  struct Entry {
    Tab tab;
    const char* label;
    void (*draw)(AppState&);
  };
  static const Entry entries[] = {{Tab::sampling, "Sampling", draw_sampling_tab},
                                  {Tab::img2img, "img2img", draw_img2img_tab},
                                  {Tab::controlnet, "ControlNet", draw_controlnet_tab},
                                  {Tab::model, "Model", draw_model_tab},
                                  {Tab::settings, "Settings", draw_settings_tab}};
  if (!ImGui::BeginTabBar("tabs", ImGuiTabBarFlags_FittingPolicyScroll)) return;
  for (const auto& e : entries) {
    ImGuiTabItemFlags flags = 0;
    if (s.request_tab && *s.request_tab == e.tab) flags |= ImGuiTabItemFlags_SetSelected;
    const bool open = ImGui::BeginTabItem(e.label, nullptr, flags);
    mark(s, std::string("tab:") + tab_name(e.tab));
    if (!open) continue;
    s.tab = e.tab;
    ImGui::BeginChild("tab-content", ImVec2(0, 0), false);
    e.draw(s);
    ImGui::EndChild();
    ImGui::EndTabItem();
  }
  s.request_tab.reset();
  ImGui::EndTabBar();
}

void status_bar(AppState& s, ImVec2 pos, ImVec2 size) {
  ImGui::SetNextWindowPos(pos);
  ImGui::SetNextWindowSize(size);
  ImGui::PushStyleVar(ImGuiStyleVar_WindowPadding, ImVec2(10 * s.scale, 4 * s.scale));
  ImGui::PushStyleColor(ImGuiCol_WindowBg, ImVec4(0.09f, 0.09f, 0.11f, 1));
  ImGui::Begin("##status", nullptr, kPane | ImGuiWindowFlags_NoResize | ImGuiWindowFlags_NoScrollbar);
  mark_region(s, "status");
  const auto& sn = s.snap;
  const ImVec4 col = sn.state == app::RunnerState::error ? kErrorV : sn.busy ? kAccentV : kDimV;
  ImGui::TextColored(col, "\xE2\x97\x8F");  // ●
  ImGui::SameLine();
  std::string line = sn.activity.empty() ? "Ready" : sn.activity;
  if (sn.queued > 0) line += "  \xC2\xB7  " + std::to_string(sn.queued) + " queued";
  if (!s.message.empty()) line += "  \xC2\xB7  " + s.message;
  ImGui::TextUnformatted(line.c_str());
  char right[512];
  std::snprintf(right, sizeof right, "%zu image%s this session  \xC2\xB7  saving to %s", sn.results.size(),
                sn.results.size() == 1 ? "" : "s", s.settings.output_dir.c_str());
  const float w = ImGui::CalcTextSize(right).x;
  if (ImGui::GetWindowWidth() - w - 20 * s.scale > ImGui::GetCursorPosX() + ImGui::CalcTextSize(line.c_str()).x + 40 * s.scale) {
    ImGui::SameLine(ImGui::GetWindowWidth() - w - 12 * s.scale);
    ImGui::TextColored(kDimV, "%s", right);
  }
  ImGui::End();
  ImGui::PopStyleColor();
  ImGui::PopStyleVar();
}

}  // namespace

void draw_main(AppState& s) {
  shortcuts(s);
  const ImGuiViewport* vp = ImGui::GetMainViewport();
  const ImGuiStyle& st = ImGui::GetStyle();
  const float k = s.scale;
  const float top_h = std::round(ImGui::GetFrameHeight() + 2 * st.WindowPadding.y);
  const float status_h = std::round(ImGui::GetTextLineHeight() + 8 * k);
  const float body_y = vp->Pos.y + top_h, body_h = vp->Size.y - top_h - status_h;
  // Side columns keep what the user dragged them to, within limits that leave the canvas room.
  const float max_side = std::max(240 * k, (vp->Size.x - 320 * k) / 2);
  const float L = std::clamp(s.settings.left_width * k, 300 * k, max_side);
  const float R = std::clamp(s.settings.right_width * k, 220 * k, max_side);

  ImGui::SetNextWindowPos(vp->Pos);
  ImGui::SetNextWindowSize(ImVec2(vp->Size.x, top_h));
  ImGui::PushStyleColor(ImGuiCol_WindowBg, ImVec4(0.10f, 0.105f, 0.12f, 1));
  ImGui::Begin("##model-bar", nullptr, kPane | ImGuiWindowFlags_NoResize | ImGuiWindowFlags_NoScrollbar);
  mark_region(s, "model");
  draw_model_bar(s);
  ImGui::End();
  ImGui::PopStyleColor();

  ImGui::SetNextWindowPos(ImVec2(vp->Pos.x, body_y));
  ImGui::SetNextWindowSize(ImVec2(L, body_h));
  ImGui::Begin("##left", nullptr, kPane | ImGuiWindowFlags_NoScrollbar);
  mark_region(s, "left");
  s.settings.left_width = ImGui::GetWindowWidth() / k;
  draw_prompt(s);
  tabs(s);
  ImGui::End();

  ImGui::SetNextWindowPos(ImVec2(vp->Pos.x + vp->Size.x - R, body_y));
  ImGui::SetNextWindowSize(ImVec2(R, body_h));
  ImGui::PushStyleColor(ImGuiCol_WindowBg, ImVec4(0.13f, 0.135f, 0.15f, 1));
  ImGui::Begin("##right", nullptr, kPane | ImGuiWindowFlags_NoScrollbar);
  mark_region(s, "gallery");
  s.settings.right_width = ImGui::GetWindowWidth() / k;
  draw_gallery(s);
  ImGui::End();
  ImGui::PopStyleColor();

  ImGui::SetNextWindowPos(ImVec2(vp->Pos.x + L, body_y));
  ImGui::SetNextWindowSize(ImVec2(vp->Size.x - L - R, body_h));
  ImGui::PushStyleColor(ImGuiCol_WindowBg, ImVec4(0.085f, 0.09f, 0.10f, 1));
  ImGui::Begin("##canvas", nullptr, kPane | ImGuiWindowFlags_NoResize | ImGuiWindowFlags_NoScrollbar);
  mark_region(s, "canvas");
  draw_canvas(s);
  ImGui::End();
  ImGui::PopStyleColor();

  status_bar(s, ImVec2(vp->Pos.x, vp->Pos.y + vp->Size.y - status_h), ImVec2(vp->Size.x, status_h));
}

}  // namespace sigma::ui
