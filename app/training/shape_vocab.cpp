// Builds the shape world's CLIP tokenizer files (see shape_vocab.h). The merges are
// found by running BPE itself: each word is encoded with the merges so far, and while it
// is still more than one token the merge of its first two tokens is appended. A new
// merge ranks after every earlier one, so words already finished keep encoding to one
// token (at each of their steps a lower-ranked merge applied), and the final check
// re-encodes every word to prove it.
#include "app/training/shape_vocab.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <climits>
#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>

#include "app/training/shape_world.h"

namespace sigma::app {
namespace {

// GPT-2/CLIP's byte -> printable code point table, as UTF-8, in CLIP's vocabulary order:
// the printable bytes ascending, then the other 68 (mapped to U+0100..) ascending.
std::vector<std::string> byte_symbols_in_clip_order() {
  auto utf8 = [](int cp) {
    std::string s;
    if (cp < 0x80) s += static_cast<char>(cp);
    else {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    return s;
  };
  std::vector<std::string> printable, rest;
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool is_printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    if (is_printable) printable.push_back(utf8(b));
    else rest.push_back(utf8(next++));
  }
  printable.insert(printable.end(), rest.begin(), rest.end());
  return printable;
}

using Merges = std::map<std::pair<std::string, std::string>, int>;  // pair -> rank

// The tokenizer's BPE: repeatedly merge every occurrence of the lowest-ranked pair.
std::vector<std::string> bpe(const std::string& word, const Merges& merges) {
  std::vector<std::string> toks;
  for (size_t i = 0; i < word.size(); ++i) toks.push_back(std::string(1, word[i]) + (i + 1 == word.size() ? "</w>" : ""));
  while (toks.size() > 1) {
    int best = INT_MAX;
    std::pair<std::string, std::string> pair;
    for (size_t i = 0; i + 1 < toks.size(); ++i) {
      const auto it = merges.find({toks[i], toks[i + 1]});
      if (it != merges.end() && it->second < best) best = it->second, pair = it->first;
    }
    if (best == INT_MAX) break;
    std::vector<std::string> next;
    for (size_t i = 0; i < toks.size(); ++i) {
      if (i + 1 < toks.size() && toks[i] == pair.first && toks[i + 1] == pair.second) {
        next.push_back(toks[i] + toks[i + 1]);
        ++i;
      } else {
        next.push_back(toks[i]);
      }
    }
    toks.swap(next);
  }
  return toks;
}

void write_file(const std::filesystem::path& path, const std::string& text) {
  const auto tmp = path.string() + ".tmp-write";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out.good()) throw std::runtime_error("shape vocab: cannot write " + tmp + " (check the folder's permissions)");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) throw std::runtime_error("shape vocab: cannot rename " + tmp + " to " + path.string() + ": " + ec.message());
}

}  // namespace

VocabFiles build_clip_vocab(const std::vector<std::string>& words_in) {
  std::vector<std::string> words = words_in;
  for (const auto& w : words)
    if (w.empty() || !std::all_of(w.begin(), w.end(), [](char c) { return c >= 'a' && c <= 'z'; }))
      throw std::invalid_argument("shape vocab: word '" + w + "' is not lower-case ASCII letters");
  std::sort(words.begin(), words.end());
  words.erase(std::unique(words.begin(), words.end()), words.end());

  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  int next_id = 0;
  const auto bytes = byte_symbols_in_clip_order();
  for (const auto& s : bytes) vocab[s] = next_id++;
  for (const auto& s : bytes) vocab[s + "</w>"] = next_id++;

  Merges merges;
  std::vector<std::pair<std::string, std::string>> merge_order;
  for (const auto& w : words) {
    for (auto toks = bpe(w, merges); toks.size() > 1; toks = bpe(w, merges)) {
      const std::pair<std::string, std::string> pair{toks[0], toks[1]};
      merges.emplace(pair, static_cast<int>(merge_order.size()));
      merge_order.push_back(pair);
      const std::string merged = toks[0] + toks[1];
      if (!vocab.contains(merged)) vocab[merged] = next_id++;
    }
  }
  for (const auto& w : words)
    if (bpe(w, merges) != std::vector<std::string>{w + "</w>"})
      throw std::logic_error("shape vocab: '" + w + "' does not merge into one token");  // the construction's invariant
  vocab["<|startoftext|>"] = next_id++;
  vocab["<|endoftext|>"] = next_id++;

  VocabFiles files;
  files.vocab_json = vocab.dump();
  files.merges_txt = "#version: 0.2\n";
  for (const auto& [a, b] : merge_order) files.merges_txt += a + " " + b + "\n";
  const nlohmann::ordered_json config = {
      {"model_max_length", 77},         {"pad_token", "<|endoftext|>"}, {"bos_token", "<|startoftext|>"},
      {"eos_token", "<|endoftext|>"},   {"unk_token", "<|endoftext|>"}, {"do_lower_case", true},
      {"tokenizer_class", "CLIPTokenizer"}};
  files.tokenizer_config_json = config.dump(2) + "\n";
  return files;
}

void write_shape_vocab(const std::string& dir) {
  const VocabFiles files = build_clip_vocab(caption_words());
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw std::runtime_error("shape vocab: cannot create folder " + dir + ": " + ec.message());
  const std::filesystem::path d(dir);
  write_file(d / "vocab.json", files.vocab_json);
  write_file(d / "merges.txt", files.merges_txt);
  write_file(d / "tokenizer_config.json", files.tokenizer_config_json);
}

}  // namespace sigma::app
