// `sigma generate` and `sigma batch`: flags -> Request -> pipeline -> PNG files with
// metadata. Flags follow stable-diffusion.cpp's short aliases and AUTOMATIC1111's names.
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <map>
#include <memory>

#include "app/adapters.h"
#include "app/cli/cli.h"
#include "app/image_io.h"
#include "app/cli/jobs.h"
#include "app/pipeline.h"
#include "app/cli/progress.h"
#include "samplers/registry.h"
#include "samplers/schedules.h"

namespace fs = std::filesystem;

namespace sigma::app {
namespace {

// Flags bound to a scratch Request; `apply` copies only the flags the user gave, so
// `--from-png` and job defaults keep everything else.
struct RequestFlags {
  Request flags;
  std::vector<std::pair<CLI::Option*, std::function<void(Request&, const Request&)>>> copiers;
  std::vector<std::string> cn_model, cn_image, cn_pre, cn_resize, cn_params;
  std::vector<double> cn_strength, cn_start, cn_end;
  std::vector<CLI::Option*> cn_options;
  std::vector<std::string> lora_specs;  // --lora FILE[:W] (app/adapters.h)
  CLI::Option* lora_option = nullptr;

  template <class T>
  CLI::Option* add(CLI::App* cmd, const std::string& names, T Request::*field, const std::string& help) {
    auto* o = cmd->add_option(names, flags.*field, help);
    copiers.emplace_back(o, [field](Request& dst, const Request& src) { dst.*field = src.*field; });
    return o;
  }

  void add_all(CLI::App* c) {
    // A flag given twice keeps the last value, as in most command lines (scripts append overrides).
    c->option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
    add(c, "-m,--model", &Request::model, "checkpoint: .safetensors file or diffusers folder (default: the bundled model)");
    add(c, "--diffusion-model", &Request::diffusion_model,
        "a Flux transformer file alone (flux1-dev.safetensors), instead of -m; its encoders and VAE from --clip_l, --t5xxl, --vae "
        "or found by name beside it and in the models root's text_encoders/ and vae/");
    add(c, "--clip_l,--clip-l", &Request::clip_l, "Flux: CLIP-L text encoder file (clip_l.safetensors)");
    add(c, "--t5xxl", &Request::t5xxl, "Flux: T5-XXL encoder file (t5xxl_fp16.safetensors, t5xxl_fp8_e4m3fn.safetensors)");
    add(c, "--tokenizer", &Request::tokenizer, "folder with vocab.json + merges.txt (single-file checkpoints carry none)");
    add(c, "--t5-tokenizer", &Request::t5_tokenizer, "T5's tokenizer instead of the bundled one: spiece.model or Hugging Face's tokenizer.json");
    add(c, "--vae", &Request::vae, "VAE file to use instead of the checkpoint's (Flux: ae.safetensors)");
    add(c, "--prediction", &Request::prediction, "override the model's prediction type: eps | v | flow");
    add(c, "-p,--prompt", &Request::prompt, "prompt; AUTOMATIC1111 syntax: (word) x1.1, [word] /1.1, (word:1.3), BREAK");
    add(c, "-n,--negative,--negative-prompt", &Request::negative, "negative prompt");
    add(c, "--emphasis", &Request::emphasis, "original | no-norm | none (brackets as plain text)")->default_val("original");
    add(c, "--clip-skip", &Request::clip_skip, "text encoder layer from the end (1 = last)")->default_val(1);
    add(c, "-W,--width", &Request::width, "width in pixels, a multiple of 8 (default: the model's native size)");
    add(c, "-H,--height", &Request::height, "height in pixels, a multiple of 8 (default: the model's native size)");
    add(c, "--steps", &Request::steps, "denoising steps (default: the model's; SD 20, Flux dev 28, schnell 4)");
    add(c, "--cfg,--cfg-scale", &Request::cfg, "classifier-free guidance scale, 1 = off (default: the model's; SD 7, Flux 1)");
    add(c, "--guidance,--distilled-cfg-scale", &Request::guidance, "Flux dev's distilled guidance (guidance_in)")->default_val(3.5);
    add(c, "--cfg-rescale", &Request::cfg_rescale, "guidance rescale phi in [0,1] (Lin et al. 2023)")->default_val(0.0);
    add(c, "--cfg-sigma-low", &Request::cfg_sigma_low, "guidance only for sigma >= this (Kynkaanniemi et al. 2024)");
    add(c, "--cfg-sigma-high", &Request::cfg_sigma_high, "guidance only for sigma <= this (0 = no upper bound)");
    add(c, "--sampler,--sampling-method", &Request::sampler, "solver; `sigma samplers` lists them (default: SD dpmpp_2m, Flux euler)");
    add(c, "--scheduler,--schedule", &Request::scheduler, "sigma schedule; `sigma samplers` lists them (default: SD karras, Flux simple)");
    add(c, "--sigmas", &Request::sigmas, "the sigma list to run (implies --scheduler custom), comma-separated, e.g. 14.6,5,1.5,0.3,0")
        ->delimiter(',');
    add(c, "--eta", &Request::eta, "noise amount of ancestral/SDE solvers (default: the solver's)");
    add(c, "-s,--seed", &Request::seed, "seed; -1 picks a random one (recorded in the image)")->default_val(-1);
    add(c, "--seed-mode", &Request::seed_mode,
        "comfy: ComfyUI's noise for the seed, in-run noise included | batch: one draw for the batch, in-run noise "
        "continuing it (before comfy) | per-image: seed+i (A1111)")
        ->default_val("comfy");
    add(c, "-b,--batch-size", &Request::batch_size, "images per batch (one forward pass)")->default_val(1);
    add(c, "--batch-count", &Request::batch_count, "batches, run one after the other")->default_val(1);
    add(c, "-i,--init-img", &Request::init_image, "image-to-image: the starting image");
    add(c, "--strength", &Request::strength, "image-to-image denoising strength in (0,1]")->default_val(0.75);
    add(c, "--mask", &Request::mask, "inpainting mask (white = repaint), with --init-img");
    add(c, "--mask-blur", &Request::mask_blur, "mask blur radius in pixels")->default_val(4);
    add(c, "-o,--output", &Request::output, "output .png file, or a folder for numbered files (default: outputs/)");
    add(c, "--device", &Request::device, "auto | cpu | cuda")->default_val("auto");
    add(c, "--dtype", &Request::dtype, "auto | fp32 | fp16 | bf16 (auto: fp16 on CUDA; bf16 on CPUs with AMX or AVX512-BF16, else fp32)")->default_val("auto");
    auto* tiling = c->add_flag("--vae-tiling", flags.vae_tiling,
                               "VAE decode/encode in tiles: the same picture in bounded memory (on its own when the "
                               "whole image would not fit)");
    copiers.emplace_back(tiling, [](Request& dst, const Request& src) { dst.vae_tiling = src.vae_tiling; });
    auto* lowvram = c->add_flag("--lowvram", flags.lowvram,
                                "CUDA: keep the weights in host memory, the UNet streamed block by block, the text "
                                "encoder and VAE on the GPU only for their calls, the VAE tiled (slower; for small GPUs)");
    copiers.emplace_back(lowvram, [](Request& dst, const Request& src) { dst.lowvram = src.lowvram; });
    lora_option = c->add_option("--lora", lora_specs,
                                "LoRA/LyCORIS NAME[:W] (a file stem in --lora-dir, subfolders searched) or FILE[:W]; "
                                "repeatable; adds to the prompt's <lora:NAME:W> tags")
                      ->allow_extra_args(false)
                      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    add(c, "--lora-dir", &Request::lora_dir, "folder of LoRA files for <lora:NAME> and --lora NAME (default: <models root>/loras; "
                                             "models root = $SIGMA_MODELS or ~/models)");
    add(c, "--embeddings-dir", &Request::embeddings_dir, "folder of textual-inversion embeddings, used by file name as prompt words "
                                                         "(default: <models root>/embeddings)");
    auto unit = [&](CLI::Option* o) {
      o->allow_extra_args(false)->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
      cn_options.push_back(o);
    };
    unit(c->add_option("--control-net", cn_model, "ControlNet model (repeat for several units)"));
    unit(c->add_option("--control-image", cn_image, "condition image of the unit"));
    unit(c->add_option("--preprocessor", cn_pre, "none (default) | canny | scribble | threshold | lineart | softedge | grayscale"));
    unit(c->add_option("--control-strength", cn_strength, "residual weight of the unit (default 1)"));
    unit(c->add_option("--control-start", cn_start, "fraction of the steps where the unit starts acting (default 0)"));
    unit(c->add_option("--control-end", cn_end, "fraction of the steps where it stops (default 1)"));
    unit(c->add_option("--control-resize", cn_resize, "crop | fit | stretch the condition image (default crop)"));
    unit(c->add_option("--control-param", cn_params, "preprocessor parameter NAME=VALUE, e.g. low=50 (all units)"));
  }

  // Unit i takes the i-th value of each control flag; a flag given once applies to every unit.
  std::vector<ControlUnit> units() const {
    std::vector<ControlUnit> out(cn_model.size());
    auto pick = [&](const auto& v, size_t i, const char* flag) -> std::optional<std::decay_t<decltype(v[0])>> {
      if (v.empty()) return std::nullopt;
      if (v.size() == 1) return v[0];
      if (v.size() != out.size())
        throw std::invalid_argument(std::string(flag) + " is given " + std::to_string(v.size()) + " times for " +
                                    std::to_string(out.size()) + " --control-net units; give it once or once per unit");
      return v[i];
    };
    const auto params = parse_name_values(cn_params, "--control-param");
    for (size_t i = 0; i < out.size(); ++i) {
      auto& u = out[i];
      u.model = cn_model[i];
      if (auto v = pick(cn_image, i, "--control-image")) u.image = *v;
      if (auto v = pick(cn_pre, i, "--preprocessor")) u.preprocessor = *v;
      if (auto v = pick(cn_strength, i, "--control-strength")) u.strength = *v;
      if (auto v = pick(cn_start, i, "--control-start")) u.start = *v;
      if (auto v = pick(cn_end, i, "--control-end")) u.end = *v;
      if (auto v = pick(cn_resize, i, "--control-resize")) u.resize = *v;
      u.params = params;
    }
    if (out.empty() && (!cn_image.empty() || !cn_pre.empty()))
      throw std::invalid_argument("--control-image/--preprocessor need --control-net PATH (the ControlNet model)");
    return out;
  }

  void apply(Request& r) const {
    for (const auto& [opt, copy] : copiers)
      if (opt->count() > 0) copy(r, flags);
    bool any_unit = false;
    for (auto* o : cn_options) any_unit |= o->count() > 0;
    if (any_unit) r.controlnets = units();
    if (lora_option && lora_option->count() > 0) {
      r.lora.clear();
      for (const auto& spec : lora_specs) r.lora.push_back(parse_lora_ref(spec));
    }
  }
};

// Checks that need no model, so a typo fails in milliseconds, not after loading.
void precheck(const Request& r) {
  validate(r);
  if (!r.sampler.empty()) samplers::find_sampler(r.sampler);  // empty: the model's default
  bool known = r.scheduler.empty();
  std::string names;
  for (const auto& s : samplers::all_schedules()) {
    known |= s.name == r.scheduler;
    names += (names.empty() ? "" : ", ") + s.name;
  }
  if (!known) throw std::invalid_argument("unknown --scheduler '" + r.scheduler + "' (known: " + names + ")");
  // Images are read whole: only regular files (`-i /dev/zero` read 2 GB before it was refused).
  auto image_file = [](const std::string& path, const std::string& flag) {
    std::error_code ec;
    if (!fs::exists(path, ec)) throw std::invalid_argument(flag + " " + path + ": no such image file");
    if (!fs::is_regular_file(path, ec)) throw std::invalid_argument(flag + " " + path + ": not a regular file (a device, folder or pipe); give an image file");
  };
  if (!r.init_image.empty()) image_file(r.init_image, "--init-img");
  if (!r.mask.empty()) image_file(r.mask, "--mask");
  for (const auto& u : r.controlnets) image_file(u.image, "--control-image");
  request_loras(r, read_prompts(r));  // unknown LoRA names and bad tags fail before the model loads
}

// The output folder exists (made if missing) and is writable, before minutes of generating.
void check_output_folder(const fs::path& folder) {
  const fs::path f = folder.empty() ? fs::path(".") : folder;
  std::error_code ec;
  fs::create_directories(f, ec);
  if (ec || !fs::is_directory(f, ec))
    throw std::invalid_argument("-o: cannot create the output folder " + f.string() + " (" + ec.message() + "); choose a folder you can write to");
  if (::access(f.c_str(), W_OK | X_OK) != 0)
    throw std::invalid_argument("-o: the output folder " + f.string() + " is not writable; choose a folder you can write to");
}

// Loaded models stay loaded across the jobs of a batch file that use the same one.
class EngineCache {
 public:
  std::shared_ptr<Engine> get(const ModelSpec& spec) {
    if (engine_ && engine_->spec() == spec) return engine_;
    engine_.reset();  // free the old model before loading the next
    engine_ = Engine::load(spec);
    return engine_;
  }

 private:
  std::shared_ptr<Engine> engine_;
};

struct RunOutcome {
  std::vector<std::string> written;
  bool cancelled = false;
};

// Generates `r` and writes each image as it is decoded: to `files[i]` when given, else
// numbered into `dir`.
RunOutcome run_request(EngineCache& cache, const Request& r, const std::vector<std::string>& files, const std::string& dir,
                       bool overwrite, bool quiet) {
  auto engine = cache.get(model_spec(r));
  ProgressBar bar(stderr, !quiet);
  RunOutcome outcome;
  GenerateHooks hooks;
  hooks.cancelled = [] { return g_interrupted.load(); };
  hooks.on_progress = [&](const Progress& p) {
    bar.update(p.step, p.total, r.batch_count > 1 ? "batch " + std::to_string(p.batch + 1) + "/" + std::to_string(p.batches) : "sampling");
  };
  hooks.on_image = [&](const GeneratedImage& g) {
    const auto png = encode_png(g.image, {{"parameters", g.parameters}, {"sigma-request", to_json(g.reproduce).dump()}});
    const size_t i = outcome.written.size();
    if (i < files.size()) {
      write_file_atomic(files[i], png, overwrite);
      outcome.written.push_back(files[i]);
    } else {
      outcome.written.push_back(write_numbered_png(dir, g.record.seed, png));
    }
  };
  auto result = generate(*engine, r, hooks);
  bar.finish();
  outcome.cancelled = result.cancelled;
  return outcome;
}

int run_generate(const RequestFlags& f, const std::string& from_png, bool overwrite, bool quiet) {
  std::vector<std::string> not_taken;
  Request r = from_png.empty() ? Request{} : request_from_png(from_png, &not_taken);
  for (const auto& w : not_taken) std::fprintf(stderr, "sigma: warning: --from-png %s: not taken: %s\n", from_png.c_str(), w.c_str());
  if (!from_png.empty()) r.output.clear();  // never aim a re-run at the original's file
  f.apply(r);
  precheck(r);
  std::vector<std::string> files;
  std::string dir = r.output.empty() ? "outputs" : r.output;
  const std::string ext = fs::path(dir).extension().string();
  if (!ext.empty() && ext != ".png" && !fs::is_directory(dir))
    throw std::invalid_argument("-o " + dir + ": Sigma Studio writes PNG (it carries the metadata); name the file .png or give a folder");
  if (ext == ".png" && !fs::is_directory(dir)) {
    for (int64_t i = 0; i < r.batch_size * r.batch_count; ++i) {
      files.push_back(numbered_path(dir, i));
      if (!overwrite && fs::exists(files.back()))
        throw std::invalid_argument(files.back() + ": the file exists; choose another name, give a folder, or pass --overwrite");
    }
    if (!fs::path(dir).parent_path().empty() && !fs::is_directory(fs::path(dir).parent_path()))
      throw std::invalid_argument(dir + ": the folder " + fs::path(dir).parent_path().string() + " does not exist");
    check_output_folder(fs::path(dir).parent_path());
  } else {
    check_output_folder(dir);
  }
  EngineCache cache;
  const auto out = run_request(cache, r, files, dir, overwrite, quiet);
  for (const auto& path : out.written) std::printf("%s\n", path.c_str());
  if (out.cancelled) {
    std::fprintf(stderr, "sigma: interrupted: stopped after the current step; no partial image was written\n");
    return kExitInterrupted;
  }
  return 0;
}

int run_batch(const RequestFlags& f, const std::string& jobs_path, const std::string& shard_flag, int64_t shard_count,
              bool quiet) {
  Request defaults;
  f.apply(defaults);
  if (fs::path(defaults.output).has_extension())
    throw std::invalid_argument("sigma batch -o " + defaults.output + ": give a folder; each job writes <jobs>-<line>.png there "
                                "unless its own line names an output file");
  const auto shard = resolve_shard(shard_flag, shard_count, environment());
  const auto all = read_jobs(jobs_path, defaults);
  const auto mine = shard_jobs(all, shard);
  const std::string out_dir = defaults.output.empty() ? "outputs" : defaults.output;
  const std::string stem = fs::path(jobs_path).stem().string();
  std::fprintf(stderr, "sigma batch: %zu jobs in %s, shard %lld/%lld takes %zu\n", all.size(), jobs_path.c_str(),
               static_cast<long long>(shard.index), static_cast<long long>(shard.count), mine.size());
  EngineCache cache;
  int done = 0, skipped = 0, stale = 0;
  std::vector<std::string> failures;
  // A shard killed mid-write (SIGKILL, OOM killer, a preempted node) leaves temporary files
  // beside its outputs; only this shard writes these outputs, so its rerun clears them.
  for (const auto& job : mine)
    if (job.error.empty())
      for (const auto& p : job_outputs(job, out_dir, stem)) stale += remove_stale_temporaries(p);
  if (stale) std::fprintf(stderr, "sigma batch: removed %d temporary file%s left by an interrupted run\n", stale, stale == 1 ? "" : "s");
  for (const auto& job : mine) {
    const std::string where = jobs_path + ":" + std::to_string(job.line);
    if (!job.error.empty()) {
      failures.push_back(where + ": " + job.error);
      continue;
    }
    const auto files = job_outputs(job, out_dir, stem);
    if (std::all_of(files.begin(), files.end(), [](const auto& p) { return fs::exists(p); })) {
      ++skipped;
      continue;
    }
    try {
      precheck(job.request);
      fs::create_directories(fs::path(files.front()).parent_path());
      const auto out = run_request(cache, job.request, files, out_dir, /*overwrite=*/true, quiet);
      if (out.cancelled) {
        std::fprintf(stderr, "sigma batch: interrupted at %s; finished jobs are kept, rerun to resume\n", where.c_str());
        return kExitInterrupted;
      }
      ++done;
      for (const auto& p : out.written) std::printf("%s\n", p.c_str());
    } catch (const std::exception& e) {
      failures.push_back(where + ": " + e.what());
    }
  }
  std::fprintf(stderr, "sigma batch: %d done, %d skipped (output exists), %zu failed, of %zu jobs in shard %lld/%lld\n", done,
               skipped, failures.size(), mine.size(), static_cast<long long>(shard.index), static_cast<long long>(shard.count));
  for (const auto& f2 : failures) std::fprintf(stderr, "  failed %s\n", f2.c_str());
  return failures.empty() ? 0 : 1;
}

}  // namespace

void register_generate(CLI::App& app, CliState& state) {
  auto flags = std::make_shared<RequestFlags>();
  auto opts = std::make_shared<std::tuple<std::string, bool, bool>>();  // from-png, overwrite, quiet
  auto* gen = app.add_subcommand("generate", "text-to-image, image-to-image, inpainting and ControlNet generation");
  flags->add_all(gen);
  gen->add_option("--from-png", std::get<0>(*opts), "re-run the settings stored in a PNG (ours or AUTOMATIC1111's); other flags override");
  gen->add_flag("--overwrite", std::get<1>(*opts), "replace an existing output file");
  gen->add_flag("-q,--quiet", std::get<2>(*opts), "no progress bar");
  gen->callback([flags, opts, &state] {
    state.exit_code = run_generate(*flags, std::get<0>(*opts), std::get<1>(*opts), std::get<2>(*opts));
  });

  auto bflags = std::make_shared<RequestFlags>();
  auto bopts = std::make_shared<std::tuple<std::string, std::string, int64_t, bool>>();
  auto* batch = app.add_subcommand("batch", "run a JSON-lines job file (one request per line, keys = long flag names)");
  batch->add_option("jobs", std::get<0>(*bopts), "the .jsonl job file")->required();
  batch->add_option("--shard", std::get<1>(*bopts), "take every n-th job starting at i (0-based), as i/n; "
                                                   "default from SLURM_ARRAY_TASK_ID/COUNT or JOB_COMPLETION_INDEX");
  batch->add_option("--shard-count", std::get<2>(*bopts), "shard count for Kubernetes indexed Jobs (or SIGMA_SHARD_COUNT)");
  batch->add_flag("-q,--quiet", std::get<3>(*bopts), "no progress bar");
  bflags->add_all(batch);
  batch->get_option("--output")->description("folder for the jobs' images, <jobs>-<line>.png, unless a line names its own (default: outputs/)");
  batch->footer("Each line's keys override these flags, which override the defaults. A job whose output files exist is "
                "skipped (resume); a bad line fails alone. Exit status 1 if any job failed.");
  batch->callback([bflags, bopts, &state] {
    state.exit_code = run_batch(*bflags, std::get<0>(*bopts), std::get<1>(*bopts), std::get<2>(*bopts), std::get<3>(*bopts));
  });
}

}  // namespace sigma::app
