// Stochastic multistep solvers and the classic discrete-time samplers, all on D(x; σ).
// dpmpp_2m_sde / dpmpp_3m_sde follow k-diffusion's numerics in ComfyUI's half-log-SNR form
// (λ = ln(α/σ), α from SamplerOptions::renoising) so one code path serves VE and flow.
// ddim and ddpm are written in their papers' ᾱ variables: a model path x = α·x0 + σ·n is,
// divided by √(α²+σ²), the VP variable with ᾱ = α²/(α²+σ²). That DDIM η = 0 then equals
// euler on the same σ grid is a test (tests/test_samplers_unit.cpp), not an assumption.
#include "samplers/solver_util.h"
#include "samplers/solvers.h"

namespace sigma::samplers {
using detail::report;
using torch::Tensor;

// DPM-Solver++(2M) SDE (Lu et al. 2022b; k-diffusion's sample_dpmpp_2m_sde).
Tensor dpmpp_2m_sde(const Denoiser& model, Tensor x, const std::vector<double>& sigmas_in, const SamplerOptions& o) {
  detail::check_sigmas("dpmpp_2m_sde", sigmas_in);
  if (o.solver_type != "midpoint" && o.solver_type != "heun")
    throw std::invalid_argument("sampler dpmpp_2m_sde: solver_type must be 'midpoint' or 'heun', got '" +
                                o.solver_type + "'");
  const auto sigmas = detail::snr_safe(o, sigmas_in);
  const int n = static_cast<int>(sigmas.size()) - 1;
  const double eta = o.eta;
  Tensor old_denoised;
  double h = 0, h_last = 0;
  for (int i = 0; i < n; ++i) {
    auto denoised = model(x, sigmas[i]);
    report(o, i, n, sigmas[i], sigmas[i + 1], x, denoised);
    if (sigmas[i + 1] == 0) {
      x = denoised;
    } else {
      const double lambda_s = detail::half_log_snr(o, sigmas[i]);
      const double lambda_t = detail::half_log_snr(o, sigmas[i + 1]);
      h = lambda_t - lambda_s;
      const double h_eta = h * (eta + 1);
      const double alpha_t = detail::alpha(o, sigmas[i + 1]);
      const double one_minus = -std::expm1(-h_eta);
      x = (sigmas[i + 1] / sigmas[i] * std::exp(-h * eta)) * x + (alpha_t * one_minus) * denoised;
      if (old_denoised.defined()) {
        const double r = h_last / h;
        if (o.solver_type == "heun")
          x = x + (alpha_t * (one_minus / (-h_eta) + 1) * (1 / r)) * (denoised - old_denoised);
        else
          x = x + (0.5 * alpha_t * one_minus * (1 / r)) * (denoised - old_denoised);
      }
      if (eta != 0)
        x = x + detail::noise(o, "dpmpp_2m_sde", sigmas[i], sigmas[i + 1], x) *
                    (sigmas[i + 1] * std::sqrt(-std::expm1(-2 * h * eta)) * o.s_noise);
    }
    old_denoised = denoised;
    h_last = h;
  }
  return x;
}

// ComfyUI's sample_dpmpp_2m_sde_heun: the same solver with the Heun-type second-order term.
Tensor dpmpp_2m_sde_heun(const Denoiser& model, Tensor x, const std::vector<double>& sigmas, const SamplerOptions& o) {
  auto heun = o;
  heun.solver_type = "heun";
  return dpmpp_2m_sde(model, std::move(x), sigmas, heun);
}

// DPM-Solver++(3M) SDE (Lu et al. 2022b; k-diffusion's sample_dpmpp_3m_sde).
Tensor dpmpp_3m_sde(const Denoiser& model, Tensor x, const std::vector<double>& sigmas_in, const SamplerOptions& o) {
  detail::check_sigmas("dpmpp_3m_sde", sigmas_in);
  const auto sigmas = detail::snr_safe(o, sigmas_in);
  const int n = static_cast<int>(sigmas.size()) - 1;
  const double eta = o.eta;
  Tensor denoised_1, denoised_2;
  double h = 0, h_1 = 0, h_2 = 0;
  int history = 0;  // how many earlier steps h_1, h_2 hold
  for (int i = 0; i < n; ++i) {
    auto denoised = model(x, sigmas[i]);
    report(o, i, n, sigmas[i], sigmas[i + 1], x, denoised);
    if (sigmas[i + 1] == 0) {
      x = denoised;
    } else {
      const double lambda_s = detail::half_log_snr(o, sigmas[i]);
      const double lambda_t = detail::half_log_snr(o, sigmas[i + 1]);
      h = lambda_t - lambda_s;
      const double h_eta = h * (eta + 1);
      const double alpha_t = detail::alpha(o, sigmas[i + 1]);
      x = (sigmas[i + 1] / sigmas[i] * std::exp(-h * eta)) * x + (alpha_t * -std::expm1(-h_eta)) * denoised;
      const double phi_2 = std::expm1(-h_eta) / h_eta + 1;
      if (history >= 2) {
        const double r0 = h_1 / h, r1 = h_2 / h;
        auto d1_0 = (denoised - denoised_1) / r0;
        auto d1_1 = (denoised_1 - denoised_2) / r1;
        auto d1 = d1_0 + (d1_0 - d1_1) * (r0 / (r0 + r1));
        auto d2 = (d1_0 - d1_1) / (r0 + r1);
        const double phi_3 = phi_2 / h_eta - 0.5;
        x = x + (alpha_t * phi_2) * d1 - (alpha_t * phi_3) * d2;
      } else if (history == 1) {
        const double r = h_1 / h;
        x = x + (alpha_t * phi_2) * ((denoised - denoised_1) / r);
      }
      if (eta != 0)
        x = x + detail::noise(o, "dpmpp_3m_sde", sigmas[i], sigmas[i + 1], x) *
                    (sigmas[i + 1] * std::sqrt(-std::expm1(-2 * h * eta)) * o.s_noise);
    }
    denoised_2 = denoised_1;
    denoised_1 = denoised;
    h_2 = h_1;
    h_1 = h;
    history = std::min(history + 1, 2);
  }
  return x;
}

namespace {

// The VP view of level σ on the model's path: ᾱ and the factor √(α²+σ²) with x_vp = x/that.
struct VpLevel {
  double abar, scale;
};
VpLevel vp_level(const SamplerOptions& o, double sigma) {
  const double a = detail::alpha(o, sigma);
  const double scale = std::sqrt(a * a + sigma * sigma);
  return {a * a / (scale * scale), scale};
}

}  // namespace

// DDIM, Song et al. 2021a, eq. 12: x_{t−1} = √ᾱ_{t−1}·x̂0 + √(1−ᾱ_{t−1}−σ_t²)·ε̂ + σ_t·z
// with σ_t = η·√((1−ᾱ_{t−1})/(1−ᾱ_t))·√(1−ᾱ_t/ᾱ_{t−1}).
Tensor ddim(const Denoiser& model, Tensor x, const std::vector<double>& sigmas, const SamplerOptions& o) {
  detail::check_sigmas("ddim", sigmas);
  const int n = static_cast<int>(sigmas.size()) - 1;
  for (int i = 0; i < n; ++i) {
    auto x0 = model(x, sigmas[i]);
    report(o, i, n, sigmas[i], sigmas[i + 1], x, x0);
    const auto cur = vp_level(o, sigmas[i]), next = vp_level(o, sigmas[i + 1]);
    auto eps = (x - detail::alpha(o, sigmas[i]) * x0) / sigmas[i];
    const double sigma_t =
        o.eta * std::sqrt((1 - next.abar) / (1 - cur.abar)) * std::sqrt(std::max(0.0, 1 - cur.abar / next.abar));
    auto x_prev = std::sqrt(next.abar) * x0 + std::sqrt(std::max(0.0, 1 - next.abar - sigma_t * sigma_t)) * eps;
    if (sigma_t > 0) x_prev = x_prev + detail::noise(o, "ddim", sigmas[i], sigmas[i + 1], x) * sigma_t;
    x = next.scale * x_prev;
  }
  return x;
}

// DDPM ancestral sampling, Ho et al. 2020, eqs. 6-7: x_{t−1} ~ N(μ̃(x_t, x̂0), β̃_t) with the
// posterior mean μ̃ = √ᾱ_{t−1}β_t/(1−ᾱ_t)·x̂0 + √α_t(1−ᾱ_{t−1})/(1−ᾱ_t)·x_t and
// β̃_t = (1−ᾱ_{t−1})/(1−ᾱ_t)·β_t, where α_t = ᾱ_t/ᾱ_{t−1} spans one step of the σ list.
Tensor ddpm(const Denoiser& model, Tensor x, const std::vector<double>& sigmas, const SamplerOptions& o) {
  detail::check_sigmas("ddpm", sigmas);
  const int n = static_cast<int>(sigmas.size()) - 1;
  for (int i = 0; i < n; ++i) {
    auto x0 = model(x, sigmas[i]);
    report(o, i, n, sigmas[i], sigmas[i + 1], x, x0);
    const auto cur = vp_level(o, sigmas[i]), next = vp_level(o, sigmas[i + 1]);
    const double alpha_t = cur.abar / next.abar, beta_t = 1 - alpha_t;
    auto x_t = x / cur.scale;
    auto mean = (std::sqrt(next.abar) * beta_t / (1 - cur.abar)) * x0 +
                (std::sqrt(alpha_t) * (1 - next.abar) / (1 - cur.abar)) * x_t;
    const double var = (1 - next.abar) / (1 - cur.abar) * beta_t;
    if (sigmas[i + 1] > 0) mean = mean + detail::noise(o, "ddpm", sigmas[i], sigmas[i + 1], x) * std::sqrt(var);
    x = next.scale * mean;
  }
  return x;
}

// Reverse-time SDE by Euler–Maruyama: Song et al. 2021b's reverse-diffusion predictor for the
// VE SDE, x_{i−1} = x_i + (σ_i² − σ_{i−1}²)·∇log p + √(σ_i² − σ_{i−1}²)·z, ∇log p = (D − x)/σ²,
// applied on the VE scale σ/α; the step to σ = 0 is the noise-free x = D (Tweedie).
Tensor reverse_sde(const Denoiser& model, Tensor x, const std::vector<double>& sigmas_in, const SamplerOptions& o) {
  detail::check_sigmas("reverse_sde", sigmas_in);
  const auto sigmas = detail::snr_safe(o, sigmas_in);
  const int n = static_cast<int>(sigmas.size()) - 1;
  for (int i = 0; i < n; ++i) {
    auto denoised = model(x, sigmas[i]);
    report(o, i, n, sigmas[i], sigmas[i + 1], x, denoised);
    if (sigmas[i + 1] == 0) {
      x = denoised;
      continue;
    }
    const double a = detail::alpha(o, sigmas[i]), a_next = detail::alpha(o, sigmas[i + 1]);
    const double s = sigmas[i] / a, s_next = sigmas[i + 1] / a_next;  // VE-scale σ
    const double var = s * s - s_next * s_next;
    auto x_ve = x / a;
    x_ve = x_ve + (var / (s * s)) * (denoised - x_ve) +
           detail::noise(o, "reverse_sde", sigmas[i], sigmas[i + 1], x) * std::sqrt(var);
    x = a_next * x_ve;
  }
  return x;
}

}  // namespace sigma::samplers
