// σ lists (see schedules.h). Formulas follow k-diffusion (karras, exponential,
// polyexponential, discrete), ComfyUI (normal, simple, sgm_uniform, ddim_uniform, beta) and
// diffusers (leading/trailing/linspace timestep spacings), including their rounding.
#include "samplers/schedules.h"

#include "samplers/schedules_gits.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <stdexcept>
#include <string>

namespace sigma::samplers {

namespace {

std::vector<double> linspace(double a, double b, int n) {
  std::vector<double> v(n);
  for (int i = 0; i < n; ++i) v[i] = n == 1 ? a : a + (b - a) * i / (n - 1);
  return v;
}

std::vector<double> with_zero(std::vector<double> s) {
  s.push_back(0.0);
  return s;
}

double opt_or(double v, double fallback) { return std::isnan(v) ? fallback : v; }

// ComfyUI's normal_scheduler: t evenly spaced from t(σ_max) to t(σ_min), mapped back to σ.
std::vector<double> normal(const ModelSampling& m, int steps, bool sgm) {
  const double start = m.sigma_to_t(m.sigma_max()), end = m.sigma_to_t(m.sigma_min());
  std::vector<double> ts;
  bool append_zero = true;
  if (sgm) {
    ts = linspace(start, end, steps + 1);
    ts.pop_back();
  } else {
    if (std::abs(m.t_to_sigma(end)) <= 1e-5) {
      ++steps;
      append_zero = false;
    }
    ts = linspace(start, end, steps);
  }
  std::vector<double> s;
  for (double t : ts) s.push_back(m.t_to_sigma(t));
  return append_zero ? with_zero(s) : s;
}

std::vector<double> simple(const ModelSampling& m, int steps) {
  const auto& table = m.sigmas();
  const double ss = double(table.size()) / steps;
  std::vector<double> s;
  for (int x = 0; x < steps; ++x) s.push_back(table[table.size() - 1 - static_cast<size_t>(x * ss)]);
  return with_zero(s);
}

std::vector<double> ddim_uniform(const ModelSampling& m, int steps) {
  const auto& table = m.sigmas();
  std::vector<double> s;
  if (std::abs(table[1]) <= 1e-5)
    ++steps;
  else
    s.push_back(0.0);
  const size_t ss = std::max<size_t>(table.size() / steps, 1);
  for (size_t x = 1; x < table.size(); x += ss) s.push_back(table[x]);
  std::reverse(s.begin(), s.end());
  return s;
}

// ComfyUI's beta_scheduler (Lee et al. 2024): timesteps at Beta(α, β) quantiles.
std::vector<double> beta_schedule(const ModelSampling& m, int steps, double a, double b) {
  const auto& table = m.sigmas();
  const double total = double(table.size() - 1);
  std::vector<double> s;
  double last_t = -1;
  for (int k = 0; k < steps; ++k) {
    const double t = std::nearbyint(beta_ppf(1.0 - double(k) / steps, a, b) * total);
    if (t != last_t) s.push_back(table[static_cast<size_t>(t)]);
    last_t = t;
  }
  return with_zero(s);
}

// diffusers' DDIM/DDPM/EulerDiscrete: σ at the spaced timesteps, then the end.
std::vector<double> diffusers(std::string_view spacing, const ModelSampling& m, int steps, const ScheduleOptions& o) {
  if (m.kind() != ModelSampling::Kind::discrete)
    throw std::invalid_argument("schedule '" + std::string(spacing) +
                                "' needs a discrete (alphas_cumprod) model: diffusers' timestep spacings index its grid");
  const auto& table = m.sigmas();
  const int n_train = static_cast<int>(table.size());
  const bool round = !(spacing == "linspace" && o.fractional_timesteps);
  std::vector<double> s;
  for (double t : diffusers_timesteps(spacing, n_train, steps, o.steps_offset, round)) {
    if (t < 0 || t > n_train - 1)
      throw std::invalid_argument("schedule '" + std::string(spacing) + "': timestep " + std::to_string(t) +
                                  " is off the training grid; lower steps_offset or steps");
    const int lo = static_cast<int>(std::floor(t));
    const int hi = std::min(lo + 1, n_train - 1);
    const double w = t - lo;  // np.interp: linear in σ (only fractional linspace has w > 0)
    s.push_back((1 - w) * table[lo] + w * table[hi]);
  }
  s.push_back(o.set_alpha_to_one ? 0.0 : table.front());
  return s;
}

// Lee et al.'s beta as AUTOMATIC1111 1.10 has it: the quantiles 1 − i/(n−1) of Beta(α, β)
// placed linearly between σmin and σmax (not on the model's table), then 0.
std::vector<double> beta_a1111(const ModelSampling& m, int steps, double a, double b) {
  std::vector<double> s;
  for (double x : linspace(0, 1, steps)) s.push_back(m.sigma_min() + beta_ppf(1 - x, a, b) * (m.sigma_max() - m.sigma_min()));
  return with_zero(s);
}

// ComfyUI's linear_quadratic_schedule (from Mochi's sampler): 1 − σ/σmax rises linearly to
// the threshold over the first steps, then quadratically to 1.
std::vector<double> linear_quadratic(const ModelSampling& m, int steps, const ScheduleOptions& o) {
  std::vector<double> rise;
  if (steps == 1) {
    rise = {0.0, 1.0};
  } else {
    const int lin = o.linear_steps > 0 ? o.linear_steps : steps / 2;
    const double th = o.threshold_noise;
    for (int i = 0; i < lin; ++i) rise.push_back(i * th / lin);
    const double diff = lin - th * steps;
    const int quad = steps - lin;
    const double qc = diff / (double(lin) * quad * quad);
    const double lc = th / lin - 2 * diff / (double(quad) * quad);
    const double c = qc * double(lin) * lin;
    for (int i = lin; i < steps; ++i) rise.push_back(qc * double(i) * i + lc * i + c);
    rise.push_back(1.0);
  }
  std::vector<double> s;
  for (double r : rise) s.push_back((1.0 - r) * m.sigma_max());
  return s;
}

// ComfyUI's kl_optimal_scheduler (Sabour et al. 2024, "Align Your Steps", eq. 19: the
// schedule that is optimal for a single Gaussian): σ = tan of arctan σ evenly spaced.
std::vector<double> kl_optimal(const ModelSampling& m, int steps) {
  std::vector<double> s;
  for (int i = 0; i < steps; ++i) {
    const double w = steps == 1 ? 0.0 : double(i) / (steps - 1);
    s.push_back(std::tan(w * std::atan(m.sigma_min()) + (1 - w) * std::atan(m.sigma_max())));
  }
  return with_zero(s);
}

// Align Your Steps (Sabour et al. 2024): NVIDIA's optimized 10-step σ lists, log-linearly
// interpolated to other counts (their how-to's loglinear_interp).
// AUTOMATIC1111 1.10 keeps the tables rounded to 3 decimals.
const std::vector<double>& ays_table(const std::string& model, bool a1111) {
  static const std::vector<double> sd1_a1111 = {14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029};
  static const std::vector<double> sdxl_a1111 = {14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029};
  if (a1111 && (model == "SD1" || model == "SDXL")) return model == "SDXL" ? sdxl_a1111 : sd1_a1111;
  static const std::vector<double> sd1 = {14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520, 1.8841921177, 1.3943805092,
                                          0.9642583904,  0.6523686016, 0.3977456272, 0.1515232662, 0.0291671582};
  static const std::vector<double> sdxl = {14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769, 1.3405244945, 0.8620721141,
                                           0.5550693289,  0.3798540708, 0.2332364134, 0.1114188177, 0.0291671582};
  if (model == "SD1") return sd1;
  if (model == "SDXL") return sdxl;
  throw std::invalid_argument("schedule 'align_your_steps' has lists for SD 1.x/2.x and SDXL models only" +
                              (model.empty() ? std::string() : " (asked for '" + model + "')") +
                              "; pick another schedule, e.g. karras or simple");
}

// numpy's interp of log σ (descending table, read ascending) at n evenly spaced points.
std::vector<double> loglinear_interp(const std::vector<double>& table, int n) {
  std::vector<double> ys(table.rbegin(), table.rend());
  for (auto& y : ys) y = std::log(y);
  const auto xs = linspace(0, 1, static_cast<int>(ys.size()));
  std::vector<double> out;
  for (double x : linspace(0, 1, n)) {
    size_t j = 1;
    while (j + 1 < xs.size() && xs[j] < x) ++j;
    const double w = (x - xs[j - 1]) / (xs[j] - xs[j - 1]);
    out.push_back(std::exp(ys[j - 1] + w * (ys[j] - ys[j - 1])));
  }
  std::reverse(out.begin(), out.end());
  return out;
}

// ComfyUI's AlignYourStepsScheduler: steps + 1 points (the table's 11 as they are), the last
// made 0. AUTOMATIC1111's keeps `steps` points down to σmin and appends 0.
std::vector<double> align_your_steps(int steps, const ScheduleOptions& o, bool a1111) {
  const auto& table = ays_table(o.ays_model, a1111);
  const int points = a1111 ? steps : steps + 1;
  auto s = points == static_cast<int>(table.size()) ? table : loglinear_interp(table, points);
  if (a1111) return with_zero(s);
  s.back() = 0.0;
  return s;
}

// GITS (Chen et al. 2024): the searched list for this step count, log-linearly interpolated
// from the 20-step one above 20 (ComfyUI's GITSScheduler), the last made 0.
std::vector<double> gits(int steps, const ScheduleOptions& o) {
  if (steps < 2) throw std::invalid_argument("schedule 'gits' needs at least 2 steps, got " + std::to_string(steps));
  const auto& rows = gits_rows(o.gits_coeff);
  auto s = steps <= 20 ? rows[static_cast<size_t>(steps - 2)] : loglinear_interp(rows.back(), steps + 1);
  s.back() = 0.0;
  return s;
}

std::vector<double> custom(const ScheduleOptions& o) {
  if (o.custom.empty()) throw std::invalid_argument("schedule 'custom' needs ScheduleOptions::custom (a σ list)");
  for (size_t i = 0; i < o.custom.size(); ++i)
    if (!std::isfinite(o.custom[i]) || o.custom[i] < 0 || (i > 0 && o.custom[i] > o.custom[i - 1]))
      throw std::invalid_argument("schedule 'custom': the list must be finite, >= 0 and non-increasing (entry " +
                                  std::to_string(i) + ")");
  return o.custom;
}

using Builder = std::function<std::vector<double>(const ModelSampling&, int, const ScheduleOptions&)>;
struct Entry {
  ScheduleInfo info;
  Builder build;
};

const std::vector<Entry>& entries() {
  static const std::vector<Entry> e = {
      {{"karras", "σ_i = (σmax^(1/ρ) + i/(n−1)·(σmin^(1/ρ) − σmax^(1/ρ)))^ρ, ρ = 7", "Karras et al. 2022, eq. 5"},
       [](const ModelSampling& m, int n, const ScheduleOptions& o) {
         return sigmas_karras(n, opt_or(o.sigma_min, m.sigma_min()), opt_or(o.sigma_max, m.sigma_max()),
                              opt_or(o.rho, 7));
       }},
      {{"exponential", "ln σ evenly spaced from σmax to σmin", "k-diffusion get_sigmas_exponential"},
       [](const ModelSampling& m, int n, const ScheduleOptions& o) {
         return sigmas_exponential(n, opt_or(o.sigma_min, m.sigma_min()), opt_or(o.sigma_max, m.sigma_max()));
       }},
      {{"polyexponential", "ln σ = ramp^ρ·(ln σmax − ln σmin) + ln σmin, ramp 1 → 0", "k-diffusion"},
       [](const ModelSampling& m, int n, const ScheduleOptions& o) {
         return sigmas_polyexponential(n, opt_or(o.sigma_min, m.sigma_min()), opt_or(o.sigma_max, m.sigma_max()),
                                       opt_or(o.rho, 1));
       }},
      {{"normal", "t evenly spaced on the training grid from t(σmax) to t(σmin), σ(t) log-linear", "ComfyUI"},
       [](const ModelSampling& m, int n, const ScheduleOptions&) { return normal(m, n, false); }},
      {{"discrete", "same as normal: k-diffusion's DiscreteSchedule.get_sigmas(n)", "k-diffusion"},
       [](const ModelSampling& m, int n, const ScheduleOptions&) { return normal(m, n, false); }},
      {{"sgm_uniform", "normal over n+1 points without the last (SGM/SDXL's uniform t)", "ComfyUI"},
       [](const ModelSampling& m, int n, const ScheduleOptions&) { return normal(m, n, true); }},
      {{"simple", "every (N/n)-th σ of the model's table from the top", "ComfyUI"},
       [](const ModelSampling& m, int n, const ScheduleOptions&) { return simple(m, n); }},
      {{"ddim_uniform", "every (N // n)-th σ of the table from index 1, plus 0", "ComfyUI; Song et al. 2021a"},
       [](const ModelSampling& m, int n, const ScheduleOptions&) { return ddim_uniform(m, n); }},
      {{"beta", "timesteps at the quantiles 1 − i/n of Beta(α, β), α = β = 0.6", "Lee et al. 2024"},
       [](const ModelSampling& m, int n, const ScheduleOptions& o) { return beta_schedule(m, n, o.alpha, o.beta); }},
      {{"beta_a1111", "AUTOMATIC1111's beta: Beta(α, β) quantiles placed linearly between σmin and σmax",
        "Lee et al. 2024; AUTOMATIC1111 1.10"},
       [](const ModelSampling& m, int n, const ScheduleOptions& o) { return beta_a1111(m, n, o.alpha, o.beta); }},
      {{"linear_quadratic", "1 − σ/σmax linear to 0.025 over the first half, then quadratic", "Genmo Mochi; ComfyUI"},
       [](const ModelSampling& m, int n, const ScheduleOptions& o) { return linear_quadratic(m, n, o); }},
      {{"kl_optimal", "σ = tan(arctan σ evenly spaced from σmax to σmin)", "Sabour et al. 2024, eq. 19"},
       [](const ModelSampling& m, int n, const ScheduleOptions&) { return kl_optimal(m, n); }},
      {{"align_your_steps", "NVIDIA's optimized 10-step list (SD1 or SDXL), log-linearly interpolated; ComfyUI's rule",
        "Sabour et al. 2024 (Align Your Steps)"},
       [](const ModelSampling&, int n, const ScheduleOptions& o) { return align_your_steps(n, o, false); }},
      {{"align_your_steps_a1111", "Align Your Steps as AUTOMATIC1111 1.10 interpolates it: n points down to σmin, then 0",
        "Sabour et al. 2024; AUTOMATIC1111 1.10"},
       [](const ModelSampling&, int n, const ScheduleOptions& o) { return align_your_steps(n, o, true); }},
      {{"gits", "the σ list GITS searched per step count (coefficient 1.20), interpolated above 20 steps",
        "Chen et al. 2024 (GITS)"},
       [](const ModelSampling&, int n, const ScheduleOptions& o) { return gits(n, o); }},
      {{"leading", "diffusers 'leading': t = i·(N // n) + steps_offset", "diffusers; Lin et al. 2023, Table 2"},
       [](const ModelSampling& m, int n, const ScheduleOptions& o) { return diffusers("leading", m, n, o); }},
      {{"trailing", "diffusers 'trailing': t = round(N − i·N/n) − 1", "diffusers; Lin et al. 2023, Table 2"},
       [](const ModelSampling& m, int n, const ScheduleOptions& o) { return diffusers("trailing", m, n, o); }},
      {{"linspace", "diffusers 'linspace': t = linspace(N−1, 0, n), rounded unless fractional", "diffusers"},
       [](const ModelSampling& m, int n, const ScheduleOptions& o) { return diffusers("linspace", m, n, o); }},
      {{"flow_shift", "flow models: t evenly spaced from σmax to σmin, then s·t/(1+(s−1)t)",
        "Esser et al. 2024 (SD3); diffusers FlowMatchEulerDiscreteScheduler"},
       [](const ModelSampling& m, int n, const ScheduleOptions&) {
         if (m.kind() != ModelSampling::Kind::flow)
           throw std::invalid_argument("schedule 'flow_shift' needs a flow model (ModelSampling::flow)");
         return normal(m, n, false);
       }},
      {{"custom", "the list given in ScheduleOptions::custom", "user"},
       [](const ModelSampling&, int, const ScheduleOptions& o) { return custom(o); }},
  };
  return e;
}

// Regularized incomplete beta I_x(a, b) by its continued fraction (Numerical Recipes §6.4).
double betacf(double a, double b, double x) {
  const double tiny = 1e-300;
  const double qab = a + b, qap = a + 1, qam = a - 1;
  double c = 1, d = 1 - qab * x / qap;
  d = 1 / (std::abs(d) < tiny ? tiny : d);
  double h = d;
  for (int m = 1; m <= 500; ++m) {
    const int m2 = 2 * m;
    double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
    d = 1 + aa * d, c = 1 + aa / c;
    d = 1 / (std::abs(d) < tiny ? tiny : d), c = std::abs(c) < tiny ? tiny : c;
    h *= d * c;
    aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
    d = 1 + aa * d, c = 1 + aa / c;
    d = 1 / (std::abs(d) < tiny ? tiny : d), c = std::abs(c) < tiny ? tiny : c;
    const double del = d * c;
    h *= del;
    if (std::abs(del - 1) < 1e-16) break;
  }
  return h;
}

double beta_cdf(double x, double a, double b) {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const double bt = std::exp(std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) + b * std::log1p(-x));
  return x < (a + 1) / (a + b + 2) ? bt * betacf(a, b, x) / a : 1 - bt * betacf(b, a, 1 - x) / b;
}

}  // namespace

double beta_ppf(double p, double a, double b) {
  if (!(a > 0 && b > 0)) throw std::invalid_argument("beta schedule: alpha and beta must be > 0");
  if (p <= 0) return 0;
  if (p >= 1) return 1;
  if (a == b && p == 0.5) return 0.5;  // exact by symmetry: ComfyUI rounds 0.5·999 half-to-even
  double lo = 0, hi = 1;
  for (int i = 0; i < 200 && hi - lo > 1e-16; ++i) {
    const double mid = 0.5 * (lo + hi);
    (beta_cdf(mid, a, b) < p ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

std::vector<double> sigmas_karras(int n, double sigma_min, double sigma_max, double rho) {
  const double min_inv = std::pow(sigma_min, 1 / rho), max_inv = std::pow(sigma_max, 1 / rho);
  std::vector<double> s;
  for (double r : linspace(0, 1, n)) s.push_back(std::pow(max_inv + r * (min_inv - max_inv), rho));
  return with_zero(s);
}

std::vector<double> sigmas_exponential(int n, double sigma_min, double sigma_max) {
  std::vector<double> s;
  for (double l : linspace(std::log(sigma_max), std::log(sigma_min), n)) s.push_back(std::exp(l));
  return with_zero(s);
}

std::vector<double> sigmas_polyexponential(int n, double sigma_min, double sigma_max, double rho) {
  std::vector<double> s;
  for (double r : linspace(1, 0, n))
    s.push_back(std::exp(std::pow(r, rho) * (std::log(sigma_max) - std::log(sigma_min)) + std::log(sigma_min)));
  return with_zero(s);
}

std::vector<double> diffusers_timesteps(std::string_view spacing, int n_train, int steps, int steps_offset, bool round) {
  std::vector<double> t;
  if (spacing == "leading") {
    const int ratio = n_train / steps;
    for (int i = steps - 1; i >= 0; --i) t.push_back(double(i * ratio + steps_offset));
  } else if (spacing == "trailing") {
    const double ratio = double(n_train) / steps;
    for (int i = 0; i < steps; ++i) t.push_back(std::nearbyint(n_train - i * ratio) - 1);
  } else if (spacing == "linspace") {
    for (double v : linspace(n_train - 1, 0, steps)) t.push_back(round ? std::nearbyint(v) : v);
  } else {
    throw std::invalid_argument("unknown timestep spacing '" + std::string(spacing) +
                                "'; known: leading, trailing, linspace");
  }
  return t;
}

std::vector<double> make_sigmas(std::string_view name, const ModelSampling& model, int steps,
                                const ScheduleOptions& options) {
  for (const auto& e : entries()) {
    if (e.info.name != name) continue;
    if (steps < 1 && name != "custom")
      throw std::invalid_argument("schedule '" + std::string(name) + "' needs steps >= 1, got " + std::to_string(steps));
    return e.build(model, steps, options);
  }
  std::string known;
  for (const auto& e : entries()) known += (known.empty() ? "" : ", ") + e.info.name;
  throw std::invalid_argument("unknown schedule '" + std::string(name) + "'; known schedules: " + known);
}

const std::vector<ScheduleInfo>& all_schedules() {
  static const std::vector<ScheduleInfo> infos = [] {
    std::vector<ScheduleInfo> v;
    for (const auto& e : entries()) v.push_back(e.info);
    return v;
  }();
  return infos;
}

}  // namespace sigma::samplers
