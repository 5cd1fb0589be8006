// Multistep probability-flow ODE solvers that reuse the slopes of earlier steps instead of
// extra network calls: iPNDM (fixed and variable step), DEIS, gradient estimation, and the
// RES multistep exponential integrator with its ancestral form. Numerics follow ComfyUI's
// comfy/k_diffusion/sampling.py, whose outputs the samplers2 fixture records. They work in
// x's own space on the slope d = (x − D)/σ, which is the ODE's dx/dσ on the VE path and on
// rectified flow alike, so they need no renoising rule except the ancestral step.
#include <cmath>
#include <deque>

#include "samplers/solver_util.h"
#include "samplers/solvers.h"

namespace sigma::samplers {
using detail::report;
using detail::to_d;
using torch::Tensor;

namespace {

// The last `keep` slopes, newest last (ComfyUI's buffer of max_order − 1 entries).
struct SlopeBuffer {
  size_t keep;
  std::deque<Tensor> d;
  void push(const Tensor& t) {
    d.push_back(t);
    if (d.size() > keep) d.pop_front();
  }
  const Tensor& back(size_t k) const { return d[d.size() - 1 - k]; }  // k = 0: the previous step's
};

// Adams–Bashforth weights for iPNDM at order 1..4 (Zhang & Chen 2023, eq. 9).
Tensor ipndm_slope(int order, const Tensor& d, const SlopeBuffer& b) {
  switch (order) {
    case 1: return d;
    case 2: return (3 * d - b.back(0)) / 2;
    case 3: return (23 * d - 16 * b.back(0) + 5 * b.back(1)) / 12;
    default: return (55 * d - 59 * b.back(0) + 37 * b.back(1) - 9 * b.back(2)) / 24;
  }
}

// Variable-step iPNDM: the Adams–Bashforth weights for the actual step sizes h_n, h_{n−1}, ...
// (Zhang & Chen 2023, appendix; ComfyUI's sample_ipndm_v, operator order kept).
Tensor ipndm_v_slope(int order, const Tensor& d, const SlopeBuffer& b, const std::vector<double>& s, int i) {
  if (order == 1) return d;
  const double h_n = s[i + 1] - s[i], h_n_1 = s[i] - s[i - 1];
  if (order == 2) {
    const double c1 = (2 + h_n / h_n_1) / 2, c2 = -(h_n / h_n_1) / 2;
    return c1 * d + c2 * b.back(0);
  }
  const double h_n_2 = s[i - 1] - s[i - 2];
  const double temp1 = (1 - h_n / (3 * (h_n + h_n_1)) * (h_n * (h_n + h_n_1)) / (h_n_1 * (h_n_1 + h_n_2))) / 2;
  if (order == 3) {
    const double c1 = (2 + h_n / h_n_1) / 2 + temp1;
    const double c2 = -(h_n / h_n_1) / 2 - (1 + h_n_1 / h_n_2) * temp1;
    const double c3 = temp1 * h_n_1 / h_n_2;
    return c1 * d + c2 * b.back(0) + c3 * b.back(1);
  }
  const double h_n_3 = s[i - 2] - s[i - 3];
  const double temp2 = ((1 - h_n / (3 * (h_n + h_n_1))) / 2 + (1 - h_n / (2 * (h_n + h_n_1))) * h_n / (6 * (h_n + h_n_1 + h_n_2))) *
                       (h_n * (h_n + h_n_1) * (h_n + h_n_1 + h_n_2)) / (h_n_1 * (h_n_1 + h_n_2) * (h_n_1 + h_n_2 + h_n_3));
  const double q = h_n_1 * (h_n_1 + h_n_2) / (h_n_2 * (h_n_2 + h_n_3));
  const double c1 = (2 + h_n / h_n_1) / 2 + temp1 + temp2;
  const double c2 = -(h_n / h_n_1) / 2 - (1 + h_n_1 / h_n_2) * temp1 - (1 + h_n_1 / h_n_2 + q) * temp2;
  const double c3 = temp1 * h_n_1 / h_n_2 + ((h_n_1 / h_n_2) + q * (1 + h_n_2 / h_n_3)) * temp2;
  const double c4 = -temp2 * q * h_n_1 / h_n_2;
  return c1 * d + c2 * b.back(0) + c3 * b.back(1) + c4 * b.back(2);
}

Tensor ipndm_run(const char* name, bool variable, const Denoiser& model, Tensor x, const std::vector<double>& s,
                 const SamplerOptions& o) {
  detail::check_sigmas(name, s);
  const int n = static_cast<int>(s.size()) - 1, max_order = 4;
  SlopeBuffer buf{max_order - 1, {}};
  for (int i = 0; i < n; ++i) {
    auto denoised = model(x, s[i]);
    report(o, i, n, s[i], s[i + 1], x, denoised);
    auto d = to_d(x, s[i], denoised);
    const int order = std::min(max_order, i + 1);
    if (s[i + 1] == 0)
      x = denoised;
    else
      x = x + (s[i + 1] - s[i]) * (variable ? ipndm_v_slope(order, d, buf, s, i) : ipndm_slope(order, d, buf));
    buf.push(d);
  }
  return x;
}

// DEIS's "tab" coefficients (Zhang & Chen 2023, eq. 14): the exponential integrator's weights
// for the last `order` slopes, integrated numerically on a VP time t(σ) with 10,000 points.
// The VP constants are ComfyUI's deis.py edm2t as it computes them: 0.002 squared in float32
// and 80 as an integer, which makes β_min slightly negative (−0.0047); the reference uses
// them, so the weights do too.
std::vector<std::vector<double>> deis_coefficients(const std::vector<double>& sigmas, int max_order) {
  const float a = 0.002f;
  const float A = std::log(a * a + 1.0f);
  const float A2 = A / 1e-3f;
  const double C = std::log(80.0 * 80.0 + 1.0);
  const double beta_d = 2 * (double(A2) - C) / (1e-3 - 1);
  const double beta_min = C - 0.5 * beta_d;
  const double beta_1 = beta_d + beta_min;
  std::vector<double> t;
  for (double s : sigmas)
    t.push_back((std::sqrt(beta_min * beta_min + 2 * beta_d * std::log(s * s + 1)) - beta_min) / beta_d);
  const int N = 10000;
  std::vector<std::vector<double>> coeffs;
  for (size_t i = 0; i + 1 < t.size(); ++i) {
    const int order = std::min<int>(static_cast<int>(i) + 1, max_order);
    std::vector<double> c(static_cast<size_t>(order), 0.0);
    if (order > 1) {
      std::vector<double> prev;
      for (int k = 0; k < order; ++k) prev.push_back(t[i - static_cast<size_t>(k)]);
      const double dtau = (t[i + 1] - t[i]) / N;  // over N, as the reference (not N − 1)
      for (int p = 0; p < N; ++p) {
        const double tau = t[i] + (t[i + 1] - t[i]) * p / (N - 1);
        const double alpha = std::exp(-0.5 * tau * tau * (beta_1 - beta_min) - tau * beta_min);
        const double dlog = -(tau * (beta_1 - beta_min) + beta_min);
        const double integrand = -0.5 * dlog / std::sqrt(alpha * (1 - alpha));
        for (int j = 0; j < order; ++j) {
          double poly = 1;
          for (int k = 0; k < order; ++k)
            if (k != j) poly *= (tau - prev[k]) / (prev[j] - prev[k]);
          c[static_cast<size_t>(j)] += integrand * poly * dtau;
        }
      }
    }
    coeffs.push_back(c);
  }
  return coeffs;
}

// RES multistep (Zhang et al. 2023, "Improved order analysis of exponential integrators"):
// second order in λ = −ln σ from the last two data predictions; with η > 0 an ancestral step.
Tensor res_multistep_run(const char* name, double eta, const Denoiser& model, Tensor x, const std::vector<double>& s,
                         const SamplerOptions& o) {
  detail::check_sigmas(name, s);
  const int n = static_cast<int>(s.size()) - 1;
  auto t_fn = [](double sigma) { return -std::log(sigma); };
  auto phi1 = [](double h) { return std::expm1(h) / h; };
  auto phi2 = [&](double h) { return (phi1(h) - 1.0) / h; };
  Tensor old_denoised;
  double old_sigma_down = 0;
  for (int i = 0; i < n; ++i) {
    auto denoised = model(x, s[i]);
    report(o, i, n, s[i], s[i + 1], x, denoised);
    const auto step = detail::ancestral_step(o, s[i], s[i + 1], eta);
    if (step.sigma_down == 0 || !old_denoised.defined()) {
      x = x + to_d(x, s[i], denoised) * (step.sigma_down - s[i]);
    } else {
      const double t = t_fn(s[i]), t_old = t_fn(old_sigma_down), t_next = t_fn(step.sigma_down), t_prev = t_fn(s[i - 1]);
      const double h = t_next - t;
      const double c2 = (t_prev - t_old) / h;
      const double p1 = phi1(-h), p2 = phi2(-h);
      const double b1 = std::isnan(p1 - p2 / c2) ? 0.0 : p1 - p2 / c2;
      const double b2 = std::isnan(p2 / c2) ? 0.0 : p2 / c2;
      x = std::exp(-h) * x + h * (b1 * denoised + b2 * old_denoised);
    }
    // The draw is taken even at η = 0 (σ_up = 0), as the reference does: later draws line up.
    if (s[i + 1] > 0) x = step.x_scale * x + detail::noise(o, name, s[i], s[i + 1], x) * (o.s_noise * step.sigma_up);
    old_denoised = denoised;
    old_sigma_down = step.sigma_down;
  }
  return x;
}

}  // namespace

Tensor ipndm(const Denoiser& model, Tensor x, const std::vector<double>& sigmas, const SamplerOptions& o) {
  return ipndm_run("ipndm", false, model, std::move(x), sigmas, o);
}

Tensor ipndm_v(const Denoiser& model, Tensor x, const std::vector<double>& sigmas, const SamplerOptions& o) {
  return ipndm_run("ipndm_v", true, model, std::move(x), sigmas, o);
}

Tensor deis(const Denoiser& model, Tensor x, const std::vector<double>& sigmas, const SamplerOptions& o) {
  detail::check_sigmas("deis", sigmas);
  const int n = static_cast<int>(sigmas.size()) - 1, max_order = 3;
  const auto coeffs = deis_coefficients(sigmas, max_order);
  SlopeBuffer buf{max_order - 1, {}};
  for (int i = 0; i < n; ++i) {
    auto denoised = model(x, sigmas[i]);
    report(o, i, n, sigmas[i], sigmas[i + 1], x, denoised);
    auto d = to_d(x, sigmas[i], denoised);
    const int order = sigmas[i + 1] <= 0 ? 1 : std::min(max_order, i + 1);
    if (order == 1) {
      x = x + (sigmas[i + 1] - sigmas[i]) * d;
    } else {
      const auto& c = coeffs[static_cast<size_t>(i)];
      auto next = x + c[0] * d + c[1] * buf.back(0);
      if (order == 3) next = next + c[2] * buf.back(1);
      x = next;
    }
    buf.push(d);
  }
  return x;
}

Tensor res_multistep(const Denoiser& model, Tensor x, const std::vector<double>& sigmas, const SamplerOptions& o) {
  return res_multistep_run("res_multistep", 0.0, model, std::move(x), sigmas, o);
}

Tensor res_multistep_ancestral(const Denoiser& model, Tensor x, const std::vector<double>& sigmas,
                               const SamplerOptions& o) {
  return res_multistep_run("res_multistep_ancestral", o.eta, model, std::move(x), sigmas, o);
}

// Gradient estimation (Permenter & Yuan 2024, "Interpreting and improving diffusion models
// from an optimization perspective", Algorithm 2): Euler plus γ − 1 times the change in slope.
Tensor gradient_estimation(const Denoiser& model, Tensor x, const std::vector<double>& sigmas, const SamplerOptions& o) {
  detail::check_sigmas("gradient_estimation", sigmas);
  const int n = static_cast<int>(sigmas.size()) - 1;
  const double gamma = o.ge_gamma;
  Tensor old_d;
  for (int i = 0; i < n; ++i) {
    auto denoised = model(x, sigmas[i]);
    report(o, i, n, sigmas[i], sigmas[i + 1], x, denoised);
    auto d = to_d(x, sigmas[i], denoised);
    const double dt = sigmas[i + 1] - sigmas[i];
    if (sigmas[i + 1] == 0) {
      x = denoised;
    } else {
      x = x + d * dt;
      if (i >= 1) x = x + (gamma - 1) * (d - old_d) * dt;
    }
    old_d = d;
  }
  return x;
}

}  // namespace sigma::samplers
