// How a network trained one way becomes the denoiser D(x; σ) every solver uses: a
// parameterization (what the network predicts → c_skip, c_out, c_in) composed with a noise
// schedule (σ range, σ ↔ network time c_noise), as ComfyUI's model_sampling composes them
// instead of one class per model. Everything model-family specific the samplers need lives
// here, including the flow renoising rule (renoising()).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "samplers/types.h"

namespace sigma::samplers {

// What the network outputs F stands for.
enum class Prediction {
  eps,   // ε (SD 1.x, 2.x-base):        D = x − σ·F
  v,     // v (SD 2.x-768):             D = x/(σ²+1) − σ/√(σ²+1)·F   (σ_data = 1)
  x0,    // the clean sample:           D = F
  edm,   // EDM's F (Karras et al.):    D = σd²/(σ²+σd²)·x + σ·σd/√(σ²+σd²)·F
  flow,  // rectified-flow velocity ε − x0 on x_t = (1−t)·x0 + t·ε, σ = t:  D = x − t·F
};
// "eps"/"epsilon", "v"/"v_prediction", "x0"/"sample", "edm", "flow"/"velocity"/"flow_matching".
Prediction parse_prediction(std::string_view name);
std::string prediction_name(Prediction p);

struct DiscreteOptions {
  std::string beta_schedule = "scaled_linear";  // scaled_linear | linear | cosine (diffusers' names)
  double beta_start = 0.00085, beta_end = 0.012;
  int timesteps = 1000;
  bool zero_terminal_snr = false;  // Lin et al. 2023, Algorithm 1 (ᾱ_T = 0, kept at 4.9e-8 as ComfyUI)
  bool quantize = false;           // σ → t: nearest index (ComfyUI) instead of log-linear (k-diffusion)
};

struct ContinuousOptions {
  double sigma_min = 0.002, sigma_max = 80;
  double noise_scale = 0.25, noise_offset = 0;  // c_noise = scale·ln σ + offset: EDM ¼ ln σ; VE ln(σ/2)
};

class ModelSampling {
 public:
  enum class Kind { discrete, continuous, flow };

  // Discrete VP schedule from betas over N training steps (SD 1.x/2.x: the defaults).
  static ModelSampling discrete(Prediction p, const DiscreteOptions& o = {});
  // The same from a checkpoint's or fixture's own alphas_cumprod (ascending t).
  static ModelSampling from_alphas_cumprod(Prediction p, std::vector<double> alphas_cumprod, bool quantize = false);
  // Continuous EDM/VE σ in [σ_min, σ_max].
  static ModelSampling continuous(Prediction p, const ContinuousOptions& o = {});
  // Rectified flow with SD3's time shift σ = s·t/(1+(s−1)·t); the network sees t = σ·multiplier.
  static ModelSampling flow(double shift = 1.0, double multiplier = 1000, int timesteps = 1000);

  ModelSampling& set_sigma_data(double sigma_data);  // edm: σ_data (default 0.5); v: 1

  Kind kind() const { return kind_; }
  Prediction prediction() const { return prediction_; }
  double sigma_data() const { return sigma_data_; }
  bool quantized() const { return quantize_; }

  // D(x; σ) = c_skip·x + c_out·F(c_in·x, c_noise).
  double c_skip(double sigma) const;
  double c_out(double sigma) const;
  double c_in(double sigma) const;
  double c_noise(double sigma) const { return sigma_to_t(sigma); }
  torch::Tensor denoise(const torch::Tensor& x, double sigma, const torch::Tensor& network_output) const;

  double sigma_min() const { return sigmas_.front(); }
  double sigma_max() const { return sigmas_.back(); }
  // The model's σ table, ascending: the discrete training grid (ᾱ_0 first); 1000 log-uniform
  // levels for continuous models; s(t/N) for t = 1…N for flow (the table ComfyUI's
  // simple/ddim_uniform/beta schedulers pick from).
  const std::vector<double>& sigmas() const { return sigmas_; }
  const std::vector<double>& alphas_cumprod() const { return alphas_cumprod_; }  // discrete only
  // σ ↔ network time. Discrete: the training index (interpolated or nearest). Continuous:
  // c_noise. Flow: σ·multiplier (what SD3/diffusers feed the network); t_to_sigma applies the shift.
  double sigma_to_t(double sigma) const;
  double t_to_sigma(double t) const;
  // σ of a discrete ᾱ: √((1−ᾱ)/ᾱ).
  static double sigma_of_alpha_cumprod(double abar) { return std::sqrt((1 - abar) / abar); }

  // The start of a run (ComfyUI's convention). ε/v/x0/EDM: √(1+σ²)·noise + latent when
  // max_denoise (txt2img from the top, the VP init diffusers uses), else σ·noise + latent.
  // Flow: σ·noise + (1−σ)·latent.
  torch::Tensor noise_scaling(double sigma, const torch::Tensor& noise, const torch::Tensor& latent,
                              bool max_denoise) const;
  // The end of a run whose σ list stops at σ_last > 0 (diffusers DDIM with set_alpha_to_one
  // off ends at ᾱ_0): VP-path models return x/√(1+σ_last²), the VP variable; flow x/(1−σ_last).
  // Identity at σ_last = 0.
  torch::Tensor inverse_noise_scaling(double sigma_last, const torch::Tensor& x) const;

  // The noise-path facts for SamplerOptions::renoising (empty = VE for all but flow).
  Renoising renoising() const;
  // Convenience: options.renoising = renoising().
  void configure(SamplerOptions& options) const { options.renoising = renoising(); }

 private:
  ModelSampling() = default;
  Kind kind_ = Kind::discrete;
  Prediction prediction_ = Prediction::eps;
  double sigma_data_ = 1.0;
  bool quantize_ = false;
  std::vector<double> sigmas_, log_sigmas_, alphas_cumprod_;
  ContinuousOptions continuous_;
  double shift_ = 1.0, multiplier_ = 1000;
};

// Flux's resolution-dependent shift μ for an image of `image_tokens` packed 2x2 patches: linear
// from 0.5 at 256 tokens to 1.15 at 4096 (diffusers' calculate_shift, ComfyUI's
// ModelSamplingFlux). Flux's σ schedule is flow(exp(μ)): e^μ/(e^μ + 1/t − 1) is SD3's shift
// s·t/(1 + (s − 1)·t) with s = e^μ. (Flux.1 schnell and flow models without dynamic shifting: shift 1.)
double flux_mu(int64_t image_tokens);

// Rectified flow's noise path (α = 1 − σ) and ComfyUI's renoising rule for ancestral steps:
// σ_down = σ_n·(1 + (σ_n/σ − 1)·η), x_scale = α_n/α_down, σ_up = √(σ_n² − σ_down²·x_scale²).
Renoising flow_renoising(double shift = 1.0);

// betas of diffusers' schedules (scaled_linear, linear, squaredcos_cap_v2 as "cosine").
std::vector<double> make_betas(const std::string& schedule, int timesteps, double beta_start, double beta_end);
// Lin et al. 2023, Algorithm 1: rescale ᾱ so that the last step has zero SNR.
std::vector<double> rescale_zero_terminal_snr(const std::vector<double>& alphas_cumprod);

}  // namespace sigma::samplers
