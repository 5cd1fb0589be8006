// ControlNet units: model, condition image, preprocessor with its parameters, resize mode,
// strength and start/end. Each unit shows its condition image next to the processed hint,
// recomputed in the background whenever anything that changes it changes (the runner
// skips requests equal to the last one, so asking every frame is free).
#include <imgui.h>
#include <imgui_stdlib.h>

#include <algorithm>
#include <cmath>

#include "ui/actions.h"
#include "ui/panels.h"
#include "ui/style.h"

namespace sigma::ui {
namespace {

const app::PreprocessorEntry* find(const AppState& s, const std::string& name) {
  for (const auto& p : s.preprocessors)
    if (p.name == name) return &p;
  return nullptr;
}

void preprocessor_controls(AppState& s, app::ControlUnit& u, float field) {
  const auto* info = find(s, u.preprocessor);
  ImGui::SetNextItemWidth(field);
  if (ImGui::BeginCombo("Preprocessor", u.preprocessor.c_str())) {
    for (const auto& p : s.preprocessors) {
      if (ImGui::Selectable(p.name.c_str(), p.name == u.preprocessor)) {
        u.preprocessor = p.name;
        u.params.clear();  // parameters belong to one preprocessor
      }
      tooltip(p.description);
    }
    ImGui::EndCombo();
  }
  if (info) tooltip(info->description);
  else ImGui::TextColored(kErrorV, "unknown preprocessor '%s'", u.preprocessor.c_str());
  if (!info) return;
  for (const auto& p : info->params) {
    float v = static_cast<float>(u.params.count(p.name) ? u.params.at(p.name) : p.default_value);
    ImGui::SetNextItemWidth(field);
    const bool integral = p.max - p.min >= 10;
    if (ImGui::SliderFloat(p.name.c_str(), &v, static_cast<float>(p.min), static_cast<float>(p.max), integral ? "%.0f" : "%.2f"))
      u.params[p.name] = integral ? std::round(v) : v;
    tooltip(p.description);
  }
}

// The condition image and its hint, side by side.
void previews(AppState& s, const app::ControlUnit& u, const std::string& key) {
  const float w = (ImGui::GetContentRegionAvail().x - ImGui::GetStyle().ItemSpacing.x) / 2;
  const float h = std::min(w, 200 * s.scale);
  if (u.image.empty()) {
    s.runner->forget_image(key);
    placeholder(ImVec2(ImGui::GetContentRegionAvail().x, h * 0.6f),
                "Drop a condition image on the window (this tab open, this unit selected) or type its path above.");
    return;
  }
  app::ImageTask task{u.image, u.preprocessor, u.params, static_cast<int>(s.request.width), static_cast<int>(s.request.height),
                      u.resize};
  s.runner->request_image(key, task);
  const auto it = s.snap.images.find(key);
  if (it == s.snap.images.end()) return;
  const auto& res = it->second;
  if (!res.error.empty()) {
    ImGui::PushTextWrapPos();
    ImGui::TextColored(kErrorV, "%s", res.error.c_str());
    ImGui::PopTextWrapPos();
    return;
  }
  const ImVec2 top = ImGui::GetCursorScreenPos();
  ImGui::GetWindowDrawList()->AddRectFilled(top, ImVec2(top.x + 2 * w + ImGui::GetStyle().ItemSpacing.x, top.y + h),
                                            IM_COL32(20, 21, 24, 255), 4);
  ImGui::BeginGroup();
  if (!image_fit(s.image_tex[key], ImVec2(w, h))) placeholder(ImVec2(w, h), "reading...");
  ImGui::EndGroup();
  ImGui::SameLine();
  ImGui::BeginGroup();
  if (!image_fit(s.image_tex[key + "/hint"], ImVec2(w, h))) placeholder(ImVec2(w, h), "preprocessing...");
  ImGui::EndGroup();
  mark(s, key + "_hint");
  ImGui::TextColored(kDimV, "condition image");
  ImGui::SameLine(w + ImGui::GetStyle().ItemSpacing.x + ImGui::GetStyle().WindowPadding.x);
  ImGui::TextColored(kDimV, res.busy ? "hint (updating...)" : "hint at %lld x %lld", static_cast<long long>(s.request.width),
                     static_cast<long long>(s.request.height));
}

}  // namespace

void draw_controlnet_tab(AppState& s) {
  auto& units = s.request.controlnets;
  const float k = s.scale;
  const float field = std::max(140 * k, ImGui::GetContentRegionAvail().x - 110 * k);
  ImGui::PushTextWrapPos();
  ImGui::TextColored(kDimV, "Each unit steers the image with a condition (edges, lines, a sketch) through a ControlNet that "
                            "fits the base model. Several units add up.");
  ImGui::PopTextWrapPos();
  int remove = -1;
  for (size_t i = 0; i < units.size(); ++i) {
    auto& u = units[i];
    const int idx = static_cast<int>(i);
    ImGui::PushID(idx);
    ImGui::Spacing();
    if (ImGui::RadioButton("##target", s.selected_unit == idx)) s.selected_unit = idx;
    tooltip("Dropped images go to the selected unit");
    ImGui::SameLine();
    ImGui::PushFont(g_fonts.bold);
    ImGui::Text("Unit %d", idx + 1);
    ImGui::PopFont();
    ImGui::SameLine(ImGui::GetContentRegionMax().x - ImGui::CalcTextSize("Remove").x - ImGui::GetStyle().FramePadding.x * 2);
    if (ImGui::SmallButton("Remove")) remove = idx;
    ImGui::Separator();

    ImGui::SetNextItemWidth(field);
    path_combo("Model", u.model, s.controlnets, nullptr, "no ControlNets under <models root>/controlnet");
    ImGui::SetNextItemWidth(-1);
    ImGui::InputTextWithHint("##cn-model", "ControlNet path (.safetensors or diffusers folder)", &u.model);
    ImGui::SetNextItemWidth(-1);
    ImGui::InputTextWithHint("##cn-image", "condition image path (or drop one)", &u.image);
    mark(s, "cn_image_" + std::to_string(idx));
    previews(s, u, "cn" + std::to_string(idx));
    preprocessor_controls(s, u, field);
    ImGui::SetNextItemWidth(field);
    if (ImGui::BeginCombo("Resize", u.resize.c_str())) {
      const std::pair<const char*, const char*> modes[] = {{"crop", "scale to cover, then center-crop (A1111 Crop and Resize)"},
                                                           {"fit", "scale to fit, pad with black (A1111 Resize and Fill)"},
                                                           {"stretch", "scale each axis (A1111 Just Resize)"}};
      for (const auto& [name, desc] : modes) {
        if (ImGui::Selectable(name, u.resize == name)) u.resize = name;
        tooltip(desc);
      }
      ImGui::EndCombo();
    }
    float strength = static_cast<float>(u.strength), start = static_cast<float>(u.start), end = static_cast<float>(u.end);
    ImGui::SetNextItemWidth(field);
    if (ImGui::SliderFloat("Strength", &strength, 0.0f, 2.0f, "%.2f")) u.strength = strength;
    tooltip("Multiplier of the unit's residuals (control weight).");
    ImGui::SetNextItemWidth(field);
    if (ImGui::DragFloatRange2("Active", &start, &end, 0.005f, 0.0f, 1.0f, "from %.2f", "to %.2f", ImGuiSliderFlags_AlwaysClamp)) {
      u.start = start;
      u.end = end;
    }
    tooltip("The fraction of the steps in which the unit acts (0 = first step, 1 = last).");
    ImGui::PopID();
  }
  if (remove >= 0) {
    units.erase(units.begin() + remove);
    s.selected_unit = std::clamp(s.selected_unit, 0, std::max(0, static_cast<int>(units.size()) - 1));
  }
  for (size_t i = units.size(); i < units.size() + 4; ++i) s.runner->forget_image("cn" + std::to_string(i));
  ImGui::Spacing();
  if (ImGui::Button(units.empty() ? "Add a ControlNet unit" : "Add another unit", ImVec2(-1, 0))) {
    app::ControlUnit u;
    if (!units.empty()) u.model = units.back().model;
    units.push_back(u);
    s.selected_unit = static_cast<int>(units.size()) - 1;
  }
  mark(s, "add_unit");
}

}  // namespace sigma::ui
