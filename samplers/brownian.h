// Brownian motion sampled on demand, as torchsde's BrownianTree (Li et al. 2020, "Scalable
// gradients for stochastic differential equations", the Brownian interval) does it, value for
// value: the SDE samplers of k-diffusion and ComfyUI draw their noise from it, so with it the
// same seed gives the same picture as there (ComfyUI's BrownianTreeNoiseSampler, cpu=True).
//
// The tree splits [t0, t1] at rounded midpoints; each node's increment comes from its parent's
// by the Brownian bridge, with the bridge noise drawn from a CPU generator seeded by numpy's
// SeedSequence(entropy, spawn_key = (node key, depth)). Values therefore depend only on the
// seed, the shape and the node, never on the order of queries.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "samplers/types.h"

namespace sigma::samplers {

// numpy.random.SeedSequence(entropy, spawn_key, pool_size).generate_state(n) (uint32 words).
std::vector<uint32_t> seed_sequence_state(uint64_t entropy, const std::vector<uint64_t>& spawn_key, size_t n,
                                          size_t pool_size = 4);

class BrownianTree {
 public:
  // W on [t0, t1] (t0 < t1) with W(t0) = 0, values of `shape` in float32 on the CPU.
  BrownianTree(double t0, double t1, std::vector<int64_t> shape, uint64_t entropy);
  // W(tb) − W(ta) for ta ≤ tb, clamped to [t0, t1].
  torch::Tensor increment(double ta, double tb);

 private:
  struct Node {
    double start, end, mid = 0;
    uint64_t key;
    int depth;
    torch::Tensor w;
    std::unique_ptr<Node> left, right;
  };
  void split(Node& node);
  void collect(Node& node, double a, double b, std::vector<const Node*>& out);
  std::vector<int64_t> shape_;
  uint64_t entropy_;
  std::unique_ptr<Node> root_;
};

// ComfyUI's BrownianTreeNoiseSampler over [σ_min, σ_max] of `sigmas` (σ_min the smallest
// positive one): noise(σ, σ_next) = (W(σ) − W(σ_next))·sign / √|σ_next − σ|, in `like`'s shape,
// drawn on the CPU in float32 and moved to `like`'s device and dtype.
NoiseSource brownian_noise(const torch::Tensor& like, const std::vector<double>& sigmas, uint64_t seed);

}  // namespace sigma::samplers
