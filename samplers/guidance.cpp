// The denoiser closure with classifier-free guidance (see guidance.h).
#include "samplers/guidance.h"

#include <stdexcept>

namespace sigma::samplers {

namespace {

// Per-sample standard deviation over every dim but the batch, shaped to broadcast.
torch::Tensor per_sample_std(const torch::Tensor& t) {
  std::vector<int64_t> dims;
  for (int64_t d = 1; d < t.dim(); ++d) dims.push_back(d);
  return t.std(dims, /*unbiased=*/true, /*keepdim=*/true);
}

}  // namespace

Denoiser make_denoiser(const ModelSampling& ms, Network network, Guidance g) {
  if (!network) throw std::invalid_argument("make_denoiser: no network given");
  if (g.rescale < 0 || g.rescale > 1) throw std::invalid_argument("make_denoiser: guidance rescale must be in [0, 1]");
  return [ms, network = std::move(network), g](const torch::Tensor& x, double sigma) {
    const bool cfg = g.scale != 1 && sigma >= g.sigma_lo && sigma <= g.sigma_hi;
    const int64_t rows = x.size(0);
    auto x_in = x * ms.c_in(sigma);
    if (cfg) x_in = torch::cat({x_in, x_in});
    auto c_noise = torch::full({x_in.size(0)}, ms.c_noise(sigma),
                               torch::TensorOptions().dtype(torch::kFloat32).device(x.device()));
    auto out = network(NetworkCall{x_in, c_noise, sigma, cfg});
    TORCH_CHECK(out.size(0) == x_in.size(0), "network returned ", out.size(0), " rows for ", x_in.size(0));
    if (cfg) {
      auto uncond = out.narrow(0, 0, rows), cond = out.narrow(0, rows, rows);
      out = uncond + (cond - uncond) * g.scale;
      if (g.rescale > 0) {
        auto rescaled = out * (per_sample_std(cond) / per_sample_std(out));
        out = rescaled * g.rescale + out * (1 - g.rescale);
      }
    }
    return ms.denoise(x, sigma, out.to(x.scalar_type()));
  };
}

}  // namespace sigma::samplers
