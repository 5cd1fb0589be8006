// DPM-Solver (Lu et al. 2022, "DPM-Solver: a fast ODE solver for diffusion probabilistic model
// sampling") as k-diffusion's DPMSolver class runs it: in t = −ln σ with the ε prediction,
// singlestep orders 1-3 (Algorithms 1, 4, 5 in their VE form). dpm_fast spreads a number of
// function evaluations over steps uniform in t (section 3.4); dpm_adaptive picks the steps
// with an embedded lower order and a PID step-size controller (section 4 / appendix). Both
// use only the list's first σ and its last positive one: they make their own grid, as there.
#include <cmath>
#include <map>
#include <string>

#include "samplers/solver_util.h"
#include "samplers/solvers.h"

namespace sigma::samplers {
using torch::Tensor;

namespace {

double sigma_of(double t) { return std::exp(-t); }
double t_of(double sigma) { return -std::log(sigma); }

// ε at (x, t), computed once per key of a step (the steps share their first evaluation).
struct EpsCache {
  const Denoiser& model;
  std::map<std::string, Tensor> cache;
  Tensor operator()(const std::string& key, const Tensor& x, double t) {
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
    return cache[key] = (x - model(x, sigma_of(t))) / sigma_of(t);
  }
};

Tensor step_1(EpsCache& eps, const Tensor& x, double t, double t_next) {
  const double h = t_next - t;
  return x - sigma_of(t_next) * std::expm1(h) * eps("eps", x, t);
}

Tensor step_2(EpsCache& eps, const Tensor& x, double t, double t_next, double r1 = 0.5) {
  const double h = t_next - t;
  auto e = eps("eps", x, t);
  const double s1 = t + r1 * h;
  auto u1 = x - sigma_of(s1) * std::expm1(r1 * h) * e;
  auto e_r1 = eps("eps_r1", u1, s1);
  return x - sigma_of(t_next) * std::expm1(h) * e - sigma_of(t_next) / (2 * r1) * std::expm1(h) * (e_r1 - e);
}

Tensor step_3(EpsCache& eps, const Tensor& x, double t, double t_next, double r1 = 1.0 / 3, double r2 = 2.0 / 3) {
  const double h = t_next - t;
  auto e = eps("eps", x, t);
  const double s1 = t + r1 * h, s2 = t + r2 * h;
  auto u1 = x - sigma_of(s1) * std::expm1(r1 * h) * e;
  auto e_r1 = eps("eps_r1", u1, s1);
  auto u2 = x - sigma_of(s2) * std::expm1(r2 * h) * e -
            sigma_of(s2) * (r2 / r1) * (std::expm1(r2 * h) / (r2 * h) - 1) * (e_r1 - e);
  auto e_r2 = eps("eps_r2", u2, s2);
  return x - sigma_of(t_next) * std::expm1(h) * e - sigma_of(t_next) / r2 * (std::expm1(h) / h - 1) * (e_r2 - e);
}

// The run's [σ_min, σ_max]: the first σ and the last positive one (ComfyUI's wrappers).
std::pair<double, double> sigma_range(const char* name, const std::vector<double>& sigmas) {
  detail::check_sigmas(name, sigmas);
  const double lo = sigmas.back() > 0 ? sigmas.back() : sigmas[sigmas.size() - 2];
  if (!(lo > 0) || !(lo < sigmas.front()))
    throw std::invalid_argument(std::string("sampler ") + name + " needs a list with two different positive sigmas");
  return {lo, sigmas.front()};
}

// With η > 0 a step ends at σ_down and adds σ_up of noise (k-diffusion's ancestral variant).
std::pair<double, double> ancestral_target(const SamplerOptions& o, double t, double t_next, double t_end) {
  if (o.eta == 0) return {t_next, 0.0};
  const auto st = detail::ve_ancestral_step(sigma_of(t), sigma_of(t_next), o.eta);
  const double t_down = std::min(t_end, t_of(st.sigma_down));
  return {t_down, std::sqrt(std::max(0.0, sigma_of(t_next) * sigma_of(t_next) - sigma_of(t_down) * sigma_of(t_down)))};
}

}  // namespace

// `sigmas.size() − 1` function evaluations: ⌊nfe/3⌋ + 1 steps of order 3, the last ones of
// order 2 and 1 (or nfe mod 3), on a grid uniform in t. The result stays at σ_min.
Tensor dpm_fast(const Denoiser& model, Tensor x, const std::vector<double>& sigmas, const SamplerOptions& o) {
  const auto [sigma_min, sigma_max] = sigma_range("dpm_fast", sigmas);
  const int nfe = static_cast<int>(sigmas.size()) - 1;
  const double t_start = t_of(sigma_max), t_end = t_of(sigma_min);
  const int m = nfe / 3 + 1;
  std::vector<int> orders;
  if (nfe % 3 == 0) {
    orders.assign(static_cast<size_t>(std::max(m - 2, 0)), 3);
    orders.push_back(2);
    orders.push_back(1);
  } else {
    orders.assign(static_cast<size_t>(m - 1), 3);
    orders.push_back(nfe % 3);
  }
  const int n = static_cast<int>(orders.size());
  for (int i = 0; i < n; ++i) {
    const double t = t_start + (t_end - t_start) * i / m, t_next = t_start + (t_end - t_start) * (i + 1) / m;
    EpsCache eps{model, {}};
    const auto [t_next_, su] = ancestral_target(o, t, t_next, t_end);
    const auto e = eps("eps", x, t);
    detail::report(o, i, n, sigma_of(t), sigma_of(t_next), x, x - sigma_of(t) * e);
    x = orders[static_cast<size_t>(i)] == 3 ? step_3(eps, x, t, t_next_)
        : orders[static_cast<size_t>(i)] == 2 ? step_2(eps, x, t, t_next_)
                                              : step_1(eps, x, t, t_next_);
    // Drawn even when σ_up = 0, as k-diffusion does (a seed's later draws line up).
    x = x + su * o.s_noise * detail::noise(o, "dpm_fast", sigma_of(t), sigma_of(t_next), x);
  }
  return x;
}

// Order-3 steps checked against the embedded order 2 (rtol, atol on the RMS of the scaled
// difference), step size from an I-controller (k-diffusion's PID defaults: pcoeff 0, icoeff 1,
// dcoeff 0, h_init 0.05, accept_safety 0.81). The result stays at σ_min.
Tensor dpm_adaptive(const Denoiser& model, Tensor x, const std::vector<double>& sigmas, const SamplerOptions& o) {
  const auto [sigma_min, sigma_max] = sigma_range("dpm_adaptive", sigmas);
  const double rtol = std::isnan(o.rtol) ? 0.05 : o.rtol, atol = std::isnan(o.atol) ? 0.0078 : o.atol;
  if (!(rtol > 0) || !(atol > 0)) throw std::invalid_argument("sampler dpm_adaptive: rtol and atol must be > 0");
  const double t_start = t_of(sigma_max), t_end = t_of(sigma_min);
  const int order = 3;
  const double accept_safety = 0.81, b1 = 1.0 / (o.eta != 0 ? 1.5 : order);
  double h = 0.05, s = t_start;
  std::vector<double> errs;
  Tensor x_prev = x;
  int step = 0;
  while (s < t_end - 1e-5) {
    if (step > 100000) throw std::runtime_error("sampler dpm_adaptive: no convergence; loosen rtol/atol");
    EpsCache eps{model, {}};
    const double t = std::min(t_end, s + h);
    const auto [t_, su] = ancestral_target(o, s, t, t_end);
    const auto e = eps("eps", x, s);
    detail::report(o, step, step + 1, sigma_of(s), sigma_of(t), x, x - sigma_of(s) * e);
    auto x_low = step_2(eps, x, s, t_, 1.0 / 3);
    auto x_high = step_3(eps, x, s, t_);
    auto delta = torch::clamp_min(rtol * torch::maximum(x_low.abs(), x_prev.abs()), atol);
    const double error = ((x_low - x_high) / delta).norm().item<double>() / std::sqrt(double(x.numel()));
    // PID controller with (pcoeff, icoeff, dcoeff) = (0, 1, 0): factor = 1 + atan(1/error^(1/order) − 1).
    const double inv = 1 / (error + 1e-8);
    if (errs.empty()) errs = {inv, inv, inv};
    errs[0] = inv;
    const double factor = 1 + std::atan(std::pow(errs[0], b1) - 1);
    const bool accept = factor >= accept_safety;
    if (accept) {
      errs[2] = errs[1];
      errs[1] = errs[0];
      x_prev = x_low;
      x = x_high + su * o.s_noise * detail::noise(o, "dpm_adaptive", sigma_of(s), sigma_of(t), x);
      s = t;
    }
    h *= factor;
    ++step;
  }
  return x;
}

}  // namespace sigma::samplers
