// LibTorch's profiler API, where 1.13 and 2.x differ (kept apart from torch_compat.h so
// that only `sigma bench` compiles the profiler's headers).
#pragma once

#include <torch/csrc/autograd/profiler_kineto.h>
#include <torch/version.h>

namespace sigma::compat {

// An event's duration in microseconds: 2.x counts in nanoseconds.
inline double profiled_us(const torch::autograd::profiler::KinetoEvent& e) {
#if TORCH_VERSION_MAJOR >= 2
  return static_cast<double>(e.durationNs()) / 1e3;
#else
  return static_cast<double>(e.durationUs());
#endif
}

}  // namespace sigma::compat
