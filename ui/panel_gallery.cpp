// The gallery: this session's results as thumbnails (newest first), the selected one's
// metadata (the AUTOMATIC1111 text saved in its PNG), and what to do with it: load its
// settings back, reuse its seed, send it to img2img, copy the parameters, open its folder.
// Every image is already saved to disk with its metadata when it shows up here.
#include <imgui.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "ui/actions.h"
#include "ui/panels.h"
#include "ui/style.h"

namespace sigma::ui {
namespace {

void thumbnails(AppState& s, float height) {
  const float k = s.scale;
  ImGui::BeginChild("thumbs", ImVec2(0, height), false);
  const auto& results = s.snap.results;
  if (results.empty()) {
    placeholder(ImGui::GetContentRegionAvail(), "No images yet. Each result is saved with its settings and listed here.");
    ImGui::EndChild();
    return;
  }
  const float spacing = ImGui::GetStyle().ItemSpacing.x;
  const float avail = ImGui::GetContentRegionAvail().x;
  const int cols = std::max(1, static_cast<int>((avail + spacing) / (92 * k + spacing)));
  const float size = std::floor((avail - spacing * static_cast<float>(cols - 1)) / static_cast<float>(cols));
  const auto shown = selected(s);
  for (size_t n = 0; n < results.size(); ++n) {
    const auto& r = results[results.size() - 1 - n];  // newest first
    const Texture& tex = s.result_tex[r->id];
    if (n % static_cast<size_t>(cols) != 0) ImGui::SameLine();
    ImGui::PushID(static_cast<int>(r->id));
    // Center-crop to a square so the grid stays even whatever the aspect ratio.
    const float tw = static_cast<float>(std::max(1, tex.width())), th = static_cast<float>(std::max(1, tex.height()));
    const float m = std::min(tw, th);
    const ImVec2 uv0((tw - m) / 2 / tw, (th - m) / 2 / th), uv1(1 - uv0.x, 1 - uv0.y);
    if (ImGui::ImageButton(tex.id(), ImVec2(size - 4, size - 4), uv0, uv1, 2)) s.selected_result = r->id;
    mark(s, "gallery:" + std::to_string(n));
    if (shown && shown->id == r->id)
      ImGui::GetWindowDrawList()->AddRect(ImGui::GetItemRectMin(), ImGui::GetItemRectMax(), kAccent, 3, 0, 2.5f * k);
    if (ImGui::IsItemHovered()) {
      ImGui::BeginTooltip();
      ImGui::Text("seed %lld", static_cast<long long>(r->seed));
      ImGui::TextColored(kDimV, "%s", r->path.empty() ? r->save_error.c_str() : r->path.c_str());
      ImGui::EndTooltip();
    }
    ImGui::PopID();
  }
  ImGui::EndChild();
}

void metadata(AppState& s) {
  const auto r = selected(s);
  if (!r) return;
  ImGui::PushFont(g_fonts.bold);
  ImGui::TextUnformatted(r->path.empty() ? "Not saved" : short_name(r->path).c_str());
  ImGui::PopFont();
  if (!r->save_error.empty()) {
    ImGui::PushTextWrapPos();
    ImGui::TextColored(kErrorV, "%s", r->save_error.c_str());
    ImGui::PopTextWrapPos();
  }
  const float half = (ImGui::GetContentRegionAvail().x - ImGui::GetStyle().ItemSpacing.x) / 2;
  if (ImGui::Button("Use these settings", ImVec2(half, 0))) use_settings(s, *r);
  mark(s, "use_settings");
  tooltip("Load everything this image was made with (prompt, sampler, seed, size, model, ControlNets) into the editor.");
  ImGui::SameLine();
  if (ImGui::Button("Reuse seed", ImVec2(half, 0))) {
    s.request.seed = r->seed;
    s.random_seed = false;
  }
  ImGui::BeginDisabled(r->path.empty());
  if (ImGui::Button("To img2img", ImVec2(half, 0))) send_to_img2img(s, r->path);
  ImGui::SameLine();
  if (ImGui::Button("Open folder", ImVec2(half, 0)))
    open_folder(s, std::filesystem::path(r->path).parent_path().string());
  mark(s, "open_folder");
  ImGui::EndDisabled();
  if (ImGui::Button("Copy parameters", ImVec2(-1, 0))) {
    ImGui::SetClipboardText(r->parameters.c_str());
    s.message = "Parameters copied";
  }
  ImGui::Spacing();
  ImGui::PushStyleColor(ImGuiCol_ChildBg, ImVec4(0.09f, 0.095f, 0.11f, 1));
  ImGui::BeginChild("params", ImVec2(0, 0), true);
  ImGui::PushFont(g_fonts.mono);
  ImGui::PushTextWrapPos(ImGui::GetContentRegionAvail().x);
  ImGui::TextUnformatted(r->parameters.c_str());
  ImGui::PopTextWrapPos();
  ImGui::PopFont();
  if (!r->path.empty()) {
    ImGui::Spacing();
    ImGui::PushTextWrapPos(ImGui::GetContentRegionAvail().x);
    ImGui::TextColored(kDimV, "%s", r->path.c_str());
    ImGui::PopTextWrapPos();
  }
  ImGui::EndChild();
  ImGui::PopStyleColor();
}

}  // namespace

void draw_gallery(AppState& s) {
  ImGui::PushFont(g_fonts.bold);
  ImGui::TextUnformatted("Gallery");
  ImGui::PopFont();
  ImGui::SameLine();
  ImGui::TextColored(kDimV, "%zu this session", s.snap.results.size());
  const float avail = ImGui::GetContentRegionAvail().y;
  thumbnails(s, s.snap.results.empty() ? avail : std::max(120 * s.scale, avail * 0.46f));
  ImGui::Spacing();
  metadata(s);
}

}  // namespace sigma::ui
