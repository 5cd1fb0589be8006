// The data-driven sampler conformance runner (DESIGN.md habit 9): it reads a fixture
// folder's manifest.json + samplers.safetensors and runs every case from the case's own
// fields, so a new reference set needs no new code. The ε-network is a parameter: the
// samplers know no UNet, and the TEST_CASE that owns the real tiny UNet passes it in.
#pragma once

#include <functional>
#include <string>

#include "tests/support.h"

namespace sigma::test {

// ε(x, t, context): x [B,4,H,W] (already c_in-scaled), t [B] float32 network time,
// context [B,77,C]. The UNet's raw output; the runner reads it as ε, v or velocity per case.
using EpsNetwork =
    std::function<torch::Tensor(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& context)>;

// Largest |ours − ref| / |ref| over the entries (|ours| where ref is 0): σ and timestep lists.
double max_rel(const std::vector<double>& ours, const torch::Tensor& ref);

// gauss.*: every sampler output recorded for the closed-form Gaussian denoiser, plus
// gauss.exact against the adaptive ODE solver; tolerance 1e-4.
void run_gauss_sampler_cases(CaseReport& report, const std::string& refs_dir);

// kdiff.*, kdiff_v.*, diffusers.*: CFG on [uncond, cond], noise replayed from noise_tape,
// start per the case's `init`; tolerance 1e-3 (relaxed for half precision by tolerance()).
// Runs on test_device()/test_dtype().
void run_unet_sampler_cases(CaseReport& report, const std::string& refs_dir, const EpsNetwork& eps);

// ../shared/fixtures/sd15-tiny/samplers2 (its README): ComfyUI's schedules (comfy.sigmas.*) and
// samplers (comfy.*), k-diffusion's DPM-Solver (kdiff2.*), ComfyUI's seed rules (comfy_seed.*),
// torchsde's Brownian tree (brownian.*) and diffusers' schedulers (diffusers2.*), each run from
// the case's fields. A case whose sampler, schedule or family this build does not have yet is
// reported as such and counted in `not_built`, so the report's N/M stays the fixture's.
struct Samplers2Report {
  CaseReport report{"samplers2"};
  int not_built = 0;
};
Samplers2Report run_samplers2_cases(const EpsNetwork& eps, const std::string& dir = sd15() + "/samplers2");

// Both of the above into one report, closed with "samplers: N/M cases within tolerance".
CaseReport run_sampler_conformance(const EpsNetwork& eps, const std::string& refs_dir = sd15() + "/refs");

}  // namespace sigma::test
