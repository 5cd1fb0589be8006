// The theme is ImGui's dark style re-coloured towards neutral graphite with one warm
// accent, so images (the point of the app) are the most colourful thing on screen.
#include "ui/style.h"

#include <cmath>
#include <filesystem>
#include <vector>

namespace sigma::ui {

Fonts g_fonts;

void load_fonts(float scale) {
  ImGuiIO& io = ImGui::GetIO();
  const std::string dir = "/usr/share/fonts/truetype/dejavu/";
  const float size = std::round(15.0f * scale);
  // Latin + Latin-1, general punctuation (… • –), arrows and geometric shapes (▶ ■ ●).
  static const ImWchar ranges[] = {0x0020, 0x00FF, 0x2010, 0x2027, 0x2190, 0x21FF, 0x25A0, 0x25FF, 0x2713, 0x2717, 0};
  ImFontConfig cfg;
  cfg.OversampleH = 2;
  auto load = [&](const char* file, float px) -> ImFont* {
    const auto path = dir + file;
    if (!std::filesystem::exists(path)) return nullptr;
    return io.Fonts->AddFontFromFileTTF(path.c_str(), px, &cfg, ranges);
  };
  g_fonts.regular = load("DejaVuSans.ttf", size);
  g_fonts.dejavu = g_fonts.regular != nullptr;
  if (!g_fonts.regular) {
    ImFontConfig def;
    def.SizePixels = std::round(13.0f * scale);
    g_fonts.regular = io.Fonts->AddFontDefault(&def);
  }
  g_fonts.bold = load("DejaVuSans-Bold.ttf", size);
  g_fonts.mono = load("DejaVuSansMono.ttf", std::round(13.0f * scale));
  if (!g_fonts.bold) g_fonts.bold = g_fonts.regular;
  if (!g_fonts.mono) g_fonts.mono = g_fonts.regular;
  io.FontDefault = g_fonts.regular;
}

void apply_theme(float scale) {
  ImGui::StyleColorsDark();
  ImGuiStyle& st = ImGui::GetStyle();
  st.WindowRounding = 0;
  st.ChildRounding = 4;
  st.FrameRounding = 4;
  st.GrabRounding = 4;
  st.PopupRounding = 4;
  st.TabRounding = 4;
  st.ScrollbarRounding = 6;
  st.WindowBorderSize = 0;
  st.FrameBorderSize = 0;
  st.WindowPadding = ImVec2(12, 10);
  st.FramePadding = ImVec2(8, 5);
  st.ItemSpacing = ImVec2(8, 7);
  st.ItemInnerSpacing = ImVec2(6, 4);
  st.ScrollbarSize = 12;
  st.GrabMinSize = 10;
  st.WindowMinSize = ImVec2(8, 8);
  st.ScaleAllSizes(scale);

  auto rgb = [](int r, int g, int b, float a = 1.0f) { return ImVec4(r / 255.0f, g / 255.0f, b / 255.0f, a); };
  ImVec4* c = st.Colors;
  c[ImGuiCol_Text] = rgb(226, 228, 232);
  c[ImGuiCol_TextDisabled] = rgb(128, 132, 140);
  c[ImGuiCol_WindowBg] = rgb(30, 31, 35);
  c[ImGuiCol_ChildBg] = rgb(36, 38, 43);
  c[ImGuiCol_PopupBg] = rgb(38, 40, 46, 0.98f);
  c[ImGuiCol_Border] = rgb(58, 61, 68);
  c[ImGuiCol_FrameBg] = rgb(48, 51, 58);
  c[ImGuiCol_FrameBgHovered] = rgb(60, 64, 72);
  c[ImGuiCol_FrameBgActive] = rgb(70, 74, 84);
  c[ImGuiCol_TitleBg] = rgb(30, 31, 35);
  c[ImGuiCol_TitleBgActive] = rgb(36, 38, 43);
  c[ImGuiCol_MenuBarBg] = rgb(26, 27, 30);
  c[ImGuiCol_ScrollbarBg] = rgb(30, 31, 35, 0.0f);
  c[ImGuiCol_ScrollbarGrab] = rgb(70, 74, 84);
  c[ImGuiCol_ScrollbarGrabHovered] = rgb(88, 92, 104);
  c[ImGuiCol_ScrollbarGrabActive] = rgb(104, 108, 120);
  c[ImGuiCol_CheckMark] = kAccentV;
  c[ImGuiCol_SliderGrab] = rgb(200, 128, 56);
  c[ImGuiCol_SliderGrabActive] = kAccentV;
  c[ImGuiCol_Button] = rgb(56, 60, 68);
  c[ImGuiCol_ButtonHovered] = rgb(72, 77, 88);
  c[ImGuiCol_ButtonActive] = rgb(90, 95, 108);
  c[ImGuiCol_Header] = rgb(56, 60, 68);
  c[ImGuiCol_HeaderHovered] = rgb(68, 72, 82);
  c[ImGuiCol_HeaderActive] = rgb(80, 85, 96);
  c[ImGuiCol_Separator] = rgb(56, 59, 66);
  c[ImGuiCol_Tab] = rgb(40, 42, 48);
  c[ImGuiCol_TabHovered] = rgb(76, 80, 92);
  c[ImGuiCol_TabActive] = rgb(62, 66, 76);
  c[ImGuiCol_TabUnfocused] = rgb(40, 42, 48);
  c[ImGuiCol_TabUnfocusedActive] = rgb(62, 66, 76);
  c[ImGuiCol_PlotHistogram] = kAccentV;
  c[ImGuiCol_TextSelectedBg] = rgb(232, 146, 60, 0.35f);
  c[ImGuiCol_ResizeGrip] = rgb(0, 0, 0, 0);
  c[ImGuiCol_ResizeGripHovered] = rgb(232, 146, 60, 0.5f);
  c[ImGuiCol_ResizeGripActive] = kAccentV;
  c[ImGuiCol_SeparatorHovered] = rgb(232, 146, 60, 0.6f);
  c[ImGuiCol_SeparatorActive] = kAccentV;
}

void section(const char* title) {
  ImGui::Spacing();
  ImGui::PushFont(g_fonts.bold);
  ImGui::TextUnformatted(title);
  ImGui::PopFont();
  ImGui::Separator();
}

void tooltip(const std::string& text) {
  if (text.empty() || !ImGui::IsItemHovered(ImGuiHoveredFlags_AllowWhenDisabled)) return;
  ImGui::BeginTooltip();
  ImGui::PushTextWrapPos(ImGui::GetFontSize() * 28);
  ImGui::TextUnformatted(text.c_str());
  ImGui::PopTextWrapPos();
  ImGui::EndTooltip();
}

bool image_fit(const Texture& tex, ImVec2 avail, ImVec2* min, ImVec2* max) {
  if (!tex.valid() || avail.x < 4 || avail.y < 4) return false;
  const float k = std::min(avail.x / static_cast<float>(tex.width()), avail.y / static_cast<float>(tex.height()));
  const ImVec2 size(std::floor(tex.width() * k), std::floor(tex.height() * k));
  const ImVec2 cur = ImGui::GetCursorScreenPos();
  const ImVec2 p(cur.x + std::floor((avail.x - size.x) / 2), cur.y + std::floor((avail.y - size.y) / 2));
  ImGui::SetCursorScreenPos(p);
  ImGui::Image(tex.id(), size);
  if (min) *min = p;
  if (max) *max = ImVec2(p.x + size.x, p.y + size.y);
  ImGui::SetCursorScreenPos(ImVec2(cur.x, cur.y + avail.y));
  ImGui::Dummy(ImVec2(0, 0));
  return true;
}

void placeholder(ImVec2 size, const char* text) {
  const ImVec2 p = ImGui::GetCursorScreenPos();
  ImDrawList* dl = ImGui::GetWindowDrawList();
  dl->AddRect(p, ImVec2(p.x + size.x, p.y + size.y), IM_COL32(70, 74, 84, 255), 6, 0, 1.5f);
  const float wrap = std::max(40.0f, size.x - 24);
  const ImVec2 ts = ImGui::CalcTextSize(text, nullptr, false, wrap);
  ImGui::SetCursorScreenPos(ImVec2(p.x + (size.x - ts.x) / 2, p.y + (size.y - ts.y) / 2));
  ImGui::PushTextWrapPos(ImGui::GetCursorPosX() + wrap);
  ImGui::TextColored(kDimV, "%s", text);
  ImGui::PopTextWrapPos();
  ImGui::SetCursorScreenPos(ImVec2(p.x, p.y + size.y));
  ImGui::Dummy(ImVec2(size.x, 0));
}

void busy_bar(ImVec2 size, const char* overlay) {
  const ImVec2 p = ImGui::GetCursorScreenPos();
  ImDrawList* dl = ImGui::GetWindowDrawList();
  const float r = ImGui::GetStyle().FrameRounding;
  dl->AddRectFilled(p, ImVec2(p.x + size.x, p.y + size.y), ImGui::GetColorU32(ImGuiCol_FrameBg), r);
  const float t = static_cast<float>(std::fmod(ImGui::GetTime() * 0.8, 1.0));
  const float w = size.x * 0.25f, x = p.x - w + (size.x + w) * t;
  dl->PushClipRect(p, ImVec2(p.x + size.x, p.y + size.y), true);
  dl->AddRectFilled(ImVec2(x, p.y), ImVec2(x + w, p.y + size.y), kAccent, r);
  dl->PopClipRect();
  const ImVec2 ts = ImGui::CalcTextSize(overlay);
  dl->AddText(ImVec2(p.x + (size.x - ts.x) / 2, p.y + (size.y - ts.y) / 2), ImGui::GetColorU32(ImGuiCol_Text), overlay);
  ImGui::Dummy(size);
}

void clipped_text(const std::string& text, float width, const ImVec4& colour) {
  std::string t = text;
  if (ImGui::CalcTextSize(t.c_str()).x > width) {
    const std::string dots = "\xE2\x80\xA6";  // …
    while (!t.empty() && ImGui::CalcTextSize((t + dots).c_str()).x > width) {
      t.pop_back();
      while (!t.empty() && (static_cast<unsigned char>(t.back()) & 0xC0) == 0x80) t.pop_back();  // whole UTF-8 characters
      if (!t.empty() && (static_cast<unsigned char>(t.back()) & 0xC0) == 0xC0) t.pop_back();
    }
    t += dots;
  }
  ImGui::TextColored(colour, "%s", t.c_str());
  if (t != text) tooltip(text);
}

std::string short_name(const std::string& path) {
  if (path.empty()) return "";
  auto p = std::filesystem::path(path);
  if (p.filename().empty()) p = p.parent_path();
  return p.filename().string();
}

// A combo of `paths` (file names shown, full path as tooltip) writing into `value`; the first
// entry is `none_label` for the empty value when given. True when the user picked one.
bool path_combo(const char* id, std::string& value, const std::vector<std::string>& paths, const char* none_label,
                const char* empty_hint) {
  const std::string preview = value.empty() ? (none_label ? none_label : empty_hint) : short_name(value);
  bool picked = false;
  if (ImGui::BeginCombo(id, preview.c_str(), ImGuiComboFlags_HeightLarge)) {
    if (none_label && ImGui::Selectable(none_label, value.empty())) {
      value.clear();
      picked = true;
    }
    if (paths.empty()) ImGui::TextColored(kDimV, "%s", empty_hint);
    for (const auto& p : paths) {
      if (ImGui::Selectable(short_name(p).c_str(), p == value)) {
        value = p;
        picked = true;
      }
      tooltip(p);
    }
    ImGui::EndCombo();
  }
  return picked;
}

}  // namespace sigma::ui
