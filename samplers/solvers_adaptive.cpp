// The probability-flow ODE solved to a tolerance instead of on a fixed grid: the reference
// against which fixed-step solvers are judged, and the "exact" sampler of the unified view.
// Integrating in s = ln σ turns dx/dσ = (x − D)/σ into dx/ds = x − D(x; eˢ), which is smooth
// over the five decades from σ_max to σ_min, so the step controller has an easy job.
#include "samplers/solver_util.h"
#include "samplers/solvers.h"

namespace sigma::samplers {
using torch::Tensor;

namespace {

// Dormand & Prince 1980, RK5(4)7M tableau (Hairer, Nørsett & Wanner, Table II.5.2).
constexpr double c2 = 1.0 / 5, c3 = 3.0 / 10, c4 = 4.0 / 5, c5 = 8.0 / 9;
constexpr double a21 = 1.0 / 5;
constexpr double a31 = 3.0 / 40, a32 = 9.0 / 40;
constexpr double a41 = 44.0 / 45, a42 = -56.0 / 15, a43 = 32.0 / 9;
constexpr double a51 = 19372.0 / 6561, a52 = -25360.0 / 2187, a53 = 64448.0 / 6561, a54 = -212.0 / 729;
constexpr double a61 = 9017.0 / 3168, a62 = -355.0 / 33, a63 = 46732.0 / 5247, a64 = 49.0 / 176,
                 a65 = -5103.0 / 18656;
constexpr double b1 = 35.0 / 384, b3 = 500.0 / 1113, b4 = 125.0 / 192, b5 = -2187.0 / 6784, b6 = 11.0 / 84;
// b − b̂: the 5th-order minus the embedded 4th-order weights.
constexpr double e1 = 71.0 / 57600, e3 = -71.0 / 16695, e4 = 71.0 / 1920, e5 = -17253.0 / 339200,
                 e6 = 22.0 / 525, e7 = -1.0 / 40;

constexpr int kMaxSteps = 100000;

}  // namespace

// Dormand & Prince 1980 with the standard error-per-step controller (Hairer et al. II.4).
Tensor dopri5(const Denoiser& model, Tensor x, const std::vector<double>& sigmas, const SamplerOptions& options) {
  detail::check_sigmas("dopri5", sigmas);
  auto o = options;
  if (std::isnan(o.rtol)) o.rtol = 1e-4;
  if (std::isnan(o.atol)) o.atol = 1e-4;
  if (!(o.rtol > 0) || !(o.atol > 0))
    throw std::invalid_argument("sampler dopri5: rtol and atol must be > 0");
  const int n = static_cast<int>(sigmas.size()) - 1;
  // f(x, s) = x − D(x; eˢ); also returns D for previews and the final step.
  Tensor last_denoised;
  auto f = [&](const Tensor& xs, double s) {
    last_denoised = model(xs, std::exp(s));
    return xs - last_denoised;
  };

  double s = std::log(sigmas[0]);
  Tensor k1 = f(x, s);
  Tensor denoised_at_s = last_denoised;
  double h = 0;  // 0: take the first segment in one try
  int steps = 0;
  for (int i = 0; i < n; ++i) {
    detail::report(o, i, n, sigmas[i], sigmas[i + 1], x, denoised_at_s);
    if (sigmas[i + 1] == 0) {  // the ODE's end point: D at the smallest σ (k-diffusion's last Euler step)
      x = denoised_at_s;
      break;
    }
    const double s_end = std::log(sigmas[i + 1]);
    if (s_end == s) continue;
    if (h == 0) h = s_end - s;
    while (s > s_end) {
      if (++steps > kMaxSteps)
        throw std::runtime_error("sampler dopri5: no convergence within " + std::to_string(kMaxSteps) +
                                 " steps; loosen rtol/atol");
      h = std::max(h, s_end - s);  // h < 0: do not step past the segment end
      auto k2 = f(x + h * (a21 * k1), s + c2 * h);
      auto k3 = f(x + h * (a31 * k1 + a32 * k2), s + c3 * h);
      auto k4 = f(x + h * (a41 * k1 + a42 * k2 + a43 * k3), s + c4 * h);
      auto k5 = f(x + h * (a51 * k1 + a52 * k2 + a53 * k3 + a54 * k4), s + c5 * h);
      auto k6 = f(x + h * (a61 * k1 + a62 * k2 + a63 * k3 + a64 * k4 + a65 * k5), s + h);
      auto x_new = x + h * (b1 * k1 + b3 * k3 + b4 * k4 + b5 * k5 + b6 * k6);
      auto k7 = f(x_new, s + h);
      auto err = h * (e1 * k1 + e3 * k3 + e4 * k4 + e5 * k5 + e6 * k6 + e7 * k7);
      auto scale = o.atol + o.rtol * torch::maximum(x.abs(), x_new.abs());
      const double err_norm = (err.to(torch::kFloat64) / scale.to(torch::kFloat64)).pow(2).mean().sqrt().item<double>();
      const double factor = std::min(5.0, std::max(0.2, 0.9 * std::pow(std::max(err_norm, 1e-10), -0.2)));
      if (err_norm <= 1) {
        const bool at_end = (s + h == s_end) || std::abs(s + h - s_end) < 1e-12;
        s = at_end ? s_end : s + h;
        x = x_new;
        k1 = k7;  // first-same-as-last
        denoised_at_s = last_denoised;
        h *= std::min(factor, 5.0);
      } else {
        h *= std::max(factor, 0.2);
      }
    }
  }
  return x;
}

}  // namespace sigma::samplers
