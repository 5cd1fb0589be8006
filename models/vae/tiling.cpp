#include "models/vae/tiling.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "models/nn/ops.h"

namespace sigma::models {
namespace F = torch::nn::functional;
using torch::nn::GroupNormImpl;

int64_t decoder_margin(const VaeConfig& c) {
  const int L = static_cast<int>(c.ch_mult.size());
  double reach = 0;  // latent pixels: every 3x3 conv moves the wrong band at a tile's edge in by one pixel of its level
  for (int i = L; i-- > 0;) {
    const double f = std::ldexp(1.0, L - 1 - i);  // this level's pixels per latent pixel
    reach += 2.0 * static_cast<double>(c.num_res_blocks + 1) / f;  // two convs per ResBlock
    if (i != 0) reach += 1.0 / (2 * f);                            // the upsample's conv, at twice the resolution
  }
  reach += 1.0 / std::ldexp(1.0, L - 1);  // conv_out
  return static_cast<int64_t>(std::ceil(reach));
}

int64_t encoder_margin(const VaeConfig& c) {
  const int64_t L = static_cast<int64_t>(c.ch_mult.size());
  int64_t reach = 1;  // image pixels, conv_in
  for (int64_t i = 0; i < L; ++i) {
    const int64_t f = int64_t(1) << i;
    reach += 2 * c.num_res_blocks * f;
    if (i + 1 != L) reach += 2 * f;  // the stride-2 conv: its right/bottom padding and the rounding to its grid
  }
  const int64_t d = c.downscale();  // tiles' windows must start on the latent grid
  return (reach + d - 1) / d * d;
}

double untiled_decode_bytes(const VaeConfig& c, const std::vector<int64_t>& s, torch::ScalarType dtype) {
  const double f = static_cast<double>(c.downscale());
  const double pixels = static_cast<double>(s.at(0)) * static_cast<double>(s.at(2)) * f * static_cast<double>(s.at(3)) * f;
  // At full resolution: the upsampled level-1 tensor and its conv output, then level 0's
  // input, residual, norm output and conv output.
  const double m1 = c.ch_mult.size() > 1 ? static_cast<double>(c.ch_mult[1]) : 1.0;
  const double channels = static_cast<double>(c.ch) * (2 * m1 + 2 * static_cast<double>(c.ch_mult[0]));
  return pixels * channels * static_cast<double>(c10::elementSize(dtype));
}

namespace {

// Per (batch, group) mean and sum of squared deviations, merged tile by tile
// (Chan, Golub & LeVeque's pairwise update), in float32 whatever the activations' dtype.
struct GroupStats {
  torch::Tensor mean, m2;  // [B, G]
  double n = 0;

  void add(const torch::Tensor& core, int64_t groups) {
    auto g = core.to(torch::kFloat32).reshape({core.size(0), groups, -1});
    const double nt = static_cast<double>(g.size(2));
    if (nt == 0) return;
    auto [vt, mt] = torch::var_mean(g, {-1}, /*unbiased=*/false, /*keepdim=*/false);
    auto m2t = vt * nt;
    if (n == 0) {
      mean = mt, m2 = m2t, n = nt;
      return;
    }
    auto delta = mt - mean;
    const double total = n + nt;
    mean = mean + delta * (nt / total);
    m2 = m2 + m2t + delta.pow(2) * (n * nt / total);
    n = total;
  }
};

// GroupNorm of one tile with the whole image's statistics (the arithmetic of
// torch.nn.GroupNorm: biased variance, eps inside the square root, then the affine map), as
// one fused kernel: an inference-mode batch norm over [1, B·C, pixels] whose running
// statistics are each channel's group's, in float32, with the affine weights per channel.
// Then the SiLU, before the CPU's float32 is rounded back: one bf16 rounding, as in
// group_norm_act on the untiled path, not two.
torch::Tensor normalised_silu(const torch::Tensor& x, const GroupNormImpl& gn, const GroupStats& s) {
  const int64_t B = x.size(0), C = x.size(1), G = gn.options.num_groups();
  auto per_channel = [&](const torch::Tensor& g) { return g.unsqueeze(-1).expand({B, G, C / G}).reshape({B * C}); };
  torch::Tensor w, b;
  if (gn.options.affine()) w = gn.weight.to(torch::kFloat32).repeat({B}), b = gn.bias.to(torch::kFloat32).repeat({B});
  // CUDA's kernel takes half-precision input with float32 statistics; the CPU's (LibTorch 1.13) wants one dtype.
  const auto in = x.is_cuda() ? x : x.to(torch::kFloat32);
  auto y = torch::batch_norm(in.reshape({1, B * C, -1}), w, b, per_channel(s.mean), per_channel(s.m2 / s.n),
                             /*training=*/false, /*momentum=*/0.0, gn.options.eps(), /*cudnn_enabled=*/false);
  return torch::silu_(y).reshape(x.sizes()).to(x.scalar_type());
}

// One tile: its activations over a window of the current resolution, of which the core is
// the part it contributes (the rest is its neighbours' margin). Coordinates are absolute.
struct Tile {
  torch::Tensor x, skip;  // skip: a ResBlock's input, between its two passes
  int64_t y0 = 0, x0 = 0, cy0 = 0, cy1 = 0, cx0 = 0, cx1 = 0;

  torch::Tensor core() const { return x.narrow(2, cy0 - y0, cy1 - cy0).narrow(3, cx0 - x0, cx1 - cx0); }
  void scale(int64_t num, int64_t den) {
    for (int64_t* v : {&y0, &x0, &cy0, &cy1, &cx0, &cx1}) *v = *v * num / den;
  }
};

// Boundaries of near-equal cores over [0, size), each a multiple of `align`.
std::vector<int64_t> cuts(int64_t size, int64_t tile, int64_t align) {
  const int64_t units = size / align, per = std::max<int64_t>(1, tile / align);
  const int64_t n = std::max<int64_t>(1, (units + per - 1) / per);
  std::vector<int64_t> c;
  for (int64_t i = 0; i <= n; ++i) c.push_back(units * i / n * align);
  return c;
}

class Tiles {
 public:
  // `full` cut into cores of about `tile` pixels with `margin` pixels of context each side,
  // and the statistics of `next` (the GroupNorm the first pass starts with, if any).
  Tiles(const torch::Tensor& full, int64_t tile, int64_t margin, int64_t align, bool offload, const GroupNormImpl* next)
      : device_(full.device()), offload_(offload && !full.device().is_cpu()), H_(full.size(2)), W_(full.size(3)) {
    const auto ys = cuts(H_, tile, align), xs = cuts(W_, tile, align);
    for (size_t i = 0; i + 1 < ys.size(); ++i)
      for (size_t j = 0; j + 1 < xs.size(); ++j) {
        Tile t;
        t.cy0 = ys[i], t.cy1 = ys[i + 1], t.cx0 = xs[j], t.cx1 = xs[j + 1];
        t.y0 = std::max<int64_t>(0, t.cy0 - margin), t.x0 = std::max<int64_t>(0, t.cx0 - margin);
        const int64_t y1 = std::min(H_, t.cy1 + margin), x1 = std::min(W_, t.cx1 + margin);
        t.x = full.narrow(2, t.y0, y1 - t.y0).narrow(3, t.x0, x1 - t.x0).contiguous();
        if (next) stats_.add(t.core(), next->options.num_groups());
        t.x = park(t.x);
        tiles_.push_back(std::move(t));
      }
  }

  // One pass: fn(tile, statistics of the norm it starts with) on every tile, whose geometry
  // is then scaled by num/den (fn up- or downsampled), then the statistics of `next` over
  // the cores, for the pass after.
  template <class Fn>
  void pass(Fn&& fn, int64_t num, int64_t den, const GroupNormImpl* next) {
    GroupStats s;
    for (auto& t : tiles_) {
      t.x = fetch(t.x);
      if (t.skip.defined()) t.skip = fetch(t.skip);
      fn(t, stats_);
      t.scale(num, den);
      if (next) s.add(t.core(), next->options.num_groups());
      t.x = park(t.x);
      if (t.skip.defined()) t.skip = park(t.skip);
    }
    H_ = H_ * num / den, W_ = W_ * num / den;
    stats_ = std::move(s);
  }

  // The cores put together, on the compute device; the tiles are released.
  torch::Tensor assemble() {
    torch::Tensor out;
    for (auto& t : tiles_) {
      t.x = fetch(t.x);
      if (!out.defined()) out = torch::empty({t.x.size(0), t.x.size(1), H_, W_}, t.x.options());
      out.narrow(2, t.cy0, t.cy1 - t.cy0).narrow(3, t.cx0, t.cx1 - t.cx0).copy_(t.core());
      t.x = torch::Tensor();
    }
    return out;
  }

 private:
  // Host copies in pinned memory, both ways without a host sync: the copies are ordered on
  // the compute stream with the kernels around them, and the host never reads them.
  torch::Tensor fetch(const torch::Tensor& x) const { return offload_ ? x.to(device_, x.scalar_type(), /*non_blocking=*/true) : x; }
  torch::Tensor park(const torch::Tensor& x) const {
    if (!offload_) return x;
    auto host = torch::empty(x.sizes(), x.options().device(torch::kCPU).pinned_memory(true));
    return host.copy_(x, /*non_blocking=*/true);
  }

  torch::Device device_;
  bool offload_;
  int64_t H_, W_;
  std::vector<Tile> tiles_;
  GroupStats stats_;
};

VaeResBlockImpl& block(VaeLevelImpl& level, size_t k) { return *level.block[k]->as<VaeResBlock>(); }

// A ResBlock as two passes, as VaeResBlockImpl::forward computes it: norm1-swish-conv1, then
// norm2-swish-conv2 + shortcut, then the level's resample when `resample` is given.
void res_block(Tiles& tiles, VaeResBlockImpl& b, VaeResampleImpl* resample, int64_t num, int64_t den,
               const GroupNormImpl* next) {
  tiles.pass(
      [&](Tile& t, const GroupStats& s) {
        t.skip = t.x;
        t.x = b.conv1->forward(normalised_silu(t.x, *b.norm1, s));
      },
      1, 1, b.norm2.get());
  tiles.pass(
      [&](Tile& t, const GroupStats& s) {
        auto h = b.conv2->forward(normalised_silu(t.x, *b.norm2, s));
        t.x = (b.nin_shortcut ? b.nin_shortcut->forward(t.skip) : t.skip) + h;
        t.skip = torch::Tensor();
        if (resample) t.x = resample->forward(t.x);
      },
      num, den, next);
}

// The levels in the order they run: each ResBlock, and after a level's last block its
// resample, which scales the tiles by num/den; `after` is the GroupNorm that follows the last
// level (nullptr: none, the result is assembled next).
void run_levels(Tiles& tiles, const std::vector<VaeLevelImpl*>& levels, int64_t num, int64_t den, const GroupNormImpl* after) {
  for (size_t i = 0; i < levels.size(); ++i) {
    auto& lv = *levels[i];
    const size_t nb = lv.block->size();
    for (size_t k = 0; k < nb; ++k) {
      const bool last = k + 1 == nb;
      const GroupNormImpl* next = !last                   ? block(lv, k + 1).norm1.get()
                                  : i + 1 < levels.size() ? block(*levels[i + 1], 0).norm1.get()
                                                          : after;
      VaeResampleImpl* resample = last && !lv.resample.is_empty() ? lv.resample.get() : nullptr;
      res_block(tiles, block(lv, k), resample, resample ? num : 1, resample ? den : 1, next);
    }
  }
}

}  // namespace

torch::Tensor tiled_decode(AutoencoderKLImpl& vae, const torch::Tensor& z, const VaeTiling& tiling) {
  const auto dtype = vae.weight_dtype();
  auto& d = *vae.decoder;
  std::vector<VaeLevelImpl*> levels;  // from the coarsest, as VaeDecoderImpl::forward runs them
  for (size_t i = d.up->size(); i-- > 0;) levels.push_back(d.up[i]->as<VaeLevel>());
  // conv_in and the mid block (its attention sees every pixel) at latent resolution, untiled.
  Tiles tiles(d.mid->forward(d.conv_in->forward(vae.post_quantize(z.to(dtype)))), tiling.tile,
              tiling.margin >= 0 ? tiling.margin : decoder_margin(vae.config), 1, tiling.offload,
              block(*levels.front(), 0).norm1.get());
  run_levels(tiles, levels, 2, 1, d.norm_out.get());
  tiles.pass([&](Tile& t, const GroupStats& s) { t.x = d.conv_out->forward(normalised_silu(t.x, *d.norm_out, s)); }, 1,
             1, nullptr);
  return tiles.assemble().to(z.scalar_type());
}

std::pair<torch::Tensor, torch::Tensor> tiled_encode_moments(AutoencoderKLImpl& vae, const torch::Tensor& image,
                                                             const VaeTiling& tiling) {
  const auto dtype = vae.weight_dtype();
  auto& e = *vae.encoder;
  const int64_t f = vae.config.downscale();
  std::vector<VaeLevelImpl*> levels;  // from the finest
  for (size_t i = 0; i < e.down->size(); ++i) levels.push_back(e.down[i]->as<VaeLevel>());
  Tiles tiles(image.to(dtype), tiling.tile * f, tiling.margin >= 0 ? tiling.margin : encoder_margin(vae.config), f, tiling.offload, nullptr);
  tiles.pass([&](Tile& t, const GroupStats&) { t.x = e.conv_in->forward(t.x); }, 1, 1, block(*levels.front(), 0).norm1.get());
  run_levels(tiles, levels, 1, 2, nullptr);
  // The mid block (whole-image attention), norm_out and conv_out at latent resolution, untiled.
  auto h = e.mid->forward(tiles.assemble());
  return AutoencoderKLImpl::posterior(vae.quantize(e.conv_out->forward(group_norm_act(*e.norm_out, h, true))), image.scalar_type());
}

}  // namespace sigma::models
