// The sampler conformance runner (see sampler_cases.h). Every setting comes from the
// manifest case (sampler, schedule, steps, cfg_scale, quantize, prediction/model_output,
// options, init, noise_draws) or, for diffusers' schedulers, from the fixture's own
// scheduler_config.json (steps_offset, set_alpha_to_one); nothing is keyed on a case name.
#include "tests/sampler_cases.h"

#include <nlohmann/json.hpp>

#include <fstream>
#include <iterator>
#include <memory>
#include <stdexcept>

#include "models/io/safetensors.h"
#include "samplers/samplers.h"

namespace sigma::test {

namespace sm = sigma::samplers;
using nlohmann::json;

namespace {

std::vector<double> to_vector(const torch::Tensor& t) {
  auto d = t.to(torch::kFloat64).contiguous();
  return std::vector<double>(d.data_ptr<double>(), d.data_ptr<double>() + d.numel());
}

}  // namespace

double max_rel(const std::vector<double>& ours, const torch::Tensor& ref_t) {
  const auto ref = to_vector(ref_t);
  if (ours.size() != ref.size()) return INFINITY;
  double worst = 0;
  for (size_t i = 0; i < ours.size(); ++i)
    worst = std::max(worst, ref[i] == 0 ? std::abs(ours[i]) : std::abs(ours[i] - ref[i]) / std::abs(ref[i]));
  return worst;
}

namespace {

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// The case's solver keyword arguments; an unknown key is an error, never silently ignored.
void apply_options(const json& options, sm::SamplerOptions& o) {
  for (const auto& [key, value] : options.items()) {
    if (key == "eta") o.eta = value.get<double>();
    else if (key == "s_noise") o.s_noise = value.get<double>();
    else if (key == "s_churn") o.s_churn = value.get<double>();
    else if (key == "s_tmin") o.s_tmin = value.get<double>();
    else if (key == "s_tmax") o.s_tmax = value.get<double>();
    else if (key == "r") o.r = value.get<double>();
    else if (key == "solver_type") o.solver_type = value.get<std::string>();
    else if (key == "order") o.lms_order = value.get<int>();
    else if (key == "rtol") o.rtol = value.get<double>();
    else if (key == "atol") o.atol = value.get<double>();
    else throw std::invalid_argument("unsupported sampler option '" + key + "'");
  }
}

// How one case is run, resolved from its fields.
struct Plan {
  std::shared_ptr<sm::ModelSampling> ms;
  std::vector<double> sigmas;
  const sm::SamplerInfo* sampler = nullptr;
  sm::SamplerOptions options;
};

Plan plan_kdiff(const json& c, const std::vector<double>& alphas_cumprod) {
  Plan p;
  const auto prediction = sm::parse_prediction(c.value("prediction", std::string("epsilon")));
  p.ms = std::make_shared<sm::ModelSampling>(
      sm::ModelSampling::from_alphas_cumprod(prediction, alphas_cumprod, c.at("quantize").get<bool>()));
  p.sigmas = sm::make_sigmas(c.at("schedule").get<std::string>(), *p.ms, c.at("steps").get<int>());
  p.sampler = &sm::find_sampler(c.at("sampler").get<std::string>());
  p.options.eta = p.sampler->default_eta;
  return p;
}

// diffusers' schedulers: "<ddim|euler_discrete>_<spacing>" on the ε/v grid, "flowmatch_euler_shift<s>".
Plan plan_diffusers(const json& c, const std::vector<double>& alphas_cumprod, const json& scheduler_config) {
  Plan p;
  const auto scheduler = c.at("scheduler").get<std::string>();
  const auto output = c.at("model_output").get<std::string>();
  const int steps = c.at("steps").get<int>();
  if (starts_with(scheduler, "flowmatch_euler_shift")) {
    if (!starts_with(output, "velocity")) throw std::invalid_argument("flow matching needs a velocity output");
    const double shift = std::stod(scheduler.substr(std::string("flowmatch_euler_shift").size()));
    p.ms = std::make_shared<sm::ModelSampling>(sm::ModelSampling::flow(shift));
    p.sigmas = sm::make_sigmas("flow_shift", *p.ms, steps);
    p.sampler = &sm::find_sampler("flow_euler");
    return p;
  }
  // diffusers calls the network at integer timesteps on the training grid: nearest index.
  const auto prediction = sm::parse_prediction(output);
  p.ms = std::make_shared<sm::ModelSampling>(sm::ModelSampling::from_alphas_cumprod(prediction, alphas_cumprod, true));
  sm::ScheduleOptions so;
  so.steps_offset = scheduler_config.at("steps_offset").get<int>();
  std::string spacing;
  if (starts_with(scheduler, "ddim_")) {
    spacing = scheduler.substr(5);
    so.set_alpha_to_one = scheduler_config.at("set_alpha_to_one").get<bool>();
    p.sampler = &sm::find_sampler("ddim");
    p.options.eta = 0;  // DDIMScheduler.step's default η
  } else if (starts_with(scheduler, "euler_discrete_")) {
    spacing = scheduler.substr(15);
    so.fractional_timesteps = true;  // EulerDiscrete keeps linspace's t unrounded
    p.sampler = &sm::find_sampler("euler");
  } else {
    throw std::invalid_argument("unsupported diffusers scheduler '" + scheduler + "'");
  }
  p.sigmas = sm::make_sigmas(spacing, *p.ms, steps, so);
  return p;
}

// A sampling case counts only when it also took the reference's number of noise draws.
void add_with_draws(CaseReport& report, const std::string& key, double err, int draws, int expected, double tol) {
  if (draws != expected)
    report.add_exact(key, false, "took " + std::to_string(draws) + " noise draws, the reference took " +
                                     std::to_string(expected) + " (rel err " + std::to_string(err) + ")");
  else
    report.add(key, err, tol);
}

// D(x; σ) with CFG on [uncond, cond] through the ε-network, as every UNet case runs it.
sm::Denoiser cfg_denoiser(const sm::ModelSampling& ms, const EpsNetwork& eps, const torch::Tensor& cond,
                          const torch::Tensor& uncond, double scale) {
  const sm::Network network = [eps, cond, uncond](const sm::NetworkCall& call) {
    return eps(call.x_in, call.c_noise, call.with_uncond ? torch::cat({uncond, cond}) : cond);
  };
  sm::Guidance guidance;
  guidance.scale = scale;
  return sm::make_denoiser(ms, network, guidance);
}

// Python's json writes -Infinity (diffusers' lambda_min_clipped default), which JSON lacks:
// read as the lowest double.
json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (size_t at; (at = text.find("-Infinity")) != std::string::npos;) text.replace(at, 9, "-1.7976931348623157e308");
  return json::parse(text);
}

}  // namespace

void run_gauss_sampler_cases(CaseReport& report, const std::string& refs_dir) {
  auto f = sigma::models::SafeTensors::open(refs_dir + "/samplers.safetensors");
  const auto mu = f->load("gauss.mu", torch::kFloat32);
  const auto x_T = f->load("gauss.x_T", torch::kFloat32);
  const auto tape = f->load("gauss.noise_tape", torch::kFloat32);
  const auto sigmas = to_vector(f->load("gauss.sigmas"));
  const double s2 = 0.5 * 0.5;  // the data's variance (fixture README)
  const sm::Denoiser gauss = [&](const torch::Tensor& x, double sigma) {
    return mu + (x - mu) * (s2 / (s2 + sigma * sigma));
  };
  const std::vector<std::string> skip = {"gauss.mu", "gauss.x_T", "gauss.noise_tape", "gauss.sigmas", "gauss.exact"};
  for (const auto& info : f->tensors()) {
    if (!starts_with(info.name, "gauss.") || std::find(skip.begin(), skip.end(), info.name) != skip.end()) continue;
    const auto label = info.name;
    try {
      const auto& sampler = sm::find_sampler(label.substr(6));
      sm::SamplerOptions o;
      o.eta = sampler.default_eta;
      o.noise = sm::replay_noise(tape);
      auto out = sampler.fn(gauss, x_T * 80.0, sigmas, o);
      report.add(label, rel_error(out, f->load(label)), 1e-4);
    } catch (const std::exception& e) {
      report.add_exact(label, false, e.what());
    }
  }
  // The exact probability-flow solution, reached by the adaptive ODE solver.
  auto ode = sm::find_sampler("dopri5").fn(gauss, x_T * 80.0, sigmas, sm::SamplerOptions{});
  report.add("gauss.exact (dopri5)", rel_error(ode, f->load("gauss.exact")), 1e-4);
}

void run_unet_sampler_cases(CaseReport& report, const std::string& refs_dir, const EpsNetwork& eps) {
  const auto manifest = read_json(refs_dir + "/manifest.json");
  const auto scheduler_config =
      read_json(refs_dir + "/../models/tiny-sd15-diffusers/scheduler/scheduler_config.json");
  auto f = sigma::models::SafeTensors::open(refs_dir + "/samplers.safetensors");
  const auto device = test_device();
  const auto dtype = test_dtype();
  const auto alphas_cumprod = to_vector(f->load("alphas_cumprod"));
  const auto x_T = f->load("x_T").to(device, dtype);
  const auto tape = f->load("noise_tape").to(device, dtype);
  const double tol = tolerance(1e-3);

  for (const auto& c : manifest.at("cases")) {
    const auto key = c.at("key").get<std::string>();
    const bool diffusers = starts_with(key, "diffusers.");
    if (!starts_with(key, "kdiff.") && !starts_with(key, "kdiff_v.") && !diffusers) continue;  // pipelines: app/
    try {
      Plan p = diffusers ? plan_diffusers(c, alphas_cumprod, scheduler_config) : plan_kdiff(c, alphas_cumprod);
      apply_options(c.at("options"), p.options);
      p.ms->configure(p.options);
      auto draws = std::make_shared<int>(0);
      p.options.noise = sm::replay_noise(tape, draws);

      const int batch = c.at("batch").get<int>();
      auto cond = f->load("cond").to(device, dtype), uncond = f->load("uncond").to(device, dtype);
      if (cond.size(0) != batch || uncond.size(0) != batch || x_T.size(0) != batch)
        throw std::invalid_argument("batch " + std::to_string(batch) + " does not match cond/uncond/x_T rows");
      const auto denoiser = cfg_denoiser(*p.ms, eps, cond, uncond, c.at("cfg_scale").get<double>());

      // The start: "x_T * sigmas[0]" (k-diffusion) or "x_T * init_noise_sigma" (diffusers:
      // √(1+σ²)·x_T for VP models, x_T for flow): noise_scaling without / with max_denoise.
      const auto init = c.at("init").get<std::string>();
      bool max_denoise;
      if (starts_with(init, "x_T * sigmas[0]")) max_denoise = false;
      else if (starts_with(init, "x_T * init_noise_sigma")) max_denoise = true;
      else throw std::invalid_argument("unsupported init '" + init + "'");
      auto x = p.ms->noise_scaling(p.sigmas.front(), x_T, torch::zeros_like(x_T), max_denoise);

      torch::NoGradGuard no_grad;
      x = p.sampler->fn(denoiser, x, p.sigmas, p.options);
      x = p.ms->inverse_noise_scaling(p.sigmas.back(), x);
      add_with_draws(report, key, rel_error(x, f->load(key)), *draws, c.value("noise_draws", 0), tol);
    } catch (const std::exception& e) {
      report.add_exact(key, false, e.what());
    }
  }
}

namespace {

// ComfyUI's discrete ε sampling for SD 1.x: LDM's linear betas in float64 (samplers2's README).
sm::ModelSampling comfy_sampling(bool quantize) {
  sm::DiscreteOptions o;
  o.quantize = quantize;
  return sm::ModelSampling::discrete(sm::Prediction::eps, o);
}

sm::ScheduleOptions schedule_options(const json& options) {
  sm::ScheduleOptions so;
  for (const auto& [key, value] : options.items()) {
    if (key == "model_type") so.ays_model = value.get<std::string>();
    else if (key == "coeff") so.gits_coeff = value.get<double>();
    else throw std::invalid_argument("unsupported schedule option '" + key + "'");
  }
  return so;
}

// Why a case cannot run in this build ("" when it can): a name the registries do not know.
std::string not_built(const json& c) {
  if (c.contains("sampler")) {
    const auto name = c.at("sampler").get<std::string>();
    const auto& all = sm::all_samplers();
    if (std::none_of(all.begin(), all.end(), [&](const sm::SamplerInfo& s) { return s.name == name; }))
      return "sampler '" + name + "' is not built yet";
  }
  if (c.contains("schedule")) {
    const auto name = c.at("schedule").get<std::string>();
    const auto& all = sm::all_schedules();
    if (std::none_of(all.begin(), all.end(), [&](const sm::ScheduleInfo& s) { return s.name == name; }))
      return "schedule '" + name + "' is not built yet";
  }
  return "";
}

// comfy_seed.*: ComfyUI's KSampler seed rules end to end on the CPU (README): the initial
// noise from a CPU generator seeded with the seed, scaled by √(1 + σ₀²); the in-run noise
// from samplers::comfy_noise.
double comfy_seed_case(const json& c, const sigma::models::SafeTensors& f, const EpsNetwork& eps) {
  const auto seed = c.at("seed").get<uint64_t>();
  const auto ms = comfy_sampling(c.at("quantize").get<bool>());
  const auto sigmas = sm::make_sigmas(c.at("schedule").get<std::string>(), ms, c.at("steps").get<int>());
  const auto& sampler = sm::find_sampler(c.at("sampler").get<std::string>());
  auto gen = at::detail::createCPUGenerator(seed);
  const auto noise = torch::randn(f.load("comfy_seed.noise").sizes(), gen, torch::kFloat32);
  if (!torch::equal(noise, f.load("comfy_seed.noise", torch::kFloat32)))
    throw std::runtime_error("the initial noise differs from the reference's randn(seed)");
  sm::SamplerOptions options;
  options.eta = sampler.default_eta;
  ms.configure(options);
  const auto x0 = ms.noise_scaling(sigmas.front(), noise, torch::zeros_like(noise), true);
  options.noise = sm::comfy_noise(sampler, x0, sigmas, seed);
  // The run is on the CPU in float32; the network on the suite's device and dtype.
  const auto device = test_device();
  const auto dtype = test_dtype();
  const EpsNetwork on_device = [&](const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& context) {
    return eps(x.to(device, dtype), t.to(device), context).to(torch::kCPU, torch::kFloat32);
  };
  const auto denoiser = cfg_denoiser(ms, on_device, f.load("cond").to(device, dtype), f.load("uncond").to(device, dtype),
                                     c.at("cfg_scale").get<double>());
  torch::NoGradGuard no_grad;
  auto x = sampler.fn(denoiser, x0, sigmas, options);
  return rel_error(ms.inverse_noise_scaling(sigmas.back(), x), f.load(c.at("key").get<std::string>()));
}

}  // namespace

Samplers2Report run_samplers2_cases(const EpsNetwork& eps, const std::string& dir) {
  Samplers2Report out;
  auto& report = out.report;
  const auto manifest = read_json(dir + "/manifest.json");
  auto f = sigma::models::SafeTensors::open(dir + "/samplers2.safetensors");
  const auto device = test_device();
  const auto dtype = test_dtype();
  const auto x_T = f->load("x_T").to(device, dtype);
  const auto tape = f->load("noise_tape").to(device, dtype);
  const auto cond = f->load("cond").to(device, dtype), uncond = f->load("uncond").to(device, dtype);
  const double tol = tolerance(1e-3);

  for (const auto& c : manifest.at("cases")) {
    const auto key = c.at("key").get<std::string>();
    try {
      if (const auto why = not_built(c); !why.empty()) {
        ++out.not_built;
        report.add_exact(key, false, "(" + why + ")");
        continue;
      }
      if (c.value("kind", std::string()) == "sigmas") {
        const auto sigmas = sm::make_sigmas(c.at("schedule").get<std::string>(), comfy_sampling(true), c.at("steps").get<int>(),
                                            schedule_options(c.at("options")));
        report.add(key, max_rel(sigmas, f->load(key)), 1e-6);  // float32 references
        continue;
      }
      if (starts_with(key, "comfy_seed.")) {
        out.report.add(key, comfy_seed_case(c, *f, eps), tol);
        continue;
      }
      if (!starts_with(key, "comfy.") && !starts_with(key, "kdiff2.")) {
        ++out.not_built;
        report.add_exact(key, false, "(this case family is not built yet)");
        continue;
      }
      // comfy.<sampler>.<schedule>.<steps>: ComfyUI's sampler functions from x_T·σ₀. kdiff2.*:
      // k-diffusion's DPM-Solver from x_T·σ_max on its own grid, so the list only gives the
      // two ends and, for dpm_fast, the evaluations (its length − 1). Noise from the tape.
      const bool kdiff2 = starts_with(key, "kdiff2.");
      const auto ms = comfy_sampling(c.at("quantize").get<bool>());
      std::vector<double> sigmas;
      if (kdiff2) {
        const double lo = c.at("sigma_min").get<double>(), hi = c.at("sigma_max").get<double>();
        const int steps = c.value("steps", 1);
        for (int i = 0; i <= steps; ++i)
          sigmas.push_back(i == steps ? lo : std::exp(std::log(hi) + (std::log(lo) - std::log(hi)) * i / steps));
      } else {
        sigmas = sm::make_sigmas(c.at("schedule").get<std::string>(), ms, c.at("steps").get<int>());
      }
      const auto init = c.at("init").get<std::string>();
      if (init != (kdiff2 ? "x_T * sigma_max" : "x_T * sigmas[0]")) throw std::invalid_argument("unsupported init '" + init + "'");
      const auto& sampler = sm::find_sampler(c.at("sampler").get<std::string>());
      sm::SamplerOptions options;
      options.eta = sampler.default_eta;
      apply_options(c.value("options", json::object()), options);
      ms.configure(options);
      auto draws = std::make_shared<int>(0);
      options.noise = sm::replay_noise(tape, draws);
      const auto guided = cfg_denoiser(ms, eps, cond, uncond, c.at("cfg_scale").get<double>());
      int calls = 0;
      const sm::Denoiser counted = [&](const torch::Tensor& x, double sigma) {
        ++calls;
        return guided(x, sigma);
      };
      torch::NoGradGuard no_grad;
      auto x = sampler.fn(counted, x_T * sigmas.front(), sigmas, options);
      if (!kdiff2) x = ms.inverse_noise_scaling(sigmas.back(), x);  // (DPM-Solver's result stays at σ_min)
      const int expected_calls = c.value("model_calls", calls);
      if (calls != expected_calls)
        report.add_exact(key, false, std::to_string(calls) + " model calls, the reference made " + std::to_string(expected_calls));
      else
        add_with_draws(report, key, rel_error(x, f->load(key)), *draws, c.value("noise_draws", 0), tol);
    } catch (const std::exception& e) {
      report.add_exact(key, false, e.what());
    }
  }
  report.close();
  return out;
}

CaseReport run_sampler_conformance(const EpsNetwork& eps, const std::string& refs_dir) {
  CaseReport report("samplers");
  run_gauss_sampler_cases(report, refs_dir);
  run_unet_sampler_cases(report, refs_dir, eps);
  report.close();
  return report;
}

}  // namespace sigma::test
