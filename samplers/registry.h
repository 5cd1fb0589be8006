// Names → solvers, for the CLI's --sampler, the GUI's list and saved settings. A name is
// checked when it is looked up, never deep inside a run, and an unknown one produces one
// message listing every known name (DESIGN.md habit 8).
#pragma once

#include <string_view>
#include <vector>

#include "samplers/types.h"

namespace sigma::samplers {

// Unknown name: std::invalid_argument listing all known names.
const SamplerInfo& find_sampler(std::string_view name);
const std::vector<SamplerInfo>& all_samplers();

// A run as a result: cancellation (on_step returning false) is reported here, not thrown.
struct SampleResult {
  torch::Tensor x;         // the final state, or the state at the cancelled step
  torch::Tensor denoised;  // when cancelled: the last denoised estimate (a usable preview)
  bool cancelled = false;
  int steps_done = 0;      // completed steps (sigmas.size() − 1 when not cancelled)
};
SampleResult sample(const SamplerInfo& sampler, const Denoiser& denoiser, torch::Tensor x,
                    const std::vector<double>& sigmas, const SamplerOptions& options);

}  // namespace sigma::samplers
