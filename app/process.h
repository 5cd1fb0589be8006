// Process start-up shared by every Sigma Studio binary (CLI, desktop app, test suite).
#pragma once

#include <string>

namespace sigma::app {

// The environment the runtime reads, in this one file, on each call (a test or a front end
// may change it). The models root of the command line and the server: $SIGMA_MODELS, else
// ~/models (the GUI has its own setting, AppSettings::models_root, with the same ComfyUI
// layout: loras/, embeddings/, ...).
std::string models_root();
// $SIGMA_ASSETS when set (the bundled model and vocabularies from elsewhere), else empty.
std::string assets_override();
// The per-user cache folder: $XDG_CACHE_HOME/sigma-studio, else ~/.cache/sigma-studio.
std::string cache_dir();

// libgomp reads OMP_WAIT_POLICY when it loads, before main. Its default (spin while
// waiting) makes LibTorch's worker threads fight every other thread for the cores: on a
// 2-core machine a generation ran 5-10x slower next to a UI or a compiler. So re-exec once
// with the passive policy, unless the user chose one; returns only when no re-exec happened.
void reexec_with_passive_openmp(char** argv);

// In a ThreadSanitizer build (-DSIGMA_TSAN=ON), OpenCV runs its loops on the calling thread:
// its parallel loops use TBB's worker threads, which are not instrumented, so TSan cannot see
// their synchronisation and reports races inside cv::Canny. Sequential OpenCV leaves only our
// own threads to check (docs/reliability.md). Does nothing in other builds.
void sequential_opencv_under_tsan();

}  // namespace sigma::app
