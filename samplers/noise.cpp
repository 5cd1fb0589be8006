// Noise sources (see noise.h): drawing on the CPU keeps seeds portable across devices.
#include "samplers/noise.h"

#include "samplers/brownian.h"

#include <ATen/CPUGeneratorImpl.h>

#include <stdexcept>
#include <string>

namespace sigma::samplers {

NoiseSource make_noise_source(std::vector<int64_t> shape, torch::TensorOptions options, at::Generator generator) {
  return [shape = std::move(shape), options, generator](double, double) mutable {
    auto n = torch::randn(shape, generator, torch::TensorOptions().dtype(torch::kFloat32).device(torch::kCPU));
    return n.to(options.device(), options.dtype().toScalarType());
  };
}

NoiseSource make_noise_source(const torch::Tensor& like, uint64_t seed) {
  return make_noise_source(like.sizes().vec(), like.options(), at::make_generator<at::CPUGeneratorImpl>(seed));
}

NoiseSource comfy_noise(const SamplerInfo& sampler, const torch::Tensor& like, const std::vector<double>& sigmas,
                        uint64_t seed) {
  return sampler.brownian ? brownian_noise(like, sigmas, seed) : make_noise_source(like, seed);
}

NoiseSource replay_noise(torch::Tensor tape, std::shared_ptr<int> draws) {
  if (!tape.defined() || tape.dim() < 1) throw std::invalid_argument("replay_noise: tape must be [K, *shape]");
  if (!draws) draws = std::make_shared<int>(0);
  return [tape = std::move(tape), draws](double, double) {
    if (*draws >= tape.size(0))
      throw std::out_of_range("replay_noise: the solver asked for draw " + std::to_string(*draws + 1) +
                              " but the tape holds " + std::to_string(tape.size(0)));
    return tape[(*draws)++];
  };
}

}  // namespace sigma::samplers
