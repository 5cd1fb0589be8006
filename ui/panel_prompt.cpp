// The prompt panel (always visible above the tabs) and the Sampling tab. Token counts per
// 75-token chunk use the loaded model's tokenizer and AUTOMATIC1111's chunking, recounted
// only when the text changes. Every widget edits a field of the one request.
#include <imgui.h>
#include <imgui_stdlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "app/prompt.h"
#include "ui/actions.h"
#include "ui/panels.h"
#include "ui/style.h"

namespace sigma::ui {
namespace {

// "75/75 · 12/75", or why there is no count.
std::string count_text(const std::vector<int>& chunks) {
  std::string t;
  for (size_t i = 0; i < chunks.size(); ++i) t += (i ? "  \xC2\xB7  " : "") + std::to_string(chunks[i]) + "/75";
  return t;
}

void recount(AppState& s) {
  if (!s.snap.model || !s.snap.model->tokenizer) return;
  const void* tk = s.snap.model.get();
  const bool emphasis = s.request.emphasis != "none";
  auto count = [&](const std::string& text, std::string& counted, std::vector<int>& out) {
    if (tk == s.counted_tokenizer && text == counted) return;
    counted = text;
    try {
      out = app::chunk_token_counts(app::tokenize_prompt(*s.snap.model->tokenizer, app::prompt_text(text), emphasis));
    } catch (const std::exception&) {
      out = {-1};  // a syntax error such as (a:1.2.3); the generation reports it in full
    }
  };
  count(s.request.prompt, s.counted_prompt, s.prompt_chunks);
  count(s.request.negative, s.counted_negative, s.negative_chunks);
  s.counted_tokenizer = tk;
}

void prompt_box(AppState& s, const char* title, const char* id, std::string& text, const std::vector<int>& chunks, float lines) {
  ImGui::PushFont(g_fonts.bold);
  ImGui::TextUnformatted(title);
  ImGui::PopFont();
  std::string counts = !s.snap.model ? "tokens: after the model loads"
                       : (!chunks.empty() && chunks[0] < 0) ? "prompt syntax error"
                                                            : "tokens " + count_text(chunks);
  ImGui::SameLine(std::max(ImGui::GetCursorPosX() + 10, ImGui::GetWindowContentRegionMax().x - ImGui::CalcTextSize(counts.c_str()).x));
  ImGui::TextColored(chunks.size() > 1 ? kWarnV : kDimV, "%s", counts.c_str());
  tooltip("Prompt tokens in each 75-token chunk (AUTOMATIC1111 chunking: longer prompts are encoded in 75-token chunks and "
          "concatenated; BREAK starts a new chunk). Syntax: (word) x1.1, [word] /1.1, (word:1.3).");
  // ImGui 1.86's multi-line input cannot wrap, so the prompt is shown wrapped (growing up
  // to twice its height) and turns into the editor when clicked; a click outside ends
  // editing, Escape reverts it (ImGui's rule), Ctrl+Enter ends it and generates.
  const ImGuiStyle& st = ImGui::GetStyle();
  const float width = ImGui::GetContentRegionAvail().x, wrap = width - 2 * st.FramePadding.x;
  const bool empty = text.empty();
  const char* shown = empty ? (std::strcmp(id, "##prompt") == 0 ? "Describe the image: subject, style, lighting..."
                                                                : "What to avoid: blurry, watermark...")
                            : text.c_str();
  const float text_h = ImGui::CalcTextSize(shown, nullptr, false, wrap).y;
  const float min_h = ImGui::GetTextLineHeight() * lines, max_h = min_h * 2;
  const ImVec2 size(width, std::clamp(text_h, min_h, max_h) + 2 * st.FramePadding.y);
  if (s.editing == id) {
    if (s.focus_editor) ImGui::SetKeyboardFocusHere();
    s.focus_editor = false;
    ImGui::InputTextMultiline(id, &text, size);
    if (ImGui::IsItemDeactivated()) s.editing.clear();
    return;
  }
  const ImVec2 p = ImGui::GetCursorScreenPos();
  const bool clicked = ImGui::InvisibleButton(id, size);
  const bool hovered = ImGui::IsItemHovered();
  if (hovered) ImGui::SetMouseCursor(ImGuiMouseCursor_TextInput);
  ImDrawList* dl = ImGui::GetWindowDrawList();
  dl->AddRectFilled(p, ImVec2(p.x + size.x, p.y + size.y), ImGui::GetColorU32(hovered ? ImGuiCol_FrameBgHovered : ImGuiCol_FrameBg),
                    st.FrameRounding);
  const ImVec4 clip(p.x, p.y, p.x + size.x - st.FramePadding.x, p.y + size.y - st.FramePadding.y);
  dl->AddText(ImGui::GetFont(), ImGui::GetFontSize(), ImVec2(p.x + st.FramePadding.x, p.y + st.FramePadding.y),
              ImGui::GetColorU32(empty ? ImGuiCol_TextDisabled : ImGuiCol_Text), shown, nullptr, wrap, &clip);
  if (text_h > max_h) tooltip(text);  // longer than the box: the whole prompt on hover
  if (clicked) {
    s.editing = id;
    s.focus_editor = true;
  }
}

// To the model's size step (SD 8, Flux 16).
int64_t round_to(double v, int step) {
  return std::clamp<int64_t>(static_cast<int64_t>(std::llround(v / step)) * step, 64, 4096);
}

bool catalog_combo(const char* label, std::string& value, const std::vector<app::CatalogEntry>& list) {
  bool changed = false;
  std::string desc;
  for (const auto& e : list)
    if (e.name == value) desc = e.description + (e.detail.empty() ? "" : "\n\n" + e.detail);
  if (ImGui::BeginCombo(label, value.c_str(), ImGuiComboFlags_HeightLarge)) {
    for (const auto& e : list) {
      if (ImGui::Selectable(e.name.c_str(), e.name == value)) {
        value = e.name;
        changed = true;
      }
      tooltip(e.description + (e.detail.empty() ? "" : "\n\n" + e.detail));
    }
    ImGui::EndCombo();
  }
  tooltip(desc);
  return changed;
}

}  // namespace

void draw_prompt(AppState& s) {
  const float k = s.scale;
  recount(s);
  prompt_box(s, "Prompt", "##prompt", s.request.prompt, s.prompt_chunks, 4.2f);
  mark(s, "prompt");
  prompt_box(s, "Negative prompt", "##negative", s.request.negative, s.negative_chunks, 2.2f);
  mark(s, "negative");
  draw_loras(s);

  ImGui::Spacing();
  const float h = ImGui::GetFrameHeight() * 1.45f;
  const float cancel_w = 96 * k;
  ImGui::PushStyleColor(ImGuiCol_Button, ImVec4(0.80f, 0.47f, 0.17f, 1));
  ImGui::PushStyleColor(ImGuiCol_ButtonHovered, ImVec4(0.90f, 0.55f, 0.22f, 1));
  ImGui::PushStyleColor(ImGuiCol_ButtonActive, ImVec4(0.98f, 0.62f, 0.28f, 1));
  ImGui::PushStyleColor(ImGuiCol_Text, ImVec4(0.08f, 0.06f, 0.04f, 1));
  ImGui::PushFont(g_fonts.bold);
  const char* label = s.snap.busy ? "Queue another" : "Generate";
  if (ImGui::Button(label, ImVec2(ImGui::GetContentRegionAvail().x - cancel_w - ImGui::GetStyle().ItemSpacing.x, h))) generate(s);
  ImGui::PopFont();
  ImGui::PopStyleColor(4);
  mark(s, "generate");
  tooltip(s.snap.busy ? "Ctrl+Enter. Runs after the current job, with the settings as they are now."
                      : "Ctrl+Enter. Saves every image with its settings to the output folder.");
  ImGui::SameLine();
  ImGui::BeginDisabled(!s.snap.busy);
  if (ImGui::Button("Cancel", ImVec2(cancel_w, h))) cancel(s);
  ImGui::EndDisabled();
  mark(s, "cancel");
  tooltip("Stop after the current step (Escape). Nothing partial is saved; queued jobs are dropped.");
  ImGui::Spacing();
}

namespace {

// Sampler, schedule, steps and guidance.
void draw_sampler_section(AppState& s, float field) {
  auto& r = s.request;
  section("Sampler");
  ImGui::SetNextItemWidth(field);
  catalog_combo("Sampler", r.sampler, s.samplers);
  mark(s, "sampler");
  ImGui::SetNextItemWidth(field);
  catalog_combo("Schedule", r.scheduler, s.schedules);
  ImGui::SetNextItemWidth(field);
  int steps = static_cast<int>(r.steps);
  if (ImGui::SliderInt("Steps", &steps, 1, 150, "%d", ImGuiSliderFlags_AlwaysClamp)) r.steps = steps;
  tooltip("Denoiser evaluations (Ctrl+click to type; up to 1000).");
  ImGui::SetNextItemWidth(field);
  float cfg = static_cast<float>(r.cfg);
  if (ImGui::SliderFloat("CFG scale", &cfg, 1.0f, 20.0f, "%.1f")) r.cfg = std::round(cfg * 2) / 2;
  tooltip("Classifier-free guidance: how strongly the prompt steers (1 = off; Flux: 1, its guidance is distilled).");
  if (s.snap.model && s.snap.model->takes_guidance) {
    ImGui::SetNextItemWidth(field);
    float g = static_cast<float>(r.guidance);
    if (ImGui::SliderFloat("Guidance", &g, 1.0f, 10.0f, "%.1f")) r.guidance = std::round(g * 10) / 10;
    mark(s, "guidance");
    tooltip("Flux dev's distilled guidance (Forge: \"Distilled CFG Scale\"), read by the model in one pass; 3.5 is its usual value.");
  }
  ImGui::SetNextItemWidth(field);
  float rescale = static_cast<float>(r.cfg_rescale);
  if (ImGui::SliderFloat("CFG rescale", &rescale, 0.0f, 1.0f, "%.2f")) r.cfg_rescale = rescale;
  tooltip("Guidance rescale phi (Lin et al. 2023): tames over-saturation at high CFG; 0 = off.");
}

// The seed, random or kept, and the shown image's.
void draw_seed_section(AppState& s, float field) {
  const float k = s.scale;
  auto& r = s.request;
  section("Seed");
  ImGui::BeginDisabled(s.random_seed);
  ImGui::SetNextItemWidth(std::max(100 * k, field - 150 * k));
  ImGui::InputScalar("##seed", ImGuiDataType_S64, &r.seed);
  ImGui::EndDisabled();
  ImGui::SameLine();
  ImGui::Checkbox("Random", &s.random_seed);
  mark(s, "random_seed");
  tooltip("A new random seed for every generation (the seed used is saved in the image).");
  if (ImGui::Button("New seed")) random_seed_now(s);
  ImGui::SameLine();
  ImGui::BeginDisabled(s.snap.results.empty());
  if (ImGui::Button("Reuse last")) reuse_last_seed(s);
  ImGui::EndDisabled();
  if (auto last = selected(s)) {
    ImGui::SameLine();
    ImGui::TextColored(kDimV, "shown image: %lld", static_cast<long long>(last->seed));
  }
}

// The canvas: the family's presets, width and height, the aspect lock.
void draw_size_section(AppState& s, float field) {
  auto& r = s.request;
  section("Size");
  // The loaded family's usual canvases (models/families/family.cpp), after the model's own size.
  ImGui::SetNextItemWidth(field);
  if (ImGui::BeginCombo("Preset", (std::to_string(r.width) + " x " + std::to_string(r.height)).c_str())) {
    if (s.snap.model) {
      if (ImGui::Selectable("model's native size")) r.width = r.height = s.snap.model->native_size;
      for (const auto& p : s.snap.model->size_presets) {
        const std::string name = std::to_string(p.width) + " x " + std::to_string(p.height) + "  " + p.label;
        if (ImGui::Selectable(name.c_str(), r.width == p.width && r.height == p.height)) {
          s.size_from_model = false;
          r.width = p.width;
          r.height = p.height;
          s.aspect = static_cast<double>(p.width) / p.height;
        }
      }
    } else {
      ImGui::TextDisabled("load a model for its sizes");
    }
    ImGui::EndCombo();
  }
  int w = static_cast<int>(r.width), h = static_cast<int>(r.height);
  ImGui::SetNextItemWidth((field - ImGui::GetStyle().ItemInnerSpacing.x) / 2);
  const float drag = s.snap.model ? static_cast<float>(s.snap.model->size_multiple) : 8.0f;
  const bool w_changed = ImGui::DragInt("##w", &w, drag, 64, 4096, "W %d");
  ImGui::SameLine(0, ImGui::GetStyle().ItemInnerSpacing.x);
  ImGui::SetNextItemWidth((field - ImGui::GetStyle().ItemInnerSpacing.x) / 2);
  const bool h_changed = ImGui::DragInt("##h", &h, drag, 64, 4096, "H %d");
  ImGui::SameLine();
  if (ImGui::Button("\xE2\x87\x85")) std::swap(w, h), s.aspect = 1.0 / s.aspect;  // ⇅
  tooltip("Swap width and height");
  ImGui::SameLine();
  if (ImGui::Checkbox("Lock", &s.aspect_lock) && s.aspect_lock) s.aspect = static_cast<double>(w) / h;
  tooltip("Keep the aspect ratio when changing one side");
  if (w_changed || h_changed) s.size_from_model = false;
  const int step = s.snap.model ? s.snap.model->size_multiple : 8;
  if (w_changed) {
    r.width = round_to(w, step);
    if (s.aspect_lock) r.height = round_to(r.width / s.aspect, step);
  } else if (h_changed) {
    r.height = round_to(h, step);
    if (s.aspect_lock) r.width = round_to(r.height * s.aspect, step);
  } else {
    r.width = w;
    r.height = h;
  }
  const int64_t f = s.snap.model ? s.snap.model->latent_downscale : 8;
  ImGui::TextColored(kDimV, "latent %lld x %lld  \xC2\xB7  multiples of %lld", static_cast<long long>(r.width / f),
                     static_cast<long long>(r.height / f), static_cast<long long>(f));
}

// Batch size and count, clip skip.
void draw_batch_section(AppState& s, float field) {
  auto& r = s.request;
  section("Batch");
  const float third = (field - 2 * ImGui::GetStyle().ItemInnerSpacing.x) / 3;
  int bs = static_cast<int>(r.batch_size), bc = static_cast<int>(r.batch_count), cs = static_cast<int>(r.clip_skip);
  ImGui::SetNextItemWidth(third);
  if (ImGui::DragInt("##bs", &bs, 0.1f, 1, 16, "size %d")) r.batch_size = bs;
  tooltip("Images per batch: generated together in one pass (memory grows with it).");
  ImGui::SameLine(0, ImGui::GetStyle().ItemInnerSpacing.x);
  ImGui::SetNextItemWidth(third);
  if (ImGui::DragInt("##bc", &bc, 0.1f, 1, 100, "count %d")) r.batch_count = bc;
  tooltip("Batches run one after the other; seeds continue from the first.");
  ImGui::SameLine(0, ImGui::GetStyle().ItemInnerSpacing.x);
  ImGui::SetNextItemWidth(third);
  if (ImGui::DragInt("##cs", &cs, 0.05f, 1, 12, "clip skip %d")) r.clip_skip = cs;
  tooltip("Text encoder layer counted from the end (1 = last; anime models often use 2).");
}

// eta, seed mode, emphasis, the guidance interval.
void draw_advanced_section(AppState& s, float field) {
  auto& r = s.request;
  if (ImGui::CollapsingHeader("Advanced")) {
    float eta = static_cast<float>(r.eta);
    ImGui::SetNextItemWidth(field);
    if (ImGui::SliderFloat("eta", &eta, -1.0f, 1.0f, eta < 0 ? "solver default" : "%.2f")) r.eta = eta < 0 ? -1 : eta;
    tooltip("Noise added by ancestral / SDE solvers (and DDIM's eta). Below 0: the solver's default.");
    ImGui::SetNextItemWidth(field);
    if (ImGui::BeginCombo("Seed mode", r.seed_mode.c_str())) {
      if (ImGui::Selectable("comfy", r.seed_mode == "comfy")) r.seed_mode = "comfy";
      tooltip("ComfyUI's rule: the same seed makes the same picture as ComfyUI's KSampler, ancestral and SDE samplers included.");
      if (ImGui::Selectable("batch", r.seed_mode == "batch")) r.seed_mode = "batch";
      tooltip("One noise draw of the whole batch; ancestral/SDE noise continues that generator (pictures made before 'comfy').");
      if (ImGui::Selectable("per-image", r.seed_mode == "per-image")) r.seed_mode = "per-image";
      tooltip("Image i uses seed + i (AUTOMATIC1111).");
      ImGui::EndCombo();
    }
    ImGui::SetNextItemWidth(field);
    if (ImGui::BeginCombo("Emphasis", r.emphasis.c_str())) {
      for (const char* e : {"original", "no-norm", "none"})
        if (ImGui::Selectable(e, r.emphasis == e)) r.emphasis = e;
      ImGui::EndCombo();
    }
    tooltip("original: AUTOMATIC1111's (word:1.2) weights with the mean restored; none: brackets are plain text.");
    float lo = static_cast<float>(r.cfg_sigma_low), hi = static_cast<float>(r.cfg_sigma_high);
    ImGui::SetNextItemWidth(field);
    if (ImGui::DragFloatRange2("CFG sigmas", &lo, &hi, 0.05f, 0.0f, 100.0f, "from %.2f", hi <= 0 ? "to max" : "to %.2f")) {
      r.cfg_sigma_low = lo;
      r.cfg_sigma_high = hi;
    }
    tooltip("Apply guidance only for sigma in this interval (Kynkaanniemi et al. 2024); 0..max = everywhere.");
  }
}

}  // namespace

void draw_sampling_tab(AppState& s) {
  const float field = std::max(140 * s.scale, ImGui::GetContentRegionAvail().x - 130 * s.scale);
  draw_sampler_section(s, field);
  draw_seed_section(s, field);
  draw_size_section(s, field);
  draw_batch_section(s, field);
  draw_advanced_section(s, field);
}

}  // namespace sigma::ui
