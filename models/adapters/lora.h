// Adapter files (LoRA and its LyCORIS relatives) and the patcher that merges them into a
// loaded model for one request and takes them out again, bit for bit (DESIGN.md:
// "Adapters are patches held apart from the model", ComfyUI's ModelPatcher).
//
// Every format is a key map (the file's module name -> a canonical weight name of the
// model: LDM names for the UNet, Hugging Face CLIP names for text encoders) plus a delta
// formula, computed in float32 (ComfyUI comfy/weight_adapter/, A1111's Lora extension):
//   kohya LoRA / LoCon  `<m>.lora_down.weight`, `.lora_up.weight`, `.alpha` (+ `.lora_mid.weight`, Tucker)
//                        ΔW = (alpha/r)·up.flatten(1) @ down.flatten(1), r = down.shape[0]
//   LyCORIS LoHa        `<m>.hada_w1_a/_b`, `.hada_w2_a/_b` (+ `.hada_t1/_t2`), `.alpha`
//                        ΔW = (alpha/r)·(w1_a@w1_b)⊙(w2_a@w2_b), r = w1_b.shape[0]
//   LyCORIS LoKr        `<m>.lokr_w1` or `_w1_a/_b`, `.lokr_w2` or `_w2_a/_b` (+ `.lokr_t2`), `.alpha`
//                        ΔW = s·kron(w1, w2), s = alpha/r only when a factor is low-rank, else 1
//   diffusers / PEFT    `unet.<m>.lora_A.weight` / `.lora_B.weight` (or `.lora.down/.up.weight`),
//                        `text_encoder.<m>`, `text_encoder_2.<m>`; no alpha: ΔW = B@A
//   full difference     `<m>.diff` (LyCORIS "full"): ΔW = diff
// and the merged weight is W + strength·ΔW, reshaped to W.
#pragma once

#include <torch/torch.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "models/io/weights.h"
#include "models/runtime/weight_patches.h"

namespace sigma::models {

// Everything wrong with an adapter file or its fit to the model; what() names the file.
struct AdapterError : ModelLoadError {
  using ModelLoadError::ModelLoadError;
};

// The components an adapter can patch, by the names adapter files use for them.
inline const std::string kUnet = "unet";
inline const std::string kTextEncoder = "text_encoder";     // SD 1.x/2.x's text encoder; SDXL's CLIP-L (te1)
inline const std::string kTextEncoder2 = "text_encoder_2";  // SDXL's OpenCLIP bigG (te2)
// The component of the family's text encoder i (its order in FamilyDescription::text_encoders).
inline const std::string& text_encoder_component(size_t i) { return i == 0 ? kTextEncoder : kTextEncoder2; }

// What a model offers adapters: per component, each weight's canonical name and shape.
struct AdapterTarget {
  std::map<std::string, std::vector<int64_t>> weights;
  // Known weights the model does not run (e.g. Checkpoint::text_encoder_ignored: SD 2.x's
  // last text layer): modules aimed at them are dropped silently instead of reported.
  std::set<std::string> skipped;
};
struct AdapterModel {
  std::string family;  // models::to_string(Family), e.g. "Stable Diffusion 1.x"; used in errors
  std::map<std::string, AdapterTarget> components;  // kUnet, kTextEncoder, kTextEncoder2
};
AdapterTarget adapter_target(const torch::nn::Module& module);  // its named parameters
AdapterTarget adapter_target(const TensorIndex& index);         // a checkpoint component, before loading

enum class AdapterKind { LoRA, LoHa, LoKr, Diff };
std::string to_string(AdapterKind kind);

// One module of an adapter file, resolved to the weight it changes.
struct AdapterModule {
  std::string source;     // module name in the file: "lora_unet_down_blocks_0_attentions_0_proj_in"
  std::string component;  // kUnet, kTextEncoder, kTextEncoder2
  std::string target;     // canonical weight name: "input_blocks.1.1.proj_in.weight"
  // rows > 0: the delta lands on rows [row_offset, row_offset + rows) of the target (a
  // diffusers/PEFT LoRA on Flux's to_q, to_k, to_v, proj_mlp, fused in BFL's qkv and linear1).
  int64_t row_offset = 0, rows = 0;
  AdapterKind kind = AdapterKind::LoRA;
  // Factors as stored (CPU, file dtype), by role: up, down, mid (LoRA); w1_a, w1_b, w2_a,
  // w2_b, t1, t2 (LoHa); w1, w1_a, w1_b, w2, w2_a, w2_b, t2 (LoKr); diff.
  std::map<std::string, torch::Tensor> factors;
  double scale = 1.0;                // alpha / rank, where the format says so
  std::vector<int64_t> delta_shape;  // what the formula yields, before the reshape to the weight
  // scale·ΔW in float32 on `device`, reshaped to `weight_shape` (strength not applied).
  torch::Tensor delta(const std::vector<int64_t>& weight_shape, torch::Device device) const;
  // weight += strength·scale·ΔW for a float32 weight; a plain LoRA goes through addmm_ in
  // place, without materialising ΔW (most of the merge time of a full-size model).
  void add_to(torch::Tensor& weight, double strength) const;
};

struct Adapter {
  std::string path;
  std::string format;                   // e.g. "kohya LoRA", "kohya LoRA + LoCon", "LyCORIS LoHa", "diffusers/PEFT LoRA"
  std::vector<AdapterModule> modules;   // sorted by source name
  std::vector<std::string> skipped;     // modules aimed at weights the model does not run
  std::vector<std::string> unmatched;   // only with AdapterOptions::allow_unmatched
  std::map<std::string, std::string> metadata;
};

struct AdapterOptions {
  // A key that matches no weight is an error by default (named in it); true keeps going
  // and lists them in Adapter::unmatched (A1111 and ComfyUI only warn).
  bool allow_unmatched = false;
};

// Reads a safetensors adapter file; its keys decide the format. Throws AdapterError: pickle
// files (.pt/.ckpt/.bin: convert to safetensors), keys matching no weight (named), an adapter
// for another model family ("this LoRA is for SDXL, the model is Stable Diffusion 1.x"),
// a delta whose shape does not fit its weight (key and both shapes named), malformed modules.
std::shared_ptr<const Adapter> load_adapter(const std::string& path, const AdapterModel& model,
                                            const AdapterOptions& options = {});

// The file-side names every canonical weight answers to (module names, no `.weight`): for the
// UNet `lora_unet_<LDM path with _>` (SDXL's kohya spelling), `lora_unet_<diffusers path with
// _>` (SD 1.x/2.x's), `unet.<diffusers path>` (PEFT); for text encoders `lora_te_`/`lora_te1_`
// (text_encoder) or `lora_te2_` + the HF path with _, and `text_encoder[_2].<HF path>`.
// Value: (component, canonical weight name).
std::map<std::string, std::pair<std::string, std::string>> adapter_key_map(const AdapterModel& model);
// Flux's diffusers/PEFT module names (`transformer.<diffusers path>`) on a BFL-named model:
// each to its BFL weight and, for the parts of a fused weight, the rows it covers
// (models/io/keymaps.h's flux_module_map; rows from the fused weight's shape).
struct SliceTarget {
  std::string component, target;
  int64_t row_offset = 0, rows = 0;  // rows 0: the whole weight
  bool swap_halves = false;          // norm_out.linear: diffusers' (scale, shift) rows are BFL's (shift, scale)
};
std::map<std::string, SliceTarget> flux_diffusers_key_map(const AdapterModel& model);

// ---- Patching ----------------------------------------------------------------------

// One weight change: a module of an adapter (kept alive by `adapter`) at a strength.
struct Patch {
  std::shared_ptr<const Adapter> adapter;
  const AdapterModule* module = nullptr;
  double strength = 1.0;
  bool operator==(const Patch& o) const {
    return adapter == o.adapter && module == o.module && strength == o.strength;
  }
};
using PatchSet = std::vector<Patch>;

// An adapter's patches at A1111's two strengths (<lora:name:unet:text>): the UNet's at
// `unet_strength`, both text encoders' at `text_strength`. Strength-0 parts are left out,
// so strength 0 is the base model exactly. Concatenate the sets of several adapters.
PatchSet adapter_patches(const std::shared_ptr<const Adapter>& adapter, double unet_strength, double text_strength);

// Merges a PatchSet into live modules and takes it out again. The modules stay the
// caller's (the engine's); only the touched tensors are backed up (same device and dtype),
// and restore() copies them back, so the base weights return bit for bit. A weight kept in
// fp8 is not merged into: it gets the deltas (factors in float32 on its device) and adds them
// as each call dequantizes it (models/runtime/weight_patches.h); restore() takes them off. Not thread-safe:
// apply and restore on the thread that runs the model, and restore before moving a module
// to another device or dtype (the backups hold the parameters of the time of apply).
class ModelPatcher {
 public:
  void add_component(const std::string& name, std::shared_ptr<torch::nn::Module> module);
  // Makes `patches` the applied set: nothing happens when it already is (returns false);
  // otherwise restores, then merges each weight's deltas in float32 and casts back to the
  // weight's dtype on its device (returns true). Everything is checked before any weight
  // changes; on an error the base model is left in place.
  bool apply(const PatchSet& patches);
  void restore();
  const PatchSet& applied() const { return applied_; }
  size_t backed_up() const { return backups_.size(); }  // tensors changed by the applied set
  // Weights patched on the fly by the applied set (fp8 weights: models/runtime/weight_patches.h).
  // Their deltas are added per call, so a CUDA graph captured without them is stale.
  size_t patched_on_the_fly() const { return on_the_fly_.size(); }

 private:
  struct Backup {
    torch::Tensor live, base;  // the module's parameter, and its copy from before the merge
  };
  struct OnTheFly {
    std::shared_ptr<torch::nn::Module> module;  // keeps `weight` alive
    PatchedOnTheFly* weight = nullptr;
  };
  std::map<std::string, std::shared_ptr<torch::nn::Module>> components_;
  std::vector<Backup> backups_;
  std::vector<OnTheFly> on_the_fly_;
  PatchSet applied_;
};

}  // namespace sigma::models
