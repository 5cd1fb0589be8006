// The model panel: the checkpoint picker in the top bar (models root scan or a path),
// the Model tab (tokenizer, VAE, prediction, device/dtype and what `sigma info` says
// about the loaded model), and the Settings tab (folders, preview rate, settings file).
// Loading never blocks: the bar shows an indeterminate progress bar while it runs.
#include <imgui.h>
#include <imgui_stdlib.h>

#include <filesystem>

#include "ui/actions.h"
#include "ui/panels.h"
#include "ui/style.h"

namespace sigma::ui {
namespace {

void string_combo(const char* id, std::string& value, std::initializer_list<const char*> items) {
  if (ImGui::BeginCombo(id, value.c_str())) {
    for (const char* it : items)
      if (ImGui::Selectable(it, value == it)) value = it;
    ImGui::EndCombo();
  }
}

// What the empty checkpoint list says: that no models folder is set, or which folder held
// none (the scan lists safetensors files and diffusers folders under <root>/checkpoints).
std::string no_checkpoints_hint(const AppState& s) {
  if (s.settings.models_root.empty()) return "no models folder set: choose one in Settings";
  return "no checkpoints in " + (std::filesystem::path(s.settings.models_root) / "checkpoints").string();
}

// The checkpoint picker: the bundled model first (request.model "", the way back from any
// other), then the models root's checkpoints. Entries are marked "checkpoint:bundled" and
// "checkpoint:<i>" for scripts. True when the user picked one.
bool checkpoint_combo(AppState& s) {
  static constexpr const char* kBundled = "sigma-shapes (bundled)";
  const std::string preview = s.request.model.empty() ? kBundled : short_name(s.request.model);
  bool picked = false;
  if (ImGui::BeginCombo("##checkpoint", preview.c_str(), ImGuiComboFlags_HeightLarge)) {
    if (ImGui::Selectable(kBundled, s.request.model.empty())) s.request.model.clear(), picked = true;
    mark(s, "checkpoint:bundled");
    tooltip("The small demo model of shapes that ships with Sigma Studio (assets/models/sigma-shapes.safetensors).");
    if (s.checkpoints.empty()) ImGui::TextColored(kDimV, "%s", no_checkpoints_hint(s).c_str());
    for (size_t i = 0; i < s.checkpoints.size(); ++i) {
      const auto& p = s.checkpoints[i];
      if (ImGui::Selectable(short_name(p).c_str(), p == s.request.model)) s.request.model = p, picked = true;
      mark(s, "checkpoint:" + std::to_string(i));
      tooltip(p);
    }
    ImGui::EndCombo();
  }
  return picked;
}

}  // namespace

void draw_model_bar(AppState& s) {
  const float k = s.scale;
  ImGui::AlignTextToFramePadding();
  ImGui::PushFont(g_fonts.bold);
  ImGui::TextColored(kAccentV, "Sigma Studio");
  ImGui::PopFont();
  ImGui::SameLine(0, 18 * k);
  ImGui::TextColored(kDimV, "Model");
  ImGui::SameLine();
  ImGui::SetNextItemWidth(230 * k);
  if (checkpoint_combo(s)) load_model(s);
  mark(s, "checkpoint_combo");
  tooltip(!s.request.model.empty() ? s.request.model
          : s.checkpoints.empty()  ? "The bundled model; " + no_checkpoints_hint(s) +
                                        ". Type a path on the right, or drop a .safetensors file or diffusers folder on the window."
                                   : std::string("The bundled model, or a checkpoint found under <models root>/checkpoints."));
  ImGui::SameLine();
  ImGui::SetNextItemWidth(std::max(160 * k, ImGui::GetContentRegionAvail().x * 0.32f));
  ImGui::InputTextWithHint("##model-path", "checkpoint path (.safetensors or diffusers folder); empty: bundled model",
                           &s.request.model);
  mark(s, "model_path");
  ImGui::SameLine();
  const bool loading = s.snap.state == app::RunnerState::loading;
  ImGui::BeginDisabled(loading);
  if (ImGui::Button("Load")) load_model(s);
  ImGui::EndDisabled();
  mark(s, "load_model");
  tooltip("Load the model now (Generate also loads it when needed). Loading runs in the background.");
  ImGui::SameLine(0, 14 * k);
  if (loading) {
    char buf[256];
    std::snprintf(buf, sizeof buf, "Loading %s  %.1f s", short_name(s.snap.loading_path).c_str(), s.snap.loading_seconds);
    busy_bar(ImVec2(std::min(ImGui::GetContentRegionAvail().x, 320 * k), ImGui::GetFrameHeight()), buf);
  } else if (s.snap.model) {
    ImGui::AlignTextToFramePadding();
    ImGui::TextColored(kAccentV, "\xE2\x97\x8F");
    ImGui::SameLine();
    ImGui::Text("%s", s.snap.model->name.c_str());
    tooltip(s.snap.model->details);
    ImGui::SameLine();
    clipped_text(s.snap.model->summary, ImGui::GetContentRegionAvail().x, kDimV);
  } else {
    ImGui::AlignTextToFramePadding();
    ImGui::TextColored(kDimV, "no model loaded yet: Generate loads it");
  }
}

void draw_model_tab(AppState& s) {
  const float k = s.scale;
  section("Checkpoint");
  ImGui::SetNextItemWidth(-1);
  ImGui::InputTextWithHint("##ckpt", ".safetensors file or diffusers folder (empty: the bundled model)", &s.request.model);
  ImGui::TextColored(kDimV, "Tokenizer folder (single-file checkpoints)");
  ImGui::SetNextItemWidth(-1);
  ImGui::InputTextWithHint("##tokenizer", "empty: the checkpoint's own, or tokenizer/ beside the file", &s.request.tokenizer);
  tooltip("A folder with vocab.json and merges.txt, e.g. the tokenizer/ folder of any diffusers model of the same family.");
  ImGui::TextColored(kDimV, "VAE");
  ImGui::SetNextItemWidth(-1);
  path_combo("##vae", s.request.vae, s.vaes, "the checkpoint's own VAE", "no VAEs under <models root>/vae");
  mark(s, "vae_combo");
  ImGui::SetNextItemWidth(140 * k);
  std::string prediction = s.request.prediction.empty() ? "auto" : s.request.prediction;
  string_combo("Prediction", prediction, {"auto", "eps", "v"});
  s.request.prediction = prediction == "auto" ? "" : prediction;
  tooltip("auto: read from the checkpoint. Override only for a v-prediction SD 2.x file that is detected wrongly.");

  // A Flux transformer file alone takes its text encoders from separate files (sd.cpp's
  // --clip_l/--t5xxl): found by name beside it or in <root>/text_encoders when left empty.
  section("Text encoders (a Flux transformer alone)");
  ImGui::TextColored(kDimV, "CLIP-L");
  ImGui::SetNextItemWidth(-1);
  path_combo("##clip_l", s.request.clip_l, s.text_encoders, "found by name (clip_l*)",
             "no files under <models root>/text_encoders or clip");
  mark(s, "clip_l_combo");
  tooltip("Flux's first text encoder (its pooled vector), e.g. clip_l.safetensors. Empty: the all-in-one file's own, or "
          "found by name beside the transformer or in <models root>/text_encoders.");
  ImGui::TextColored(kDimV, "T5-XXL");
  ImGui::SetNextItemWidth(-1);
  path_combo("##t5xxl", s.request.t5xxl, s.text_encoders, "found by name (t5xxl*: fp16 first, then fp8)",
             "no files under <models root>/text_encoders or clip");
  mark(s, "t5xxl_combo");
  tooltip("Flux's second text encoder, e.g. t5xxl_fp16.safetensors or t5xxl_fp8_e4m3fn.safetensors (kept in fp8).");
  ImGui::TextColored(kDimV, "T5 tokenizer");
  ImGui::SetNextItemWidth(-1);
  ImGui::InputTextWithHint("##t5_tokenizer", "empty: the diffusers folder's, else T5's bundled vocabulary", &s.request.t5_tokenizer);
  tooltip("A spiece.model or tokenizer.json, for a T5 with its own vocabulary; real T5-XXL files need none.");

  section("Runtime");
  ImGui::SetNextItemWidth(140 * k);
  const auto device = s.settings.device, dtype = s.settings.dtype;
  const bool lowvram = s.settings.lowvram;
  string_combo("Device", s.settings.device, {"auto", "cpu", "cuda"});
  ImGui::SetNextItemWidth(140 * k);
  string_combo("Precision", s.settings.dtype, {"auto", "fp32", "fp16", "bf16"});
  tooltip("auto: fp16 on CUDA; on the CPU bf16 where it has bf16 matrix units (AMX, AVX512-BF16), else fp32 (LibTorch has no fp16 CPU kernels).");
  ImGui::Checkbox("Low VRAM", &s.settings.lowvram);
  tooltip("CUDA: the weights stay in host memory and visit the GPU while used (the UNet block by block); slower, "
          "for GPUs that cannot hold the model. Reloads the model.");
  ImGui::SameLine();
  ImGui::Checkbox("Tiled VAE", &s.request.vae_tiling);
  tooltip("Decode in tiles: the same picture in bounded memory. It happens on its own when a picture would not fit.");
  if (device != s.settings.device || dtype != s.settings.dtype || lowvram != s.settings.lowvram) s.settings_dirty = true;
  if (ImGui::Button("Load this model")) load_model(s);

  section("Loaded model");
  if (s.snap.model) {
    ImGui::TextWrapped("%s", s.snap.model->summary.c_str());
    ImGui::TextColored(kDimV, "loaded in %.1f s", s.snap.model->load_seconds);
    ImGui::PushFont(g_fonts.mono);
    ImGui::BeginChild("info", ImVec2(0, 0), true, ImGuiWindowFlags_HorizontalScrollbar);
    ImGui::TextUnformatted(s.snap.model->details.c_str());
    ImGui::EndChild();
    ImGui::PopFont();
  } else {
    ImGui::TextColored(kDimV, "Nothing loaded yet. Press Load or Generate.");
  }
}

void draw_settings_tab(AppState& s) {
  const float k = s.scale;
  section("Folders");
  ImGui::TextColored(kDimV, "Models root (ComfyUI layout)");
  ImGui::SetNextItemWidth(-70 * k);
  if (ImGui::InputTextWithHint("##root", "folder with checkpoints/ controlnet/ vae/ loras/ embeddings/", &s.settings.models_root))
    s.settings_dirty = true;
  const bool root_done = ImGui::IsItemDeactivatedAfterEdit();
  ImGui::SameLine();
  if (ImGui::Button("Rescan") || root_done) scan_models(s);
  ImGui::TextColored(kDimV, "%zu checkpoints, %zu ControlNets, %zu VAEs found", s.checkpoints.size(), s.controlnets.size(),
                     s.vaes.size());
  ImGui::TextColored(kDimV, "Output folder (numbered PNGs with metadata)");
  std::string out = s.settings.output_dir;
  ImGui::SetNextItemWidth(-70 * k);
  if (ImGui::InputText("##out", &out, ImGuiInputTextFlags_EnterReturnsTrue) || ImGui::IsItemDeactivatedAfterEdit())
    if (!out.empty()) set_output_dir(s, out);
  ImGui::SameLine();
  if (ImGui::Button("Open")) open_folder(s, s.settings.output_dir);

  section("Live preview");
  int every = s.settings.preview_every;
  ImGui::SetNextItemWidth(160 * k);
  if (ImGui::SliderInt("every N steps", &every, 0, 10, every == 0 ? "off" : "%d")) set_preview_every(s, every);
  tooltip("A fast latent-to-RGB approximation of the current denoised estimate (no VAE decode).");

  section("Display");
  ImGui::SetNextItemWidth(160 * k);
  if (ImGui::SliderFloat("UI scale", &s.settings.ui_scale, 0.0f, 3.0f, s.settings.ui_scale <= 0 ? "auto" : "%.2f"))
    s.settings_dirty = true;
  tooltip("0 = the monitor's content scale (HiDPI). Takes effect at the next start.");
  ImGui::TextColored(kDimV, "Content scale now: %.2f", s.scale);

  section("Settings file");
  ImGui::TextWrapped("%s", s.settings_path.c_str());
  if (ImGui::Button("Save now")) persist(s);
  ImGui::SameLine();
  ImGui::TextColored(kDimV, "(also saved on Generate and on exit)");

  section("Keys");
  ImGui::TextColored(kDimV, "Ctrl+Enter  generate\nEscape      cancel the running job\nDrop files  model, img2img, "
                            "ControlNet image, or a PNG's settings");
  ImGui::TextColored(kDimV, "Sigma Studio %s, Dear ImGui %s", SIGMA_VERSION, IMGUI_VERSION);
}

}  // namespace sigma::ui
