// samplers/ against the reference tensors that need no UNet: the gauss.* solver outputs
// (k-diffusion on a closed-form denoiser) and every σ list / timestep list the fixture
// records. The UNet-driven cases run through tests/sampler_cases.h from the UNet's test.
#include <doctest/doctest.h>

#include "models/io/safetensors.h"
#include "samplers/samplers.h"
#include "tests/sampler_cases.h"

namespace sm = sigma::samplers;
using sigma::models::SafeTensors;
using sigma::test::CaseReport;
using sigma::test::max_rel;

namespace {

std::string refs() { return sigma::test::sd15() + "/refs"; }

std::vector<double> fixture_alphas_cumprod(const SafeTensors& f) {
  auto t = f.load("alphas_cumprod", torch::kFloat64).contiguous();
  return {t.data_ptr<double>(), t.data_ptr<double>() + t.numel()};
}

}  // namespace

TEST_SUITE("conformance.samplers") {
  TEST_CASE("gauss.* sampler outputs and the exact ODE solution within 1e-4") {
    CaseReport report("samplers.gauss");
    sigma::test::run_gauss_sampler_cases(report, refs());
    report.close();
    CHECK(report.total == 11);  // 10 k-diffusion samplers + the adaptive ODE
    CHECK(report.passed == report.total);
  }

  TEST_CASE("every recorded sigma and timestep list is reproduced") {
    auto f = SafeTensors::open(refs() + "/samplers.safetensors");
    const auto ac = fixture_alphas_cumprod(*f);
    CaseReport report("samplers.sigmas");
    // float32 references: ~1 ulp of each σ plus the reference's float32 pow/exp.
    const double tol = 1e-6;
    for (const char* schedule : {"karras", "exponential", "discrete"}) {
      for (const bool q : {false, true}) {
        const auto ms = sm::ModelSampling::from_alphas_cumprod(sm::Prediction::eps, ac, q);
        const auto key = std::string("sigmas.") + schedule + (q ? ".q1" : ".q0");
        report.add(key, max_rel(sm::make_sigmas(schedule, ms, 10), f->load(key)), tol);
      }
    }
    report.add("gauss.sigmas (karras 12, 0.002..80)", max_rel(sm::sigmas_karras(12, 0.002, 80), f->load("gauss.sigmas")),
               tol);

    // diffusers' schedulers build their own ᾱ table in float32 (linspace, square, cumprod), which
    // drifts up to 1.7e-6 from the fixture's float64-made alphas_cumprod: rebuild it their way.
    auto betas = torch::linspace(std::sqrt(0.00085), std::sqrt(0.012), 1000, torch::kFloat32).pow(2);
    auto ac32_t = torch::cumprod(1 - betas, 0).to(torch::kFloat64).contiguous();
    const std::vector<double> ac32(ac32_t.data_ptr<double>(), ac32_t.data_ptr<double>() + 1000);
    const auto eps_q = sm::ModelSampling::from_alphas_cumprod(sm::Prediction::eps, ac32, true);
    sm::ScheduleOptions sd;  // SD 1.x's scheduler config: steps_offset 1
    sd.steps_offset = 1;
    report.add("diffusers.euler_discrete_leading.sigmas", max_rel(sm::make_sigmas("leading", eps_q, 10, sd),
                                                                  f->load("diffusers.euler_discrete_leading.sigmas")),
               tol);
    // Timesteps: the network time of every σ but the end, nearest index (diffusers uses integers).
    for (const char* spacing : {"leading", "trailing"}) {
      for (const char* family : {"ddim", "euler_discrete"}) {
        const auto key = std::string("diffusers.") + family + "_" + spacing + ".timesteps";
        if (!f->contains(key)) continue;
        auto so = sd;
        so.set_alpha_to_one = std::string(family) != "ddim";
        auto sigmas = sm::make_sigmas(spacing, eps_q, 10, so);
        std::vector<double> ts;
        for (size_t i = 0; i + 1 < sigmas.size(); ++i) ts.push_back(eps_q.sigma_to_t(sigmas[i]));
        report.add(key, max_rel(ts, f->load(key)), tol);
        if (std::string(family) == "ddim")  // DDIM with set_alpha_to_one off ends at ᾱ_0, not at σ = 0
          report.add_exact(key.substr(0, key.size() - 10) + " ends at sigma(alphas_cumprod[0])",
                           sigmas.back() == sm::ModelSampling::sigma_of_alpha_cumprod(ac32[0]));
      }
    }
    const auto flow = sm::ModelSampling::flow(3.0);
    const auto flow_sigmas = sm::make_sigmas("flow_shift", flow, 10);
    report.add("diffusers.flowmatch_euler_shift3.sigmas",
               max_rel(flow_sigmas, f->load("diffusers.flowmatch_euler_shift3.sigmas")), tol);
    std::vector<double> flow_t;
    for (size_t i = 0; i + 1 < flow_sigmas.size(); ++i) flow_t.push_back(flow.sigma_to_t(flow_sigmas[i]));
    report.add("diffusers.flowmatch_euler_shift3.timesteps",
               max_rel(flow_t, f->load("diffusers.flowmatch_euler_shift3.timesteps")), tol);
    report.close();
    CHECK(report.total == 15);
    CHECK(report.passed == report.total);
  }

  TEST_CASE("torchsde's Brownian tree as ComfyUI queries it: values, reversed queries, additivity") {
    auto f = SafeTensors::open(sigma::test::sd15() + "/samplers2/samplers2.safetensors");
    const auto queries = f->load("brownian.queries", torch::kFloat32);
    const auto samples = f->load("brownian.samples", torch::kFloat32);
    std::vector<double> sigmas;
    for (int64_t i = 0; i < queries.size(0); ++i)
      for (int64_t j = 0; j < 2; ++j) sigmas.push_back(queries[i][j].item<double>());
    const auto like = f->load("x_T", torch::kFloat32);
    CaseReport report("samplers2.brownian");
    for (const bool reversed : {false, true}) {
      auto noise = sm::brownian_noise(like, sigmas, 42);  // a fresh tree: values do not depend on query order
      for (int64_t k = 0; k < queries.size(0); ++k) {
        const int64_t i = reversed ? queries.size(0) - 1 - k : k;
        const auto got = noise(queries[i][0].item<double>(), queries[i][1].item<double>());
        report.add("brownian.samples[" + std::to_string(i) + "]" + (reversed ? " (queried in reverse)" : ""),
                   sigma::test::rel_error(got, samples[i]), 1e-6);
      }
    }
    // torchsde.BrownianTree(t0=0, w0=zeros(3), t1=1, entropy=7) and its increments' sum.
    sm::BrownianTree tree(0.0, 1.0, {3}, 7);
    const auto a = tree.increment(0, 0.5), b = tree.increment(0.5, 1), whole = tree.increment(0, 1);
    report.add("brownian.unit.w_0_0.5", sigma::test::rel_error(a, f->load("brownian.unit.w_0_0.5")), 1e-6);
    report.add("brownian.unit.w_0.5_1", sigma::test::rel_error(b, f->load("brownian.unit.w_0.5_1")), 1e-6);
    report.add("brownian.unit.w_0_1", sigma::test::rel_error(whole, f->load("brownian.unit.w_0_1")), 1e-6);
    report.add("W(0, 0.5) + W(0.5, 1) = W(0, 1)", sigma::test::rel_error(a + b, whole), 1e-6);
    report.close();
    CHECK(report.total == 26);
    CHECK(report.passed == report.total);
  }

  TEST_CASE("SD's scaled-linear betas reproduce the fixture's alphas_cumprod") {
    auto f = SafeTensors::open(refs() + "/samplers.safetensors");
    const auto ours = sm::ModelSampling::discrete(sm::Prediction::eps).alphas_cumprod();
    // The fixture's table was accumulated in float32 over 1000 products.
    CHECK(max_rel(ours, f->load("alphas_cumprod")) < 1e-5);
  }
}
