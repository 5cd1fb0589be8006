// Prompt text -> the UNet's cross-attention context, as AUTOMATIC1111 builds it:
// 75-token chunks encoded separately and concatenated, emphasis weights applied to the
// token states with the chunk's mean restored; the negative prompt padded to as many
// chunks as the positive one.
#pragma once

#include <torch/torch.h>

#include <string>

#include "app/engine.h"
#include "app/prompt.h"

namespace sigma::app {

struct Conditioning {
  torch::Tensor cond, uncond;  // [1, 77·chunks, width], on the engine's device and dtype
  int chunks = 1;
};

// emphasis: "original" (scale, then restore the mean), "no-norm" (scale only), "none" (plain text).
// extra: textual-inversion vectors [n, width] for the ids from the vocabulary size on (app/adapters.h).
torch::Tensor encode_chunks(Engine& engine, const PromptChunks& chunks, int64_t clip_skip, const std::string& emphasis,
                            const torch::Tensor& extra = {});
Conditioning encode_prompts(Engine& engine, const std::string& prompt, const std::string& negative, int64_t clip_skip,
                            const std::string& emphasis);

}  // namespace sigma::app
