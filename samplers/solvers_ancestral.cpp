// Ancestral solvers: each step goes deterministically to σ_down and adds fresh noise σ_up
// so the marginal at σ_next is right (k-diffusion's sampling.py, numerics matched to it).
// The split (σ_down, σ_up, x_scale) and the half-log-SNR λ come from the model's noise path
// (SamplerOptions::renoising): the VE rule by default, the rectified-flow rule for flow
// models as ComfyUI does it; the solvers themselves never look at the model family.
#include "samplers/model_sampling.h"
#include "samplers/solver_util.h"
#include "samplers/solvers.h"

namespace sigma::samplers {
using detail::report;
using detail::to_d;
using torch::Tensor;

// Euler steps to σ_down + noise (Ho et al. 2020's ancestral sampling in Karras' σ form).
Tensor euler_ancestral(const Denoiser& model, Tensor x, const std::vector<double>& sigmas, const SamplerOptions& o) {
  detail::check_sigmas("euler_ancestral", sigmas);
  const int n = static_cast<int>(sigmas.size()) - 1;
  for (int i = 0; i < n; ++i) {
    auto denoised = model(x, sigmas[i]);
    const auto step = detail::ancestral_step(o, sigmas[i], sigmas[i + 1], o.eta);
    report(o, i, n, sigmas[i], sigmas[i + 1], x, denoised);
    x = x + to_d(x, sigmas[i], denoised) * (step.sigma_down - sigmas[i]);
    if (sigmas[i + 1] > 0)
      x = step.x_scale * x +
          detail::noise(o, "euler_ancestral", sigmas[i], sigmas[i + 1], x) * (o.s_noise * step.sigma_up);
  }
  return x;
}

// DPM-Solver-2 steps (Lu et al. 2022) to σ_down + noise; no noise when σ_down = 0 (k-diffusion).
Tensor dpm_2_ancestral(const Denoiser& model, Tensor x, const std::vector<double>& sigmas, const SamplerOptions& o) {
  detail::check_sigmas("dpm_2_ancestral", sigmas);
  const int n = static_cast<int>(sigmas.size()) - 1;
  for (int i = 0; i < n; ++i) {
    auto denoised = model(x, sigmas[i]);
    const auto step = detail::ancestral_step(o, sigmas[i], sigmas[i + 1], o.eta);
    report(o, i, n, sigmas[i], sigmas[i + 1], x, denoised);
    auto d = to_d(x, sigmas[i], denoised);
    if (step.sigma_down == 0) {
      x = x + d * (step.sigma_down - sigmas[i]);
    } else {
      const double sigma_mid = std::exp(0.5 * (std::log(sigmas[i]) + std::log(step.sigma_down)));
      auto x_2 = x + d * (sigma_mid - sigmas[i]);
      auto d_2 = to_d(x_2, sigma_mid, model(x_2, sigma_mid));
      x = x + d_2 * (step.sigma_down - sigmas[i]);
      x = step.x_scale * x +
          detail::noise(o, "dpm_2_ancestral", sigmas[i], sigmas[i + 1], x) * (o.s_noise * step.sigma_up);
    }
  }
  return x;
}

// DPM-Solver++(2S) (Lu et al. 2022b) to σ_down + noise. The first-order data-prediction
// step from σ to σ' in x = α·x0 + σ·n is x' = (σ'/σ)·x + (α' − α·σ'/σ)·D, which is
// k-diffusion's (σ'/σ)·x − expm1(−h)·D for α = 1 and ComfyUI's RF form for α = 1 − σ.
Tensor dpmpp_2s_ancestral(const Denoiser& model, Tensor x, const std::vector<double>& sigmas,
                          const SamplerOptions& o) {
  detail::check_sigmas("dpmpp_2s_ancestral", sigmas);
  const int n = static_cast<int>(sigmas.size()) - 1;
  const double cap = o.renoising.snr_sigma_cap;
  auto first_order = [&](const Tensor& x0, double s, double s_to, const Tensor& d) {
    return (s_to / s) * x0 + (detail::alpha(o, s_to) - detail::alpha(o, s) * s_to / s) * d;
  };
  for (int i = 0; i < n; ++i) {
    auto denoised = model(x, sigmas[i]);
    const auto step = detail::ancestral_step(o, sigmas[i], sigmas[i + 1], o.eta);
    report(o, i, n, sigmas[i], sigmas[i + 1], x, denoised);
    if (step.sigma_down == 0) {
      x = x + to_d(x, sigmas[i], denoised) * (step.sigma_down - sigmas[i]);
    } else {
      const double r = 0.5;
      const double lambda = detail::half_log_snr(o, std::min(sigmas[i], cap));
      const double lambda_down = detail::half_log_snr(o, step.sigma_down);
      const double sigma_s = detail::sigma_from_half_log_snr(o, lambda + r * (lambda_down - lambda));
      auto x_2 = first_order(x, sigmas[i], sigma_s, denoised);
      auto denoised_2 = model(x_2, sigma_s);
      x = first_order(x, sigmas[i], step.sigma_down, denoised_2);
    }
    if (sigmas[i + 1] > 0)
      x = step.x_scale * x +
          detail::noise(o, "dpmpp_2s_ancestral", sigmas[i], sigmas[i + 1], x) * (o.s_noise * step.sigma_up);
  }
  return x;
}

// DPM-Solver++ SDE (Lu et al. 2022b, stochastic 2S with intermediate point r): two noise
// draws per step, in k-diffusion's order (its Brownian tree replaced by the noise source),
// in the half-log-SNR form ComfyUI uses so flow models get the same update.
Tensor dpmpp_sde(const Denoiser& model, Tensor x, const std::vector<double>& sigmas_in, const SamplerOptions& o) {
  detail::check_sigmas("dpmpp_sde", sigmas_in);
  const auto sigmas = detail::snr_safe(o, sigmas_in);
  const int n = static_cast<int>(sigmas.size()) - 1;
  const double r = o.r, fac = 1 / (2 * r);
  for (int i = 0; i < n; ++i) {
    auto denoised = model(x, sigmas[i]);
    report(o, i, n, sigmas[i], sigmas[i + 1], x, denoised);
    if (sigmas[i + 1] == 0) {
      x = x + to_d(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i]);
      continue;
    }
    const double lambda_s = detail::half_log_snr(o, sigmas[i]);
    const double lambda_t = detail::half_log_snr(o, sigmas[i + 1]);
    const double h = lambda_t - lambda_s;
    const double lambda_s1 = lambda_s + r * h;
    const double sigma_s1 = detail::sigma_from_half_log_snr(o, lambda_s1);
    const double alpha_s = detail::alpha(o, sigmas[i]), alpha_s1 = detail::alpha(o, sigma_s1);
    const double alpha_t = detail::alpha(o, sigmas[i + 1]);

    // Step 1: to λ_s1 on the VE scale σ/α, with ancestral noise.
    auto st = detail::ve_ancestral_step(std::exp(-lambda_s), std::exp(-lambda_s1), o.eta);
    double h_ = -std::log(st.sigma_down) - lambda_s;
    auto x_2 = (alpha_s1 / alpha_s) * std::exp(-h_) * x - alpha_s1 * std::expm1(-h_) * denoised;
    x_2 = x_2 + detail::noise(o, "dpmpp_sde", sigmas[i], sigma_s1, x) * (alpha_s1 * o.s_noise * st.sigma_up);
    auto denoised_2 = model(x_2, sigma_s1);

    // Step 2: to λ_t with the combined data prediction.
    st = detail::ve_ancestral_step(std::exp(-lambda_s), std::exp(-lambda_t), o.eta);
    h_ = -std::log(st.sigma_down) - lambda_s;
    auto denoised_d = (1 - fac) * denoised + fac * denoised_2;
    x = (alpha_t / alpha_s) * std::exp(-h_) * x - alpha_t * std::expm1(-h_) * denoised_d;
    x = x + detail::noise(o, "dpmpp_sde", sigmas[i], sigmas[i + 1], x) * (alpha_t * o.s_noise * st.sigma_up);
  }
  return x;
}

// euler_ancestral with the rectified-flow renoising rule (ComfyUI's sample_euler_ancestral_RF)
// unless the caller already configured the model's rule.
Tensor flow_euler_ancestral(const Denoiser& model, Tensor x, const std::vector<double>& sigmas,
                            const SamplerOptions& o) {
  if (sigmas.empty() || sigmas[0] > 1)
    throw std::invalid_argument("sampler flow_euler_ancestral: flow time t = sigma must lie in [0, 1]; "
                                "use a flow model's schedule");
  if (o.renoising.ancestral) return euler_ancestral(model, std::move(x), sigmas, o);
  SamplerOptions flow = o;
  flow.renoising = flow_renoising();
  return euler_ancestral(model, std::move(x), sigmas, flow);
}

}  // namespace sigma::samplers
