// The request that reproduces the fixtures' diffusers pipeline runs (prompt, negative
// prompt, 128x128, DDIM leading with 8 steps, CFG 7.5) on the test device and dtype.
#pragma once

#include "app/request.h"
#include "tests/support.h"

namespace sigma::test {

inline app::Request diffusers_ddim8_request(const std::string& model, const std::string& tokenizer) {
  app::Request r;
  r.model = model;
  r.tokenizer = tokenizer;
  r.prompt = "a red circle on the left";
  r.negative = "blurry";
  r.width = r.height = 128;
  r.steps = 8;
  r.cfg = 7.5;
  r.sampler = "ddim";
  r.scheduler = "leading";
  r.seed = 0;
  r.device = test_device().is_cuda() ? "cuda" : "cpu";
  const auto dt = test_dtype();
  r.dtype = dt == torch::kFloat16 ? "fp16" : dt == torch::kBFloat16 ? "bf16" : "fp32";
  return r;
}

}  // namespace sigma::test
