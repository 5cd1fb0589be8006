// AUTOMATIC1111's prompt language and chunking, reproduced exactly so that a prompt
// copied from an A1111 image's metadata conditions our models the same way:
//   parse_prompt_attention  = modules/prompt_parser.py parse_prompt_attention
//     (a) ×1.1, [a] ÷1.1, (a:1.3), nesting multiplies, \( \) \[ \] \\ escapes,
//     unclosed brackets closed at the end, "BREAK" as a word, equal-weight neighbours merged;
//   tokenize_prompt         = modules/sd_hijack_clip.py tokenize_line
//     75-token chunks wrapped as [start] 75 ids [end] = 77, the comma backtrack rule,
//     BREAK ending the current chunk, an empty prompt giving one chunk.
// A1111's quirks are kept on purpose (they are what its users' prompts were tuned on):
// a lone backslash vanishes, a BREAK inside brackets gets its weight multiplied and is
// then read as the word "break", and an invalid weight such as (a:1.2.3) is an error.
// No LibTorch here: the UI counts tokens with it on every keystroke.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <vector>

#include "models/text/clip_tokenizer.h"

namespace sigma::app {

constexpr int kChunkTokens = 75;  // prompt tokens per chunk
constexpr int kChunkLength = 77;  // with the start and end tokens

// A run of prompt text and its attention weight; {"BREAK", -1} marks a chunk break.
// The weight is a double because A1111 compares weights exactly when it merges neighbours.
struct WeightedText {
  std::string text;
  double weight;
};
std::vector<WeightedText> parse_prompt_attention(const std::string& prompt);

struct PromptChunks {
  std::vector<std::array<int, kChunkLength>> ids;        // [start] ids.. [end] [pad]..
  std::vector<std::array<float, kChunkLength>> weights;  // 1.0 at start, end and padding
  std::vector<int> used;                                 // prompt tokens in each chunk, 0..75
  int token_count = 0;  // A1111's count: 75 for every chunk but the last, plus the last one's tokens
};

// emphasis = false: the whole prompt is plain text of weight 1 (brackets and BREAK included),
// as A1111 with its emphasis option set to "None".
// Textual inversion at the token level (app/adapters.cpp finds the files): every occurrence
// of `word` (the tokenizer's ids for the embedding's name) is replaced, before chunking, by
// the ids first_id .. first_id+count-1, which the text encoder reads from its extra table.
struct PromptEmbedding {
  std::vector<int> word;
  int first_id = 0;
  int count = 0;
};
PromptChunks tokenize_prompt(const models::ClipTokenizer& tokenizer, const std::string& prompt,
                             bool emphasis = true, const std::vector<PromptEmbedding>* embeddings = nullptr);

// AUTOMATIC1111's extra-network tags (modules/extra_networks.py: re_extra_net = <(\w+):([^>]+)>):
// `<lora:name:te:unet>`, `<hypernet:name:1>`, ... Each tag's text is removed and nothing else,
// so "a red circle <lora:x:0.8>, blue" becomes "a red circle , blue" (the spaces stay).
// items: the text after the first ':' split at ':' (A1111's ExtraNetworkParams.items).
struct ExtraNetworkTag {
  std::string type;                // "lora", "lyco", "hypernet", ...
  std::vector<std::string> items;  // {"x", "0.8"}
};
std::string strip_extra_networks(const std::string& prompt, std::vector<ExtraNetworkTag>* tags = nullptr);

// The text the tokenizer sees: extra-network tags removed, ComfyUI's `embedding:NAME` (also
// `embedding:sub/NAME.safetensors`) as the word NAME.
std::string prompt_text(const std::string& prompt);

// Appends empty chunks ([start] [end] [pad]..) until there are n, as A1111 pads a negative
// prompt to the positive's length; never removes chunks.
void pad_to_chunks(PromptChunks& chunks, size_t n, const models::ClipTokenizer& tokenizer);

// Prompt tokens per chunk, for the UI's "N/75" display.
std::vector<int> chunk_token_counts(const PromptChunks& chunks);

// The denominator A1111 shows next to token_count: 75 times the chunks needed (at least one).
int target_token_count(int token_count);

}  // namespace sigma::app
