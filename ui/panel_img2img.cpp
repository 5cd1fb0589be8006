// Image to image and inpainting: the input image (path or drop), denoising strength, and
// a mask brush painted directly on the image (left button paints, right button erases).
// The mask lives at the input image's resolution; Generate saves it beside the outputs
// and passes it to the pipeline, which blends latents outside it (ComfyUI's rule).
#include <imgui.h>
#include <imgui_stdlib.h>

#include <algorithm>
#include <cmath>

#include "ui/actions.h"
#include "ui/panels.h"
#include "ui/style.h"

namespace sigma::ui {
namespace {

// Paints (value 255) or erases (0) a round brush along the segment a -> b, in image pixels.
bool stroke(Image& mask, float ax, float ay, float bx, float by, float radius, uint8_t value) {
  bool changed = false;
  const float len = std::hypot(bx - ax, by - ay);
  const int n = std::max(1, static_cast<int>(len / std::max(1.0f, radius * 0.3f)));
  for (int i = 0; i <= n; ++i) {
    const float t = static_cast<float>(i) / static_cast<float>(n), cx = ax + (bx - ax) * t, cy = ay + (by - ay) * t;
    const int x0 = std::max(0, static_cast<int>(cx - radius)), x1 = std::min(mask.width - 1, static_cast<int>(cx + radius));
    const int y0 = std::max(0, static_cast<int>(cy - radius)), y1 = std::min(mask.height - 1, static_cast<int>(cy + radius));
    for (int y = y0; y <= y1; ++y)
      for (int x = x0; x <= x1; ++x)
        if ((x - cx) * (x - cx) + (y - cy) * (y - cy) <= radius * radius && mask.at(x, y) != value) {
          mask.at(x, y) = value;
          changed = true;
        }
  }
  return changed;
}

// A loaded mask file (from "Use these settings") fitted to the input image, nearest-neighbour.
Image fit_mask(const Image& src, int w, int h) {
  Image out(w, h, 1, 0);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) out.at(x, y) = src.at(x * src.width / w, y * src.height / h, 0) > 127 ? 255 : 0;
  return out;
}

void mask_tools(AppState& s) {
  auto& m = s.mask;
  const float k = s.scale;
  if (ImGui::Checkbox("Inpaint: repaint only the painted area", &m.enabled)) m.saved_path.clear();
  mark(s, "inpaint");
  ImGui::BeginDisabled(!m.enabled);
  ImGui::SetNextItemWidth(150 * k);
  ImGui::SliderFloat("Brush", &m.brush, 2.0f, 200.0f, "%.0f px");
  ImGui::SameLine();
  if (ImGui::Button("Clear") && !m.mask.empty()) {
    std::fill(m.mask.pixels.begin(), m.mask.pixels.end(), 0);
    m.painted = false;
    m.dirty = true;
    m.saved_path.clear();
  }
  ImGui::SameLine();
  if (ImGui::Button("Invert") && !m.mask.empty()) {
    for (auto& v : m.mask.pixels) v = static_cast<uint8_t>(255 - v);
    m.painted = std::any_of(m.mask.pixels.begin(), m.mask.pixels.end(), [](uint8_t v) { return v > 0; });
    m.dirty = true;
    m.saved_path.clear();
  }
  int blur = static_cast<int>(s.request.mask_blur);
  ImGui::SetNextItemWidth(150 * k);
  if (ImGui::SliderInt("Mask blur", &blur, 0, 64, "%d px")) s.request.mask_blur = blur;
  ImGui::EndDisabled();
}

// The input image with the mask overlay; paints when the brush is on.
void canvas(AppState& s, const app::ImageTaskResult& init) {
  auto& m = s.mask;
  const Texture& tex = s.image_tex["init"];
  if (!tex.valid()) return;
  const float avail_w = ImGui::GetContentRegionAvail().x;
  const float h = std::min(avail_w * static_cast<float>(tex.height()) / static_cast<float>(tex.width()),
                           std::max(160.0f * s.scale, ImGui::GetContentRegionAvail().y - 8));
  ImVec2 a, b;
  const ImVec2 origin = ImGui::GetCursorScreenPos();
  image_fit(tex, ImVec2(avail_w, h), &a, &b);
  ImDrawList* dl = ImGui::GetWindowDrawList();
  if (m.enabled && s.mask_tex.valid()) dl->AddImage(s.mask_tex.id(), a, b);
  ImGui::SetCursorScreenPos(a);
  ImGui::InvisibleButton("##paint", ImVec2(std::max(1.0f, b.x - a.x), std::max(1.0f, b.y - a.y)),
                         ImGuiButtonFlags_MouseButtonLeft | ImGuiButtonFlags_MouseButtonRight);
  mark(s, "mask_canvas");
  const bool hovered = ImGui::IsItemHovered(), active = ImGui::IsItemActive();
  ImGui::SetCursorScreenPos(ImVec2(origin.x, origin.y + h));
  ImGui::Dummy(ImVec2(0, 2));
  if (!m.enabled || !init.source) return;
  const float scale = (b.x - a.x) / static_cast<float>(init.source->width);  // screen px per image px
  const ImVec2 mouse = ImGui::GetIO().MousePos;
  if (hovered) dl->AddCircle(mouse, m.brush * scale, IM_COL32(255, 255, 255, 200), 32, 1.5f);
  if (active) {
    const float x = (mouse.x - a.x) / scale, y = (mouse.y - a.y) / scale;
    const bool erase = ImGui::IsMouseDown(ImGuiMouseButton_Right);
    if (m.last_x < 0) m.last_x = x, m.last_y = y;
    if (stroke(m.mask, m.last_x, m.last_y, x, y, m.brush, erase ? 0 : 255)) {
      m.dirty = true;
      m.saved_path.clear();
      m.painted = erase ? std::any_of(m.mask.pixels.begin(), m.mask.pixels.end(), [](uint8_t v) { return v > 0; }) : true;
    }
    m.last_x = x;
    m.last_y = y;
  } else {
    m.last_x = m.last_y = -1;
  }
}

}  // namespace

void draw_img2img_tab(AppState& s) {
  auto& r = s.request;
  const float k = s.scale;
  section("Input image");
  ImGui::SetNextItemWidth(-70 * k);
  ImGui::InputTextWithHint("##init", "image path, or drop an image on the window", &r.init_image);
  mark(s, "init_image");
  ImGui::SameLine();
  if (ImGui::Button("Remove")) {
    r.init_image.clear();
    r.mask.clear();
    s.mask = MaskState{};
  }
  if (r.init_image.empty()) {
    s.runner->forget_image("init");
    placeholder(ImVec2(ImGui::GetContentRegionAvail().x, 180 * k),
                "Drop an image on the window (PNG, JPEG, BMP) or type its path to start from it instead of noise. "
                "Results can be sent here from the gallery.");
    return;
  }
  s.runner->request_image("init", file_task(r.init_image));
  const auto it = s.snap.images.find("init");
  const app::ImageTaskResult none;
  const auto& init = it != s.snap.images.end() ? it->second : none;

  float strength = static_cast<float>(r.strength);
  ImGui::SetNextItemWidth(-120 * k);
  if (ImGui::SliderFloat("Strength", &strength, 0.01f, 1.0f, "%.2f")) r.strength = strength;
  tooltip("Denoising strength: 0 keeps the image, 1 replaces it (only the last strength x steps are run).");

  if (!init.error.empty()) {
    ImGui::PushTextWrapPos();
    ImGui::TextColored(kErrorV, "%s", init.error.c_str());
    ImGui::PopTextWrapPos();
    return;
  }
  if (!init.source) {
    busy_bar(ImVec2(ImGui::GetContentRegionAvail().x, ImGui::GetFrameHeight()), "reading the image...");
    return;
  }
  auto& m = s.mask;
  if (m.mask.width != init.source->width || m.mask.height != init.source->height) {
    m.mask = Image(init.source->width, init.source->height, 1, 0);
    m.painted = false;
    m.dirty = true;
  }
  if (auto f = s.snap.images.find("maskfile"); f != s.snap.images.end() && f->second.version > 0) {
    if (f->second.source) {
      m.mask = fit_mask(*f->second.source, init.source->width, init.source->height);
      m.painted = std::any_of(m.mask.pixels.begin(), m.mask.pixels.end(), [](uint8_t v) { return v > 0; });
      m.dirty = true;
    } else {
      s.message = "Could not read the mask: " + f->second.error;
    }
    s.runner->forget_image("maskfile");
  }
  ImGui::TextColored(kDimV, "%d x %d, stretched to %lld x %lld", init.source->width, init.source->height,
                     static_cast<long long>(r.width), static_cast<long long>(r.height));
  if (r.width != init.source->width / 8 * 8 || r.height != init.source->height / 8 * 8) {
    ImGui::SameLine();
    if (ImGui::SmallButton("Use its size")) {
      r.width = std::max(64, init.source->width / 8 * 8);
      r.height = std::max(64, init.source->height / 8 * 8);
    }
  }
  section("Inpainting");
  mask_tools(s);
  canvas(s, init);
  if (m.enabled) ImGui::TextColored(kDimV, "Left button paints, right button erases.");
}

}  // namespace sigma::ui
