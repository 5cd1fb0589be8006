#include "app/pipeline.h"

#include <ATen/CPUGeneratorImpl.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>

#include "app/adapters.h"
#include "app/conditioning.h"
#include "app/image_io.h"
#include "imaging/resize.h"
#include "models/runtime/options.h"
#include "models/runtime/torch_compat.h"
#include "samplers/guidance.h"
#include "samplers/noise.h"
#include "samplers/registry.h"
#include "samplers/schedules.h"
#ifdef SIGMA_WITH_OPENCV
#include "controlnet/preprocess.h"
#endif

namespace sigma::app {
namespace F = torch::nn::functional;

namespace {

// Image files at the generation size. Without OpenCV (the GPU machine's build) only
// images that already have that size are accepted.
Image fitted_image(const std::string& path, int64_t w, int64_t h, [[maybe_unused]] const std::string& mode, int channels = 3) {
  auto img = load_image(path, channels);
  if (img.width == w && img.height == h) return img;
#ifdef SIGMA_WITH_OPENCV
  return imaging::resize_to(img, static_cast<int>(w), static_cast<int>(h), imaging::parse_resize_mode(mode));
#else
  throw ImageError(path + ": is " + std::to_string(img.width) + "x" + std::to_string(img.height) + ", not " +
                   std::to_string(w) + "x" + std::to_string(h) + "; this build has no OpenCV to resize it");
#endif
}

Image control_hint(const ControlUnit& u, int64_t w, int64_t h) {
#ifdef SIGMA_WITH_OPENCV
  auto img = load_image(u.image, 3);
  return controlnet::prepare_hint(img, u.preprocessor, static_cast<int>(w), static_cast<int>(h),
                                  imaging::parse_resize_mode(u.resize), u.params);
#else
  if (u.preprocessor != "none")
    throw std::invalid_argument("ControlNet preprocessor '" + u.preprocessor + "' needs OpenCV, which this build lacks");
  return fitted_image(u.image, w, h, u.resize);
#endif
}

// One CPU generator for the batch (ComfyUI: one draw of the batch shape), or one per
// image seeded seed + i (AUTOMATIC1111's batches with CPU noise).
std::vector<at::Generator> seed_generators(int64_t seed, int64_t batch, const std::string& seed_mode) {
  std::vector<at::Generator> gens;
  for (int64_t i = 0; i < (seed_mode == "per-image" ? batch : 1); ++i)
    gens.push_back(at::detail::createCPUGenerator(static_cast<uint64_t>(seed + i)));
  return gens;
}

torch::Tensor draw(std::vector<at::Generator>& gens, std::vector<int64_t> shape) {
  if (gens.size() > 1) shape[0] = 1;
  std::vector<torch::Tensor> parts;
  for (auto& g : gens) parts.push_back(torch::randn(shape, g, torch::TensorOptions().dtype(torch::kFloat32)));
  return parts.size() == 1 ? parts[0] : torch::cat(parts);
}

// The noise a stochastic solver draws after the initial noise: the same generator(s) go on,
// as in ComfyUI (one stream per batch) and AUTOMATIC1111 (one stream per image).
samplers::NoiseSource stream_noise(std::vector<at::Generator> gens, std::vector<int64_t> shape, torch::Device device,
                                   torch::ScalarType dtype) {
  return [gens, shape, device, dtype](double, double) mutable { return draw(gens, shape).to(device, dtype); };
}

}  // namespace

torch::Tensor image_to_tensor(const Image& img) {
  auto t = torch::from_blob(const_cast<uint8_t*>(img.pixels.data()), {img.height, img.width, img.channels}, torch::kUInt8);
  return t.permute({2, 0, 1}).unsqueeze(0).to(torch::kFloat32) / 255.0;
}

std::vector<Image> tensor_to_images(const torch::Tensor& x) {
  auto u8 = ((x.detach().to(torch::kCPU, torch::kFloat32).clamp(-1, 1) + 1) * 127.5).round().to(torch::kUInt8);
  u8 = u8.permute({0, 2, 3, 1}).contiguous();
  std::vector<Image> out;
  for (int64_t b = 0; b < u8.size(0); ++b) {
    Image img(static_cast<int>(u8.size(2)), static_cast<int>(u8.size(1)), static_cast<int>(u8.size(3)));
    std::memcpy(img.pixels.data(), u8[b].data_ptr<uint8_t>(), img.pixels.size());
    out.push_back(std::move(img));
  }
  return out;
}

torch::Tensor seeded_noise(const std::vector<int64_t>& shape, int64_t seed, const std::string& seed_mode) {
  auto gens = seed_generators(seed, shape[0], seed_mode);
  return draw(gens, shape);
}

Request resolve_request(const Request& in, const Engine& engine) {
  Request r = in;
  if (r.width == 0) r.width = engine.native_size();
  if (r.height == 0) r.height = engine.native_size();
  // The model's defaults for what the request leaves out (Request: "0 / negative / empty").
  const auto& defaults = engine.family().defaults;
  if (r.scheduler.empty()) r.scheduler = r.sigmas.empty() ? defaults.scheduler : "custom";  // --sigmas alone
  if (r.steps == 0 && r.scheduler != "custom") r.steps = engine.default_steps();
  if (r.cfg < 0) r.cfg = defaults.cfg;
  if (r.sampler.empty()) r.sampler = defaults.sampler;
  validate(r);
  const int64_t f = engine.size_multiple();
  if (r.width % f || r.height % f)
    throw std::invalid_argument("--width/--height must be multiples of " + std::to_string(f) + " for " +
                                models::to_string(engine.checkpoint().family) + " (got " + std::to_string(r.width) + "x" +
                                std::to_string(r.height) + "); try " + std::to_string((r.width + f / 2) / f * f) + "x" +
                                std::to_string((r.height + f / 2) / f * f));
  if (r.seed < 0) r.seed = static_cast<int64_t>(std::random_device{}() & 0xFFFFFFFFu);
  if (r.scheduler == "custom") r.steps = static_cast<int64_t>(r.sigmas.size()) - 1;
  samplers::find_sampler(r.sampler);  // unknown names fail here, before any work
  return r;
}

std::vector<double> request_sigmas(const Request& r, const Engine& engine) {
  auto opt = engine.schedule_options();
  opt.custom = r.sigmas;
  if (r.sampler != "ddim") opt.set_alpha_to_one = true;  // only diffusers' DDIM stops at σ(ᾱ_0); Euler & co. end at 0
  if (r.init_image.empty()) return samplers::make_sigmas(r.scheduler, engine.sampling(r), static_cast<int>(r.steps), opt);
  // img2img runs the last `steps` of a schedule of steps/strength (ComfyUI's denoise rule).
  const int total = static_cast<int>(static_cast<double>(r.steps) / r.strength);
  auto full = samplers::make_sigmas(r.scheduler, engine.sampling(r), std::max<int>(total, static_cast<int>(r.steps)), opt);
  return std::vector<double>(full.end() - (r.steps + 1), full.end());
}

Image preview_image(const Engine& engine, const torch::Tensor& latents) {
  auto f = engine.latent_format().rgb.to(latents.device(), torch::kFloat32);
  auto rgb = torch::einsum("bchw,cr->brhw", {latents.narrow(0, 0, 1).to(torch::kFloat32), f});
  return tensor_to_images(rgb.clamp(-1, 1))[0];
}

// generate(), step by step. Each step is a function of the resolved request and what the
// steps before it made; the order of the tensor operations is the reference's, so the
// conformance and e2e suites see the same numbers whichever way the code is cut.
namespace {

// Step 2, conditioning: the prompt pair, repeated for the batch. `pair` is [uncond; cond]
// for the CFG pass, `cond` alone for the passes outside the CFG interval: the text context
// ([B or 2B, 77·chunks, width]) and, for families with one, the vector input y.
struct BatchContext {
  models::DiffusionConditioning cond, pair;
};

BatchContext batch_context(Engine& engine, const Request& r, int64_t batch, const RequestPrompts& prompts,
                           const RequestAdapters& adapters) {
  auto text = encode_request(engine, r, prompts, &adapters.embeddings);  // embeddings in (app/adapters.h)
  if (!all_finite(text.cond) || !all_finite(text.uncond))
    throw GenerationError("the text encoder produced NaN/Inf in " + dtype_name(engine.dtype()) +
                          (engine.dtype() == torch::kFloat32
                               ? ": the checkpoint's text-encoder weights may be damaged (NaN or huge values); try another model file"
                               : "; try --dtype fp32 (or bf16)"));
  BatchContext c;
  c.cond.context = text.cond.expand({batch, -1, -1}).contiguous();
  c.pair.context = torch::cat({text.uncond.expand({batch, -1, -1}), c.cond.context}).contiguous();
  if (text.y_cond.defined()) {
    c.cond.y = text.y_cond.expand({batch, -1}).contiguous();
    c.pair.y = torch::cat({text.y_uncond.expand({batch, -1}), c.cond.y}).contiguous();
  }
  if (engine.takes_guidance()) {  // Flux dev: the same distilled guidance for cond and uncond
    const auto opt = torch::TensorOptions().device(engine.device());
    c.cond.guidance = torch::full({batch}, r.guidance, opt);
    c.pair.guidance = torch::full({2 * batch}, r.guidance, opt);
  }
  return c;
}

// Step 3, image inputs: the img2img start latent and the inpainting mask at latent size
// (each undefined when the request has none).
struct ImageInputs {
  torch::Tensor init_latent;  // [B, C, h, w], scaled like the sampler's latents
  torch::Tensor mask;         // [1, 1, h, w] in [0,1]; 1 = repaint
};

// Gaussian blur with σ = blur/2 and a (2·blur+1) kernel, as ComfyUI's mask blur, separable.
torch::Tensor blurred(torch::Tensor m, int64_t blur) {
  const int64_t k = 2 * blur + 1;
  auto x = torch::arange(k, torch::kFloat32) - static_cast<double>(blur);
  auto g = torch::exp(-x * x / (2.0 * std::pow(std::max<double>(blur, 1) / 2.0, 2)));
  g = g / g.sum();
  m = F::conv2d(F::pad(m, F::PadFuncOptions({blur, blur, 0, 0}).mode(torch::kReplicate)), g.view({1, 1, 1, k}));
  return F::conv2d(F::pad(m, F::PadFuncOptions({0, 0, blur, blur}).mode(torch::kReplicate)), g.view({1, 1, k, 1}));
}

ImageInputs image_inputs(Engine& engine, const Request& r, const std::vector<int64_t>& shape) {
  ImageInputs in;
  if (!r.init_image.empty()) {
    auto img = image_to_tensor(fitted_image(r.init_image, r.width, r.height, "stretch")).to(engine.device(), engine.dtype()) * 2 - 1;
    // One image is encoded (then repeated for the batch): tiling is decided for batch 1.
    in.init_latent = encode_image(engine, img, vae_tiled(engine, r, {1, shape[1], shape[2], shape[3]})).expand(shape).contiguous();
  }
  if (!r.mask.empty()) {
    auto m = image_to_tensor(fitted_image(r.mask, r.width, r.height, "stretch", 1));
    if (r.mask_blur > 0) m = blurred(m, r.mask_blur);
    in.mask = F::interpolate(m, F::InterpolateFuncOptions()
                                    .size(std::vector<int64_t>{shape[2], shape[3]})
                                    .mode(torch::kBilinear)
                                    .align_corners(false))
                  .to(engine.device(), engine.dtype());
  }
  return in;
}

// Step 4, ControlNet units: each net with its hint and the σ window it acts in.
struct ActiveControl {
  controlnet::ControlNet net{nullptr};
  torch::Tensor hint;     // [1,3,H,W] in [0,1]
  double strength;
  double sigma_start, sigma_end;  // acts for sigma_end < σ ≤ sigma_start
};

std::vector<ActiveControl> control_units(Engine& engine, const Request& r, const std::vector<double>& sigmas) {
  std::vector<ActiveControl> controls;
  const int64_t steps = static_cast<int64_t>(sigmas.size()) - 1;
  for (const auto& u : r.controlnets) {
    ActiveControl c;
    c.net = engine.controlnet(u.model);
    c.hint = image_to_tensor(control_hint(u, r.width, r.height)).to(engine.device(), engine.dtype());
    c.strength = u.strength;
    c.sigma_start = sigmas[static_cast<size_t>(std::llround(u.start * steps))];
    c.sigma_end = sigmas[static_cast<size_t>(std::llround(u.end * steps))];
    controls.push_back(c);
  }
  return controls;
}

// The ControlNet residuals for one network call: the strength-weighted sum of the units
// whose window contains σ; empty when none acts.
models::ControlResiduals control_residuals(std::vector<ActiveControl>& controls, const samplers::NetworkCall& call,
                                           const torch::Tensor& ctx) {
  models::ControlResiduals residuals;
  for (auto& c : controls) {
    if (!(call.sigma <= c.sigma_start && call.sigma > c.sigma_end)) continue;
    auto hint = c.hint.expand({call.x_in.size(0), -1, -1, -1});
    auto res = c.net->forward(call.x_in, call.c_noise, ctx, hint);
    if (residuals.empty()) {
      residuals.down.resize(res.down.size());
      for (size_t i = 0; i < res.down.size(); ++i) residuals.down[i] = res.down[i] * c.strength;
      residuals.mid = res.mid * c.strength;
    } else {
      for (size_t i = 0; i < res.down.size(); ++i) residuals.down[i] = residuals.down[i] + res.down[i] * c.strength;
      residuals.mid = residuals.mid + res.mid * c.strength;
    }
  }
  return residuals;
}

// Step 5, the denoiser closure: network F (the family's network + ControlNet residuals)
// wrapped by the model's parameterization and classifier-free guidance into D(x; σ).
samplers::Denoiser guided_denoiser(Engine& engine, const Request& r, BatchContext context,
                                   std::vector<ActiveControl> controls) {
  samplers::Network network = [&engine, context, controls](const samplers::NetworkCall& call) mutable {
    auto c = call.with_uncond ? context.pair : context.cond;
    auto residuals = control_residuals(controls, call, c.context);
    c.control = residuals.empty() ? nullptr : &residuals;
    return engine.denoise(call.x_in, call.c_noise, c);
  };
  samplers::Guidance guidance;
  guidance.scale = r.cfg;
  guidance.rescale = r.cfg_rescale;
  guidance.sigma_lo = r.cfg_sigma_low;
  guidance.sigma_hi = r.cfg_sigma_high > 0 ? r.cfg_sigma_high : INFINITY;
  return samplers::make_denoiser(engine.sampling(r), network, guidance);
}

// Inpainting by latent blending (ComfyUI's KSamplerX0Inpaint): outside the mask the
// state is the original latent noised to σ, and D returns the original latent there.
samplers::Denoiser inpainting_denoiser(const samplers::ModelSampling& ms, samplers::Denoiser guided,
                                       const ImageInputs& in, torch::Tensor noise) {
  return [&ms, guided, mask = in.mask, init_latent = in.init_latent, noise](const torch::Tensor& x_in, double sigma) {
    auto known = ms.noise_scaling(sigma, noise, init_latent, false);
    auto blended = x_in * mask + known * (1 - mask);
    return guided(blended, sigma) * mask + init_latent * (1 - mask);
  };
}

// Step 6, one batch: noise from the batch's seed, the solver over the σ list, the final
// latents (inpainting: the known region put back exactly). Undefined when cancelled.
torch::Tensor sample_batch(Engine& engine, const Request& r, const std::vector<double>& sigmas,
                           const std::vector<int64_t>& shape, const samplers::Denoiser& guided, const ImageInputs& in,
                           int64_t k, const GenerateHooks& hooks, std::string& stage) {
  const auto& ms = engine.sampling(r);
  const auto device = engine.device();
  const auto dtype = engine.dtype();
  auto gens = seed_generators(r.seed + k * shape[0], shape[0], r.seed_mode);
  auto noise = (hooks.initial_noise.defined() ? hooks.initial_noise.to(torch::kFloat32) : draw(gens, shape)).to(device, dtype);
  auto x = in.init_latent.defined() ? ms.noise_scaling(sigmas.front(), noise, in.init_latent, false)
                                    : ms.noise_scaling(sigmas.front(), noise, torch::zeros_like(noise), true);
  const samplers::Denoiser denoiser = in.mask.defined() ? inpainting_denoiser(ms, guided, in, noise) : guided;

  const auto& solver = samplers::find_sampler(r.sampler);
  samplers::SamplerOptions options;
  ms.configure(options);
  options.eta = r.eta >= 0 ? r.eta : solver.default_eta;
  // In-run noise: ComfyUI's rule (a fresh generator, or the SDE samplers' Brownian tree),
  // or the initial generator(s) going on (batch, per-image).
  options.noise = r.seed_mode == "comfy"
                      ? samplers::comfy_noise(solver, x, sigmas, static_cast<uint64_t>(r.seed + k * shape[0]))
                      : stream_noise(gens, shape, device, dtype);
  const int64_t steps = static_cast<int64_t>(sigmas.size()) - 1;
  auto at_step = [&](int64_t done) {
    stage = "sampling step " + std::to_string(std::min(done + 1, steps)) + " of " + std::to_string(steps) +
            (r.batch_count > 1 ? " (batch " + std::to_string(k + 1) + " of " + std::to_string(r.batch_count) + ")" : "");
  };
  at_step(0);
  models::trace_time(stage);
  options.on_step = [&](const samplers::StepInfo& info) {
    at_step(info.step + 1);
    if (hooks.on_progress) {
      Progress p{info.step + 1, info.total, static_cast<int>(k), static_cast<int>(r.batch_count), info.sigma, &info.denoised};
      hooks.on_progress(p);
    }
    return !(hooks.cancelled && hooks.cancelled());
  };
  auto run = samplers::sample(solver, denoiser, x, sigmas, options);
  if (run.cancelled) return {};
  x = ms.inverse_noise_scaling(sigmas.back(), run.x);
  if (in.mask.defined()) x = x * in.mask + in.init_latent * (1 - in.mask);
  if (!all_finite(x))
    throw GenerationError("sampling produced NaN/Inf latents (batch " + std::to_string(k + 1) + " of " +
                          std::to_string(r.batch_count) + ", " + dtype_name(dtype) +
                          (dtype == torch::kFloat32 ? "): the UNet's weights may be damaged (NaN or huge values), or try a lower --cfg or another --sampler"
                                                    : "): the UNet overflowed; try --dtype fp32 (or bf16), a lower --cfg, or another --sampler"));
  return x;
}

// Step 7, the per-image record: the metadata of image i of batch k, its A1111 text, and
// the request that makes exactly this image again.
GeneratedImage image_record(const Engine& engine, const Request& r, const std::vector<double>& sigmas, Image image,
                            int64_t k, int64_t i, const std::string& vae_retry, const RequestAdapters& adapters) {
  const int64_t batch = r.batch_size, seed = r.seed + k * batch;
  GeneratedImage g;
  g.image = std::move(image);
  g.record.seed = r.seed_mode == "per-image" ? seed + i : seed;
  g.record.width = r.width;
  g.record.height = r.height;
  g.record.model_name = engine.name();
  g.record.model_hash = engine.hash();
  g.record.sigmas = sigmas;
  g.record.batch_size = static_cast<int>(batch);
  g.record.batch_position = static_cast<int>(i);
  g.record.vae_retry = vae_retry;
  g.record.device = engine.device().is_cuda() ? "cuda" : "cpu";
  g.record.dtype = dtype_flag(engine.dtype());
  g.record.lora_hashes = adapters.lora_hashes;  // app/adapters.h
  g.record.distilled_guidance = engine.takes_guidance();
  const auto& ck = engine.checkpoint();
  if (!ck.vae_file.empty()) g.record.modules.push_back(std::filesystem::path(ck.vae_file).stem().string());
  for (const auto& te : ck.text_encoders)
    if (!te.file.empty()) g.record.modules.push_back(std::filesystem::path(te.file).stem().string());
  g.record.ti_hashes = adapters.embeddings.hashes;
  g.parameters = format_parameters(r, g.record);
  // One image's own request: its batch (ComfyUI noise is one draw per batch), or just
  // itself when each image has its own seed.
  g.reproduce = r;
  g.reproduce.output.clear();
  // The separate parts the model was made with, also those found by name (the folder may change).
  if (!ck.vae_file.empty()) g.reproduce.vae = ck.vae_file;
  for (size_t e = 0; e < ck.text_encoders.size(); ++e) {
    const auto& file = ck.text_encoders[e].file;
    if (file.empty()) continue;
    (ck.description.text_encoders[e].network == models::TextNetwork::T5 ? g.reproduce.t5xxl : g.reproduce.clip_l) = file;
  }
  // Absolute paths, so the image can be re-run from any folder.
  auto absolute = [](std::string& p) {
    if (!p.empty() && std::filesystem::exists(p)) p = std::filesystem::absolute(p).lexically_normal().string();
  };
  for (auto* p : {&g.reproduce.model, &g.reproduce.diffusion_model, &g.reproduce.clip_l, &g.reproduce.t5xxl, &g.reproduce.tokenizer,
                  &g.reproduce.t5_tokenizer, &g.reproduce.vae, &g.reproduce.init_image, &g.reproduce.mask})
    absolute(*p);
  for (auto& u : g.reproduce.controlnets) {
    absolute(u.model);
    absolute(u.image);
  }
  // LoRA names are looked up again in the same folders (--from-png).
  if (!adapters.loras.empty()) g.reproduce.lora_dir = lora_folder(r);
  if (!adapters.embeddings.hashes.empty()) g.reproduce.embeddings_dir = embeddings_folder(r);
  for (auto* p : {&g.reproduce.lora_dir, &g.reproduce.embeddings_dir}) absolute(*p);
  for (auto& l : g.reproduce.lora)
    if (l.name.find('/') != std::string::npos || std::filesystem::path(l.name).has_extension()) absolute(l.name);
  g.reproduce.batch_count = 1;
  g.reproduce.seed = g.record.seed;
  if (r.seed_mode == "per-image") g.reproduce.batch_size = 1;
  return g;
}

// An allocation failed in `stage`: the message says where, for which request, how much was
// asked and what is free, and what to try. The allocator's cache is emptied first, so the
// next job (a smaller one) starts from the memory really in use.
[[noreturn]] void throw_out_of_memory(const Engine& engine, const Request& r, const std::string& stage, const std::exception& e) {
  compat::cuda_empty_cache();
  const bool gpu = engine.device().is_cuda();
  const std::string what = e.what();
  std::string asked;
  if (auto at = what.find("Tried to allocate "); at != std::string::npos)  // CUDA: "Tried to allocate 8.00 GiB."
    asked = what.substr(at + 18, what.find(". ", at) - at - 18);
  else if (auto at2 = what.find("you tried to allocate "); at2 != std::string::npos)  // CPU: "... 123 bytes."
    asked = what.substr(at2 + 22, what.find(" bytes", at2) - at2 - 22) + " bytes";
  char buf[200] = "";
  if (gpu) {
    const auto [free, total] = compat::cuda_memory_info();
    const double cap = compat::cuda_memory_fraction();
    if (total > 0 && cap < 1)
      std::snprintf(buf, sizeof buf, "; this process may use %.2f GiB of the GPU's %.2f GiB (SIGMA_CUDA_MEMORY_FRACTION=%g)",
                    cap * total / 1073741824.0, total / 1073741824.0, cap);
    else if (total > 0)
      std::snprintf(buf, sizeof buf, "; the GPU has %.2f GiB free of %.2f GiB", free / 1073741824.0, total / 1073741824.0);
  }
  std::string fix = "try a smaller --width/--height or --batch-size";
  if (engine.dtype() == torch::kFloat32) fix += ", or --dtype " + std::string(gpu ? "fp16" : "bf16");
  if (gpu) fix += engine.lowvram() ? ", or --device cpu" : ", --lowvram, or --device cpu";
  throw GenerationError(std::string("out of ") + (gpu ? "GPU memory" : "memory") + " in " + stage + " of a " +
                        std::to_string(r.width) + "x" + std::to_string(r.height) + " image, batch size " +
                        std::to_string(r.batch_size) + ", " + dtype_name(engine.dtype()) + " on " + engine.device().str() +
                        (asked.empty() ? "" : ": asked for " + asked + " more") + buf + "; " + fix +
                        " (the model stays loaded; the next job runs)");
}

GenerateResult generate_stages(Engine& engine, const Request& r, const GenerateHooks& hooks, std::string& stage) {
  GenerateResult result;
  result.request = r;
  const auto sigmas = request_sigmas(r, engine);
  const auto& format = engine.latent_format();
  const int64_t B = r.batch_size, f = format.downscale;
  const std::vector<int64_t> shape = {B, format.channels, r.height / f, r.width / f};

  // 2-5. Everything the batches share: conditioning, image inputs, ControlNets, D(x; σ).
  // LoRA set merged (or the base restored) and embeddings found before anything is encoded.
  auto enter = [&stage](std::string next) {  // what an error names, and SIGMA_TRACE_TIMES prints
    stage = std::move(next);
    models::trace_time(stage);
  };
  // The prompts are read and tokenized once; the LoRA set, the embeddings and the text
  // encoders all read this value.
  RequestPrompts prompts = read_prompts(r);
  tokenize(prompts, engine.tokenizer(), r.emphasis != "none");
  enter("the LoRA merge");
  const RequestAdapters adapters = prepare_adapters(engine, r, prompts);
  enter("the text encoder");
  const BatchContext context = batch_context(engine, r, B, prompts, adapters);
  enter("the init image / mask encode");
  const ImageInputs inputs = image_inputs(engine, r, shape);
  enter("the ControlNet hints");
  const samplers::Denoiser guided = guided_denoiser(engine, r, context, control_units(engine, r, sigmas));

  // 6-7. Each batch: sample, decode (NaN-checked), one record per image.
  for (int64_t k = 0; k < r.batch_count; ++k) {
    auto x = sample_batch(engine, r, sigmas, shape, guided, inputs, k, hooks, stage);
    if (!x.defined()) {
      result.cancelled = true;
      return result;
    }
    result.latents = x;
    std::string vae_retry;
    enter("the VAE decode" + (r.batch_count > 1 ? " (batch " + std::to_string(k + 1) + ")" : std::string()));
    auto images = tensor_to_images(decode_latents_checked(engine, x, &vae_retry, vae_tiled(engine, r, shape)) * 2 - 1);
    for (int64_t i = 0; i < B; ++i) {
      auto g = image_record(engine, r, sigmas, std::move(images[static_cast<size_t>(i)]), k, i, vae_retry, adapters);
      if (hooks.on_image) hooks.on_image(g);
      models::trace_time("image " + std::to_string(k * B + i + 1) + " handed over");
      result.images.push_back(std::move(g));
    }
  }
  return result;
}

}  // namespace

GenerateResult generate(Engine& engine, const Request& request, const GenerateHooks& hooks) {
  c10::InferenceMode guard;
  // 1. Request resolution: seed, size, σ list and latent shape.
  const Request r = resolve_request(request, engine);
  // A small network at a small size on the CPU runs on one thread (models::ScopedThreads):
  // below ~1e10 UNet parameter-positions per step (the bundled model up to ~360x360; a
  // full-size SD 1.5 never) the second thread costs more than it gives.
  std::optional<models::ScopedThreads> one_thread;
  if (!engine.device().is_cuda() && !models::threads_from_environment()) {
    int64_t params = 0;
    for (const auto& p : engine.diffusion_model().module().parameters()) params += p.numel();
    const int64_t f = engine.latent_format().downscale;
    const double work = double(params) * double(r.width / f) * double(r.height / f) *
                        double(r.batch_size) * 2;
    if (work < 1e10) one_thread.emplace(1);
  }
  std::string stage = "preparing";
  try {
    return generate_stages(engine, r, hooks, stage);
  } catch (const GenerationError&) {
    throw;
  } catch (const std::exception& e) {
    if (compat::is_out_of_memory(e)) throw_out_of_memory(engine, r, stage, e);
    throw;
  }
}

}  // namespace sigma::app
