// σ lists ("schedulers" in user words): where a run evaluates the denoiser and where it
// stops. Each is named as in k-diffusion, ComfyUI or diffusers so that users' settings and
// reference images carry over; each ends where its sampler stops (σ = 0, or σ(ᾱ_0) for
// diffusers' DDIM with set_alpha_to_one off).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "samplers/model_sampling.h"

namespace sigma::samplers {

struct ScheduleOptions {
  double rho = NAN;                          // karras (default 7), polyexponential (default 1)
  double sigma_min = NAN, sigma_max = NAN;   // karras/exponential/polyexponential: override the model's range
  double alpha = 0.6, beta = 0.6;            // beta: the Beta(α, β) distribution's parameters
  int steps_offset = 1;                      // leading: diffusers' steps_offset (SD configs: 1)
  bool set_alpha_to_one = true;              // leading/trailing/linspace: end at σ = 0 (true) or at σ(ᾱ_0)
  bool fractional_timesteps = false;         // linspace: EulerDiscrete's unrounded t, σ interpolated linearly
  std::vector<double> custom;                // custom: the list itself (descending, ≥ 0)
  std::string ays_model = "SD1";             // align_your_steps: the table ("SD1", "SDXL"), from the model family
  double threshold_noise = 0.025;            // linear_quadratic: σ/σmax where the linear part ends
  int linear_steps = 0;                      // linear_quadratic: steps of the linear part (0: steps / 2)
  double gits_coeff = 1.2;                   // gits: the table's coefficient (0.80 .. 1.50 by 0.05)
};

struct ScheduleInfo {
  std::string name, description, paper;
};

// The σ list `name` for `steps` denoiser steps of `model`. Unknown name: std::invalid_argument
// listing every known one.
std::vector<double> make_sigmas(std::string_view name, const ModelSampling& model, int steps,
                                const ScheduleOptions& options = {});
const std::vector<ScheduleInfo>& all_schedules();

// The closed forms, for callers that have no ModelSampling.
std::vector<double> sigmas_karras(int n, double sigma_min, double sigma_max, double rho = 7);
std::vector<double> sigmas_exponential(int n, double sigma_min, double sigma_max);
std::vector<double> sigmas_polyexponential(int n, double sigma_min, double sigma_max, double rho = 1);

// diffusers' timesteps for a spacing ("leading" | "trailing" | "linspace"), first = noisiest,
// on a training grid of `train_steps`; `round` false keeps linspace's fractional values.
std::vector<double> diffusers_timesteps(std::string_view spacing, int train_steps, int steps, int steps_offset,
                                        bool round = true);

// Quantile function of the Beta(a, b) distribution (the "beta" schedule; scipy.stats.beta.ppf).
double beta_ppf(double p, double a, double b);

}  // namespace sigma::samplers
