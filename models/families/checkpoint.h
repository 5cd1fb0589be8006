// Opening a checkpoint in any supported layout: detects the layout and the model family from
// the tensors, maps every weight to its component under the canonical names, and infers each
// network's configuration from tensor shapes (a config file, where the layout has one, only
// fills in what shapes cannot tell). SD 1.x/2.x/SDXL here; Flux's layouts (a transformer file
// with separate encoders, ComfyUI's all-in-one file, diffusers folders) in flux_layouts.cpp.
#pragma once

#include <nlohmann/json.hpp>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "models/diffusion/dit/flux.h"
#include "models/diffusion/unet/unet.h"
#include "models/families/family.h"
#include "models/io/weights.h"
#include "models/text/clip_text.h"
#include "models/text/t5_encoder.h"
#include "models/vae/autoencoder_kl.h"

namespace sigma::models {

enum class Layout { SingleFile, Diffusers };
std::string to_string(Layout l);

// One text encoder of the family (description.text_encoders[i], in that order).
struct TextEncoderFiles {
  // Hugging Face names; `text_projection.weight` too for a CLIPTextModelWithProjection (SDXL's
  // OpenCLIP-bigG).
  TensorIndex weights;
  ClipTextConfig config;      // a CLIP's sizes (TextNetwork::Clip)
  T5Config t5_config;         // a T5's (TextNetwork::T5)
  std::string tokenizer_dir;  // the diffusers tokenizer folder (tokenizer/, tokenizer_2/), else empty
  std::string file;           // where its weights are, when that is not the checkpoint itself
};

// The separate files of a model that comes apart (Flux: stable-diffusion.cpp's --clip_l,
// --t5xxl, --vae beside --diffusion-model); empty: from the checkpoint, or found by name.
struct ComponentFiles {
  std::string clip_l, t5xxl, vae;
  std::string models_root;  // a ComfyUI-style models folder to look in (text_encoders/, clip/, vae/)
  bool empty() const { return clip_l.empty() && t5xxl.empty() && vae.empty(); }
};

struct Checkpoint {
  std::string path;
  Layout layout = Layout::SingleFile;
  Family family = Family::SD1;
  FamilyDescription description = family_description(Family::SD1);  // of `family`, sizes from the tensors
  TensorIndex unet, vae;  // canonical names: LDM's
  TensorIndex transformer;              // the flow transformer of a Flux checkpoint, BFL's names
  std::string vae_file;                 // the VAE's own file, when it is not in the checkpoint (Flux's ae.safetensors)
  std::vector<TextEncoderFiles> text_encoders;     // one per description.text_encoders
  std::vector<std::string> text_encoder_ignored;  // known, deliberately unused (position_ids, unused last layer)
  std::vector<std::string> unused;      // keys that belong to no component we run
  std::vector<std::string> ignored;     // known extras (noise schedule buffers, EMA copies)
  std::vector<double> alphas_cumprod;   // the training schedule when the file carries it
  std::string prediction = "eps";       // "eps", "v", or "flow" (our own models say so in metadata)
  bool zero_terminal_snr = false;       // v-prediction SDXL files with a `ztsnr` key (ComfyUI's rule)
  std::map<std::string, std::string> metadata;  // the single file's __metadata__ (e.g. sigma.* keys of our own models)
  UNetConfig unet_config;
  FluxConfig flux_config;
  VaeConfig vae_config;
  std::vector<std::string> notes;       // what the loader chose by itself (companion files found by name), to tell the user
  int64_t default_clip_skip = 1;        // SD 2.x reads the penultimate layer
};

// Throws ModelLoadError (or SafetensorsError) naming the path and the fix. `parts` name the
// separate files of a family that comes apart (only Flux does; anything else refuses them).
Checkpoint open_checkpoint(const std::string& path, const ComponentFiles& parts = {});

// A standalone VAE file (LDM `encoder.*`/`decoder.*`, optionally under first_stage_model.,
// or diffusers names) for --vae.
TensorIndex open_vae_file(const std::string& path);

// The family of a single file from its keys (the whole file, prefixes included), or of a
// diffusers folder from its configs (unet/config.json, text_encoder/config.json) and whether
// it has text_encoder_2/. Throws ModelLoadError for what is recognizably another model
// (SDXL refiner, an SGM model without the base's two encoders), naming what it is.
Family detect_single_file_family(const TensorIndex& file, const std::string& path);
Family detect_diffusers_family(const nlohmann::json& unet_config, const nlohmann::json& text_encoder_config,
                               bool has_text_encoder, bool has_text_encoder_2, const std::string& path);

// Configuration from tensor shapes (canonical names). Family decides what shapes cannot:
// SD 1.x uses 8 attention heads, SD 2.x and SDXL heads of width 64.
UNetConfig infer_unet_config(const TensorIndex& unet, Family family, const std::string& what);
VaeConfig infer_vae_config(const TensorIndex& vae, const std::string& what);
// Encoder `role` of the family's description (0 = first): its activation.
ClipTextConfig infer_clip_config(const TensorIndex& clip, Family family, const std::string& what, size_t role = 0);
// T5's sizes (Hugging Face names): width and vocabulary from `shared`, heads and buckets from
// the relative bias, the head width from q, the feed-forward width from wi_0, the block count.
T5Config infer_t5_config(const TensorIndex& t5, const std::string& what);
// Flux's sizes (BFL names); dev vs schnell from guidance_in. BFL files carry no RoPE split:
// Flux.1's is (16, 56, 56) of a 128-wide head; another head width keeps the first (time) axis
// at a quarter of the head up to 16 and splits the rest evenly between the two image axes.
FluxConfig infer_flux_config(const TensorIndex& transformer, const std::string& what);

// diffusers' `attention_head_dim` (for SD 1.x/2.x the number of heads: one number, or one
// per level as SD 2.x writes it) applied to a UNet configuration; no key, no change.
void apply_diffusers_heads(UNetConfig& config, const nlohmann::json& diffusers_config);

// Small helpers shared by the loaders.
bool has_prefix(const TensorIndex& index, const std::string& prefix);
nlohmann::json read_json_file(const std::string& path);

}  // namespace sigma::models
