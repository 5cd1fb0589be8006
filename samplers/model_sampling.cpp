// Parameterization × schedule (see model_sampling.h). σ ↔ t follows k-diffusion's
// DiscreteSchedule (log-linear interpolation) or ComfyUI's nearest index, because those are
// the two conventions the reference images users compare against were made with.
#include "samplers/model_sampling.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace sigma::samplers {

namespace {

constexpr double kPi = 3.14159265358979323846;

// SD3's time shift.
double time_shift(double shift, double t) { return shift * t / (1 + (shift - 1) * t); }

}  // namespace

Prediction parse_prediction(std::string_view name) {
  if (name == "eps" || name == "epsilon") return Prediction::eps;
  if (name == "v" || name == "v_prediction") return Prediction::v;
  if (name == "x0" || name == "sample") return Prediction::x0;
  if (name == "edm") return Prediction::edm;
  if (name == "flow" || name == "velocity" || name == "flow_matching") return Prediction::flow;
  throw std::invalid_argument("unknown prediction type '" + std::string(name) +
                              "'; known: eps (epsilon), v (v_prediction), x0 (sample), edm, flow (velocity)");
}

std::string prediction_name(Prediction p) {
  switch (p) {
    case Prediction::eps: return "eps";
    case Prediction::v: return "v";
    case Prediction::x0: return "x0";
    case Prediction::edm: return "edm";
    case Prediction::flow: return "flow";
  }
  return "?";
}

std::vector<double> make_betas(const std::string& schedule, int n, double beta_start, double beta_end) {
  if (n < 2) throw std::invalid_argument("discrete schedule needs at least 2 timesteps");
  std::vector<double> betas(n);
  if (schedule == "scaled_linear") {
    const double a = std::sqrt(beta_start), b = std::sqrt(beta_end);
    for (int i = 0; i < n; ++i) {
      const double s = a + (b - a) * i / (n - 1);
      betas[i] = s * s;
    }
  } else if (schedule == "linear") {
    for (int i = 0; i < n; ++i) betas[i] = beta_start + (beta_end - beta_start) * i / (n - 1);
  } else if (schedule == "cosine") {  // Nichol & Dhariwal 2021, s = 0.008, β ≤ 0.999
    auto abar = [](double t) { return std::pow(std::cos((t + 0.008) / 1.008 * kPi / 2), 2); };
    for (int i = 0; i < n; ++i)
      betas[i] = std::min(1 - abar(double(i + 1) / n) / abar(double(i) / n), 0.999);
  } else {
    throw std::invalid_argument("unknown beta schedule '" + schedule + "'; known: scaled_linear, linear, cosine");
  }
  return betas;
}

std::vector<double> rescale_zero_terminal_snr(const std::vector<double>& ac) {
  std::vector<double> s(ac.size());
  for (size_t i = 0; i < ac.size(); ++i) s[i] = std::sqrt(ac[i]);
  const double first = s.front(), last = s.back();
  for (auto& v : s) v = (v - last) * first / (first - last);
  std::vector<double> out(ac.size());
  for (size_t i = 0; i < ac.size(); ++i) out[i] = s[i] * s[i];
  out.back() = 4.8973451890853435e-08;  // ComfyUI's stand-in for 0: keeps σ_max finite
  return out;
}

ModelSampling ModelSampling::discrete(Prediction p, const DiscreteOptions& o) {
  const auto betas = make_betas(o.beta_schedule, o.timesteps, o.beta_start, o.beta_end);
  std::vector<double> ac(betas.size());
  double prod = 1;
  for (size_t i = 0; i < betas.size(); ++i) ac[i] = prod *= (1 - betas[i]);
  if (o.zero_terminal_snr) ac = rescale_zero_terminal_snr(ac);
  return from_alphas_cumprod(p, std::move(ac), o.quantize);
}

ModelSampling ModelSampling::from_alphas_cumprod(Prediction p, std::vector<double> ac, bool quantize) {
  if (ac.size() < 2) throw std::invalid_argument("alphas_cumprod needs at least 2 entries");
  ModelSampling m;
  m.kind_ = Kind::discrete;
  m.prediction_ = p;
  m.sigma_data_ = p == Prediction::edm ? 0.5 : 1.0;
  m.quantize_ = quantize;
  for (size_t i = 0; i < ac.size(); ++i) {
    if (!(ac[i] > 0 && ac[i] <= 1) || (i > 0 && ac[i] > ac[i - 1]))
      throw std::invalid_argument("alphas_cumprod must be in (0, 1] and non-increasing (entry " + std::to_string(i) +
                                  ")");
    m.sigmas_.push_back(sigma_of_alpha_cumprod(ac[i]));
    m.log_sigmas_.push_back(std::log(m.sigmas_.back()));
  }
  m.alphas_cumprod_ = std::move(ac);
  return m;
}

ModelSampling ModelSampling::continuous(Prediction p, const ContinuousOptions& o) {
  if (!(o.sigma_min > 0 && o.sigma_max > o.sigma_min) || o.noise_scale == 0)
    throw std::invalid_argument("continuous schedule needs 0 < sigma_min < sigma_max and noise_scale != 0");
  ModelSampling m;
  m.kind_ = Kind::continuous;
  m.prediction_ = p;
  m.sigma_data_ = p == Prediction::edm ? 0.5 : 1.0;
  m.continuous_ = o;
  const int n = 1000;
  const double a = std::log(o.sigma_min), b = std::log(o.sigma_max);
  for (int i = 0; i < n; ++i) m.sigmas_.push_back(std::exp(a + (b - a) * i / (n - 1)));
  m.sigmas_.front() = o.sigma_min;
  m.sigmas_.back() = o.sigma_max;
  for (double s : m.sigmas_) m.log_sigmas_.push_back(std::log(s));
  return m;
}

ModelSampling ModelSampling::flow(double shift, double multiplier, int timesteps) {
  if (!(shift > 0) || !(multiplier > 0) || timesteps < 2)
    throw std::invalid_argument("flow schedule needs shift > 0, multiplier > 0 and at least 2 timesteps");
  ModelSampling m;
  m.kind_ = Kind::flow;
  m.prediction_ = Prediction::flow;
  m.shift_ = shift;
  m.multiplier_ = multiplier;
  for (int i = 1; i <= timesteps; ++i) m.sigmas_.push_back(time_shift(shift, double(i) / timesteps));
  for (double s : m.sigmas_) m.log_sigmas_.push_back(std::log(s));
  return m;
}

ModelSampling& ModelSampling::set_sigma_data(double sd) {
  if (!(sd > 0)) throw std::invalid_argument("sigma_data must be > 0");
  sigma_data_ = sd;
  return *this;
}

double ModelSampling::c_skip(double s) const {
  const double sd2 = sigma_data_ * sigma_data_;
  switch (prediction_) {
    case Prediction::eps: case Prediction::flow: return 1.0;
    case Prediction::x0: return 0.0;
    case Prediction::v: case Prediction::edm: return sd2 / (s * s + sd2);
  }
  return 1.0;
}

double ModelSampling::c_out(double s) const {
  const double sd = sigma_data_;
  switch (prediction_) {
    case Prediction::eps: case Prediction::flow: return -s;
    case Prediction::x0: return 1.0;
    case Prediction::v: return -s * sd / std::sqrt(s * s + sd * sd);
    case Prediction::edm: return s * sd / std::sqrt(s * s + sd * sd);
  }
  return 1.0;
}

double ModelSampling::c_in(double s) const {
  if (prediction_ == Prediction::flow) return 1.0;  // the network sees x_t itself
  return 1.0 / std::sqrt(s * s + sigma_data_ * sigma_data_);
}

torch::Tensor ModelSampling::denoise(const torch::Tensor& x, double sigma, const torch::Tensor& out) const {
  const double skip = c_skip(sigma);
  return skip == 0 ? out * c_out(sigma) : x * skip + out * c_out(sigma);
}

double ModelSampling::sigma_to_t(double sigma) const {
  switch (kind_) {
    case Kind::continuous: return continuous_.noise_scale * std::log(sigma) + continuous_.noise_offset;
    case Kind::flow: return sigma * multiplier_;
    case Kind::discrete: break;
  }
  const double ls = std::log(sigma);
  const int n = static_cast<int>(log_sigmas_.size());
  if (quantize_) {  // nearest index in log σ (ComfyUI; k-diffusion's quantize=True)
    auto it = std::lower_bound(log_sigmas_.begin(), log_sigmas_.end(), ls);
    int hi = static_cast<int>(it - log_sigmas_.begin());
    if (hi == 0) return 0;
    if (hi == n) return n - 1;
    return (std::abs(ls - log_sigmas_[hi - 1]) <= std::abs(log_sigmas_[hi] - ls)) ? hi - 1 : hi;
  }
  // k-diffusion: low = last index with log σ_i ≤ ln σ (0 if none), capped at n−2; w clamped to [0,1].
  auto it = std::upper_bound(log_sigmas_.begin(), log_sigmas_.end(), ls);
  int low = std::max(0, static_cast<int>(it - log_sigmas_.begin()) - 1);
  low = std::min(low, n - 2);
  const double lo = log_sigmas_[low], hi = log_sigmas_[low + 1];
  const double w = std::clamp((lo - ls) / (lo - hi), 0.0, 1.0);
  return (1 - w) * low + w * (low + 1);
}

double ModelSampling::t_to_sigma(double t) const {
  switch (kind_) {
    case Kind::continuous: return std::exp((t - continuous_.noise_offset) / continuous_.noise_scale);
    case Kind::flow: return time_shift(shift_, t / multiplier_);
    case Kind::discrete: break;
  }
  t = std::clamp(t, 0.0, double(log_sigmas_.size() - 1));
  const int low = static_cast<int>(std::floor(t)), high = static_cast<int>(std::ceil(t));
  const double w = t - low;
  return std::exp((1 - w) * log_sigmas_[low] + w * log_sigmas_[high]);
}

torch::Tensor ModelSampling::noise_scaling(double sigma, const torch::Tensor& noise, const torch::Tensor& latent,
                                           bool max_denoise) const {
  if (prediction_ == Prediction::flow) return noise * sigma + latent * (1 - sigma);
  return noise * (max_denoise ? std::sqrt(1 + sigma * sigma) : sigma) + latent;
}

torch::Tensor ModelSampling::inverse_noise_scaling(double sigma_last, const torch::Tensor& x) const {
  if (sigma_last == 0) return x;
  if (prediction_ == Prediction::flow) return x / (1 - sigma_last);
  if (kind_ == Kind::discrete) return x / std::sqrt(1 + sigma_last * sigma_last);
  return x;
}

Renoising ModelSampling::renoising() const {
  return prediction_ == Prediction::flow ? flow_renoising(shift_) : Renoising{};
}

double flux_mu(int64_t image_tokens) {
  constexpr double kBaseTokens = 256, kMaxTokens = 4096, kBaseShift = 0.5, kMaxShift = 1.15;
  const double slope = (kMaxShift - kBaseShift) / (kMaxTokens - kBaseTokens);
  return kBaseShift + slope * (static_cast<double>(image_tokens) - kBaseTokens);
}

Renoising flow_renoising(double shift) {
  Renoising r;
  r.alpha = [](double sigma) { return 1 - sigma; };
  r.sigma_from_half_log_snr = [](double lambda) { return 1 / (1 + std::exp(lambda)); };
  r.ancestral = [](double sigma, double sigma_next, double eta) {
    const double sigma_down = sigma_next * (1 + (sigma_next / sigma - 1) * eta);
    const double alpha_next = 1 - sigma_next, alpha_down = 1 - sigma_down;
    const double scale = alpha_next / alpha_down;
    const double up2 = sigma_next * sigma_next - sigma_down * sigma_down * scale * scale;
    return AncestralStep{sigma_down, std::sqrt(std::max(0.0, up2)), scale};
  };
  r.snr_sigma_cap = time_shift(shift, 1 - 1e-4);  // ComfyUI: percent_to_sigma(1e-4)
  return r;
}

}  // namespace sigma::samplers
