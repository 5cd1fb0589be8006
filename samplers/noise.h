// Where stochastic solvers get their noise. The default draws from a seeded LibTorch CPU
// generator and moves the numbers to x's device, so a seed gives the same image on CPU and
// GPU (and the same numbers as torch.randn with that seed, which ComfyUI uses); tests replay
// a recorded tape in draw order instead.
#pragma once

#include <cstdint>
#include <memory>

#include "samplers/types.h"

namespace sigma::samplers {

// Unit normals of `like`'s shape, dtype and device, drawn in float32 on the CPU from a
// generator seeded with `seed`.
NoiseSource make_noise_source(const torch::Tensor& like, uint64_t seed);
NoiseSource make_noise_source(std::vector<int64_t> shape, torch::TensorOptions options, at::Generator generator);

// ComfyUI's in-run noise for `sampler` when its KSampler runs with `seed` (ComfyUI's seed
// rule): the SDE samplers draw from a Brownian tree over the list's [σ_min, σ_max] with
// entropy = seed (brownian.h); every other one from a fresh CPU generator seeded with the
// seed, not from the one the initial noise came from. ComfyUI seeds that generator on the
// latent's device; drawing it on the CPU keeps a seed's picture the same on every device.
NoiseSource comfy_noise(const SamplerInfo& sampler, const torch::Tensor& like, const std::vector<double>& sigmas,
                        uint64_t seed);

// Replays tape[0], tape[1], … (tape: [K, *shape]); throws when a solver asks for more
// than K draws. `draws` (optional) counts the draws taken, to compare with a reference.
NoiseSource replay_noise(torch::Tensor tape, std::shared_ptr<int> draws = nullptr);

}  // namespace sigma::samplers
