// The VAE as the pipeline runs it: latents to pixels and back through the family's latent
// format, in tiles when asked or when the whole image would not fit (models/vae/tiling.h: the
// same picture, bounded memory), again in tiles after an out-of-memory, and again in float32
// when a float16 decode overflows.
#pragma once

#include <torch/torch.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "app/engine.h"
#include "app/request.h"

namespace sigma::app {

// A generation that cannot give a right picture (NaN/Inf in the conditioning, the sampled
// latents or the decoded image): the message names the stage and a fix, and no file is written.
struct GenerationError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Whether the VAE runs in tiles for latents of `latent_shape` (models/vae/tiling.h: the same
// picture, bounded memory): when the request asks (--vae-tiling), or when the untiled decode
// would need more than the device has available. An untiled decode or encode that runs out
// of memory anyway is redone in tiles. On CUDA the waiting tiles go to host memory only under
// --lowvram, after an out-of-memory, or when the tiles on the device would not fit either.
bool vae_tiled(Engine& engine, const Request& r, const std::vector<int64_t>& latent_shape);

// Latents (scaled, as the sampler produces them) -> decoded images [B,3,H,W] in [0,1].
torch::Tensor decode_latents(Engine& engine, const torch::Tensor& latents, bool tiled = false);
// The same, never NaN: a float16 decode that overflows is redone with the float32 VAE
// (`retried` then says so, for the log and the metadata); a decode that is still not
// finite throws GenerationError.
torch::Tensor decode_latents_checked(Engine& engine, const torch::Tensor& latents, std::string* retried = nullptr,
                                     bool tiled = false);
// Image [B,3,H,W] in [-1,1] on the engine's device -> the posterior mean, scaled like the sampler's latents.
torch::Tensor encode_image(Engine& engine, const torch::Tensor& image, bool tiled = false);

// One host sync: whether every element of t is finite.
bool all_finite(const torch::Tensor& t);
// float16 / bfloat16 / float32, for messages.
std::string dtype_name(torch::ScalarType t);

}  // namespace sigma::app
