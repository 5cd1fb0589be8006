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

#include "app/request.h"
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

// tokenize_prompt in its two steps, for a prompt tokenized once and chunked for several text
// encoders: the attention runs as token ids, then the 77-token chunks.
struct PromptTokens {
  struct Run {
    std::vector<int> ids;
    double weight = 1.0;
    bool chunk_break = false;  // BREAK: the chunk ends here (ids empty)
  };
  std::vector<Run> runs;
};
PromptTokens tokenize_runs(const models::ClipTokenizer& tokenizer, const std::string& prompt, bool emphasis = true);
PromptChunks chunk_prompt(const models::ClipTokenizer& tokenizer, const PromptTokens& tokens,
                          const std::vector<PromptEmbedding>* embeddings = nullptr);

// AUTOMATIC1111's extra-network tags (modules/extra_networks.py: re_extra_net = <(\w+):([^>]+)>):
// `<lora:name:te:unet>`, `<hypernet:name:1>`, ... Each tag's text is removed and nothing else,
// so "a red circle <lora:x:0.8>, blue" becomes "a red circle , blue" (the spaces stay).
// items: the text after the first ':' split at ':' (A1111's ExtraNetworkParams.items).
struct ExtraNetworkTag {
  std::string type;                // "lora", "lyco", "hypernet", ...
  std::vector<std::string> items;  // {"x", "0.8"}
  size_t begin = 0, length = 0;    // the tag's bytes in the prompt (the GUI edits them in place)
};
std::string strip_extra_networks(const std::string& prompt, std::vector<ExtraNetworkTag>* tags = nullptr);

// A prompt read once: the text the tokenizer sees (extra-network tags removed, ComfyUI's
// `embedding:NAME`, also `embedding:sub/NAME.safetensors`, as the word NAME) and the tags.
struct ParsedPrompt {
  std::string text;
  std::vector<ExtraNetworkTag> tags;
};
ParsedPrompt parse_prompt(const std::string& prompt);
inline std::string prompt_text(const std::string& prompt) { return parse_prompt(prompt).text; }

// A request's prompts, read once when the request is resolved; the later steps (LoRA set,
// embeddings, text encoders) read this value, never the prompt strings again.
struct RequestPrompts {
  ParsedPrompt positive, negative;
  // The positive prompt's <lora:...>/<lyco:...> tags, then Request::lora. The negative prompt's
  // tags are removed from its text and not applied (AUTOMATIC1111 activates the extra networks
  // of the positive prompt only).
  std::vector<LoraRef> loras;
  // Both texts as the model's tokens (tokenize()): every text encoder of today's families reads
  // CLIP's BPE vocabulary, so each chunks these ids with its own padding.
  PromptTokens positive_tokens, negative_tokens;
};
// Throws std::invalid_argument naming the tag: a strength that is not a number, no LoRA name.
RequestPrompts read_prompts(const Request& r);
// Fills the tokens; emphasis false: brackets are plain text (Request::emphasis "none").
void tokenize(RequestPrompts& prompts, const models::ClipTokenizer& tokenizer, bool emphasis);

// Appends empty chunks ([start] [end] [pad]..) until there are n, as A1111 pads a negative
// prompt to the positive's length; never removes chunks.
void pad_to_chunks(PromptChunks& chunks, size_t n, const models::ClipTokenizer& tokenizer);

// Prompt tokens per chunk, for the UI's "N/75" display.
std::vector<int> chunk_token_counts(const PromptChunks& chunks);

// The denominator A1111 shows next to token_count: 75 times the chunks needed (at least one).
int target_token_count(int token_count);

}  // namespace sigma::app
