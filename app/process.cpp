#include "app/process.h"

#include <unistd.h>

#include <cstdlib>

#if defined(SIGMA_TSAN) && defined(SIGMA_WITH_OPENCV)
#include <opencv2/core/utility.hpp>
#endif

namespace sigma::app {

void reexec_with_passive_openmp(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY")) return;
  setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  execv("/proc/self/exe", argv);  // returns only on failure: then run as we are
}

void sequential_opencv_under_tsan() {
#if defined(SIGMA_TSAN) && defined(SIGMA_WITH_OPENCV)
  cv::setNumThreads(0);
#endif
}

}  // namespace sigma::app
