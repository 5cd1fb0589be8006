// The sampler table: one line per solver with its description and paper for --help and
// the GUI (see registry.h).
#include "samplers/registry.h"

#include <stdexcept>
#include <string>

#include "samplers/solvers.h"

namespace sigma::samplers {

const std::vector<SamplerInfo>& all_samplers() {
  static const std::vector<SamplerInfo> table = {
      {"euler", "Euler steps on the probability-flow ODE, optional EDM churn (s_churn, s_tmin, s_tmax, s_noise)",
       "Karras et al. 2022, Algorithm 2", &euler, false},
      {"euler_ancestral", "Euler step to σ_down, then σ_up of fresh noise (η)", "Ho et al. 2020; k-diffusion",
       &euler_ancestral, true},
      {"heun", "Heun's 2nd-order method on the probability-flow ODE", "Karras et al. 2022, Algorithm 2", &heun,
       false},
      {"dpm_2", "DPM-Solver-2: midpoint at the geometric mean of σ, σ_next", "Lu et al. 2022; Karras et al. 2022",
       &dpm_2, false},
      {"dpm_2_ancestral", "DPM-Solver-2 step to σ_down, then fresh noise (η)", "Lu et al. 2022; k-diffusion",
       &dpm_2_ancestral, true},
      {"lms", "linear multistep (order 4) with exact coefficients on the σ grid", "k-diffusion (Adams–Bashforth)",
       &lms, false},
      {"dpmpp_2s_ancestral", "DPM-Solver++(2S) single-step to σ_down, then fresh noise (η)", "Lu et al. 2022b",
       &dpmpp_2s_ancestral, true},
      {"dpmpp_sde", "stochastic DPM-Solver++ with an intermediate point r (η, s_noise)", "Lu et al. 2022b; k-diffusion",
       &dpmpp_sde, true, 1, true},
      {"dpmpp_2m", "DPM-Solver++(2M): 2nd-order multistep in ln σ", "Lu et al. 2022b", &dpmpp_2m, false},
      {"dpmpp_2m_sde", "DPM-Solver++(2M) SDE, solver_type midpoint | heun (η, s_noise)", "Lu et al. 2022b",
       &dpmpp_2m_sde, true, 1, true},
      {"dpmpp_2m_sde_heun", "DPM-Solver++(2M) SDE with the Heun-type correction (η, s_noise)",
       "Lu et al. 2022b; ComfyUI", &dpmpp_2m_sde_heun, true, 1, true},
      {"dpmpp_3m_sde", "DPM-Solver++(3M) SDE: 3rd-order multistep (η, s_noise)", "Lu et al. 2022b; k-diffusion",
       &dpmpp_3m_sde, true, 1, true},
      {"ddim", "DDIM in ᾱ variables; η = 0 (default) deterministic, η = 1 DDPM-like", "Song et al. 2021a, eq. 12",
       &ddim, false, 0.0},
      {"ddpm", "ancestral sampling with the DDPM posterior mean and variance", "Ho et al. 2020, eqs. 6-7", &ddpm, true},
      {"ipndm", "improved PNDM: Adams–Bashforth on the slope, up to 4th order, no extra calls",
       "Zhang & Chen 2023 (DEIS), iPNDM", &ipndm, false},
      {"ipndm_v", "iPNDM with the Adams–Bashforth weights of the actual (variable) step sizes",
       "Zhang & Chen 2023; ComfyUI", &ipndm_v, false},
      {"deis", "DEIS: exponential integrator with polynomial extrapolation of the slope (order 3, tab)",
       "Zhang & Chen 2023, eq. 14", &deis, false},
      {"res_multistep", "RES 2nd-order multistep exponential integrator in ln σ",
       "Zhang et al. 2023 (RES); ComfyUI", &res_multistep, false, 0.0},
      {"res_multistep_ancestral", "RES multistep to σ_down, then fresh noise (η)", "Zhang et al. 2023; ComfyUI",
       &res_multistep_ancestral, true},
      {"gradient_estimation", "Euler plus (γ−1)·(change of slope), γ = 2", "Permenter & Yuan 2024, Algorithm 2",
       &gradient_estimation, false},
      {"heunpp2", "Heun++: up to three slopes per step weighted by σ", "ComfyUI (Heun++ 2)", &heunpp2, false},
      {"er_sde", "ER-SDE-Solver-3 with the default noise scaler", "Cui et al. 2023", &er_sde, true},
      {"seeds_2", "SEEDS-2: exponential SDE solver, one intermediate point (η, s_noise, r)", "Gonzalez et al. 2023",
       &seeds_2, true},
      {"seeds_3", "SEEDS-3: exponential SDE solver, two intermediate points (η, s_noise)", "Gonzalez et al. 2023",
       &seeds_3, true},
      {"lcm", "LCM: jump to the data prediction, renoise to the next σ", "Luo et al. 2023, Algorithm 1", &lcm, true},
      {"dpm_fast", "DPM-Solver with the steps' function evaluations spread over orders 3, 2, 1, its own t grid",
       "Lu et al. 2022, section 3.4", &dpm_fast, true, 0.0},
      {"dpm_adaptive", "DPM-Solver-3 with embedded order 2 and a step-size controller (rtol 0.05, atol 0.0078)",
       "Lu et al. 2022, section 4", &dpm_adaptive, true, 0.0},
      {"dopri5", "adaptive probability-flow ODE, Dormand–Prince 5(4) in ln σ (rtol, atol)",
       "Dormand & Prince 1980; Song et al. 2021b", &dopri5, false},
      {"reverse_sde", "reverse-time VE SDE by Euler–Maruyama (needs many steps)", "Song et al. 2021b, eq. 6",
       &reverse_sde, true},
      {"flow_euler", "rectified-flow Euler: x += (t_next − t)·v", "Liu et al. 2022; Esser et al. 2024", &flow_euler,
       false},
      {"flow_euler_ancestral", "rectified-flow Euler to t_down with the flow renoising rule (η)",
       "ComfyUI sample_euler_ancestral_RF", &flow_euler_ancestral, true},
  };
  return table;
}

const SamplerInfo& find_sampler(std::string_view name) {
  for (const auto& s : all_samplers())
    if (s.name == name) return s;
  std::string known;
  for (const auto& s : all_samplers()) known += (known.empty() ? "" : ", ") + s.name;
  throw std::invalid_argument("unknown sampler '" + std::string(name) + "'; known samplers: " + known);
}

SampleResult sample(const SamplerInfo& sampler, const Denoiser& denoiser, torch::Tensor x,
                    const std::vector<double>& sigmas, const SamplerOptions& options) {
  SampleResult result;
  try {
    result.x = sampler.fn(denoiser, std::move(x), sigmas, options);
    result.steps_done = static_cast<int>(sigmas.size()) - 1;
  } catch (Cancelled& c) {
    result.x = c.x;
    result.denoised = c.denoised;
    result.cancelled = true;
    result.steps_done = c.step;
  }
  return result;
}

}  // namespace sigma::samplers
