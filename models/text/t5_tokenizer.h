// T5's tokenizer as Hugging Face's T5TokenizerFast runs it, which diffusers' Flux pipeline and
// ComfyUI feed T5-XXL with: a SentencePiece unigram model (Kudo 2018) read from its
// `spiece.model`, written out here rather than linked, because Debian's libsentencepiece
// carries its own protobuf, which clashes with LibTorch's at load time. The steps, as
// sentencepiece does them: the model's precompiled normalization table (NFKC-based; a
// double-array trie of byte strings and their replacements), whitespace trimmed and runs
// collapsed, spaces as U+2581 with one at the start; the most probable segmentation into
// pieces (Viterbi over the piece scores; a character no piece covers is <unk>, a run of them
// one <unk>). Special tokens written literally in the text (<pad>, </s>, <unk>, <extra_id_N>)
// are taken out first as their single ids, as the fast tokenizer does, and </s> ends the ids.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace sigma::models {

class T5Tokenizer {
 public:
  static constexpr int kPad = 0, kEos = 1, kUnk = 2;
  // A SentencePiece model file (T5's spiece.model) or Hugging Face's tokenizer.json of the same
  // Unigram vocabulary; throws std::runtime_error naming it.
  static T5Tokenizer from_file(const std::string& path);
  // The same from the file's bytes (JSON when they start with '{'); `what` names the file in errors.
  static T5Tokenizer from_bytes(const std::string& bytes, const std::string& what);

  // The ids of `text`, ending with </s>, unpadded.
  std::vector<int> encode(const std::string& text) const;
  // Exactly `length` ids: truncated to length − 1 before the closing </s> (as the fast
  // tokenizer's truncation), else padded with <pad> (diffusers' Flux: 512; ComfyUI: 256).
  std::vector<int> encode_padded(const std::string& text, size_t length) const;
  // Ids in use: the pieces plus the 100 <extra_id_N> sentinels (T5's 32,100).
  int64_t vocab_size() const { return static_cast<int64_t>(scores_.size()) + 100; }
  const std::string& path() const { return path_; }

  // sentencepiece's normalization of a text without special tokens (tests).
  std::string normalize(const std::string& text) const;

 private:
  std::vector<int> encode_plain(const std::string& text) const;
  // The replacement for the longest table entry at text[pos] and the bytes it covers; false: none.
  bool table_prefix(const std::string& text, size_t pos, std::string* out, size_t* length) const;

  std::string path_;
  std::vector<float> scores_;
  std::unordered_map<std::string, int> pieces_;  // normal pieces -> id
  size_t max_piece_bytes_ = 0;
  float unk_score_ = 0;
  std::vector<uint32_t> trie_;  // the normalization table's double array (darts-clone units)
  std::string replacements_;    // its NUL-terminated replacement strings
  bool add_dummy_prefix_ = true, remove_extra_whitespaces_ = true, escape_whitespaces_ = true;
};

}  // namespace sigma::models
