// Prompt text -> the UNet's cross-attention context, as AUTOMATIC1111 builds it:
// 75-token chunks encoded separately and concatenated, emphasis weights applied to the
// token states with the chunk's mean restored; the negative prompt padded to as many
// chunks as the positive one. Families with several text encoders (SDXL) run every step
// for each encoder with its own tokenizer and concatenate the states on the feature axis;
// the pooled vector is the first chunk's (as A1111), and the UNet's additional embedding
// input y = [pooled, Fourier(time ids)] is built from the request's micro-conditioning.
#pragma once

#include <torch/torch.h>

#include <array>
#include <string>

#include "app/engine.h"
#include "app/prompt.h"

namespace sigma::app {

struct Conditioning {
  torch::Tensor cond, uncond;  // [1, 77·chunks, context width], on the engine's device and dtype
  torch::Tensor pooled_cond, pooled_uncond;  // [1, pooled width] (SDXL), else undefined
  torch::Tensor y_cond, y_uncond;            // [1, adm] the UNet's label_emb input (SDXL), else undefined
  int chunks = 1;
};

// emphasis: "original" (scale, then restore the mean), "no-norm" (scale only), "none" (plain text).
// Text encoder `encoder` of the family, read at its layer (the request's clip skip counts from
// it); `pooled`, when given and the encoder has one, receives the first chunk's pooled vector;
// `extra`: textual-inversion vectors [n, width] for the ids from the vocabulary size on.
torch::Tensor encode_chunks(Engine& engine, const PromptChunks& chunks, int64_t clip_skip, const std::string& emphasis,
                            size_t encoder = 0, torch::Tensor* pooled = nullptr, const torch::Tensor& extra = {});

// Textual-inversion vectors at the token level (app/adapters.h finds them): tokenize_prompt's
// placeholders, and per text encoder (the family's order) the table their ids read.
struct TokenEmbeddings {
  std::vector<PromptEmbedding> tokens;
  std::vector<torch::Tensor> extra;  // [n, width of that encoder]; empty: no embeddings
};
// The prompts as tokens (app/prompt.h, tokenized with the emphasis setting), chunked for each encoder.
Conditioning encode_prompts(Engine& engine, const PromptTokens& prompt, const PromptTokens& negative, int64_t clip_skip,
                            const std::string& emphasis, const TokenEmbeddings* embeddings = nullptr);
// The same from plain prompt texts (no extra-network tags), tokenized here.
Conditioning encode_prompts(Engine& engine, const std::string& prompt, const std::string& negative, int64_t clip_skip,
                            const std::string& emphasis, const TokenEmbeddings* embeddings = nullptr);

// SDXL's micro-conditioning of a resolved request: (original h, w, crop top, left, target h, w),
// original and target defaulting to the canvas, crop to 0, 0.
std::array<double, 6> micro_conditioning(const Request& r);
// encode_prompts of the request's prompts (read_prompts(r), tokenized), plus y for families with
// an additional embedding (the same time ids for cond and uncond, as diffusers and ComfyUI).
Conditioning encode_request(Engine& engine, const Request& r, const RequestPrompts& prompts,
                            const TokenEmbeddings* embeddings = nullptr);

}  // namespace sigma::app
