// CLIP's byte-level BPE tokenizer, matching the Hugging Face tokenizer that diffusers
// and ComfyUI use (transformers' CLIPTokenizer, backed by `tokenizers`), so prompts
// map to the same ids the reference stack feeds the text encoder. Kept free of
// LibTorch so the UI can count tokens without pulling in the engine.
//
// What "the same" means, found against refs/tokenizer.json of the sd15-tiny fixture:
//   1. the start/end strings ("<|startoftext|>", "<|endoftext|>") are cut out of the
//      raw text first and become their ids;
//   2. every other piece is NFC-normalized, then lower-cased code point by code point
//      (full mappings: "İ" -> "i̇"; no ftfy, no HTML unescaping, no quote
//      straightening, no CJK splitting: the BasicTokenizer/ftfy paths of the old slow
//      tokenizer give different ids for HTML entities, curly quotes and CJK);
//   3. pre-tokenized by CLIP's pattern 's|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+
//      (whitespace separates and is dropped);
//   4. each piece's UTF-8 bytes become byte symbols, the last one carrying "</w>", and
//      merge by merges.txt rank.
// Only the start/end strings are special in text: a pad token such as SD 2.x's "!" is
// tokenized as ordinary text (as OpenCLIP and A1111 do).
#pragma once

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace sigma::models {

// A missing or malformed tokenizer file; what() names the file and the fix.
struct TokenizerError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class ClipTokenizer {
 public:
  // pad_id -1 pads with the end token (SD 1.x); SD 2.x / OpenCLIP pad with 0 ("!").
  static ClipTokenizer from_files(const std::string& vocab_json, const std::string& merges_txt, int pad_id = -1);
  // A diffusers tokenizer/ folder: vocab.json, merges.txt and tokenizer_config.json,
  // whose pad_token ("<|endoftext|>" as SD 1.x, "!" as SD 2.x) picks the pad id and whose
  // bos_token/eos_token name the start/end tokens. Without tokenizer_config.json the
  // CLIP defaults apply (start "<|startoftext|>", end and pad "<|endoftext|>").
  static ClipTokenizer from_dir(const std::string& dir);

  std::vector<int> encode(const std::string& text) const;  // BPE ids: no start/end, no truncation
  // start, ids truncated to length-2, end, then the pad id up to `length` (length >= 2).
  std::vector<int> encode_padded(const std::string& text, int length = 77) const;
  // Tokens joined back to text, "</w>" read as a space, invalid UTF-8 as U+FFFD, trimmed.
  std::string decode(const std::vector<int>& ids) const;

  int bos() const;
  int eos() const;
  int pad() const;
  size_t vocab_size() const;
  int token_id(const std::string& token) const;  // a vocab.json key ("cat</w>", ",</w>"), -1 if absent
  const std::string& token(int id) const;        // the vocab.json key of an id; throws if out of range

 private:
  struct Impl;
  explicit ClipTokenizer(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;  // shared: copies are cheap; the tables are read-only after loading
};

}  // namespace sigma::models
