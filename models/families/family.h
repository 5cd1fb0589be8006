// What a model family is, as data (DESIGN.md: "A family is a description, not a branch";
// ComfyUI's supported_models.py is the anchor): which text encoders and how each is read,
// the additional embedding, the VAE scale, the native size, the default prediction and
// the UNet's attention-head rule. The loader detects the family once, from the tensors,
// copies its description into the Checkpoint and fills in the sizes that shapes give;
// the UNet, the conditioning and the pipeline read that copy. No LibTorch here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sigma::models {

enum class Family { SD1, SD2, SDXL, Flux };
std::string to_string(Family f);

// The network of a text encoder: CLIP's transformer (with CLIP's BPE tokenizer) or T5's
// encoder (with T5's SentencePiece tokenizer).
enum class TextNetwork { Clip, T5 };

// One text encoder of a family, in the order their hidden states are concatenated.
struct TextEncoderRole {
  std::string component;     // Checkpoint field / diffusers folder: "text_encoder", "text_encoder_2"
  std::string tokenizer;     // diffusers tokenizer folder: "tokenizer", "tokenizer_2"
  std::string kind;          // for humans: "CLIP-L", "OpenCLIP-H", "OpenCLIP-bigG", "T5-XXL"
  std::string single_file_prefix;  // its keys in an original single file (ComfyUI's all-in-one file for Flux)
  TextNetwork network = TextNetwork::Clip;
  std::string flag;          // the flag that names its own file, where the family's files come apart ("--clip_l")
  bool context = true;       // its hidden state is (part of) the network's token context
  // T5: the prompt's tokens padded with <pad> to at least min_tokens and cut at max_tokens
  // (</s> kept last); Flux attends to the padding, so the length changes the picture.
  int64_t min_tokens = 0, max_tokens = 0;
  bool openclip_names = false;     // stored in OpenCLIP names there (renamed to Hugging Face names on load)
  int64_t clip_skip = 1;     // hidden state read from the loaded layers: 1 last, 2 penultimate
                             // (a request's clip skip k reads clip_skip + k - 1)
  bool final_norm = true;    // final LayerNorm applied to that hidden state
  bool pooled = false;       // also gives the pooled vector: final-normed end-token state · text_projection
  bool quick_gelu = true;    // OpenAI CLIP: quick_gelu; OpenCLIP: exact gelu
  int pad_id = -1;           // tokenizer padding when no tokenizer_config.json says: -1 end token, 0 "!"
  bool single_file_unused_last_layer = false;  // single files carry a last block that is never run (SD 2.x): dropped on load
};

// The denoising network of a family (models/diffusion/): a UNet or the Flux transformer.
enum class DiffusionNetwork { UNet, Flux };

// What a user gets when the request leaves them out (Request: steps 0, cfg < 0, sampler and
// scheduler empty): each family's usual settings in ComfyUI's and Forge's presets.
struct SamplingDefaults {
  int64_t steps = 20;
  int64_t steps_distilled = 0;    // a guidance-distilled few-step variant (Flux schnell: 4), 0 = none
  double cfg = 7.0;
  std::string sampler = "dpmpp_2m", scheduler = "karras";
};

struct FamilyDescription {
  Family family = Family::SD1;
  DiffusionNetwork network = DiffusionNetwork::UNet;
  SamplingDefaults defaults;
  std::vector<TextEncoderRole> text_encoders;
  // Cross-attention context: the encoders' hidden states concatenated on the feature axis.
  int64_t context_dim = 768;
  // SDXL's additional embedding (label_emb, added to the time embedding), fed
  // y = [pooled, Fourier features of each micro-conditioning number]; 0 = none.
  int64_t adm_in_channels = 0;
  int64_t pooled_dim = 0;         // width of the pooled text vector in y
  int64_t micro_conditioning = 0; // numbers in time_ids: (original h, w, crop top, left, target h, w)
  int64_t fourier_dim = 0;        // sinusoidal width per number (SDXL: 256)
  double vae_scale = 0.18215;     // latents = (z - vae_shift) · vae_scale (models/vae/latent_format.h)
  double vae_shift = 0.0;         // 0 for the SD families' KL-VAEs (Flux: 0.1159)
  int64_t size_multiple = 8;      // canvas sizes: the VAE's factor x the network's patch (Flux: 8 x 2)
  bool vae_fp16_upcast = false;   // the VAE overflows float16 (SDXL): run it in float32 then (diffusers' force_upcast)
  // Latent -> RGB factors for live previews, [channels x 3] row-major, least squares over
  // decoded images (ComfyUI's latent_formats; bias terms left out).
  std::vector<float> latent_rgb;
  int64_t native_size = 512;      // default canvas
  int64_t native_size_v = 0;      // the canvas of the family's v-prediction models when it differs (SD 2.x-768)
  std::string default_prediction = "eps";  // of single files; diffusers folders say so in scheduler/ ("flow": the flow transformers)
  // Which of NVIDIA's Align Your Steps lists fits its σ range ("SD1", "SDXL"; "": none).
  std::string align_your_steps = "SD1";
  // What only the family's UNet needs (a transformer family fills its own network's rules):
  // attention heads of a fixed count (SD 1.x: 8) or a fixed width (SD 2.x, SDXL: 64).
  struct UNetRules {
    int64_t num_heads = 8, head_dim = -1;
  } unet;
  // The sizes its users pick (A1111's and ComfyUI's resolution menus for the family), for the
  // GUI's size menu; the model's own native size is offered besides.
  struct SizePreset {
    int width, height;
    std::string label;
  };
  std::vector<SizePreset> size_presets;

  bool has_additional_embedding() const { return adm_in_channels > 0; }
  bool is_unet() const { return network == DiffusionNetwork::UNet; }
  std::string describe() const;   // one line for `sigma info`
};

// The family's published configuration (real sizes: SDXL context 2048, adm 2816, ...);
// open_checkpoint overwrites the sizes with what the tensors say.
const FamilyDescription& family_description(Family f);

}  // namespace sigma::models
