// Deterministic solvers of the probability-flow ODE dx/dσ = (x − D(x;σ))/σ (Karras et
// al. 2022, eq. 3), written to match k-diffusion's sampling.py step for step (the fixture
// was made with it): same branch at σ_next = 0, same midpoints, same coefficients.
#include <deque>

#include "samplers/solver_util.h"
#include "samplers/solvers.h"

namespace sigma::samplers {
using detail::report;
using detail::to_d;
using torch::Tensor;

namespace {

// EDM Algorithm 2, lines 4-6: raise σ to σ̂ = σ(1+γ) by adding noise ("churn").
double churn(const SamplerOptions& o, Tensor& x, const std::vector<double>& sigmas, int i, const char* name) {
  const int n = static_cast<int>(sigmas.size()) - 1;
  const double sigma = sigmas[i];
  const double gamma =
      (o.s_tmin <= sigma && sigma <= o.s_tmax) ? std::min(o.s_churn / n, std::sqrt(2.0) - 1.0) : 0.0;
  const double sigma_hat = sigma * (gamma + 1);
  if (gamma > 0) {
    auto eps = detail::noise(o, name, sigma, sigmas[i + 1], x) * o.s_noise;
    x = x + eps * std::sqrt(sigma_hat * sigma_hat - sigma * sigma);
  }
  return sigma_hat;
}

// ∫_{t_i}^{t_{i+1}} of the j-th Lagrange basis polynomial on t_i, t_{i−1}, …, t_{i−order+1}
// (k-diffusion's linear_multistep_coeff). The integrand has degree ≤ 3 for order ≤ 4, so
// 4-point Gauss–Legendre is exact (k-diffusion's scipy quad agrees to rounding).
double lms_coeff(int order, const std::vector<double>& t, int i, int j) {
  static const double node[4] = {-0.8611363115940526, -0.3399810435848563, 0.3399810435848563, 0.8611363115940526};
  static const double weight[4] = {0.3478548451374538, 0.6521451548625461, 0.6521451548625461, 0.3478548451374538};
  const double a = t[i], b = t[i + 1];
  double sum = 0;
  for (int q = 0; q < 4; ++q) {
    const double tau = 0.5 * (b - a) * node[q] + 0.5 * (a + b);
    double prod = 1;
    for (int k = 0; k < order; ++k)
      if (k != j) prod *= (tau - t[i - k]) / (t[i - j] - t[i - k]);
    sum += weight[q] * prod;
  }
  return 0.5 * (b - a) * sum;
}

}  // namespace

// Karras et al. 2022, Algorithm 2 with Euler steps (the first-order ODE solver).
Tensor euler(const Denoiser& model, Tensor x, const std::vector<double>& sigmas, const SamplerOptions& o) {
  detail::check_sigmas("euler", sigmas);
  const int n = static_cast<int>(sigmas.size()) - 1;
  for (int i = 0; i < n; ++i) {
    const double sigma_hat = churn(o, x, sigmas, i, "euler");
    auto denoised = model(x, sigma_hat);
    report(o, i, n, sigma_hat, sigmas[i + 1], x, denoised);
    auto d = to_d(x, sigma_hat, denoised);
    x = x + d * (sigmas[i + 1] - sigma_hat);
  }
  return x;
}

// Karras et al. 2022, Algorithm 2 (Heun's second-order method; Euler on the step to σ = 0).
Tensor heun(const Denoiser& model, Tensor x, const std::vector<double>& sigmas, const SamplerOptions& o) {
  detail::check_sigmas("heun", sigmas);
  const int n = static_cast<int>(sigmas.size()) - 1;
  for (int i = 0; i < n; ++i) {
    const double sigma_hat = churn(o, x, sigmas, i, "heun");
    auto denoised = model(x, sigma_hat);
    report(o, i, n, sigma_hat, sigmas[i + 1], x, denoised);
    auto d = to_d(x, sigma_hat, denoised);
    const double dt = sigmas[i + 1] - sigma_hat;
    if (sigmas[i + 1] == 0) {
      x = x + d * dt;
    } else {
      auto x_2 = x + d * dt;
      auto d_2 = to_d(x_2, sigmas[i + 1], model(x_2, sigmas[i + 1]));
      x = x + (d + d_2) / 2 * dt;
    }
  }
  return x;
}

// Heun++ (ComfyUI's sample_heunpp2): Heun with a third slope two grid points ahead, the
// slopes weighted by their σ over 3·σ_0 (2·σ_0 on the second-to-last step, Euler on the last).
Tensor heunpp2(const Denoiser& model, Tensor x, const std::vector<double>& sigmas, const SamplerOptions& o) {
  detail::check_sigmas("heunpp2", sigmas);
  const int n = static_cast<int>(sigmas.size()) - 1;
  const double s_end = sigmas.back();
  for (int i = 0; i < n; ++i) {
    const double sigma_hat = churn(o, x, sigmas, i, "heunpp2");
    auto denoised = model(x, sigma_hat);
    report(o, i, n, sigma_hat, sigmas[i + 1], x, denoised);
    auto d = to_d(x, sigma_hat, denoised);
    const double dt = sigmas[i + 1] - sigma_hat;
    if (sigmas[i + 1] == s_end) {
      x = x + d * dt;
      continue;
    }
    auto x_2 = x + d * dt;
    auto d_2 = to_d(x_2, sigmas[i + 1], model(x_2, sigmas[i + 1]));
    if (sigmas[i + 2] == s_end) {
      const double w2 = sigmas[i + 1] / (2 * sigmas[0]), w1 = 1 - w2;
      x = x + (d * w1 + d_2 * w2) * dt;
    } else {
      auto x_3 = x_2 + d_2 * (sigmas[i + 2] - sigmas[i + 1]);
      auto d_3 = to_d(x_3, sigmas[i + 2], model(x_3, sigmas[i + 2]));
      const double w = 3 * sigmas[0], w2 = sigmas[i + 1] / w, w3 = sigmas[i + 2] / w, w1 = 1 - w2 - w3;
      x = x + (w1 * d + w2 * d_2 + w3 * d_3) * dt;
    }
  }
  return x;
}

// DPM-Solver-2 (Lu et al. 2022) in Karras' σ form: midpoint at the geometric mean of σ̂, σ_next.
Tensor dpm_2(const Denoiser& model, Tensor x, const std::vector<double>& sigmas, const SamplerOptions& o) {
  detail::check_sigmas("dpm_2", sigmas);
  const int n = static_cast<int>(sigmas.size()) - 1;
  for (int i = 0; i < n; ++i) {
    const double sigma_hat = churn(o, x, sigmas, i, "dpm_2");
    auto denoised = model(x, sigma_hat);
    report(o, i, n, sigma_hat, sigmas[i + 1], x, denoised);
    auto d = to_d(x, sigma_hat, denoised);
    if (sigmas[i + 1] == 0) {
      x = x + d * (sigmas[i + 1] - sigma_hat);
    } else {
      const double sigma_mid = std::exp(0.5 * (std::log(sigma_hat) + std::log(sigmas[i + 1])));
      auto x_2 = x + d * (sigma_mid - sigma_hat);
      auto d_2 = to_d(x_2, sigma_mid, model(x_2, sigma_mid));
      x = x + d_2 * (sigmas[i + 1] - sigma_hat);
    }
  }
  return x;
}

// Linear multistep (Adams–Bashforth on the σ grid, order 4), k-diffusion's sample_lms.
Tensor lms(const Denoiser& model, Tensor x, const std::vector<double>& sigmas, const SamplerOptions& o) {
  detail::check_sigmas("lms", sigmas);
  if (o.lms_order < 1 || o.lms_order > 4)
    throw std::invalid_argument("sampler lms: lms_order must be 1..4, got " + std::to_string(o.lms_order));
  const int n = static_cast<int>(sigmas.size()) - 1;
  std::deque<Tensor> ds;  // newest first
  for (int i = 0; i < n; ++i) {
    auto denoised = model(x, sigmas[i]);
    ds.push_front(to_d(x, sigmas[i], denoised));
    if (static_cast<int>(ds.size()) > o.lms_order) ds.pop_back();
    report(o, i, n, sigmas[i], sigmas[i + 1], x, denoised);
    const int order = std::min(i + 1, o.lms_order);
    Tensor update = ds[0] * lms_coeff(order, sigmas, i, 0);
    for (int j = 1; j < order; ++j) update = update + ds[j] * lms_coeff(order, sigmas, i, j);
    x = x + update;
  }
  return x;
}

// DPM-Solver++(2M), Lu et al. 2022b: second-order multistep in t = −ln σ on the data prediction.
Tensor dpmpp_2m(const Denoiser& model, Tensor x, const std::vector<double>& sigmas, const SamplerOptions& o) {
  detail::check_sigmas("dpmpp_2m", sigmas);
  const int n = static_cast<int>(sigmas.size()) - 1;
  Tensor old_denoised;
  for (int i = 0; i < n; ++i) {
    auto denoised = model(x, sigmas[i]);
    report(o, i, n, sigmas[i], sigmas[i + 1], x, denoised);
    if (sigmas[i + 1] == 0) {
      x = denoised;  // the first-order step to σ = 0 (σ_next/σ = 0, −expm1(−∞) = 1)
    } else {
      const double t = -std::log(sigmas[i]), t_next = -std::log(sigmas[i + 1]);
      const double h = t_next - t;
      Tensor denoised_d = denoised;
      if (old_denoised.defined()) {
        const double h_last = t - (-std::log(sigmas[i - 1]));
        const double r = h_last / h;
        denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised;
      }
      x = (sigmas[i + 1] / sigmas[i]) * x - std::expm1(-h) * denoised_d;
    }
    old_denoised = denoised;
  }
  return x;
}

// Rectified-flow Euler (Liu et al. 2022; diffusers' FlowMatchEulerDiscreteScheduler):
// x ← x + (t_next − t)·v with v = (x − D)/t, the same update as euler on σ = t.
Tensor flow_euler(const Denoiser& model, Tensor x, const std::vector<double>& sigmas, const SamplerOptions& o) {
  detail::check_sigmas("flow_euler", sigmas);
  if (sigmas[0] > 1)
    throw std::invalid_argument("sampler flow_euler: flow time t = sigma must lie in [0, 1], got sigma[0] = " +
                                std::to_string(sigmas[0]) + "; use a flow model's schedule");
  const int n = static_cast<int>(sigmas.size()) - 1;
  for (int i = 0; i < n; ++i) {
    auto denoised = model(x, sigmas[i]);
    report(o, i, n, sigmas[i], sigmas[i + 1], x, denoised);
    auto v = to_d(x, sigmas[i], denoised);
    x = x + v * (sigmas[i + 1] - sigmas[i]);
  }
  return x;
}

}  // namespace sigma::samplers
