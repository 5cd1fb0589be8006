// A CLIP tokenizer for the shape world's grammar, in the files any SD tokenizer folder
// holds (vocab.json, merges.txt, tokenizer_config.json), so the bundled default model
// goes through the same ClipTokenizer as a real checkpoint instead of a private lookup.
//
// The vocabulary is CLIP's layout in miniature: ids 0-255 are the byte-level base
// alphabet (GPT-2's byte -> printable code point table, in CLIP's order), 256-511 the same
// symbols with "</w>", then the merged tokens, then "<|startoftext|>" and "<|endoftext|>"
// as the last two ids. The merges build every caption word into the single token
// "word</w>"; any other text still encodes, falling back to smaller pieces and bytes.
#pragma once

#include <string>
#include <vector>

namespace sigma::app {

struct VocabFiles {
  std::string vocab_json, merges_txt, tokenizer_config_json;
};

// The three files for `words` (lower-case ASCII letters only; anything else is a
// std::invalid_argument, since CLIP's pre-tokenizer would split such a word anyway).
// Deterministic: the same words give byte-identical files.
VocabFiles build_clip_vocab(const std::vector<std::string>& words);

// build_clip_vocab(caption_words()) written into `dir` (created if missing);
// a file that cannot be written is a std::runtime_error naming it.
void write_shape_vocab(const std::string& dir);

}  // namespace sigma::app
