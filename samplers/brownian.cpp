// torchsde's Brownian interval, reproduced (see brownian.h). The constants and the order of
// operations follow numpy's SeedSequence (numpy/random/bit_generator.pyx) and torchsde's
// brownian_interval.py (tol 1e-6, pool size 24, halfway tree, no Lévy area).
#include "samplers/brownian.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

namespace sigma::samplers {

namespace {

constexpr uint32_t kInitA = 0x43b0d7e5, kMultA = 0x931e8875, kInitB = 0x8b51f9dd, kMultB = 0x58f38ded;
constexpr uint32_t kMixMultL = 0xca01f9dd, kMixMultR = 0x4973f715;
constexpr size_t kPoolSize = 24;  // torchsde's pool_size

void append_words(uint64_t n, std::vector<uint32_t>& out) {
  if (n == 0) out.push_back(0);
  for (; n > 0; n >>= 32) out.push_back(static_cast<uint32_t>(n & 0xFFFFFFFFu));
}

uint32_t hashmix(uint32_t value, uint32_t& hc) {
  value ^= hc;
  hc *= kMultA;
  value *= hc;
  value ^= value >> 16;
  return value;
}

uint32_t mix(uint32_t x, uint32_t y) {
  uint32_t r = kMixMultL * x - kMixMultR * y;
  r ^= r >> 16;
  return r;
}

// Python's round(x, 6) for the values here: the nearest 6-decimal number, read back.
double round6(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6f", x);
  return std::strtod(buf, nullptr);
}

torch::Tensor randn_seeded(const std::vector<int64_t>& shape, uint32_t seed) {
  auto g = at::make_generator<at::CPUGeneratorImpl>(seed);
  return torch::randn(shape, g, torch::TensorOptions().dtype(torch::kFloat32));
}

}  // namespace

std::vector<uint32_t> seed_sequence_state(uint64_t entropy, const std::vector<uint64_t>& spawn_key, size_t n,
                                          size_t pool_size) {
  std::vector<uint32_t> e;
  append_words(entropy, e);
  if (!spawn_key.empty() && e.size() < pool_size) e.resize(pool_size, 0);  // numpy >= 1.19 pads the entropy
  for (uint64_t k : spawn_key) append_words(k, e);
  uint32_t hc = kInitA;
  std::vector<uint32_t> pool(pool_size);
  for (size_t i = 0; i < pool_size; ++i) pool[i] = hashmix(i < e.size() ? e[i] : 0, hc);
  for (size_t s = 0; s < pool_size; ++s)
    for (size_t d = 0; d < pool_size; ++d)
      if (s != d) pool[d] = mix(pool[d], hashmix(pool[s], hc));
  for (size_t s = pool_size; s < e.size(); ++s)
    for (size_t d = 0; d < pool_size; ++d) pool[d] = mix(pool[d], hashmix(e[s], hc));
  std::vector<uint32_t> out(n);
  uint32_t hb = kInitB;
  for (size_t i = 0; i < n; ++i) {
    uint32_t v = pool[i % pool_size];
    v ^= hb;
    hb *= kMultB;
    v *= hb;
    v ^= v >> 16;
    out[i] = v;
  }
  return out;
}

BrownianTree::BrownianTree(double t0, double t1, std::vector<int64_t> shape, uint64_t entropy)
    : shape_(std::move(shape)), entropy_(entropy) {
  if (!(t0 < t1)) throw std::invalid_argument("BrownianTree: needs t0 < t1");
  root_ = std::make_unique<Node>(Node{round6(t0), round6(t1), 0, 0, 0, {}, nullptr, nullptr});
  const auto seeds = seed_sequence_state(entropy_, {}, 3, kPoolSize);
  root_->w = randn_seeded(shape_, seeds[0]) * std::sqrt(t1 - t0);  // the unrounded span
}

// The Brownian bridge at the rounded midpoint: left = (m − s)/(e − s)·W + √((m − s)(e − m)/(e − s))·z,
// right = W − left, z from the node's own seed (the same z for both children).
void BrownianTree::split(Node& node) {
  node.mid = round6(0.5 * (node.end + node.start));
  const double h_reciprocal = 1 / (node.end - node.start);
  const double left_diff = node.mid - node.start, right_diff = node.end - node.mid;
  const auto seed = seed_sequence_state(entropy_, {node.key, static_cast<uint64_t>(node.depth)}, 4, kPoolSize)[0];
  const auto z = randn_seeded(shape_, seed);
  auto left_w = node.w * left_diff * h_reciprocal + z * std::sqrt(left_diff * right_diff * h_reciprocal);
  auto right_w = node.w - left_w;
  node.left = std::make_unique<Node>(Node{node.start, node.mid, 0, 2 * node.key, node.depth + 1, left_w, nullptr, nullptr});
  node.right = std::make_unique<Node>(Node{node.mid, node.end, 0, 2 * node.key + 1, node.depth + 1, right_w, nullptr, nullptr});
}

void BrownianTree::collect(Node& node, double a, double b, std::vector<const Node*>& out) {
  if (a == node.start && b == node.end) {
    out.push_back(&node);
    return;
  }
  if (!node.left) split(node);
  if (node.depth > 60) throw std::runtime_error("BrownianTree: query endpoints too close to resolve");
  if (b <= node.mid) {
    collect(*node.left, a, b, out);
  } else if (a >= node.mid) {
    collect(*node.right, a, b, out);
  } else {
    collect(*node.left, a, node.mid, out);
    collect(*node.right, node.mid, b, out);
  }
}

torch::Tensor BrownianTree::increment(double ta, double tb) {
  ta = std::min(std::max(ta, root_->start), root_->end);
  tb = std::min(std::max(tb, root_->start), root_->end);
  if (ta > tb) throw std::invalid_argument("BrownianTree: query needs ta <= tb");
  if (ta == tb) return torch::zeros(shape_, torch::kFloat32);
  std::vector<const Node*> nodes;
  collect(*root_, round6(ta), round6(tb), nodes);
  auto w = nodes.front()->w.clone();
  for (size_t i = 1; i < nodes.size(); ++i) w = w + nodes[i]->w;
  return w;
}

NoiseSource brownian_noise(const torch::Tensor& like, const std::vector<double>& sigmas, uint64_t seed) {
  float lo = INFINITY, hi = 0;
  for (double s : sigmas) {
    if (s > 0) lo = std::min(lo, static_cast<float>(s));
    hi = std::max(hi, static_cast<float>(s));
  }
  if (!(lo < hi)) throw std::invalid_argument("brownian_noise: the sigma list needs two different positive values");
  auto tree = std::make_shared<BrownianTree>(lo, hi, like.sizes().vec(), seed);
  const auto device = like.device();
  const auto dtype = like.scalar_type();
  return [tree, device, dtype](double sigma, double sigma_next) {
    // ComfyUI's float32 σ values; a query runs low to high, and the sign turns it back.
    const float a = static_cast<float>(sigma), b = static_cast<float>(sigma_next);
    const bool forward = a < b;
    auto w = tree->increment(forward ? a : b, forward ? b : a);
    if (!forward) w = -w;
    const float scale = std::sqrt(std::fabs(b - a));
    return (w / scale).to(device, dtype);
  };
}

}  // namespace sigma::samplers
