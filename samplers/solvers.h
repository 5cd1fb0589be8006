// Every solver as a free function (denoiser, x, σ list, options) → x at the last σ,
// named as in k-diffusion/ComfyUI so users and their saved settings find them. They see
// the model only as D(x; σ) and never branch on a model family: what differs between
// the VE path and rectified flow comes in through SamplerOptions::renoising.
// x starts at sigmas[0] (see ModelSampling::noise_scaling); on Cancelled see types.h.
#pragma once

#include "samplers/types.h"

namespace sigma::samplers {

// Deterministic probability-flow ODE solvers (solvers_ode.cpp).
torch::Tensor euler(const Denoiser&, torch::Tensor x, const std::vector<double>& sigmas, const SamplerOptions&);
torch::Tensor heun(const Denoiser&, torch::Tensor x, const std::vector<double>& sigmas, const SamplerOptions&);
torch::Tensor dpm_2(const Denoiser&, torch::Tensor x, const std::vector<double>& sigmas, const SamplerOptions&);
torch::Tensor lms(const Denoiser&, torch::Tensor x, const std::vector<double>& sigmas, const SamplerOptions&);
torch::Tensor dpmpp_2m(const Denoiser&, torch::Tensor x, const std::vector<double>& sigmas, const SamplerOptions&);
torch::Tensor flow_euler(const Denoiser&, torch::Tensor x, const std::vector<double>& sigmas, const SamplerOptions&);

// Ancestral solvers: a deterministic step to σ_down, then fresh noise (solvers_ancestral.cpp).
torch::Tensor euler_ancestral(const Denoiser&, torch::Tensor x, const std::vector<double>& sigmas,
                              const SamplerOptions&);
torch::Tensor dpm_2_ancestral(const Denoiser&, torch::Tensor x, const std::vector<double>& sigmas,
                              const SamplerOptions&);
torch::Tensor dpmpp_2s_ancestral(const Denoiser&, torch::Tensor x, const std::vector<double>& sigmas,
                                 const SamplerOptions&);
torch::Tensor dpmpp_sde(const Denoiser&, torch::Tensor x, const std::vector<double>& sigmas, const SamplerOptions&);
torch::Tensor flow_euler_ancestral(const Denoiser&, torch::Tensor x, const std::vector<double>& sigmas,
                                   const SamplerOptions&);

// SDE and classic discrete-time samplers (solvers_sde.cpp).
torch::Tensor dpmpp_2m_sde(const Denoiser&, torch::Tensor x, const std::vector<double>& sigmas,
                           const SamplerOptions&);
torch::Tensor dpmpp_2m_sde_heun(const Denoiser&, torch::Tensor x, const std::vector<double>& sigmas,
                                const SamplerOptions&);
torch::Tensor dpmpp_3m_sde(const Denoiser&, torch::Tensor x, const std::vector<double>& sigmas,
                           const SamplerOptions&);
torch::Tensor ddim(const Denoiser&, torch::Tensor x, const std::vector<double>& sigmas, const SamplerOptions&);
torch::Tensor ddpm(const Denoiser&, torch::Tensor x, const std::vector<double>& sigmas, const SamplerOptions&);
torch::Tensor reverse_sde(const Denoiser&, torch::Tensor x, const std::vector<double>& sigmas,
                          const SamplerOptions&);

// Multistep ODE solvers reusing earlier slopes (solvers_multistep.cpp).
torch::Tensor ipndm(const Denoiser&, torch::Tensor x, const std::vector<double>& sigmas, const SamplerOptions&);
torch::Tensor ipndm_v(const Denoiser&, torch::Tensor x, const std::vector<double>& sigmas, const SamplerOptions&);
torch::Tensor deis(const Denoiser&, torch::Tensor x, const std::vector<double>& sigmas, const SamplerOptions&);
torch::Tensor res_multistep(const Denoiser&, torch::Tensor x, const std::vector<double>& sigmas, const SamplerOptions&);
torch::Tensor res_multistep_ancestral(const Denoiser&, torch::Tensor x, const std::vector<double>& sigmas,
                                      const SamplerOptions&);
torch::Tensor gradient_estimation(const Denoiser&, torch::Tensor x, const std::vector<double>& sigmas,
                                  const SamplerOptions&);
torch::Tensor heunpp2(const Denoiser&, torch::Tensor x, const std::vector<double>& sigmas, const SamplerOptions&);

// Stochastic exponential integrators in λ and LCM (solvers_exponential.cpp).
torch::Tensor er_sde(const Denoiser&, torch::Tensor x, const std::vector<double>& sigmas, const SamplerOptions&);
torch::Tensor seeds_2(const Denoiser&, torch::Tensor x, const std::vector<double>& sigmas, const SamplerOptions&);
torch::Tensor seeds_3(const Denoiser&, torch::Tensor x, const std::vector<double>& sigmas, const SamplerOptions&);
torch::Tensor lcm(const Denoiser&, torch::Tensor x, const std::vector<double>& sigmas, const SamplerOptions&);

// DPM-Solver on its own grid from the list's σ_max to its last positive σ (solvers_dpm_solver.cpp).
torch::Tensor dpm_fast(const Denoiser&, torch::Tensor x, const std::vector<double>& sigmas, const SamplerOptions&);
torch::Tensor dpm_adaptive(const Denoiser&, torch::Tensor x, const std::vector<double>& sigmas, const SamplerOptions&);

// Adaptive probability-flow ODE (solvers_adaptive.cpp): Dormand–Prince 5(4) in ln σ with
// rtol/atol, passing through every listed σ; a final σ = 0 is reached by x = D(x; σ_last).
torch::Tensor dopri5(const Denoiser&, torch::Tensor x, const std::vector<double>& sigmas, const SamplerOptions&);

}  // namespace sigma::samplers
