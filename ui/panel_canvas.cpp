// The canvas: the big image in the middle. While a job runs it shows the live preview of
// the denoised estimate (latent -> RGB, no VAE) with a progress bar, step, it/s and ETA;
// otherwise the image selected in the gallery. Errors appear here as banners that stay
// until dismissed or until the next success: the app keeps running either way.
#include <imgui.h>

#include <algorithm>
#include <cmath>

#include "ui/actions.h"
#include "ui/panels.h"
#include "ui/style.h"

namespace sigma::ui {
namespace {

std::string clock_text(double seconds) {
  if (seconds < 0) return "--:--";
  const long t = std::lround(seconds);
  char buf[32];
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
  else std::snprintf(buf, sizeof buf, "%ld:%02ld", t / 60, t % 60);
  return buf;
}

// A coloured box with wrapped text and a Dismiss button; true when dismissed.
bool banner(const char* id, const ImVec4& colour, const std::string& text) {
  ImGui::PushID(id);
  ImGui::PushStyleColor(ImGuiCol_ChildBg, ImVec4(colour.x * 0.3f, colour.y * 0.3f, colour.z * 0.3f, 1));
  const float wrap = ImGui::GetContentRegionAvail().x - 120 * ImGui::GetFontSize() / 15;
  const float h = ImGui::CalcTextSize(text.c_str(), nullptr, false, wrap).y + ImGui::GetStyle().WindowPadding.y * 2;
  ImGui::BeginChild("banner", ImVec2(0, std::min(h, ImGui::GetTextLineHeightWithSpacing() * 6)), false);
  ImGui::PushTextWrapPos(wrap);
  ImGui::TextColored(colour, "%s", text.c_str());
  ImGui::PopTextWrapPos();
  ImGui::SameLine(ImGui::GetWindowContentRegionMax().x - ImGui::CalcTextSize("Dismiss").x - ImGui::GetStyle().FramePadding.x * 2);
  const bool dismissed = ImGui::SmallButton("Dismiss");
  ImGui::EndChild();
  ImGui::PopStyleColor();
  ImGui::PopID();
  return dismissed;
}

void progress(AppState& s) {
  const auto& sn = s.snap;
  const float width = ImGui::GetContentRegionAvail().x;
  if (sn.state == app::RunnerState::loading) {
    char buf[256];
    std::snprintf(buf, sizeof buf, "Loading %s  %.1f s", short_name(sn.loading_path).c_str(), sn.loading_seconds);
    busy_bar(ImVec2(width, ImGui::GetFrameHeight()), buf);
    ImGui::TextColored(kDimV, "Models load once and stay loaded for the next generations.");
    return;
  }
  const bool running = sn.state == app::RunnerState::generating && sn.busy;
  const int total = std::max(1, sn.total), batches = std::max(1, sn.batches);
  const float frac = running || sn.jobs_done > 0
                         ? static_cast<float>(sn.batch * total + sn.step) / static_cast<float>(batches * total)
                         : 0.0f;
  char overlay[128];
  if (running) std::snprintf(overlay, sizeof overlay, "step %d / %d", sn.step, sn.total);
  else std::snprintf(overlay, sizeof overlay, "%s", sn.busy ? "starting..." : sn.state == app::RunnerState::error ? "failed"
                                                        : sn.last_cancelled ? "cancelled"
                                                        : sn.jobs_done > 0 ? "done" : "idle");
  ImGui::ProgressBar(sn.last_cancelled && !running ? 0.0f : frac, ImVec2(width, ImGui::GetFrameHeight()), overlay);
  mark(s, "progress");
  if (running) {
    ImGui::Text("%.2f it/s", sn.its);
    ImGui::SameLine(0, 18 * s.scale);
    ImGui::Text("ETA %s", clock_text(sn.eta_seconds).c_str());
    ImGui::SameLine(0, 18 * s.scale);
    ImGui::TextColored(kDimV, "elapsed %s", clock_text(sn.elapsed_seconds).c_str());
    if (sn.batches > 1) {
      ImGui::SameLine(0, 18 * s.scale);
      ImGui::TextColored(kDimV, "batch %d / %d", sn.batch + 1, sn.batches);
    }
    if (sn.queued > 0) {
      ImGui::SameLine(0, 18 * s.scale);
      ImGui::TextColored(kDimV, "%zu queued", sn.queued);
    }
  } else {
    ImGui::TextColored(kDimV, "%s", sn.activity.empty() ? "Ready. Ctrl+Enter generates." : sn.activity.c_str());
  }
}

}  // namespace

void draw_canvas(AppState& s) {
  const auto& sn = s.snap;
  if (!s.settings_error.empty() && banner("settings", kWarnV, s.settings_error)) s.settings_error.clear();
  if (!s.error.empty() && banner("ui-error", kErrorV, s.error)) s.error.clear();
  if (!sn.last_error.empty() && sn.last_error != s.dismissed_error && banner("error", kErrorV, "Error: " + sn.last_error))
    s.dismissed_error = sn.last_error;

  const bool live = sn.busy && sn.state == app::RunnerState::generating;
  const auto shown = selected(s);
  ImGui::PushFont(g_fonts.bold);
  if (live) ImGui::TextUnformatted("Live preview");
  else if (shown) ImGui::TextUnformatted(shown->path.empty() ? "(not saved)" : short_name(shown->path).c_str());
  else ImGui::TextUnformatted("Canvas");
  ImGui::PopFont();
  if (live || shown) ImGui::SameLine();
  char sub[256] = "";
  if (live)
    std::snprintf(sub, sizeof sub, "denoised estimate%s  \xC2\xB7  step %d / %d",
                  sn.preview_decoded ? ", VAE-decoded" : ", latent colours (no VAE)", sn.step, sn.total);
  else if (shown)
    std::snprintf(sub, sizeof sub, "seed %lld  \xC2\xB7  %d x %d  \xC2\xB7  %s, %lld steps", static_cast<long long>(shown->seed),
                  shown->image.width, shown->image.height, shown->request.sampler.c_str(),
                  static_cast<long long>(shown->request.steps));
  if (*sub) clipped_text(sub, ImGui::GetContentRegionAvail().x, kDimV);

  const float footer = ImGui::GetFrameHeightWithSpacing() + ImGui::GetTextLineHeightWithSpacing() + ImGui::GetStyle().ItemSpacing.y;
  const ImVec2 avail(ImGui::GetContentRegionAvail().x, std::max(32.0f, ImGui::GetContentRegionAvail().y - footer));
  const ImVec2 p = ImGui::GetCursorScreenPos();
  ImGui::GetWindowDrawList()->AddRectFilled(p, ImVec2(p.x + avail.x, p.y + avail.y), IM_COL32(16, 17, 19, 255), 6);
  bool drawn = false;
  ImVec2 a = p, b(p.x + avail.x, p.y + avail.y);
  if (live && s.preview_tex.valid()) drawn = image_fit(s.preview_tex, avail, &a, &b);
  else if (!live && shown) drawn = image_fit(s.result_tex[shown->id], avail, &a, &b);
  if (!drawn)
    placeholder(avail, live ? "Waiting for the first step..."
                            : "Write a prompt and press Generate. The live preview shows here while it runs; results "
                              "are saved with their settings and appear in the gallery on the right.");
  s.widgets["canvas_image"] = {a.x, a.y, b.x, b.y};
  progress(s);
}

}  // namespace sigma::ui
