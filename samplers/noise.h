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

// Replays tape[0], tape[1], … (tape: [K, *shape]); throws when a solver asks for more
// than K draws. `draws` (optional) counts the draws taken, to compare with a reference.
NoiseSource replay_noise(torch::Tensor tape, std::shared_ptr<int> draws = nullptr);

}  // namespace sigma::samplers
