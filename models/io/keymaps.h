// The names weights have in the layouts people save them in, renamed to the canonical names
// our modules use (LDM names for UNet, VAE and ControlNet; Hugging Face names for CLIP). One
// table per format; where both directions are needed (a diffusers-named LoRA on our LDM-named
// UNet), the same table is read backwards. Each function takes one component's index (prefix
// already stripped).
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "models/io/weights.h"

namespace sigma::models {

// The UNet's (and a ControlNet's) two spellings: diffusers' down_blocks / resnets / attentions /
// mid_block / up_blocks and LDM's input_blocks / middle_block / output_blocks. One row per block,
// built from the network's shape (levels, ResBlocks per level, which levels have attention),
// which either spelling's names tell; a name is renamed by its longest matching block prefix,
// and inside a ResBlock by the ResnetBlock2D table (norm1 = in_layers.0, ...).
class UnetKeyMap {
 public:
  struct Shape {
    int num_res_blocks = 2;
    std::vector<bool> down_attention, up_attention;  // per level
    int zero_convs = 0, hint_blocks = 0;             // a ControlNet's
  };
  explicit UnetKeyMap(const Shape& shape);
  static UnetKeyMap from_diffusers(const std::vector<std::string>& names);
  static UnetKeyMap from_ldm(const std::vector<std::string>& names);
  // "" for a name outside the table.
  std::string to_ldm(const std::string& diffusers_name) const;
  std::string to_diffusers(const std::string& ldm_name) const;

 private:
  struct Row {
    std::string diffusers, ldm;
    bool resnet = false;  // the rest of the name is renamed by the ResBlock table
  };
  std::string translate(const std::string& name, bool to_ldm) const;
  std::vector<Row> rows_;
};

TensorIndex unet_from_diffusers(const TensorIndex& diffusers);
TensorIndex vae_from_diffusers(const TensorIndex& diffusers);
// Also renames the hint encoder and zero convs (controlnet_cond_embedding, controlnet_down_blocks).
TensorIndex controlnet_from_diffusers(const TensorIndex& diffusers);

bool looks_like_diffusers_unet(const TensorIndex& index);
bool looks_like_diffusers_vae(const TensorIndex& index);

// OpenCLIP's text tower (SD 2.x, SDXL's second encoder, as stored in original single files) in
// Hugging Face CLIP names; q/k/v come stacked in in_proj and are split here. with_projection:
// `text_projection` (stored for x @ P) becomes CLIPTextModelWithProjection's
// `text_projection.weight` = Pᵀ. Names with no role in conditioning go to `ignored`.
TensorIndex clip_from_openclip(const TensorIndex& openclip, std::vector<std::string>& ignored, bool with_projection);

// Flux (models/io/keymaps_flux.cpp): each BFL module and the diffusers modules it fuses, in
// row order ([q; k; v], single blocks' [q; k; v; mlp]); `swap_halves`: the final modulation,
// (shift, scale) in BFL and (scale, shift) in diffusers; `norm`: an RMS norm, BFL `.scale`,
// diffusers `.weight`.
struct FluxModuleMap {
  std::string bfl;
  std::vector<std::string> diffusers;
  bool swap_halves = false;
  bool norm = false;
};
std::vector<FluxModuleMap> flux_module_map(int64_t depth, int64_t depth_single);
// Block counts of a diffusers-named Flux transformer (or LoRA) from its names.
int64_t flux_double_depth(const TensorIndex& diffusers);
int64_t flux_single_depth(const TensorIndex& diffusers);
bool looks_like_diffusers_flux(const TensorIndex& index);
// A diffusers FluxTransformer2DModel in BFL names: fused weights concatenated in memory once;
// names outside the table go to `unused`.
TensorIndex flux_from_diffusers(const TensorIndex& diffusers, std::vector<std::string>& unused);

}  // namespace sigma::models
