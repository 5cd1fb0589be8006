// Look and feel: the dark theme, DejaVu fonts at the monitor's content scale (ImGui's
// built-in font when DejaVu is absent), and small drawing helpers every panel shares.
#pragma once

#include <imgui.h>

#include <string>
#include <vector>

#include "ui/texture.h"

namespace sigma::ui {

struct Fonts {
  ImFont* regular = nullptr;
  ImFont* bold = nullptr;
  ImFont* mono = nullptr;
  bool dejavu = false;  // false: ImGui's default font (DejaVu not installed)
};
extern Fonts g_fonts;

void load_fonts(float scale);   // before the first frame
void apply_theme(float scale);

// Accent colours used by several panels.
inline constexpr ImU32 kAccent = IM_COL32(232, 146, 60, 255);   // warm orange: actions, progress
inline const ImVec4 kAccentV{0.91f, 0.57f, 0.24f, 1.0f};
inline const ImVec4 kErrorV{0.95f, 0.38f, 0.36f, 1.0f};
inline const ImVec4 kWarnV{0.95f, 0.78f, 0.35f, 1.0f};
inline const ImVec4 kDimV{0.58f, 0.60f, 0.64f, 1.0f};

// A bold caption with a thin rule under it.
void section(const char* title);
// A "(?)"-less tooltip on the previous item: hovering shows `text` wrapped.
void tooltip(const std::string& text);
// Draws `tex` as large as fits in `avail` (keeping its aspect), centered; returns the
// on-screen rectangle through min/max. Nothing is drawn for an invalid texture.
bool image_fit(const Texture& tex, ImVec2 avail, ImVec2* min = nullptr, ImVec2* max = nullptr);
// A placeholder box with centered dim text (empty canvas, missing image).
void placeholder(ImVec2 size, const char* text);
// An indeterminate progress bar (model loading has no fraction to show).
void busy_bar(ImVec2 size, const char* overlay);

// One line of text cut with an ellipsis to `width`; the whole text as a tooltip when cut.
void clipped_text(const std::string& text, float width, const ImVec4& colour);
// The file or folder name of a path ("" for "").
std::string short_name(const std::string& path);
// A combo of `paths` (names shown, full paths as tooltips) writing into `value`; with
// `none_label`, a first entry that clears it. True when the user picked an entry.
bool path_combo(const char* id, std::string& value, const std::vector<std::string>& paths, const char* none_label,
                const char* empty_hint);

}  // namespace sigma::ui
