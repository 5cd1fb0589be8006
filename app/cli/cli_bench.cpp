// `sigma bench`: how long each part of a generation takes on this machine, with warm-ups
// and medians, so speed work is measured rather than guessed. `--random-weights FAMILY`
// builds a full-size network of that family (published SD 1.5 / 2.x / SDXL / Flux.1 dev sizes)
// with random weights in memory, so anyone can benchmark without downloading a checkpoint;
// `-m` times a real one. Random weights give meaningless pictures but the same work.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <memory>
#include <optional>

#include <nlohmann/json.hpp>

#include "app/cli/cli.h"
#include "app/engine.h"
#include "app/image_io.h"
#include "app/pipeline.h"
#include "models/diffusion/dit/flux.h"
#include "models/diffusion/unet/unet.h"
#include "models/nn/layers.h"
#include "models/io/safetensors.h"
#include "models/kernels/cuda_ops.h"
#include "models/nn/channels_last.h"
#include "models/runtime/cuda_graph.h"
#include "models/runtime/options.h"
#include "models/runtime/torch_compat.h"
#include "models/runtime/torch_profiler.h"
#include "models/text/clip_text.h"
#include "models/text/t5_encoder.h"
#include "models/vae/autoencoder_kl.h"
#include "models/vae/tiling.h"

namespace sigma::app {
namespace {

struct BenchArgs {
  std::string random_weights, model, tokenizer, device = "auto", dtype = "auto", json, save, profile;
  int64_t width = 0, height = 0, batch = 1, warmup = 2, runs = 5, steps = 30;
  bool tiled = false, lowvram = false;
};

// The networks a bench runs: a loaded Engine's, or random full-size ones.
struct Networks {
  std::string family;
  models::UNet unet{nullptr};
  models::FluxTransformer flux{nullptr};    // Flux: the transformer instead of the UNet,
  models::T5Encoder t5{nullptr};            // and T5-XXL beside CLIP-L
  std::vector<models::ClipTextModel> text;  // SDXL: CLIP-L and OpenCLIP-bigG
  models::AutoencoderKL vae{nullptr};
  int64_t native = 512, context = 768, adm = 0;
};

// A network of random weights N(0, 0.02) made on the device itself: built without filling its
// weights on the host (models/nn/layers.h), each weight then drawn where it runs (a 12B Flux
// would take minutes and 48 GB of host memory the ordinary way).
template <class Network, class Config>
Network random_on(const Config& config, torch::Device device, torch::ScalarType dtype) {
  auto net = models::build_uninitialised<Network>(config);
  torch::NoGradGuard no_grad;
  for (auto& p : net->parameters()) p.set_data(torch::empty(p.sizes(), torch::TensorOptions().device(device).dtype(dtype)).normal_(0, 0.02));
  for (auto& b : net->buffers()) b.set_data(b.to(device));
  net->eval();
  return net;
}

// Flux.1 dev at its published sizes (12B transformer, T5-XXL, CLIP-L, the 16-channel VAE).
Networks random_flux(torch::Device device, torch::ScalarType dtype) {
  Networks n;
  n.family = "flux";
  n.flux = random_on<models::FluxTransformer>(models::FluxConfig{}, device, dtype);
  n.t5 = random_on<models::T5Encoder>(models::T5Config{}, device, dtype);
  n.text.push_back(random_on<models::ClipTextModel>(models::ClipTextConfig{}, device, dtype));
  models::VaeConfig vae;
  vae.z_channels = 16;
  vae.quant_convs = false;
  vae.scaling_factor = 0.3611;
  n.vae = random_on<models::AutoencoderKL>(vae, device, dtype);
  n.native = 1024, n.context = 4096;
  return n;
}

Networks random_networks(const std::string& family) {
  Networks n;
  n.family = family;
  models::UNetConfig u;
  models::ClipTextConfig clip;
  models::VaeConfig vae;
  if (family == "sd15") {
    n.text.emplace_back(clip);
  } else if (family == "sd2") {
    u.num_heads = -1, u.head_dim = 64, u.linear_proj = true, u.context_dim = 1024;
    clip.width = 1024, clip.layers = 23, clip.heads = 16, clip.mlp = 4096, clip.quick_gelu = false;
    n.text.emplace_back(clip);
    n.native = 768, n.context = 1024;
  } else if (family == "sdxl") {
    u.channel_mult = {1, 2, 4};
    u.transformer_depth = {0, 2, 10};
    u.middle_transformer_depth = 10;
    u.num_heads = -1, u.head_dim = 64, u.linear_proj = true, u.context_dim = 2048, u.adm_in_channels = 2816;
    n.text.emplace_back(clip);
    models::ClipTextConfig g = clip;
    g.width = 1280, g.layers = 32, g.heads = 20, g.mlp = 5120, g.quick_gelu = false, g.projection_dim = 1280;
    n.text.emplace_back(g);
    vae.scaling_factor = 0.13025;
    n.native = 1024, n.context = 2048, n.adm = 2816;
  } else {
    throw std::invalid_argument("--random-weights must be sd15, sd2, sdxl or flux, got '" + family + "'");
  }
  n.unet = models::UNet(u);
  n.vae = models::AutoencoderKL(vae);
  return n;
}

// The random networks as an original single-file checkpoint (float16, the keys and
// prefixes of the family's released files), so load time and the whole CLI path can be
// measured on a full-size file. SD 1.5 only: SD 2.x and SDXL files keep their OpenCLIP
// encoder in OpenCLIP names, which this writer does not produce.
void save_checkpoint(const Networks& n, const std::string& path) {
  if (n.family != "sd15") throw std::invalid_argument("--save: only --random-weights sd15 can be written as a checkpoint");
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  auto add = [&](const std::string& prefix, const torch::nn::Module& m) {
    for (const auto& p : m.named_parameters()) tensors.emplace_back(prefix + p.key(), p.value().to(torch::kCPU, torch::kFloat16));
    for (const auto& b : m.named_buffers()) tensors.emplace_back(prefix + b.key(), b.value().to(torch::kCPU));
  };
  add("model.diffusion_model.", *n.unet);
  add("first_stage_model.", *n.vae);
  add("cond_stage_model.transformer.", *n.text[0]);
  models::save_safetensors(path, tensors);
  std::printf("sigma bench: wrote %s (%zu tensors, float16)\n", path.c_str(), tensors.size());
}

double peak_rss_gb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / (1024.0 * 1024.0);
}

// Median wall time in ms of `fn` after `warmup` runs; the device is synchronised around
// each run, so GPU work is counted, not just its launch.
template <class F>
double median_ms(const torch::Device& device, int64_t warmup, int64_t runs, F&& fn) {
  auto sync = [&] {
    if (device.is_cuda()) compat::cuda_synchronize();
  };
  for (int64_t i = 0; i < warmup; ++i) fn();
  std::vector<double> t;
  for (int64_t i = 0; i < runs; ++i) {
    sync();
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    sync();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Runs `fn` `runs` times under LibTorch's profiler, writes the Chrome trace (chrome://tracing,
// Perfetto) to `path` where this LibTorch has Kineto (PyTorch's builds; Debian's has not), and
// prints the heaviest entries per run: GPU kernels on CUDA (their sum is the GPU's busy time),
// operators on the CPU (inclusive times, so nested operators also count in their parents).
template <class F>
void profile_runs(const torch::Device& device, const std::string& path, int64_t runs, F&& fn) {
  namespace prof = torch::autograd::profiler;
  const prof::ProfilerConfig config(prof::ProfilerState::KINETO, /*report_input_shapes=*/true);
  std::set<prof::ActivityType> activities{prof::ActivityType::CPU};
  if (device.is_cuda()) activities.insert(prof::ActivityType::CUDA);
  prof::prepareProfiler(config, activities);
  prof::enableProfiler(config, activities);
  std::unique_ptr<prof::ProfilerResult> result;
  try {
    for (int64_t i = 0; i < runs; ++i) fn();
    if (device.is_cuda()) compat::cuda_synchronize();
    result = prof::disableProfiler();
  } catch (...) {
    if (!result) prof::disableProfiler();
    throw;
  }
  try {
    result->save(path);
    std::printf("    trace: %s\n", path.c_str());
  } catch (const c10::Error&) {
    std::printf("    (no trace file: this LibTorch was built without Kineto)\n");
  }
  const auto kind = device.is_cuda() ? c10::DeviceType::CUDA : c10::DeviceType::CPU;
  std::map<std::string, std::pair<double, int64_t>> by_name;  // µs, calls
  double total_us = 0;
  for (const auto& e : result->events()) {
    if (e.deviceType() != kind) continue;
    const double us = compat::profiled_us(e);
    auto& [sum, calls] = by_name[e.name()];
    sum += us, ++calls, total_us += us;
  }
  std::vector<std::pair<std::string, std::pair<double, int64_t>>> rows(by_name.begin(), by_name.end());
  std::sort(rows.begin(), rows.end(), [](const auto& l, const auto& r) { return l.second.first > r.second.first; });
  if (device.is_cuda()) std::printf("    GPU kernels and copies: %.3f ms busy per run, %zu kinds\n", total_us / 1e3 / runs, rows.size());
  for (size_t i = 0; i < rows.size() && i < 25; ++i) {
    const auto& [name, v] = rows[i];
    std::printf("    %8.3f ms %5.1f%% %5lld x  %.110s\n", v.first / 1e3 / runs, device.is_cuda() ? 100.0 * v.first / total_us : 0.0,
                static_cast<long long>(v.second / runs), name.c_str());
  }
}

// The networks to time: random ones of a family's published sizes, or a checkpoint through
// the Engine (then `engine` holds it, for --lowvram's visits and the whole-image part).
Networks bench_networks(const BenchArgs& a, const ModelSpec& spec, torch::Device device, std::shared_ptr<Engine>& engine) {
  Networks n;
  if (a.random_weights == "flux") {
    if (!a.save.empty()) throw std::invalid_argument("--save: only --random-weights sd15 can be written as a checkpoint");
    return random_flux(device, spec.dtype);
  }
  if (!a.random_weights.empty()) {
    n = random_networks(a.random_weights);
    if (!a.save.empty()) save_checkpoint(n, a.save);
    n.unet->to(device, spec.dtype);
    n.vae->to(device, spec.dtype);
    for (auto& t : n.text) t->to(device, spec.dtype);
    models::apply_channels_last(*n.unet, *n.vae, device);  // as Engine::load
    return n;
  }
  engine = Engine::load(spec);
  n.family = models::to_string(engine->checkpoint().family);
  n.vae = engine->vae();
  n.text.push_back(engine->text_encoder(0));
  n.native = engine->native_size();
  if (auto* flux = dynamic_cast<models::FluxTransformerImpl*>(&engine->diffusion_model())) {
    n.flux = models::FluxTransformer(std::shared_ptr<models::FluxTransformerImpl>(engine->diffusion_module(), flux));
    n.t5 = engine->t5(1);
    n.context = flux->config.context_in;
    return n;
  }
  auto* unet = dynamic_cast<models::UNetImpl*>(&engine->diffusion_model());
  if (!unet) throw std::invalid_argument("sigma bench: " + spec.model + ": a network the bench has no inputs for");
  n.unet = models::UNet(std::shared_ptr<models::UNetImpl>(engine->diffusion_module(), unet));
  n.context = n.unet->config.context_dim;
  n.adm = n.unet->config.adm_in_channels;
  return n;
}

// Times every part into j (`PART_ms`, and on CUDA `PART_peak_gb`: the allocator's peak while it
// ran, what it adds to the weights), with --profile's traces.
void time_parts(const BenchArgs& a, Networks& n, Engine* engine, torch::Device device, torch::ScalarType dtype,
                int64_t W, int64_t H, nlohmann::json& j) {
  const int64_t B = a.batch;
  const auto opt = torch::TensorOptions().device(device).dtype(dtype);
  auto latents = torch::randn({B, n.vae->config.z_channels, H / 8, W / 8}, opt);
  auto x_cfg = torch::cat({latents, latents});                   // [uncond; cond]
  auto t = torch::full({2 * B}, 500.0, torch::TensorOptions().device(device).dtype(torch::kFloat32));
  auto ctx = torch::randn({2 * B, 77, n.context}, opt);
  auto y = n.adm > 0 ? torch::randn({2 * B, n.adm}, opt) : torch::Tensor();
  const auto& clip = n.text.front()->config;  // ids inside every encoder's vocabulary (the bundled model's is small)
  auto ids = torch::randint(0, clip.vocab_size - 2, {2, clip.max_positions}, torch::TensorOptions().device(device).dtype(torch::kLong));
  auto pixels = torch::rand({B, 3, H, W}, opt) * 2 - 1;

  auto part = [&](const std::string& key, int64_t warmup, int64_t runs, auto&& fn) {
    compat::cuda_reset_peak();
    j[key + "_ms"] = median_ms(device, warmup, runs, fn);
    if (device.is_cuda()) j[key + "_peak_gb"] = compat::cuda_peak_allocated_gb();
    if (a.profile.empty()) return;
    const std::string path = a.profile + "/" + key + ".trace.json";
    const int64_t n_runs = std::min<int64_t>(runs, 3);
    std::printf("sigma bench: %s profiled over %lld runs\n", key.c_str(), static_cast<long long>(n_runs));
    profile_runs(device, path, n_runs, fn);
  };
  // --lowvram: each network visits the GPU for its call, as in generation (Engine::visit).
  auto visit = [&](torch::nn::Module& m) { return engine ? engine->visit(m) : nullptr; };
  const bool graphs_on = !engine || !engine->lowvram();
  // Flux: T5-XXL on a short prompt padded to 256 tokens, as generation runs it (models/families/family.cpp).
  const int64_t t5_vocab = n.t5 ? std::min<int64_t>(32000, n.t5->config.vocab_size) : 1;
  const auto t5_ids = torch::randint(0, t5_vocab, {1, 256}, torch::TensorOptions().device(device).dtype(torch::kLong));
  part("text_encoder_eager", a.warmup, a.runs, [&] {
    for (auto& enc : n.text) {
      const auto on_device = visit(*enc);
      enc->forward(ids);
    }
    if (n.t5) n.t5->forward(t5_ids);
  });
  // Both parts as generation makes them: through CUDA graphs where those are on (models/runtime/cuda_graph.h).
  std::optional<models::GraphCache> graphs(std::in_place);
  if (graphs_on && !n.t5) part("text_encoder", a.warmup, a.runs, [&] {
    for (size_t e = 0; e < n.text.size(); ++e)
      graphs->run_all({ids}, [&](const std::vector<torch::Tensor>& in) { return std::vector<torch::Tensor>{n.text[e]->forward(in[0])}; },
                      "encoder " + std::to_string(e));
  });
  if (n.flux) {
    // One step as Flux dev runs it: CFG 1 (batch B), the distilled guidance, 256 T5 tokens.
    models::DiffusionConditioning c;
    c.context = torch::randn({B, 256, n.context}, opt);
    c.y = torch::randn({B, n.flux->config.vec_in}, opt);
    if (n.flux->config.guidance_embed) c.guidance = torch::full({B}, 3.5, torch::TensorOptions().device(device));
    auto t1 = torch::full({B}, 500.0, torch::TensorOptions().device(device).dtype(torch::kFloat32));
    part("flux_step_eager", a.warmup, a.runs, [&] { n.flux->forward(latents, t1, c); });
    if (graphs_on) part("flux_step", a.warmup, a.runs, [&] {
      graphs->run({latents, t1, c.context, c.y, c.guidance}, [&](const std::vector<torch::Tensor>& in) {
        models::DiffusionConditioning captured;
        captured.context = in[2], captured.y = in[3], captured.guidance = in[4];
        return n.flux->forward(in[0], in[1], captured);
      });
    });
  } else {
    part("unet_cfg_step_eager", a.warmup, a.runs, [&] { n.unet->forward(x_cfg, t, ctx, nullptr, y); });
    if (graphs_on) part("unet_cfg_step", a.warmup, a.runs, [&] {
      graphs->run({x_cfg, t, ctx, y}, [&](const std::vector<torch::Tensor>& in) { return n.unet->forward(in[0], in[1], in[2], nullptr, in[3]); });
    });
  }
  j["cuda_graphs"] = graphs->captured() > 0;
  part("vae_decode", a.warmup, a.runs, [&] {
    const auto on_device = visit(*n.vae);
    n.vae->decode(latents);
  });
  part("vae_encode", a.warmup, a.runs, [&] {
    const auto on_device = visit(*n.vae);
    n.vae->encode_moments(pixels);
  });
  if (W * H >= 1024 * 1024 || a.tiled) {
    models::VaeTiling tiling;  // as --vae-tiling runs it with memory to spare: the tiles stay on the device
    part("vae_decode_tiled", a.warmup, a.runs, [&] {
      const auto on_device = visit(*n.vae);
      models::tiled_decode(*n.vae, latents, tiling);
    });
    if (device.is_cuda()) {  // as --lowvram and a short memory run it: waiting tiles in host memory
      tiling.offload = true;
      part("vae_decode_tiled_offload", 1, std::max<int64_t>(1, a.runs / 2), [&] {
        const auto on_device = visit(*n.vae);
        models::tiled_decode(*n.vae, latents, tiling);
      });
    }
  }
  if (engine) {
    // A whole image in this warm process: text encoding, `steps` steps, NaN-checked decode, PNG bytes.
    Request r;
    r.model = a.model, r.tokenizer = a.tokenizer, r.device = a.device, r.dtype = a.dtype, r.lowvram = a.lowvram;
    r.prompt = "a photograph of an astronaut riding a horse";
    r.width = W, r.height = H, r.batch_size = B, r.steps = a.steps, r.seed = 1;
    j["image_steps"] = a.steps;
    graphs.reset();  // the bench's own graph pool is not the generation's
    part("image", 1, std::max<int64_t>(1, a.runs / 2), [&] {
      for (const auto& g : generate(*engine, r).images) encode_png(g.image, {{"parameters", g.parameters}});
    });
  }
}

void print_report(const BenchArgs& a, const nlohmann::json& j, torch::ScalarType dtype) {
  std::printf("sigma bench: %s, %s, %s, %lldx%lld, batch %lld (CFG: UNet at batch %lld), median of %lld after %lld warm-ups\n",
              j["family"].get<std::string>().c_str(), j["device"].get<std::string>().c_str(), c10::toString(dtype),
              j["width"].get<long long>(), j["height"].get<long long>(), static_cast<long long>(a.batch),
              static_cast<long long>(2 * a.batch), static_cast<long long>(a.runs), static_cast<long long>(a.warmup));
  std::printf("  %-26s %10.2f s\n", a.random_weights.empty() ? "load" : "build (random weights)", j["load_s"].get<double>());
  for (const std::string k : {"text_encoder_eager", "text_encoder", "unet_cfg_step_eager", "unet_cfg_step", "flux_step_eager", "flux_step", "vae_decode", "vae_encode", "vae_decode_tiled", "vae_decode_tiled_offload", "image"}) {
    if (!j.contains(k + "_ms")) continue;
    std::printf("  %-26s %10.2f ms", (k + "_ms").c_str(), j[k + "_ms"].get<double>());
    if (j.contains(k + "_peak_gb")) std::printf("   (allocator peak %.2f GB)", j[k + "_peak_gb"].get<double>());
    std::printf("\n");
  }
  for (const std::string k : {"cuda_graphs", "channels_last", "vae_channels_last", "fused_group_norm"})
    std::printf("  %-26s %10s\n", k.c_str(), j[k].get<bool>() ? "yes" : "no");
  std::printf("  %-26s %10.2f GB\n", "peak RSS", j["peak_rss_gb"].get<double>());
  if (j.contains("cuda_peak_allocated_gb")) {
    std::printf("  %-26s %10.2f GB (weights and inputs %.2f GB)\n", "CUDA peak allocated", j["cuda_peak_allocated_gb"].get<double>(),
                j["weights_allocated_gb"].get<double>());
    std::printf("  %-26s %10.2f GB\n", "CUDA used (driver)", j["cuda_driver_used_gb"].get<double>());
  }
}

int run_bench(const BenchArgs& a) {
  if (a.random_weights.empty() == a.model.empty())
    throw std::invalid_argument("sigma bench: give exactly one of --random-weights sd15|sd2|sdxl|flux and -m MODEL");
  if (a.lowvram && a.model.empty()) throw std::invalid_argument("sigma bench: --lowvram needs -m MODEL");
  if (!a.profile.empty() && !std::filesystem::is_directory(a.profile))
    throw std::invalid_argument("sigma bench --profile " + a.profile + ": not a folder; create it first (one trace per part is written into it)");
  Request req;
  req.device = a.device;
  req.dtype = a.dtype;
  // Random weights load no file: a placeholder name keeps model_spec from asking for the bundled model.
  req.model = a.random_weights.empty() ? a.model : "random-weights:" + a.random_weights;
  req.tokenizer = a.tokenizer;
  req.lowvram = a.lowvram;
  const ModelSpec spec = model_spec(req);
  const torch::Device device = parse_device(spec.device);
  const auto t_load = std::chrono::steady_clock::now();
  std::shared_ptr<Engine> engine;
  Networks n = bench_networks(a, spec, device, engine);
  if (device.is_cuda()) compat::cuda_synchronize();
  // After the load, as generation: weights made under InferenceMode could not be swapped
  // between host and GPU memory (--lowvram's set_data).
  c10::InferenceMode guard;
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count();

  const int64_t W = a.width ? a.width : n.native, H = a.height ? a.height : n.native;
  nlohmann::json j = {{"family", n.family}, {"device", device.str()}, {"dtype", a.dtype}, {"width", W}, {"height", H},
                      {"batch", a.batch}, {"warmup", a.warmup}, {"runs", a.runs}, {"load_s", load_s}};
  if (device.is_cuda()) j["weights_allocated_gb"] = compat::cuda_reserved_allocated().second / 1e9;
  j["channels_last"] = models::channels_last_enabled(device);
  j["vae_channels_last"] = models::vae_channels_last_enabled(device, n.vae->parameters().front().scalar_type());
  j["fused_group_norm"] = device.is_cuda() && models::fused_group_norm_enabled();
  time_parts(a, n, engine.get(), device, spec.dtype, W, H, j);
  j["peak_rss_gb"] = peak_rss_gb();
  if (device.is_cuda()) {
    j["cuda_peak_allocated_gb"] = 0.0;
    for (const auto& [k, v] : j.items())
      if (k.size() > 8 && k.substr(k.size() - 8) == "_peak_gb") j["cuda_peak_allocated_gb"] = std::max(j["cuda_peak_allocated_gb"].get<double>(), v.get<double>());
    const auto [free, total] = compat::cuda_memory_info();
    j["cuda_driver_used_gb"] = static_cast<double>(total - free) / 1e9;  // nvidia-smi's figure: context + allocator's reserve
  }
  print_report(a, j, spec.dtype);
  if (!a.json.empty()) std::ofstream(a.json) << j.dump(2) << "\n";
  return 0;
}

}  // namespace

void register_bench(CLI::App& app, CliState& state) {
  auto a = std::make_shared<BenchArgs>();
  auto* b = app.add_subcommand("bench", "time the text encoders, one step of the UNet (CFG) or the Flux transformer, VAE decode/encode (medians)");
  b->add_option("--random-weights", a->random_weights, "sd15 | sd2 | sdxl | flux: a full-size network with random weights");
  b->add_option("-m,--model", a->model, "a checkpoint to time instead");
  b->add_option("--tokenizer", a->tokenizer, "tokenizer folder for -m single files");
  b->add_option("-W,--width", a->width, "image width (default: the family's native size)");
  b->add_option("-H,--height", a->height, "image height");
  b->add_option("-b,--batch-size", a->batch, "images per batch (the UNet runs at twice this for CFG)");
  b->add_option("--device", a->device, "auto | cpu | cuda")->default_val("auto");
  b->add_option("--dtype", a->dtype, "auto | fp32 | fp16 | bf16")->default_val("auto");
  b->add_option("--warmup", a->warmup, "untimed runs first")->default_val(2);
  b->add_option("--runs", a->runs, "timed runs (the median is reported)")->default_val(5);
  b->add_option("--steps", a->steps, "with -m: steps of the whole-image figure")->default_val(30);
  b->add_flag("--lowvram", a->lowvram, "with -m: load and run as generate --lowvram does");
  b->add_flag("--vae-tiling", a->tiled, "also time the tiled VAE decode (always from 1024x1024 up)");
  b->add_option("--json", a->json, "also write the figures to this JSON file");
  b->add_option("--profile", a->profile, "also profile each part (3 runs) into FOLDER/PART.trace.json and print its heaviest kernels");
  b->add_option("--save", a->save, "with --random-weights sd15: also write the network as a single-file checkpoint (float16)");
  b->callback([a, &state] { state.exit_code = run_bench(*a); });
}

}  // namespace sigma::app
