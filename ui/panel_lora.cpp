// The LoRA row under the prompts: pick one of the LoRAs found under <models root>/loras,
// insert it into the prompt as AUTOMATIC1111's `<lora:NAME:W>` tag, and edit or remove the
// tags the prompt already has. The prompt text stays the one source of truth: the row
// reads the tags from it every frame and writes changes back into it, so a prompt pasted
// from A1111 and one built here are the same thing to the generation.
#include <imgui.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "app/prompt.h"
#include "ui/actions.h"
#include "ui/panels.h"
#include "ui/style.h"

namespace sigma::ui {
namespace {

namespace fs = std::filesystem;

// One `<lora:...>` tag of the prompt: where it stands and what it says.
struct LoraTag {
  size_t begin = 0, length = 0;
  std::string name;
  float weight = 1.0f;  // the first strength (UNet and text unless a second is given)
  std::string rest;     // ":W_TEXT" or named items after the first strength, kept as written
};

// The prompt's lora and lyco tags, as the generation reads them (app::parse_prompt).
std::vector<LoraTag> lora_tags(const std::string& prompt) {
  std::vector<LoraTag> tags;
  for (const auto& tag : app::parse_prompt(prompt).tags) {
    if (tag.type != "lora" && tag.type != "lyco") continue;
    LoraTag t;
    t.begin = tag.begin;
    t.length = tag.length;
    t.name = tag.items.at(0);
    if (tag.items.size() > 1) {
      try {
        t.weight = std::stof(tag.items[1]);
      } catch (const std::exception&) {
        t.weight = 1.0f;  // "te=0.5" style items: the generation reads them; shown at 1
      }
      for (size_t i = 2; i < tag.items.size(); ++i) t.rest += ":" + tag.items[i];
    }
    tags.push_back(t);
  }
  return tags;
}

std::string tag_text(const std::string& name, float weight, const std::string& rest = "") {
  char w[32];
  std::snprintf(w, sizeof w, "%.2f", weight);
  std::string ws = w;
  while (ws.size() > 1 && ws.back() == '0') ws.pop_back();
  if (!ws.empty() && ws.back() == '.') ws.pop_back();
  return "<lora:" + name + ":" + ws + rest + ">";
}

}  // namespace

void draw_loras(AppState& s) {
  const float k = s.scale;
  std::string& prompt = s.request.prompt;
  // The tags already in the prompt, each with its strength and a remove button; edits go
  // back into the prompt text.
  auto tags = lora_tags(prompt);
  for (size_t i = tags.size(); i-- > 0;) {  // from the end, so earlier offsets stay valid
    auto& t = tags[i];
    ImGui::PushID(static_cast<int>(i));
    ImGui::SetNextItemWidth(120 * k);
    float w = t.weight;
    const bool changed = ImGui::DragFloat("##w", &w, 0.01f, -2.0f, 2.0f, "%.2f");
    ImGui::SameLine();
    ImGui::TextUnformatted(t.name.c_str());
    ImGui::SameLine();
    const bool remove = ImGui::SmallButton("remove");
    if (remove) {
      size_t b = t.begin, n = t.length;
      if (b > 0 && prompt[b - 1] == ' ') --b, ++n;  // the space the insert added
      prompt.erase(b, n);
    } else if (changed) {
      prompt.replace(t.begin, t.length, tag_text(t.name, w, t.rest));
    }
    ImGui::PopID();
  }

  if (s.loras.empty()) {
    ImGui::TextColored(kDimV, "LoRA: none found under <models root>/loras (Settings tab)");
    return;
  }
  ImGui::SetNextItemWidth(std::max(120 * k, ImGui::GetContentRegionAvail().x - 220 * k));
  const std::string current = s.lora_pick.empty() ? std::string("LoRA...") : fs::path(s.lora_pick).stem().string();
  if (ImGui::BeginCombo("##lora", current.c_str(), ImGuiComboFlags_HeightLarge)) {
    for (const auto& path : s.loras)
      if (ImGui::Selectable(fs::path(path).stem().string().c_str(), path == s.lora_pick)) s.lora_pick = path;
    ImGui::EndCombo();
  }
  mark(s, "lora_pick");
  tooltip("LoRAs under <models root>/loras (subfolders too); the tag uses the file name without .safetensors");
  ImGui::SameLine();
  ImGui::SetNextItemWidth(90 * k);
  ImGui::DragFloat("##lora_w", &s.lora_weight, 0.01f, -2.0f, 2.0f, "%.2f");
  tooltip("Strength of the inserted tag (AUTOMATIC1111: <lora:NAME:W>; 0 = off, 1 = as trained)");
  ImGui::SameLine();
  ImGui::BeginDisabled(s.lora_pick.empty());
  if (ImGui::Button("Insert")) {
    if (!prompt.empty() && prompt.back() != ' ') prompt += ' ';
    prompt += tag_text(fs::path(s.lora_pick).stem().string(), s.lora_weight);
  }
  ImGui::EndDisabled();
  mark(s, "lora_insert");
}

}  // namespace sigma::ui
