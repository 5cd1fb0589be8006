// The panels: each is a function of the one AppState (DESIGN.md habit 7), drawn inside
// the window or tab that layout.cpp gives it. They read `s.snap` (this frame's runner
// snapshot), edit `s.request` / `s.settings`, and act only through ui/actions.h.
#pragma once

#include "ui/app_state.h"

namespace sigma::ui {

void draw_main(AppState& s);            // layout.cpp: the columns, tabs and status bar

void draw_model_bar(AppState& s);       // panel_model.cpp: checkpoint picker + summary (top)
void draw_model_tab(AppState& s);       //   paths, tokenizer, VAE, device, full `sigma info`
void draw_settings_tab(AppState& s);    //   folders, preview rate, settings file
void draw_prompt(AppState& s);          // panel_prompt.cpp: prompts, token counts, Generate/Cancel
void draw_loras(AppState& s);           // panel_lora.cpp: insert/edit the prompt's <lora:NAME:W> tags
void draw_sampling_tab(AppState& s);    //   solver, schedule, steps, CFG, seed, size, batch
void draw_img2img_tab(AppState& s);     // panel_img2img.cpp: init image, strength, mask brush
void draw_controlnet_tab(AppState& s);  // panel_controlnet.cpp: units with live hint previews
void draw_canvas(AppState& s);          // panel_canvas.cpp: live preview / result + progress
void draw_gallery(AppState& s);         // panel_gallery.cpp: thumbnails, metadata, reuse

}  // namespace sigma::ui
