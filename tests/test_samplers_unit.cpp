// samplers/ unit tests: the registry's errors, σ lists against hand-derived values,
// parameterizations against their definitions (an oracle network that returns the true
// target must give back x0), guidance arithmetic, noise sources, cancellation, and the
// unification claim that DDIM η = 0 is euler on the same σ grid.
#include <doctest/doctest.h>

#include <set>

#include "samplers/samplers.h"
#include "samplers/solver_util.h"
#include "tests/support.h"

namespace sm = sigma::samplers;
using torch::Tensor;

using sigma::test::error_of;

namespace {

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// D for data N(μ, s²) per element, on the VE variable.
sm::Denoiser gaussian(Tensor mu, double s) {
  return [mu, s2 = s * s](const Tensor& x, double sigma) { return mu + (x - mu) * (s2 / (s2 + sigma * sigma)); };
}

double max_abs(const Tensor& a, const Tensor& b) { return (a - b).abs().max().item<double>(); }

}  // namespace

TEST_SUITE("unit.samplers") {
  TEST_CASE("an unknown sampler or schedule name lists every known name") {
    const auto msg = error_of([] { sm::find_sampler("eulr"); });
    CHECK(contains(msg, "unknown sampler 'eulr'"));
    for (const auto& s : sm::all_samplers()) CHECK_MESSAGE(contains(msg, s.name), s.name);
    const auto ms = sm::ModelSampling::discrete(sm::Prediction::eps);
    const auto msg2 = error_of([&] { sm::make_sigmas("karas", ms, 10); });
    CHECK(contains(msg2, "unknown schedule 'karas'"));
    for (const auto& s : sm::all_schedules()) CHECK_MESSAGE(contains(msg2, s.name), s.name);
    CHECK(contains(error_of([] { sm::parse_prediction("vv"); }), "v_prediction"));
  }

  TEST_CASE("the registry holds every solver of the issue once, each with a description and paper") {
    std::set<std::string> names;
    for (const auto& s : sm::all_samplers()) {
      CHECK(names.insert(s.name).second);
      CHECK(!s.description.empty());
      CHECK(!s.paper.empty());
      CHECK((s.fn != nullptr));
    }
    for (const char* n : {"euler", "euler_ancestral", "heun", "dpm_2", "dpm_2_ancestral", "lms", "dpmpp_2s_ancestral",
                          "dpmpp_sde", "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_3m_sde", "ddim", "ddpm", "dopri5",
                          "reverse_sde", "flow_euler", "flow_euler_ancestral"})
      CHECK_MESSAGE(names.count(n) == 1, n);
    CHECK((sm::find_sampler("dpmpp_2m").fn == &sm::dpmpp_2m));
    CHECK(sm::find_sampler("ddim").default_eta == 0);
  }

  TEST_CASE("DDIM with eta = 0 and euler agree to 1e-5 on the same sigma grids; DDPM is euler_ancestral") {
    auto mu = torch::linspace(-1, 1, 64).reshape({1, 4, 4, 4});
    auto x_T = torch::randn({1, 4, 4, 4}, at::make_generator<at::CPUGeneratorImpl>(7));
    const auto D = gaussian(mu, 0.5);
    const auto ms = sm::ModelSampling::discrete(sm::Prediction::eps);
    sm::ScheduleOptions ends_at_abar0;
    ends_at_abar0.set_alpha_to_one = false;
    for (const auto& sigmas : {sm::make_sigmas("karras", ms, 10), sm::make_sigmas("trailing", ms, 10, ends_at_abar0)}) {
      sm::SamplerOptions o;
      o.eta = 0;
      auto a = sm::ddim(D, x_T * sigmas[0], sigmas, o);
      auto b = sm::euler(D, x_T * sigmas[0], sigmas, o);
      CHECK(max_abs(a, b) / b.abs().max().item<double>() < 1e-5);
    }
    // …and DDIM with η = 1 is a different (stochastic) sampler: the check above can fail.
    sm::SamplerOptions o;
    o.noise = sm::make_noise_source(x_T, 1);
    const auto sigmas = sm::make_sigmas("karras", ms, 10);
    CHECK(max_abs(sm::ddim(D, x_T * sigmas[0], sigmas, o), sm::euler(D, x_T * sigmas[0], sigmas, o)) > 1e-2);
    // DDPM's posterior step (= DDIM η = 1) is k-diffusion's Euler-ancestral step on the same noise.
    sm::SamplerOptions a, b;
    a.noise = sm::make_noise_source(x_T, 5);
    b.noise = sm::make_noise_source(x_T, 5);
    auto p = sm::ddpm(D, x_T * sigmas[0], sigmas, a), q = sm::euler_ancestral(D, x_T * sigmas[0], sigmas, b);
    CHECK(max_abs(p, q) / q.abs().max().item<double>() < 1e-5);
  }

  TEST_CASE("cancellation: on_step false ends the run as a result, with the state at that step") {
    auto x = torch::ones({1, 1, 2, 2}) * 10;
    const auto D = gaussian(torch::zeros({1, 1, 2, 2}), 0.5);
    const auto sigmas = sm::sigmas_karras(8, 0.01, 10);
    std::vector<int> seen;
    sm::SamplerOptions o;
    o.on_step = [&](const sm::StepInfo& s) {
      seen.push_back(s.step);
      CHECK(s.total == 8);
      CHECK(s.sigma == doctest::Approx(sigmas[s.step]));
      return s.step < 3;
    };
    auto r = sm::sample(sm::find_sampler("heun"), D, x, sigmas, o);
    CHECK(r.cancelled);
    CHECK(r.steps_done == 3);
    CHECK(seen == std::vector<int>{0, 1, 2, 3});
    CHECK(r.denoised.defined());
    CHECK_THROWS_AS(sm::heun(D, x, sigmas, o), sm::Cancelled);
    o.on_step = [](const sm::StepInfo&) { return true; };
    auto done = sm::sample(sm::find_sampler("heun"), D, x, sigmas, o);
    CHECK(!done.cancelled);
    CHECK(done.steps_done == 8);
  }

  TEST_CASE("noise sources: seeded CPU draws, replay in order, loud when missing") {
    auto like = torch::zeros({2, 3});
    auto a = sm::make_noise_source(like, 42), b = sm::make_noise_source(like, 42), c = sm::make_noise_source(like, 43);
    auto a1 = a(1, 0.5), a2 = a(0.5, 0);
    CHECK(torch::equal(a1, b(1, 0.5)));
    CHECK(!torch::equal(a1, a2));
    CHECK(!torch::equal(a1, c(1, 0.5)));
    CHECK(torch::equal(a1, torch::randn({2, 3}, at::make_generator<at::CPUGeneratorImpl>(42))));
    auto draws = std::make_shared<int>(0);
    auto tape = torch::arange(6, torch::kFloat32).reshape({3, 2});
    auto replay = sm::replay_noise(tape, draws);
    CHECK(torch::equal(replay(0, 0), tape[0]));
    CHECK(torch::equal(replay(0, 0), tape[1]));
    CHECK(*draws == 2);
    replay(0, 0);
    CHECK_THROWS_AS(replay(0, 0), std::out_of_range);
    const auto D = gaussian(torch::zeros({2, 3}), 0.5);
    const auto msg = error_of([&] { sm::euler_ancestral(D, like + 1, {1.0, 0.5, 0.0}, sm::SamplerOptions{}); });
    CHECK(contains(msg, "make_noise_source"));
    CHECK(contains(error_of([&] { sm::euler(D, like, {1.0, 2.0, 0.0}, sm::SamplerOptions{}); }), "sigma[1] > sigma[0]"));
  }

  TEST_CASE("each parameterization gives back x0 from an oracle network that returns its true target") {
    auto g = at::make_generator<at::CPUGeneratorImpl>(3);
    auto x0 = torch::randn({2, 4, 3, 3}, g, torch::kFloat64), eps = torch::randn({2, 4, 3, 3}, g, torch::kFloat64);
    const double sd = 0.5;
    struct Case {
      sm::ModelSampling ms;
      double sigma;
    };
    std::vector<Case> cases = {{sm::ModelSampling::discrete(sm::Prediction::eps), 3.0},
                               {sm::ModelSampling::discrete(sm::Prediction::v), 3.0},
                               {sm::ModelSampling::discrete(sm::Prediction::x0), 3.0},
                               {sm::ModelSampling::continuous(sm::Prediction::edm), 3.0},
                               {sm::ModelSampling::flow(3.0), 0.7}};
    for (auto& [ms, sigma] : cases) {
      const bool flow = ms.prediction() == sm::Prediction::flow;
      auto x = flow ? (1 - sigma) * x0 + sigma * eps : x0 + sigma * eps;
      sm::Network oracle = [&, sigma = sigma](const sm::NetworkCall& call) -> Tensor {
        const double vp = 1 / std::sqrt(1 + sigma * sigma);  // √ᾱ; √(1−ᾱ) = σ·vp
        // What the network sees: the VP variable x/√(1+σ²) (ε, v, x0), x/√(σ²+σd²) (EDM), x_t (flow).
        const double c_in = flow ? 1.0 : 1 / std::sqrt(sigma * sigma + (ms.prediction() == sm::Prediction::edm ? sd * sd : 1.0));
        CHECK(max_abs(call.x_in, x * c_in) < 1e-12);
        switch (ms.prediction()) {
          case sm::Prediction::eps: return eps;
          case sm::Prediction::v: return vp * eps - sigma * vp * x0;  // Salimans & Ho 2022
          case sm::Prediction::x0: return x0;
          case sm::Prediction::edm:  // Karras et al. 2022, eq. 8's training target
            return (x0 - sd * sd / (sigma * sigma + sd * sd) * x) / (sigma * sd / std::sqrt(sigma * sigma + sd * sd));
          case sm::Prediction::flow: return eps - x0;
        }
        return {};
      };
      auto D = sm::make_denoiser(ms, oracle, sm::Guidance{});
      CHECK_MESSAGE(max_abs(D(x, sigma), x0) < 1e-10, sm::prediction_name(ms.prediction()));
    }
  }

  TEST_CASE("classifier-free guidance: one pass at scale 1 or outside the interval, [uncond; cond] otherwise") {
    const auto ms = sm::ModelSampling::discrete(sm::Prediction::x0);  // D = F: the guided output itself
    std::vector<int64_t> rows_seen;
    // uncond rows return 1, cond rows 3 + position, so the combination is visible.
    sm::Network net = [&](const sm::NetworkCall& call) {
      rows_seen.push_back(call.x_in.size(0));
      CHECK(call.c_noise.size(0) == call.x_in.size(0));
      CHECK(call.c_noise[0].item<double>() == doctest::Approx(ms.sigma_to_t(call.sigma)).epsilon(1e-6));
      auto cond = torch::arange(8, torch::kFloat32).reshape({2, 1, 2, 2}) + 3;
      if (!call.with_uncond) return cond;
      CHECK(call.x_in.size(0) == 4);
      return torch::cat({torch::ones_like(cond), cond});
    };
    auto x = torch::zeros({2, 1, 2, 2});
    auto cond = torch::arange(8, torch::kFloat32).reshape({2, 1, 2, 2}) + 3;
    sm::Guidance g;
    CHECK(torch::allclose(sm::make_denoiser(ms, net, g)(x, 2.0), cond));
    g.scale = 7.5;
    CHECK(torch::allclose(sm::make_denoiser(ms, net, g)(x, 2.0), 1 + (cond - 1) * 7.5));
    g.sigma_lo = 0.5, g.sigma_hi = 1.5;
    CHECK(torch::allclose(sm::make_denoiser(ms, net, g)(x, 2.0), cond));
    CHECK(rows_seen == std::vector<int64_t>{2, 4, 2});
    // Rescale (Lin et al. 2023): φ·cfg·std(cond)/std(cfg) + (1−φ)·cfg, std per sample.
    g = sm::Guidance{};
    g.scale = 7.5, g.rescale = 0.7;
    auto cfg = 1 + (cond - 1) * 7.5;
    auto ratio = cond.std({1, 2, 3}, true, true) / cfg.std({1, 2, 3}, true, true);
    CHECK(torch::allclose(sm::make_denoiser(ms, net, g)(x, 2.0), 0.7 * cfg * ratio + 0.3 * cfg));
  }

  TEST_CASE("start and end of a run: noise_scaling and inverse_noise_scaling") {
    auto noise = torch::ones({1, 1, 1, 1}), latent = torch::full({1, 1, 1, 1}, 0.5);
    const auto eps = sm::ModelSampling::discrete(sm::Prediction::eps);
    CHECK(eps.noise_scaling(2.0, noise, latent, true).item<double>() == doctest::Approx(std::sqrt(5.0) + 0.5));
    CHECK(eps.noise_scaling(2.0, noise, latent, false).item<double>() == doctest::Approx(2.5));
    CHECK(eps.inverse_noise_scaling(0.0, noise).item<double>() == 1.0);
    CHECK(eps.inverse_noise_scaling(0.5, noise).item<double>() == doctest::Approx(1 / std::sqrt(1.25)));
    const auto flow = sm::ModelSampling::flow(3.0);
    CHECK(flow.noise_scaling(0.25, noise, latent, true).item<double>() == doctest::Approx(0.25 + 0.75 * 0.5));
    CHECK(flow.c_noise(0.5) == doctest::Approx(500.0));
    CHECK(flow.t_to_sigma(1000.0 * 0.25) == doctest::Approx(0.75 / 1.5));  // s·t/(1+(s−1)t), s = 3
  }

  TEST_CASE("discrete sigma <-> t: log-linear between grid points, nearest index when quantized") {
    const auto ms = sm::ModelSampling::discrete(sm::Prediction::eps);
    const auto& s = ms.sigmas();
    for (int t : {0, 1, 37, 500, 998, 999}) CHECK(ms.sigma_to_t(s[t]) == doctest::Approx(t).epsilon(1e-9));
    const double mid = std::sqrt(s[400] * s[401]);  // halfway in log σ
    CHECK(ms.sigma_to_t(mid) == doctest::Approx(400.5));
    CHECK(ms.t_to_sigma(400.5) == doctest::Approx(mid));
    sm::DiscreteOptions quantized;
    quantized.quantize = true;
    const auto q = sm::ModelSampling::discrete(sm::Prediction::eps, quantized);
    CHECK(q.sigma_to_t(std::exp(0.4 * std::log(s[400]) + 0.6 * std::log(s[401]))) == 401);
    CHECK(q.sigma_to_t(1e-9) == 0);
    CHECK(q.sigma_to_t(1e9) == 999);
  }

  TEST_CASE("sigma lists against hand-derived values") {
    const auto ms = sm::ModelSampling::discrete(sm::Prediction::eps);
    const auto& tab = ms.sigmas();
    auto k = sm::sigmas_karras(5, 0.1, 10, 7);
    CHECK(k.size() == 6);
    CHECK(k[0] == doctest::Approx(10));
    CHECK(k[4] == doctest::Approx(0.1));
    CHECK(k[2] == doctest::Approx(std::pow(0.5 * (std::pow(10, 1 / 7.0) + std::pow(0.1, 1 / 7.0)), 7)));
    auto e = sm::sigmas_exponential(3, 0.1, 10);
    CHECK(e[1] == doctest::Approx(1.0));
    CHECK(sm::sigmas_polyexponential(3, 0.1, 10, 1)[1] == doctest::Approx(1.0));
    auto simple = sm::make_sigmas("simple", ms, 10);
    auto ddim_u = sm::make_sigmas("ddim_uniform", ms, 10);
    REQUIRE(simple.size() == 11);
    REQUIRE(ddim_u.size() == 11);
    for (int i = 0; i < 10; ++i) {
      CHECK(simple[i] == tab[999 - 100 * i]);
      CHECK(ddim_u[i] == tab[901 - 100 * i]);
    }
    CHECK(ddim_u[10] == 0);
    auto sgm = sm::make_sigmas("sgm_uniform", ms, 4);
    CHECK(sgm.size() == 5);
    CHECK(sgm[1] == doctest::Approx(ms.t_to_sigma(999 - 999 / 4.0)));
    sm::ScheduleOptions uniform;  // Beta(1, 1): the quantile is p itself
    uniform.alpha = uniform.beta = 1;
    auto b = sm::make_sigmas("beta", ms, 4, uniform);
    CHECK(b == std::vector<double>{tab[999], tab[749], tab[500], tab[250], 0.0});  // rint(0.75·999) = 749
    CHECK(sm::beta_ppf(0.5, 0.6, 0.6) == doctest::Approx(0.5));
    CHECK(sm::beta_ppf(0.2, 0.6, 0.6) + sm::beta_ppf(0.8, 0.6, 0.6) == doctest::Approx(1.0));
    CHECK(sm::beta_ppf(0.3, 2, 1) == doctest::Approx(std::sqrt(0.3)));
    CHECK(sm::beta_ppf(0.3, 1, 2) == doctest::Approx(1 - std::sqrt(0.7)));
    using V = std::vector<double>;
    CHECK(sm::diffusers_timesteps("leading", 1000, 10, 1) == V{901, 801, 701, 601, 501, 401, 301, 201, 101, 1});
    CHECK(sm::diffusers_timesteps("trailing", 1000, 10, 1) == V{999, 899, 799, 699, 599, 499, 399, 299, 199, 99});
    CHECK(sm::diffusers_timesteps("linspace", 1000, 10, 1) == V{999, 888, 777, 666, 555, 444, 333, 222, 111, 0});
    sm::ScheduleOptions frac;
    frac.fractional_timesteps = true;
    auto lin = sm::make_sigmas("linspace", ms, 4, frac);  // t = 999, 666, 333, 0: integers anyway
    CHECK(lin == V{tab[999], tab[666], tab[333], tab[0], 0.0});
    auto lin3 = sm::make_sigmas("linspace", ms, 3, frac);  // t = 999, 499.5, 0: σ linear in t (np.interp)
    CHECK(lin3[1] == doctest::Approx(0.5 * (tab[499] + tab[500])));
    sm::ScheduleOptions custom;
    custom.custom = {5, 2, 1, 0};
    CHECK(sm::make_sigmas("custom", ms, 0, custom) == custom.custom);
    custom.custom = {1, 2, 0};
    CHECK(contains(error_of([&] { sm::make_sigmas("custom", ms, 0, custom); }), "non-increasing"));
    CHECK(contains(error_of([&] { sm::make_sigmas("flow_shift", ms, 10); }), "flow model"));
  }

  TEST_CASE("beta schedules: cosine and zero-terminal-SNR rescaling") {
    sm::DiscreteOptions o;
    o.beta_schedule = "cosine";
    const auto cos = sm::ModelSampling::discrete(sm::Prediction::eps, o);
    auto f = [](double t) { return std::pow(std::cos((t + 0.008) / 1.008 * M_PI / 2), 2); };
    CHECK(cos.alphas_cumprod()[499] == doctest::Approx(f(0.5) / f(0)).epsilon(1e-9));
    const auto sd = sm::ModelSampling::discrete(sm::Prediction::v);
    o = sm::DiscreteOptions{};
    o.zero_terminal_snr = true;
    const auto zt = sm::ModelSampling::discrete(sm::Prediction::v, o);
    CHECK(zt.alphas_cumprod().front() == doctest::Approx(sd.alphas_cumprod().front()));
    CHECK(zt.alphas_cumprod().back() < 1e-7);
    CHECK(zt.sigma_max() > 4000);
    o.beta_schedule = "quad";
    CHECK(contains(error_of([&] { sm::ModelSampling::discrete(sm::Prediction::eps, o); }), "scaled_linear"));
  }

  TEST_CASE("ancestral splits keep the variance at sigma_next (VE and rectified flow)") {
    sm::SamplerOptions ve;
    auto a = sm::detail::ancestral_step(ve, 2.0, 1.0, 1.0);
    CHECK(a.sigma_down * a.sigma_down + a.sigma_up * a.sigma_up == doctest::Approx(1.0));
    CHECK(a.sigma_up == doctest::Approx(std::sqrt(0.75)));
    // Flow: x_down = (1−σd)·x0 + σd·ε; scaled by α_n/α_down and renoised it must be (1−σn)·x0 + σn·ε'.
    const auto r = sm::flow_renoising(1.0);
    for (double eta : {0.0, 0.5, 1.0}) {
      auto s = r.ancestral(0.8, 0.4, eta);
      CHECK(s.x_scale * (1 - s.sigma_down) == doctest::Approx(0.6));
      CHECK(std::pow(s.x_scale * s.sigma_down, 2) + s.sigma_up * s.sigma_up == doctest::Approx(0.16));
    }
    CHECK(r.sigma_from_half_log_snr(std::log(0.6 / 0.4)) == doctest::Approx(0.4));
  }
}
