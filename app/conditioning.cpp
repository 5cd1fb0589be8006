#include "app/conditioning.h"

namespace sigma::app {

torch::Tensor encode_chunks(Engine& engine, const PromptChunks& chunks, int64_t clip_skip, const std::string& emphasis,
                            size_t encoder, torch::Tensor* pooled, const torch::Tensor& extra) {
  const auto& role = engine.family().text_encoders.at(encoder);
  const int64_t n = static_cast<int64_t>(chunks.ids.size());
  auto ids = torch::empty({n, kChunkLength}, torch::kLong);
  auto weights = torch::empty({n, kChunkLength}, torch::kFloat32);
  auto id = ids.accessor<int64_t, 2>();
  auto weight = weights.accessor<float, 2>();
  for (int64_t c = 0; c < n; ++c)
    for (int64_t i = 0; i < kChunkLength; ++i) {
      id[c][i] = chunks.ids[static_cast<size_t>(c)][static_cast<size_t>(i)];
      weight[c][i] = chunks.weights[static_cast<size_t>(c)][static_cast<size_t>(i)];
    }
  // All chunks in one batch: [n, 77, width]. The family's layer is clip skip 1.
  const int64_t skip = role.clip_skip + clip_skip - 1;
  const auto on_device = engine.visit(*engine.text_encoder(encoder));
  const bool want_pooled = role.pooled && pooled;
  auto [z, p] = engine.encode_tokens(encoder, ids.to(engine.device()), skip, role.final_norm, want_pooled, extra);
  if (want_pooled) *pooled = p.narrow(0, 0, 1);  // the first chunk's, before emphasis (A1111)
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
                            const std::string& emphasis, const TokenEmbeddings* embeddings) {
  const bool use_emphasis = emphasis != "none";
  return encode_prompts(engine, tokenize_runs(engine.tokenizer(), prompt, use_emphasis),
                        tokenize_runs(engine.tokenizer(), negative, use_emphasis), clip_skip, emphasis, embeddings);
}

Conditioning encode_prompts(Engine& engine, const PromptTokens& prompt, const PromptTokens& negative, int64_t clip_skip,
                            const std::string& emphasis, const TokenEmbeddings* embeddings) {
  const size_t encoders = engine.family().text_encoders.size();
  // Each encoder chunks the same ids with its own tokenizer's start, end and padding: they all
  // read CLIP's vocabulary, so the embeddings' placeholder ids are the same for each too.
  std::vector<PromptChunks> pos, neg;
  size_t n = 0;
  for (size_t e = 0; e < encoders; ++e) {
    const auto* tokens = embeddings && !embeddings->tokens.empty() ? &embeddings->tokens : nullptr;
    pos.push_back(chunk_prompt(engine.tokenizer(e), prompt, tokens));
    neg.push_back(chunk_prompt(engine.tokenizer(e), negative, tokens));
    n = std::max({n, pos.back().ids.size(), neg.back().ids.size()});
  }
  std::vector<torch::Tensor> cond, uncond;
  Conditioning c;
  for (size_t e = 0; e < encoders; ++e) {
    pad_to_chunks(pos[e], n, engine.tokenizer(e));
    pad_to_chunks(neg[e], n, engine.tokenizer(e));
    const torch::Tensor extra = embeddings && e < embeddings->extra.size() ? embeddings->extra[e] : torch::Tensor();
    cond.push_back(encode_chunks(engine, pos[e], clip_skip, emphasis, e, &c.pooled_cond, extra));
    uncond.push_back(encode_chunks(engine, neg[e], clip_skip, emphasis, e, &c.pooled_uncond, extra));
  }
  c.cond = cond.size() == 1 ? cond[0] : torch::cat(cond, -1);
  c.uncond = uncond.size() == 1 ? uncond[0] : torch::cat(uncond, -1);
  c.chunks = static_cast<int>(n);
  return c;
}

std::array<double, 6> micro_conditioning(const Request& r) {
  auto or_canvas = [](int64_t v, int64_t canvas) { return static_cast<double>(v > 0 ? v : canvas); };
  return {or_canvas(r.original_height, r.height), or_canvas(r.original_width, r.width), static_cast<double>(r.crop_top),
          static_cast<double>(r.crop_left),       or_canvas(r.target_height, r.height), or_canvas(r.target_width, r.width)};
}

namespace {

// T5 reads the prompt as text: the emphasis brackets are taken out (their weights are not
// applied: T5's states carry no A1111 emphasis) and BREAK is dropped.
std::string t5_text(const std::string& text, bool emphasis) {
  if (!emphasis) return text;
  std::string out;
  for (const auto& run : parse_prompt_attention(text))
    if (run.weight != -1 || run.text != "BREAK") out += run.text;
  return out;
}

// Flux: CLIP-L's pooled vector of the prompt's first 77-token chunk (the transformer's vector
// input, as ComfyUI and diffusers), T5's last hidden state of the text (the context), both
// prompts padded to the same number of tokens: at least the family's minimum, at most its maximum.
Conditioning encode_flux(Engine& engine, const Request& r, const RequestPrompts& prompts) {
  Conditioning c;
  const auto& roles = engine.family().text_encoders;
  const bool need_uncond = r.cfg != 1;  // true CFG only; distilled guidance needs no negative
  for (size_t e = 0; e < roles.size(); ++e) {
    const auto& role = roles[e];
    if (role.network == models::TextNetwork::Clip) {
      for (auto [tokens, pooled] : {std::pair{&prompts.positive_tokens, &c.pooled_cond}, std::pair{&prompts.negative_tokens, &c.pooled_uncond}}) {
        if (pooled == &c.pooled_uncond && !need_uncond) continue;
        auto chunks = chunk_prompt(engine.tokenizer(e), *tokens);
        chunks.ids.resize(1);
        chunks.weights.resize(1);
        encode_chunks(engine, chunks, 1, "none", e, pooled);
      }
      continue;
    }
    const auto& tok = engine.t5_tokenizer(e);
    const bool emphasis = r.emphasis != "none";
    const std::string pos = t5_text(prompts.positive.text, emphasis), neg = t5_text(prompts.negative.text, emphasis);
    size_t length = std::max<size_t>(role.min_tokens, tok.encode(pos).size());
    if (need_uncond) length = std::max(length, tok.encode(neg).size());
    length = std::min<size_t>(length, role.max_tokens);
    auto t5 = engine.t5(e);
    const auto on_device = engine.visit(*t5);
    auto states = [&](const std::string& text) {
      const auto ids = tok.encode_padded(text, length);
      return t5->forward(torch::tensor(std::vector<int64_t>(ids.begin(), ids.end()), torch::kLong).view({1, -1}).to(engine.device()));
    };
    c.cond = states(pos).to(engine.dtype());
    c.uncond = need_uncond ? states(neg).to(engine.dtype()) : c.cond;
  }
  if (!need_uncond) c.pooled_uncond = c.pooled_cond;
  c.y_cond = c.pooled_cond;
  c.y_uncond = c.pooled_uncond;
  return c;
}

}  // namespace

Conditioning encode_request(Engine& engine, const Request& r, const RequestPrompts& prompts, const TokenEmbeddings* embeddings) {
  if (!engine.family().is_unet()) return encode_flux(engine, r, prompts);
  auto c = encode_prompts(engine, prompts.positive_tokens, prompts.negative_tokens, r.clip_skip, r.emphasis, embeddings);
  const auto& family = engine.family();
  if (!family.has_additional_embedding()) return c;
  const auto m = micro_conditioning(r);
  auto time_ids = torch::tensor(std::vector<double>(m.begin(), m.end()), torch::kFloat32).reshape({1, -1});
  if (time_ids.size(1) != family.micro_conditioning)
    throw std::invalid_argument("the model's additional embedding expects " + std::to_string(family.micro_conditioning) +
                                " micro-conditioning numbers");
  c.y_cond = models::additional_embedding_input(c.pooled_cond, time_ids, family.fourier_dim);
  c.y_uncond = models::additional_embedding_input(c.pooled_uncond, time_ids, family.fourier_dim);
  return c;
}

}  // namespace sigma::app
