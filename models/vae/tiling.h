// Tiled VAE decode and encode that compute the whole-image result, for pictures whose
// full-resolution activations do not fit (a 2048² decode holds ~1 GB per 128-channel
// float16 tensor, several at once).
//
// Independent tiles blended at their seams (diffusers' and A1111's tiled VAE) change the
// picture: every GroupNorm normalises with its own tile's statistics, so tiles differ in
// tone and the blend only hides the seam. Here the tiles run in lockstep instead, one
// GroupNorm at a time: each pass over the tiles computes a tile's part of the network up
// to the next GroupNorm and that tile's share of the next norm's statistics (counted on its
// core only), which are merged (Chan et al.'s pairwise mean/variance) before the next pass
// normalises every tile with the whole image's statistics. Each tile carries a margin of
// its neighbours' pixels at least as wide as the convolutions' reach between the global
// parts (decoder_margin / encoder_margin), so its core is exact; the parts that attend over
// the whole image (the mid block with its single-head attention) run untiled at latent
// resolution, where they are small. The result equals the untiled one up to the order of
// floating-point sums.
//
// Memory: all tiles' current activations live at once (about one full-size tensor and the
// residual), not the untiled pass's several full-size temporaries; with `offload` the
// tiles waiting for the next pass are parked in host memory, so the GPU holds one tile's
// work at a time (for --lowvram and for pictures that would not fit otherwise).
#pragma once

#include <torch/torch.h>

#include <utility>

#include "models/vae/autoencoder_kl.h"

namespace sigma::models {

struct VaeTiling {
  int64_t tile = 64;     // core edge in latent pixels (64: 512 px for SD's VAE)
  bool offload = false;  // park waiting tiles in host memory (the device holds one tile)
  int64_t margin = -1;   // context each side; -1: decoder_margin / encoder_margin (smaller is inexact: tests)
};

// The convolutions' reach from one global part to the next, rounded up: the margin each
// tile needs so that its core is exact (decoder: latent pixels; encoder: image pixels,
// a multiple of the downscale factor).
int64_t decoder_margin(const VaeConfig& config);
int64_t encoder_margin(const VaeConfig& config);

// The same as vae.decode(z) / vae.encode_moments(image), in tiles.
torch::Tensor tiled_decode(AutoencoderKLImpl& vae, const torch::Tensor& z, const VaeTiling& tiling = {});
std::pair<torch::Tensor, torch::Tensor> tiled_encode_moments(AutoencoderKLImpl& vae, const torch::Tensor& image,
                                                             const VaeTiling& tiling = {});

// Bytes an untiled decode of `latent_shape` [B, C, h, w] is expected to need at its peak
// (the finest level's input, residual, norm output and convolution output, plus the
// upsampled tensor), used to decide when to tile on its own.
double untiled_decode_bytes(const VaeConfig& config, const std::vector<int64_t>& latent_shape, torch::ScalarType dtype);

}  // namespace sigma::models
