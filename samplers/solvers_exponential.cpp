// Stochastic exponential integrators in the half log-SNR λ = ln(α/σ): ER-SDE and the SEEDS
// family, and LCM's denoise-then-renoise. Numerics follow ComfyUI's
// comfy/k_diffusion/sampling.py (the samplers2 fixture's reference); α, λ and σ(λ) come from
// SamplerOptions::renoising, so the same code runs the VE path and rectified flow.
#include <cmath>

#include "samplers/solver_util.h"
#include "samplers/solvers.h"

namespace sigma::samplers {
using detail::report;
using torch::Tensor;

namespace {

// torch.lerp's rule for scalars: from the nearer end, so w = 1 gives b exactly.
double lerp(double a, double b, double w) { return std::abs(w) < 0.5 ? a + w * (b - a) : b - (b - a) * (1 - w); }
double phi_1(double h) { return std::expm1(h); }             // h·φ₁(h)
double phi_2(double h) { return (std::expm1(h) - h) / h; }   // h·φ₂(h)

// SEEDS keeps its noise coherent across sub-steps: the earlier draw decays by e^{segment}
// (segment = (r_a − r_b)·h·η < 0) and a fresh draw over [σ_a, σ_b] tops the variance up.
Tensor carry_noise(const Tensor& sde_noise, double segment, const SamplerOptions& o, const char* name, double sigma_a,
                   double sigma_b, const Tensor& x) {
  return sde_noise * std::exp(segment) + std::sqrt(-std::expm1(2 * segment)) * detail::noise(o, name, sigma_a, sigma_b, x);
}

}  // namespace

// ER-SDE-Solver-3 (Cui et al. 2023, "Elucidating the solution space of extended reverse-time
// SDEs"): the first-order step with the noise scaler s(λ) = λ(e^{λ^0.3} + 10), plus second-
// and third-order corrections from earlier data predictions, integrated over 200 points.
Tensor er_sde(const Denoiser& model, Tensor x, const std::vector<double>& sigmas_in, const SamplerOptions& o) {
  detail::check_sigmas("er_sde", sigmas_in);
  const auto sigmas = detail::snr_safe(o, sigmas_in);
  const int n = static_cast<int>(sigmas.size()) - 1, max_stage = 3, points = 200;
  auto scaler = [](double v) { return v * (std::exp(std::pow(v, 0.3)) + 10.0); };
  std::vector<double> er;  // e^{−λ} = σ/α
  for (double s : sigmas) er.push_back(s > 0 ? std::exp(-detail::half_log_snr(o, s)) : 0.0);
  Tensor old_denoised, old_denoised_d;
  for (int i = 0; i < n; ++i) {
    auto denoised = model(x, sigmas[i]);
    report(o, i, n, sigmas[i], sigmas[i + 1], x, denoised);
    const int stage = std::min(max_stage, i + 1);
    if (sigmas[i + 1] == 0) {
      x = denoised;
    } else {
      const double ls = er[i], lt = er[i + 1];
      const double alpha_s = sigmas[i] / ls, alpha_t = sigmas[i + 1] / lt;
      const double r = scaler(lt) / scaler(ls);
      x = (alpha_t / alpha_s) * r * x + alpha_t * (1 - r) * denoised;
      if (stage >= 2) {
        const double dt = lt - ls, step = -dt / points;
        double s = 0, s_u = 0;
        for (int k = 0; k < points; ++k) {
          const double pos = lt + k * step;
          s += 1 / scaler(pos);
          s_u += (pos - ls) / scaler(pos);
        }
        s *= step;
        s_u *= step;
        auto denoised_d = (denoised - old_denoised) / (ls - er[i - 1]);
        x = x + alpha_t * (dt + s * scaler(lt)) * denoised_d;
        if (stage >= 3) {
          auto denoised_u = (denoised_d - old_denoised_d) / ((ls - er[i - 2]) / 2);
          x = x + alpha_t * ((dt * dt) / 2 + s_u * scaler(lt)) * denoised_u;
        }
        old_denoised_d = denoised_d;
      }
      if (o.s_noise > 0) {
        const double v = lt * lt - ls * ls * r * r;
        x = x + alpha_t * detail::noise(o, "er_sde", sigmas[i], sigmas[i + 1], x) * (o.s_noise * (v > 0 ? std::sqrt(v) : 0.0));
      }
    }
    old_denoised = denoised;
  }
  return x;
}

// SEEDS-2 (Gonzalez et al. 2023, "SEEDS: Exponential SDE solvers for fast high-quality
// sampling"): one intermediate point at r·h, noise kept coherent across the two sub-steps.
Tensor seeds_2(const Denoiser& model, Tensor x, const std::vector<double>& sigmas_in, const SamplerOptions& o) {
  detail::check_sigmas("seeds_2", sigmas_in);
  const auto sigmas = detail::snr_safe(o, sigmas_in);
  const int n = static_cast<int>(sigmas.size()) - 1;
  const double eta = o.eta, r = o.r, fac = 1 / (2 * r);
  const bool inject = eta > 0 && o.s_noise > 0;
  for (int i = 0; i < n; ++i) {
    auto denoised = model(x, sigmas[i]);
    report(o, i, n, sigmas[i], sigmas[i + 1], x, denoised);
    if (sigmas[i + 1] == 0) {
      x = denoised;
      continue;
    }
    const double lambda_s = detail::half_log_snr(o, sigmas[i]), lambda_t = detail::half_log_snr(o, sigmas[i + 1]);
    const double h = lambda_t - lambda_s, h_eta = h * (eta + 1);
    const double sigma_s_1 = detail::sigma_from_half_log_snr(o, lerp(lambda_s, lambda_t, r));
    const double alpha_s_1 = detail::alpha(o, sigma_s_1), alpha_t = detail::alpha(o, sigmas[i + 1]);
    auto x_2 = sigma_s_1 / sigmas[i] * std::exp(-r * h * eta) * x - alpha_s_1 * phi_1(-r * h_eta) * denoised;
    Tensor sde_noise;
    if (inject) {
      sde_noise = std::sqrt(-std::expm1(-2 * r * h * eta)) * detail::noise(o, "seeds_2", sigmas[i], sigma_s_1, x);
      x_2 = x_2 + sde_noise * (sigma_s_1 * o.s_noise);
    }
    auto denoised_2 = model(x_2, sigma_s_1);
    auto denoised_d = torch::lerp(denoised, denoised_2, fac);
    x = sigmas[i + 1] / sigmas[i] * std::exp(-h * eta) * x - alpha_t * phi_1(-h_eta) * denoised_d;
    if (inject) {
      sde_noise = carry_noise(sde_noise, (r - 1) * h * eta, o, "seeds_2", sigma_s_1, sigmas[i + 1], x);
      x = x + sde_noise * (sigmas[i + 1] * o.s_noise);
    }
  }
  return x;
}

// SEEDS-3 (Gonzalez et al. 2023): intermediate points at h/3 and 2h/3.
Tensor seeds_3(const Denoiser& model, Tensor x, const std::vector<double>& sigmas_in, const SamplerOptions& o) {
  detail::check_sigmas("seeds_3", sigmas_in);
  const auto sigmas = detail::snr_safe(o, sigmas_in);
  const int n = static_cast<int>(sigmas.size()) - 1;
  const double eta = o.eta, r_1 = 1.0 / 3, r_2 = 2.0 / 3;
  const bool inject = eta > 0 && o.s_noise > 0;
  for (int i = 0; i < n; ++i) {
    auto denoised = model(x, sigmas[i]);
    report(o, i, n, sigmas[i], sigmas[i + 1], x, denoised);
    if (sigmas[i + 1] == 0) {
      x = denoised;
      continue;
    }
    const double lambda_s = detail::half_log_snr(o, sigmas[i]), lambda_t = detail::half_log_snr(o, sigmas[i + 1]);
    const double h = lambda_t - lambda_s, h_eta = h * (eta + 1);
    const double sigma_s_1 = detail::sigma_from_half_log_snr(o, lerp(lambda_s, lambda_t, r_1));
    const double sigma_s_2 = detail::sigma_from_half_log_snr(o, lerp(lambda_s, lambda_t, r_2));
    const double alpha_s_1 = detail::alpha(o, sigma_s_1), alpha_s_2 = detail::alpha(o, sigma_s_2);
    const double alpha_t = detail::alpha(o, sigmas[i + 1]);
    auto x_2 = sigma_s_1 / sigmas[i] * std::exp(-r_1 * h * eta) * x - alpha_s_1 * phi_1(-r_1 * h_eta) * denoised;
    Tensor sde_noise;
    if (inject) {
      sde_noise = std::sqrt(-std::expm1(-2 * r_1 * h * eta)) * detail::noise(o, "seeds_3", sigmas[i], sigma_s_1, x);
      x_2 = x_2 + sde_noise * (sigma_s_1 * o.s_noise);
    }
    auto denoised_2 = model(x_2, sigma_s_1);
    const double a3_2 = r_2 / r_1 * phi_2(-r_2 * h_eta), a3_1 = phi_1(-r_2 * h_eta) - a3_2;
    auto x_3 = sigma_s_2 / sigmas[i] * std::exp(-r_2 * h * eta) * x - alpha_s_2 * (a3_1 * denoised + a3_2 * denoised_2);
    if (inject) {
      sde_noise = carry_noise(sde_noise, (r_1 - r_2) * h * eta, o, "seeds_3", sigma_s_1, sigma_s_2, x);
      x_3 = x_3 + sde_noise * (sigma_s_2 * o.s_noise);
    }
    auto denoised_3 = model(x_3, sigma_s_2);
    const double b3 = phi_2(-h_eta) / r_2, b1 = phi_1(-h_eta) - b3;
    x = sigmas[i + 1] / sigmas[i] * std::exp(-h * eta) * x - alpha_t * (b1 * denoised + b3 * denoised_3);
    if (inject) {
      sde_noise = carry_noise(sde_noise, (r_2 - 1) * h * eta, o, "seeds_3", sigma_s_2, sigmas[i + 1], x);
      x = x + sde_noise * (sigmas[i + 1] * o.s_noise);
    }
  }
  return x;
}

// LCM's multistep sampling (Luo et al. 2023, Algorithm 1): jump to the data prediction,
// then noise it afresh to the next σ.
Tensor lcm(const Denoiser& model, Tensor x, const std::vector<double>& sigmas, const SamplerOptions& o) {
  detail::check_sigmas("lcm", sigmas);
  const int n = static_cast<int>(sigmas.size()) - 1;
  for (int i = 0; i < n; ++i) {
    auto denoised = model(x, sigmas[i]);
    report(o, i, n, sigmas[i], sigmas[i + 1], x, denoised);
    x = denoised;
    if (sigmas[i + 1] > 0) {
      auto noise = detail::noise(o, "lcm", sigmas[i], sigmas[i + 1], x);
      if (o.s_noise != 1.0) noise = noise * o.s_noise;
      x = detail::alpha(o, sigmas[i + 1]) * x + sigmas[i + 1] * noise;
    }
  }
  return x;
}

}  // namespace sigma::samplers
