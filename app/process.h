// Process start-up shared by every Sigma Studio binary (CLI, desktop app, test suite).
#pragma once

namespace sigma::app {

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
