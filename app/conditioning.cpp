#include "app/conditioning.h"

namespace sigma::app {

torch::Tensor encode_chunks(Engine& engine, const PromptChunks& chunks, int64_t clip_skip, const std::string& emphasis,
                            const torch::Tensor& extra) {
  const int64_t n = static_cast<int64_t>(chunks.ids.size());
  auto ids = torch::empty({n, kChunkLength}, torch::kLong);
  auto weights = torch::empty({n, kChunkLength}, torch::kFloat32);
  for (int64_t c = 0; c < n; ++c)
    for (int64_t i = 0; i < kChunkLength; ++i) {
      ids[c][i] = chunks.ids[c][i];
      weights[c][i] = chunks.weights[c][i];
    }
  // All chunks in one batch: [n, 77, width]
  auto z = extra.defined() ? engine.clip()->forward_with_extra_tokens(ids.to(engine.device()), extra, clip_skip, /*final_norm=*/true)
                           : engine.clip()->forward(ids.to(engine.device()), clip_skip, /*final_norm=*/true);
  if (emphasis != "none") {
    auto w = weights.to(z.device(), z.scalar_type()).unsqueeze(-1);
    // Per chunk, as A1111 (each chunk is its own forward there).
    auto original_mean = z.mean({1, 2}, /*keepdim=*/true);
    z = z * w;
    if (emphasis == "original") z = z * (original_mean / z.mean({1, 2}, true));
  }
  return z.reshape({1, n * kChunkLength, z.size(-1)});
}

Conditioning encode_prompts(Engine& engine, const std::string& prompt, const std::string& negative, int64_t clip_skip,
                            const std::string& emphasis) {
  const bool use_emphasis = emphasis != "none";
  auto pos = tokenize_prompt(engine.tokenizer(), prompt, use_emphasis);
  auto neg = tokenize_prompt(engine.tokenizer(), negative, use_emphasis);
  const size_t n = std::max(pos.ids.size(), neg.ids.size());
  pad_to_chunks(pos, n, engine.tokenizer());
  pad_to_chunks(neg, n, engine.tokenizer());
  Conditioning c;
  c.cond = encode_chunks(engine, pos, clip_skip, emphasis);
  c.uncond = encode_chunks(engine, neg, clip_skip, emphasis);
  c.chunks = static_cast<int>(n);
  return c;
}

}  // namespace sigma::app
