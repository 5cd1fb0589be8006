// Textual inversion at the model level: A1111/ComfyUI embedding files (safetensors) read
// into token vectors for the text encoder(s), checked against the model's widths, and the
// token-level placeholder expansion. The prompt side (finding the word, chunking) is the
// app's; the vectors reach the encoder per call through
// ClipTextModelImpl::forward_with_extra_tokens, so the loaded model stays unchanged.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "models/io/weights.h"

namespace sigma::models {

struct EmbeddingError : ModelLoadError {
  using ModelLoadError::ModelLoadError;
};

// The text encoders an embedding must fit.
struct EmbeddingModel {
  std::string family;           // models::to_string(Family), e.g. "Stable Diffusion 1.x"; used in errors
  std::vector<int64_t> widths;  // each text encoder's, in the family's order (SD 1.x 768, SD 2.x 1024; SDXL 768, 1280)
};

struct TextualInversion {
  std::string name;       // the file's stem: the word prompts use (A1111, ComfyUI)
  std::string path;
  // One set per text encoder, in the family's order: [n, width] float32 on the CPU
  // (`emb_params`, `string_to_param.*` or a single tensor; SDXL files: `clip_l`, then `clip_g`).
  std::vector<torch::Tensor> vectors;
  int64_t count() const { return vectors.front().size(0); }
};

// Reads an embedding: `emb_params` (A1111), `clip_l` + `clip_g` (SDXL), `string_to_param.*`,
// or a file with a single tensor; [width] is read as one vector. Throws EmbeddingError for
// pickle files (.pt/.bin: convert to safetensors), unknown layouts, and vectors that do not
// fit the model (naming the file, both widths and the family the file is for).
TextualInversion load_embedding(const std::string& path, const EmbeddingModel& model);

// Replaces every occurrence of `word` (the token ids the tokenizer gives the embedding's
// name) in `ids` by the ids first_id .. first_id+count-1 (the rows of the extra table passed
// to forward_with_extra_tokens, i.e. first_id = vocab size + the row offset).
std::vector<int> expand_embedding(const std::vector<int>& ids, const std::vector<int>& word, int first_id, int64_t count);

}  // namespace sigma::models
