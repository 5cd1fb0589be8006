// What the buttons do. Every button, menu item, file drop and scripted step calls one of
// these, so `--script` exercises exactly the code path a click does. None of them blocks:
// work goes to the job runner and shows up in later snapshots.
#pragma once

#include <string>
#include <vector>

#include "ui/app_state.h"

namespace sigma::ui {

void generate(AppState& s);       // queue the edited request (Generate / Ctrl+Enter)
void cancel(AppState& s);         // stop after the current step, drop the queue
void load_model(AppState& s);     // load the selected checkpoint in the background
// Called first thing every frame, before the snapshot: the model loads that ended since the
// last frame. A finished one releases the generations waiting for it; a failed one puts the
// selection back to the model that was loaded, loads that again and says why (s.error).
void follow_jobs(AppState& s);
// Work the UI still holds back (a load in flight, generations waiting for it): a script's
// "wait idle" waits for this too, as the runner may look idle between the two.
bool ui_pending(const AppState& s);
void use_settings(AppState& s, const app::JobResult& r);  // the gallery's "Use these settings"
void send_to_img2img(AppState& s, const std::string& image_path);
void reuse_last_seed(AppState& s);
void random_seed_now(AppState& s);
void open_folder(AppState& s, const std::string& dir);    // xdg-open, detached
void set_output_dir(AppState& s, const std::string& dir);
void set_preview_every(AppState& s, int steps);
// Files dropped on the window: a checkpoint becomes the model; an image goes to the
// img2img tab or, with the ControlNet tab open, to the selected unit; a PNG with
// Sigma Studio or AUTOMATIC1111 metadata dropped elsewhere loads its settings.
void handle_drop(AppState& s, const std::vector<std::string>& paths);

}  // namespace sigma::ui
