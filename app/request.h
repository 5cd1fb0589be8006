// One generation, fully described: what the CLI flags set, what a job-file line
// holds, what the GUI edits, and what PNG metadata records. Defaults live here and
// nowhere else (DESIGN.md habit 6). No LibTorch in this header: the GUI includes it.
#pragma once

#include <nlohmann/json.hpp>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace sigma::app {

struct ControlUnit {
  std::string model;                // ControlNet file or diffusers folder
  std::string image;                // condition image (before preprocessing)
  std::string preprocessor = "none";
  double strength = 1.0;            // residual multiplier ("control weight")
  double start = 0.0, end = 1.0;    // fraction of the sampling run (by step) where it acts
  std::string resize = "crop";      // crop | fit | stretch to the generation size
  std::map<std::string, double> params;  // preprocessor parameters (canny: low, high)
  bool operator==(const ControlUnit&) const = default;
};

// A LoRA (or LyCORIS) file of a request, besides the prompt's <lora:...> tags (app/adapters.h).
struct LoraRef {
  std::string name;         // file stem in the LoRA folder (subfolders searched), or a path to a .safetensors
  double unet = 1.0;        // UNet strength
  double text = 1.0;        // text-encoder strength
  bool operator==(const LoraRef&) const = default;
};

struct Request {
  // model
  std::string model;                // empty: the bundled default model (or --diffusion-model's)
  // A model that comes apart (Flux), stable-diffusion.cpp's flags: the transformer file instead
  // of -m, its text encoders and (as for any model) --vae; empty: inside the checkpoint, or found
  // by name beside it and in the models root's text_encoders/, clip/ and vae/ folders.
  std::string diffusion_model, clip_l, t5xxl;
  std::string tokenizer;            // empty: the checkpoint's own, or beside it
  std::string t5_tokenizer;         // T5's spiece.model; empty: the diffusers folder's, else the bundled one
  std::string vae;                  // empty: the checkpoint's VAE
  std::string prediction;           // empty: from the checkpoint; "eps" | "v" | "flow" override
  // text
  std::string prompt;
  std::string negative;
  std::string emphasis = "original";  // original (A1111) | no-norm | none (brackets are plain text)
  int64_t clip_skip = 1;
  // canvas and sampling
  int64_t width = 0, height = 0;    // 0: the model's native size
  // SDXL's micro-conditioning (time ids): original size (0: the canvas), crop top-left, target size (0: the canvas)
  int64_t original_width = 0, original_height = 0;
  int64_t crop_top = 0, crop_left = 0;
  int64_t target_width = 0, target_height = 0;
  // 0 steps, a negative cfg, an empty sampler or scheduler: the model family's defaults
  // (SD: 20, 7, dpmpp_2m, karras; Flux: 28 (schnell 4), 1, euler, simple), resolved with the model.
  int64_t steps = 0;
  double cfg = -1;
  double guidance = 3.5;            // Flux dev's distilled guidance (guidance_in; Forge: "Distilled CFG Scale")
  double cfg_rescale = 0.0;         // φ of Lin et al. 2023
  double cfg_sigma_low = 0.0, cfg_sigma_high = 0.0;  // guidance interval in σ; high 0 = everywhere
  std::string sampler;
  std::string scheduler;
  std::vector<double> sigmas;       // scheduler "custom": the σ list itself, descending, ending where sampling stops
  double eta = -1;                  // < 0: the solver's default
  int64_t seed = -1;                // -1: random, recorded in the output
  // comfy: ComfyUI's KSampler rule (one draw of the batch shape; in-run noise from a fresh
  // generator seeded again, or a Brownian tree for the SDE samplers); batch: the same first
  // draw, in-run noise continuing its generator (this project's rule before comfy); per-image:
  // image i drawn alone from seed + i (A1111).
  std::string seed_mode = "comfy";
  int64_t batch_size = 1, batch_count = 1;
  // image-to-image and inpainting
  std::string init_image;
  double strength = 0.75;           // denoising strength for img2img
  std::string mask;                 // white = repaint
  int64_t mask_blur = 4;
  std::vector<ControlUnit> controlnets;
  // adapters (app/adapters.h): LoRAs besides the prompt's <lora:name:w> tags, and the folders
  // names are looked up in; empty folders: <models root>/loras and <models root>/embeddings.
  std::vector<LoraRef> lora;
  std::string lora_dir, embeddings_dir;
  // Folders every file the request names must really lie in (after symlinks): the server sets
  // its models root (and --allowed-roots); empty, as on the CLI and in the GUI: anywhere.
  // Policy, not part of the picture: not in the JSON form.
  std::vector<std::string> confine_to;
  // where it goes and how it runs
  std::string output;               // file or folder; empty: outputs/
  std::string device = "auto";      // auto | cpu | cuda
  std::string dtype = "auto";       // auto | fp32 | fp16 | bf16
  bool vae_tiling = false;
  bool lowvram = false;             // CUDA: weights in host memory, visiting the GPU while used (slower, ~1 GB for SD 1.5)          // VAE in tiles (the same picture, bounded memory); also chosen when it would not fit
  bool operator==(const Request&) const = default;
};

// JSON with the CLI's long flag names as keys ("batch-size", "control-net": [...]).
nlohmann::json to_json(const Request& r);
// Unknown keys and wrong types are errors that name the key; aliases (cfg-scale,
// sampling-method, negative-prompt, snake_case forms) are accepted.
Request request_from_json(const nlohmann::json& j);
void merge_json(Request& r, const nlohmann::json& j);  // overrides only the keys present

// "name" or "name:0.8" (--lora FILE[:W], a job file's string form); throws naming the flag.
LoraRef parse_lora_ref(const std::string& text);
// `text` read whole as a number (std::stod's syntax, nothing left over), else nullopt: a
// LoRA strength, in --lora and in prompt tags alike.
std::optional<double> parse_number(const std::string& text);

// Checks that need no model: sizes, ranges, names. Throws std::invalid_argument naming the flag.
void validate(const Request& r);

}  // namespace sigma::app
