#include "app/process.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#if defined(SIGMA_TSAN) && defined(SIGMA_WITH_OPENCV)
#include <opencv2/core/utility.hpp>
#endif

namespace sigma::app {

namespace {
std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}
}  // namespace

std::string models_root() {
  const char* home = std::getenv("HOME");
  return env_or("SIGMA_MODELS", (std::filesystem::path(home && *home ? home : ".") / "models").string());
}

std::string assets_override() { return env_or("SIGMA_ASSETS", ""); }

std::string cache_dir() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) return (std::filesystem::path(xdg) / "sigma-studio").string();
  const char* home = std::getenv("HOME");
  return (std::filesystem::path(home ? home : "/tmp") / ".cache" / "sigma-studio").string();
}

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
