// The vocabulary every solver, schedule and caller of samplers/ shares (DESIGN.md,
// "The one idea"): a model is a denoiser D(x; σ) on the variance-exploding variable of
// Karras et al. 2022, a run is a list of σ ending where the sampler stops, and noise
// and progress are injected so tests can replay recorded noise and a GUI can cancel.
#pragma once

#include <torch/torch.h>

#include <cmath>
#include <exception>
#include <functional>
#include <string>
#include <vector>

namespace sigma::samplers {

// D(x; σ): the estimate of the clean latent, x in the VE/EDM variable (flow models: x_t, σ = t).
using Denoiser = std::function<torch::Tensor(const torch::Tensor& x, double sigma)>;
// A unit-normal tensor shaped like x for the step σ → σ_next, in the order the solver asks.
using NoiseSource = std::function<torch::Tensor(double sigma, double sigma_next)>;

// What the step callback sees: `x` is the state D was evaluated at (σ is that level,
// after EDM churn for euler/heun/dpm_2), `denoised` the estimate a preview shows.
struct StepInfo {
  int step, total;
  double sigma, sigma_next;
  const torch::Tensor& x;
  const torch::Tensor& denoised;
};

// One ancestral step: go deterministically to σ_down, then x ← x_scale·x + σ_up·noise.
struct AncestralStep {
  double sigma_down, sigma_up, x_scale;
};

// The facts about the model's noise path that stochastic solvers need, x = α(σ)·x0 + σ·n.
// Empty members mean the VE path of every ε/v/x0/EDM model (α = 1, λ = −ln σ,
// k-diffusion's get_ancestral_step); ModelSampling::renoising() fills them for rectified
// flow (α = 1 − σ and its renoising rule), so no solver knows which model family it runs.
struct Renoising {
  std::function<double(double sigma)> alpha;                         // α(σ)
  std::function<double(double lambda)> sigma_from_half_log_snr;      // inverse of λ(σ) = ln(α/σ)
  std::function<AncestralStep(double sigma, double sigma_next, double eta)> ancestral;
  // Solvers that work in λ replace a first σ ≥ this by it, so λ stays finite (flow at t = 1;
  // ComfyUI's offset_first_sigma_for_snr). Infinity for VE paths.
  double snr_sigma_cap = INFINITY;
};

struct SamplerOptions {
  double eta = 1;                                  // ancestral/SDE noise amount (DDIM's η too)
  double s_churn = 0, s_tmin = 0, s_tmax = INFINITY, s_noise = 1;  // EDM Algorithm 2 churn
  double r = 0.5;                                  // dpmpp_sde's intermediate step fraction
  std::string solver_type = "midpoint";            // dpmpp_2m_sde: "midpoint" | "heun"
  // Adaptive solvers' tolerances; NaN: the solver's own (dopri5 1e-4, 1e-4; dpm_adaptive 0.05, 0.0078).
  double rtol = NAN, atol = NAN;
  int lms_order = 4;                               // lms
  double ge_gamma = 2;                             // gradient_estimation's γ
  Renoising renoising;                             // from ModelSampling::renoising(); empty = VE
  NoiseSource noise;                               // required by stochastic solvers
  std::function<bool(const StepInfo&)> on_step;    // return false to stop (see Cancelled)
};

// Cancellation is a result, not an error: a solver whose on_step returned false throws
// Cancelled (deliberately not a std::exception, so a generic error handler cannot swallow
// it as a failure); `sample()` in registry.h turns it into SampleResult{cancelled = true}.
struct Cancelled {
  int step = 0;            // the step whose callback asked to stop
  torch::Tensor x;         // the state at that step
  torch::Tensor denoised;  // the last denoised estimate (for a final preview)
};

using Sampler = torch::Tensor (*)(const Denoiser&, torch::Tensor x, const std::vector<double>& sigmas,
                                  const SamplerOptions&);

struct SamplerInfo {
  std::string name, description, paper;
  Sampler fn;
  bool stochastic;         // draws from SamplerOptions::noise with its default η
  double default_eta = 1;  // the η a caller should start from (ddim: 0, deterministic DDIM)
  bool brownian = false;   // k-diffusion/ComfyUI draw its noise from a Brownian tree (the SDE samplers)
};

}  // namespace sigma::samplers
