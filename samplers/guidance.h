// The network as the samplers see it, and the closure that turns it into D(x; σ) with
// classifier-free guidance. Guidance lives here, not in solvers, so every solver gets CFG,
// rescale and the guidance interval for free (DESIGN.md: "CFG lives in the denoiser closure").
#pragma once

#include <cmath>
#include <functional>

#include "samplers/model_sampling.h"
#include "samplers/types.h"

namespace sigma::samplers {

// One network evaluation. x_in is already c_in·x; c_noise has one entry per row of x_in
// (float32, on x's device). with_uncond: x_in holds 2B rows, [uncond rows; cond rows], and
// the output must come back in the same order. The app supplies the conditioning.
struct NetworkCall {
  torch::Tensor x_in;
  torch::Tensor c_noise;
  double sigma;
  bool with_uncond;
};
// Returns the raw prediction F (ε, v, x0, EDM F or velocity, per the ModelSampling).
using Network = std::function<torch::Tensor(const NetworkCall&)>;

struct Guidance {
  double scale = 1;  // CFG: F = u + (c − u)·scale (Ho & Salimans 2022)
  double rescale = 0;  // φ of Lin et al. 2023, eq. 15-16 (0 = off)
  // CFG only for σ in [σ_lo, σ_hi] (Kynkäänniemi et al. 2024); outside, the cond pass alone.
  double sigma_lo = 0, sigma_hi = INFINITY;
};

// D(x; σ) = c_skip·x + c_out·F̂, F̂ the guided network output. scale == 1 (or σ outside the
// interval) runs one batch of B rows without the unconditional half. Rescale:
// F̂ = φ·F_cfg·std(F_c)/std(F_cfg) + (1−φ)·F_cfg, std over every dim but the batch (as diffusers
// and ComfyUI, on the network output).
Denoiser make_denoiser(const ModelSampling& model_sampling, Network network, Guidance guidance);

}  // namespace sigma::samplers
