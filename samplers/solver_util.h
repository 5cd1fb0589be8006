// Helpers every solver file shares, kept in one place so the solvers themselves read like
// the papers' update rules: σ-list validation at the boundary, the step callback with
// cancellation, noise draws, and the noise-path quantities (α, λ, ancestral split) that
// come from SamplerOptions::renoising (VE defaults when empty). Internal to samplers/.
#pragma once

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "samplers/types.h"

namespace sigma::samplers::detail {

// A σ list must have a start and an end, be finite, non-negative and non-increasing.
inline void check_sigmas(const char* solver, const std::vector<double>& s) {
  auto fail = [&](const std::string& why) {
    throw std::invalid_argument(std::string("sampler ") + solver + ": bad sigma list (" + why +
                                "); build it with make_sigmas() or pass a custom descending list ending at 0");
  };
  if (s.size() < 2) fail("needs at least 2 values, got " + std::to_string(s.size()));
  if (!(s[0] > 0)) fail("first sigma must be > 0");
  for (size_t i = 0; i < s.size(); ++i) {
    if (!std::isfinite(s[i]) || s[i] < 0) fail("sigma[" + std::to_string(i) + "] is negative or not finite");
    if (i > 0 && s[i] > s[i - 1]) fail("sigma[" + std::to_string(i) + "] > sigma[" + std::to_string(i - 1) + "]");
  }
}

// Calls on_step; a false return ends the run with Cancelled.
inline void report(const SamplerOptions& o, int i, int n, double sigma, double sigma_next, const torch::Tensor& x,
                   const torch::Tensor& denoised) {
  if (!o.on_step) return;
  if (!o.on_step(StepInfo{i, n, sigma, sigma_next, x, denoised})) throw Cancelled{i, x, denoised};
}

inline torch::Tensor noise(const SamplerOptions& o, const char* solver, double sigma, double sigma_next,
                           const torch::Tensor& like) {
  if (!o.noise)
    throw std::invalid_argument(std::string("sampler ") + solver +
                                " is stochastic and needs SamplerOptions::noise (make_noise_source(x, seed))");
  auto n = o.noise(sigma, sigma_next);
  TORCH_CHECK(n.sizes() == like.sizes(), "noise source returned shape ", n.sizes(), " for x of shape ", like.sizes());
  return n.to(like.device(), like.scalar_type());
}

// (x − D)/σ: the slope of the probability-flow ODE dx/dσ (Karras et al. 2022, eq. 3).
inline torch::Tensor to_d(const torch::Tensor& x, double sigma, const torch::Tensor& denoised) {
  return (x - denoised) / sigma;
}

// k-diffusion's get_ancestral_step: σ_up² = η²·σ_n²(σ² − σ_n²)/σ², σ_down² = σ_n² − σ_up².
inline AncestralStep ve_ancestral_step(double sigma, double sigma_next, double eta) {
  if (eta == 0) return {sigma_next, 0.0, 1.0};
  const double up = std::min(
      sigma_next, eta * std::sqrt(sigma_next * sigma_next * (sigma * sigma - sigma_next * sigma_next) / (sigma * sigma)));
  return {std::sqrt(sigma_next * sigma_next - up * up), up, 1.0};
}

inline AncestralStep ancestral_step(const SamplerOptions& o, double sigma, double sigma_next, double eta) {
  return o.renoising.ancestral ? o.renoising.ancestral(sigma, sigma_next, eta)
                               : ve_ancestral_step(sigma, sigma_next, eta);
}

inline double alpha(const SamplerOptions& o, double sigma) {
  return o.renoising.alpha ? o.renoising.alpha(sigma) : 1.0;
}
// Half log-SNR λ = ln(α/σ) (= −ln σ, k-diffusion's t, on VE paths).
inline double half_log_snr(const SamplerOptions& o, double sigma) {
  return o.renoising.alpha ? std::log(o.renoising.alpha(sigma)) - std::log(sigma) : -std::log(sigma);
}
inline double sigma_from_half_log_snr(const SamplerOptions& o, double lambda) {
  return o.renoising.sigma_from_half_log_snr ? o.renoising.sigma_from_half_log_snr(lambda) : std::exp(-lambda);
}
// The σ list with its first value capped where λ would be infinite (flow at t = 1).
inline std::vector<double> snr_safe(const SamplerOptions& o, std::vector<double> s) {
  if (!s.empty() && s[0] >= o.renoising.snr_sigma_cap) s[0] = o.renoising.snr_sigma_cap;
  return s;
}

}  // namespace sigma::samplers::detail
