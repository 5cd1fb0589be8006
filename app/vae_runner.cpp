#include "app/vae_runner.h"

#include <cstdio>

#include "models/runtime/options.h"
#include "models/runtime/torch_compat.h"
#include "models/vae/tiling.h"

namespace sigma::app {

namespace {

// Tiles wait in host memory (one tile's work on the GPU; every pass copies them over PCIe)
// under --lowvram, after an out-of-memory, or when even the tiles on the device (about half
// the untiled peak: each tile's activations and its ResBlock input) would not fit.
models::VaeTiling tiling_for(Engine& engine, const std::vector<int64_t>& latent_shape, const torch::Tensor& x, bool after_oom) {
  models::VaeTiling t;
  const double tiled_on_device = models::untiled_decode_bytes(engine.vae()->config, latent_shape, x.scalar_type()) / 2;
  t.offload = x.device().is_cuda() &&
              (engine.lowvram() || after_oom || tiled_on_device > models::available_memory_bytes(true));
  return t;
}

// `whole()` (the untiled VAE call) unless `tiled`; out of memory there, `in_tiles(true)` instead.
template <class Whole, class Tiled>
auto whole_or_tiles(bool tiled, const char* what, Whole&& whole, Tiled&& in_tiles) {
  if (!tiled) {
    try {
      return whole();
    } catch (const std::exception& e) {
      if (!compat::is_out_of_memory(e)) throw;
      compat::cuda_empty_cache();
      std::fprintf(stderr, "sigma: note: out of memory in the whole-image VAE %s; running it again in tiles\n", what);
      return in_tiles(true);
    }
  }
  return in_tiles(false);
}

// The sampler's latents through `vae` (the engine's, or its float32 twin) -> images in [0, 1].
torch::Tensor decoded_pixels(Engine& engine, models::AutoencoderKLImpl& vae, const torch::Tensor& latents, bool tiled) {
  const auto z = engine.latent_format().to_vae(latents);
  auto images = whole_or_tiles(
      tiled, "decode", [&] { return vae.decode(z); },
      [&](bool after_oom) { return models::tiled_decode(vae, z, tiling_for(engine, z.sizes().vec(), z, after_oom)); });
  return ((images + 1) / 2).clamp(0, 1);
}

}  // namespace

bool vae_tiled(Engine& engine, const Request& r, const std::vector<int64_t>& latent_shape) {
  if (r.vae_tiling || engine.lowvram()) return true;
  const auto& vae = engine.vae();  // its own dtype: SDXL's runs in float32 under float16
  const double need = models::untiled_decode_bytes(vae->config, latent_shape, vae->weight_dtype());
  return need > models::available_memory_bytes(engine.device().is_cuda());
}

torch::Tensor decode_latents(Engine& engine, const torch::Tensor& latents, bool tiled) {
  const auto on_device = engine.visit(*engine.vae());
  return decoded_pixels(engine, *engine.vae(), latents, tiled);
}

torch::Tensor encode_image(Engine& engine, const torch::Tensor& image, bool tiled) {
  auto& vae = *engine.vae();
  const auto on_device = engine.visit(vae);
  auto mean = whole_or_tiles(
      tiled, "encode", [&] { return vae.encode_moments(image).first; },
      [&](bool after_oom) {
        // The encoder's peak is about the decoder's for the latents this image makes.
        const auto& format = engine.latent_format();
        const int64_t f = format.downscale;
        const std::vector<int64_t> latents = {image.size(0), format.channels, image.size(2) / f, image.size(3) / f};
        return models::tiled_encode_moments(vae, image, tiling_for(engine, latents, image, after_oom)).first;
      });
  return engine.latent_format().to_model(mean);
}

// Called once per stage and batch, never per step.
bool all_finite(const torch::Tensor& t) { return torch::isfinite(t).all().item<bool>(); }

std::string dtype_name(torch::ScalarType t) {
  return t == torch::kFloat16 ? "float16" : t == torch::kBFloat16 ? "bfloat16" : "float32";
}

torch::Tensor decode_latents_checked(Engine& engine, const torch::Tensor& latents, std::string* retried, bool tiled) {
  // clamp() keeps NaN, so the check on the clamped pixels sees every bad decode.
  auto images = decode_latents(engine, latents, tiled);
  if (all_finite(images)) return images;
  if (engine.dtype() == torch::kFloat16) {
    auto& vae = engine.vae_float32();
    const auto on_device = engine.visit(*vae);
    images = decoded_pixels(engine, *vae, latents.to(torch::kFloat32), tiled);
    if (all_finite(images)) {
      std::fprintf(stderr, "sigma: note: the float16 VAE decode gave NaN/Inf; decoded again in float32\n");
      if (retried) *retried = "float32 (float16 overflowed)";
      return images;
    }
  }
  const std::string tried = engine.dtype() == torch::kFloat16 ? "float16 and float32" : dtype_name(engine.dtype());
  throw GenerationError("the VAE decode produced NaN/Inf in " + tried +
                        " from finite latents; the VAE weights may be damaged: try another --vae" +
                        (engine.dtype() == torch::kBFloat16 ? " or --dtype fp32" : ""));
}

}  // namespace sigma::app
