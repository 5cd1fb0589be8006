// CLIP BPE tokenizer: loading vocab.json/merges.txt into id-keyed tables, the text
// normalization and pre-tokenization of Hugging Face's CLIPTokenizer (see the header
// for why exactly these steps), and rank-ordered BPE over byte symbols with a cache.
// Unicode classes and case mappings come from ICU so they follow the Unicode tables,
// not the C locale.
#include "models/text/clip_tokenizer.h"

#include "models/io/json_text.h"

#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>
#include <unicode/ustring.h>
#include <unicode/utf16.h>
#include <unicode/utf8.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <climits>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <unordered_map>

namespace sigma::models {
namespace {

namespace fs = std::filesystem;

// One message: the file, what is wrong with it, and the fix.
[[noreturn]] void fail(const std::string& path, const std::string& what) {
  const auto dir = fs::path(path).has_parent_path() ? fs::path(path).parent_path().string() : std::string(".");
  throw TokenizerError("tokenizer: " + path + ": " + what + "; put the tokenizer files (vocab.json, merges.txt) of " +
                       "the model's family in " + dir + " or pass --tokenizer DIR");
}

std::string read_text(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) fail(path, "missing (not a readable file)");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot be opened");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void append_utf8(std::string& out, UChar32 c) {
  char buf[U8_MAX_LENGTH];
  int32_t n = 0;
  UBool bad = false;
  U8_APPEND(buf, n, U8_MAX_LENGTH, c, bad);
  if (!bad) out.append(buf, static_cast<size_t>(n));
}

// GPT-2's byte -> printable code point table: printable Latin-1 bytes map to
// themselves, the other 68 bytes to U+0100.. in byte order.
std::array<UChar32, 256> byte_to_code_point() {
  std::array<UChar32, 256> table{};
  int next = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    table[b] = printable ? b : 256 + next++;
  }
  return table;
}

// The classes of CLIP's pre-tokenization pattern (\s, \p{L}, \p{N}, the rest).
enum class CharClass { space, letter, number, other };
CharClass classify(UChar32 c) {
  if (u_isUWhiteSpace(c)) return CharClass::space;
  const uint32_t mask = U_GET_GC_MASK(c);
  if (mask & U_GC_L_MASK) return CharClass::letter;
  if (mask & U_GC_N_MASK) return CharClass::number;
  return CharClass::other;
}

// Full lower-case mapping of one code point on its own (as Rust's char::to_lowercase,
// which `tokenizers` applies character by character: no final-sigma context).
void append_lower(UChar32 c, std::vector<UChar32>& out) {
  if (c < 0x80) {
    out.push_back((c >= 'A' && c <= 'Z') ? c + 32 : c);
    return;
  }
  UChar src[2];
  int32_t n = 0;
  U16_APPEND_UNSAFE(src, n, c);
  UChar dst[8];
  UErrorCode err = U_ZERO_ERROR;
  const int32_t m = u_strToLower(dst, 8, src, n, "", &err);  // at most 3 code points (Unicode's SpecialCasing)
  if (U_FAILURE(err)) { out.push_back(u_tolower(c)); return; }
  for (int32_t i = 0; i < m;) {
    UChar32 l;
    U16_NEXT(dst, i, m, l);
    out.push_back(l);
  }
}

// NFC, then lower case, as code points. Pure-ASCII text skips ICU (NFC is the identity there).
std::vector<UChar32> normalize(const std::string& text) {
  std::vector<UChar32> cps;
  cps.reserve(text.size());
  if (std::all_of(text.begin(), text.end(), [](char ch) { return static_cast<unsigned char>(ch) < 0x80; })) {
    for (unsigned char ch : text) append_lower(ch, cps);
    return cps;
  }
  UErrorCode err = U_ZERO_ERROR;
  const icu::Normalizer2* nfc = icu::Normalizer2::getNFCInstance(err);
  icu::UnicodeString u = icu::UnicodeString::fromUTF8(icu::StringPiece(text.data(), static_cast<int32_t>(text.size())));
  if (U_SUCCESS(err)) {
    icu::UnicodeString n = nfc->normalize(u, err);
    if (U_SUCCESS(err)) u = n;
  }
  for (int32_t i = 0; i < u.length();) {
    const UChar32 c = u.char32At(i);
    i += U16_LENGTH(c);
    append_lower(c, cps);
  }
  return cps;
}

// Length of the contraction ('s 't 're 've 'm 'll 'd) starting at cps[i], 0 if none.
size_t contraction_at(const std::vector<UChar32>& cps, size_t i) {
  if (cps[i] != '\'' || i + 1 >= cps.size()) return 0;
  const UChar32 a = cps[i + 1];
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  const UChar32 b = i + 2 < cps.size() ? cps[i + 2] : 0;
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

uint64_t pair_key(int a, int b) { return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b); }

}  // namespace

struct ClipTokenizer::Impl {
  std::unordered_map<std::string, int> vocab;
  std::vector<std::string> tokens;                                // id -> vocab.json key
  std::unordered_map<uint64_t, std::pair<int, int>> merges;       // (left id, right id) -> (rank, merged id)
  std::array<int, 256> byte_id{}, byte_end_id{};                  // a byte's symbol mid-word / with "</w>"
  std::vector<int> code_point_byte;                               // byte table inverse, for decode
  std::string bos_text = "<|startoftext|>", eos_text = "<|endoftext|>";
  int bos = -1, eos = -1, pad = -1;

  mutable std::mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<int>> cache;  // pre-token -> ids

  void load_vocab(const std::string& path);
  void load_merges(const std::string& path);
  void finish(const std::string& vocab_path, int pad_id);
  void bpe(const std::string& piece, std::vector<int>& out) const;
  void encode_text(const std::string& text, std::vector<int>& out) const;
};

void ClipTokenizer::Impl::load_vocab(const std::string& path) {
  const std::string text = read_text(path);
  nlohmann::json j;
  try {
    j = parse_json(text, "");
  } catch (const JsonError& e) {
    fail(path, e.what());
  }
  if (!j.is_object() || j.empty()) fail(path, "not a JSON object of token -> id");
  vocab.reserve(j.size());
  int max_id = -1;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 || it.value().get<int64_t>() > INT_MAX)
      fail(path, "the id of token '" + it.key() + "' is not a non-negative integer");
    const int id = it.value().get<int>();
    vocab.emplace(it.key(), id);
    max_id = std::max(max_id, id);
  }
  tokens.assign(static_cast<size_t>(max_id) + 1, std::string());
  for (const auto& [tok, id] : vocab) tokens[static_cast<size_t>(id)] = tok;
}

void ClipTokenizer::Impl::load_merges(const std::string& path) {
  const std::string text = read_text(path);
  merges.reserve(text.size() / 8);
  size_t pos = 0, line_no = 0;
  int rank = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || line.rfind("#version", 0) == 0) continue;
    const size_t space = line.find(' ');
    if (space == std::string_view::npos || space == 0 || space + 1 == line.size() ||
        line.find(' ', space + 1) != std::string_view::npos)
      fail(path, "line " + std::to_string(line_no) + " is not two tokens separated by one space");
    const std::string left(line.substr(0, space)), right(line.substr(space + 1));
    const auto a = vocab.find(left), b = vocab.find(right), ab = vocab.find(left + right);
    if (a == vocab.end() || b == vocab.end() || ab == vocab.end())
      fail(path, "line " + std::to_string(line_no) + " merges tokens that vocab.json lacks ('" + left + "' + '" +
                     right + "'): vocab.json and merges.txt come from different tokenizers");
    merges[pair_key(a->second, b->second)] = {rank++, ab->second};
  }
  if (merges.empty()) fail(path, "holds no merges");
}

void ClipTokenizer::Impl::finish(const std::string& vocab_path, int pad_id) {
  const auto table = byte_to_code_point();
  code_point_byte.assign(512, -1);
  for (int b = 0; b < 256; ++b) {
    std::string s;
    append_utf8(s, table[b]);
    const auto mid = vocab.find(s), end = vocab.find(s + "</w>");
    if (mid == vocab.end() || end == vocab.end())
      fail(vocab_path, "lacks the byte symbol '" + s + "' (and its '</w>' form): not a CLIP byte-level BPE vocabulary");
    byte_id[b] = mid->second;
    byte_end_id[b] = end->second;
    code_point_byte[static_cast<size_t>(table[b])] = b;
  }
  for (auto [text, id] : {std::pair{&bos_text, &bos}, std::pair{&eos_text, &eos}}) {
    const auto it = vocab.find(*text);
    if (it == vocab.end()) fail(vocab_path, "has no special token '" + *text + "'");
    *id = it->second;
  }
  if (pad_id < -1 || pad_id >= static_cast<int>(tokens.size()) || (pad_id >= 0 && tokens[pad_id].empty()))
    throw TokenizerError("tokenizer: pad id " + std::to_string(pad_id) + " is not an id of " + vocab_path +
                         " (0.." + std::to_string(tokens.size() - 1) + ", or -1 for the end token)");
  pad = pad_id == -1 ? eos : pad_id;
}

void ClipTokenizer::Impl::bpe(const std::string& piece, std::vector<int>& out) const {
  {
    std::lock_guard<std::mutex> lock(cache_mutex);
    if (auto it = cache.find(piece); it != cache.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int> word;
  word.reserve(piece.size());
  for (size_t i = 0; i < piece.size(); ++i) {
    const auto b = static_cast<unsigned char>(piece[i]);
    word.push_back(i + 1 == piece.size() ? byte_end_id[b] : byte_id[b]);
  }
  std::vector<int> next;
  while (word.size() > 1) {
    int best_rank = INT_MAX, left = -1, right = -1, merged = -1;
    for (size_t i = 0; i + 1 < word.size(); ++i) {
      const auto it = merges.find(pair_key(word[i], word[i + 1]));
      if (it != merges.end() && it->second.first < best_rank) {
        best_rank = it->second.first;
        left = word[i];
        right = word[i + 1];
        merged = it->second.second;
      }
    }
    if (merged < 0) break;
    next.clear();  // merge every occurrence of the best pair, left to right
    for (size_t i = 0; i < word.size(); ++i) {
      if (i + 1 < word.size() && word[i] == left && word[i + 1] == right) {
        next.push_back(merged);
        ++i;
      } else {
        next.push_back(word[i]);
      }
    }
    word.swap(next);
  }
  out.insert(out.end(), word.begin(), word.end());
  std::lock_guard<std::mutex> lock(cache_mutex);
  if (cache.size() > 100000) cache.clear();  // endless distinct prompts must not grow memory forever
  cache.emplace(piece, std::move(word));
}

void ClipTokenizer::Impl::encode_text(const std::string& text, std::vector<int>& out) const {
  const std::vector<UChar32> cps = normalize(text);
  std::string piece;
  for (size_t i = 0; i < cps.size();) {
    size_t j = i + contraction_at(cps, i);
    if (j == i) {
      const CharClass cls = classify(cps[i]);
      if (cls == CharClass::space) {
        ++i;
        continue;
      }
      j = i + 1;
      if (cls != CharClass::number)  // letters and "other" runs are greedy; a digit stands alone
        while (j < cps.size() && classify(cps[j]) == cls) ++j;
    }
    piece.clear();
    for (size_t k = i; k < j; ++k) append_utf8(piece, cps[k]);
    bpe(piece, out);
    i = j;
  }
}

ClipTokenizer::ClipTokenizer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

ClipTokenizer ClipTokenizer::from_files(const std::string& vocab_json, const std::string& merges_txt, int pad_id) {
  auto impl = std::make_shared<Impl>();
  impl->load_vocab(vocab_json);
  impl->load_merges(merges_txt);
  impl->finish(vocab_json, pad_id);
  return ClipTokenizer(std::move(impl));
}

ClipTokenizer ClipTokenizer::from_dir(const std::string& dir) {
  const std::string vocab_path = (fs::path(dir) / "vocab.json").string();
  const std::string merges_path = (fs::path(dir) / "merges.txt").string();
  const std::string config_path = (fs::path(dir) / "tokenizer_config.json").string();
  auto impl = std::make_shared<Impl>();
  impl->load_vocab(vocab_path);
  impl->load_merges(merges_path);
  int pad_id = -1;  // no config: CLIP's defaults, padding with the end token
  std::error_code ec;
  if (fs::exists(config_path, ec)) {
    nlohmann::json config;
    try {
      config = parse_json(read_text(config_path), "");
    } catch (const JsonError& e) {
      fail(config_path, e.what());
    }
    // A token is written either as a string or as {"content": "...", ...} (AddedToken).
    auto token_text = [&](const char* key, std::string& dst) {
      if (!config.is_object() || !config.contains(key) || config.at(key).is_null()) return;
      const auto& v = config.at(key);
      if (v.is_string()) dst = v.get<std::string>();
      else if (v.is_object() && v.contains("content") && v.at("content").is_string()) dst = v.at("content").get<std::string>();
      else fail(config_path, std::string("'") + key + "' is neither a string nor {\"content\": ...}");
    };
    token_text("bos_token", impl->bos_text);
    token_text("eos_token", impl->eos_text);
    std::string pad_text = impl->eos_text;
    token_text("pad_token", pad_text);
    const auto pad = impl->vocab.find(pad_text);
    if (pad == impl->vocab.end()) fail(config_path, "its pad_token '" + pad_text + "' is not in vocab.json");
    pad_id = pad->second;
  }
  impl->finish(vocab_path, pad_id);
  return ClipTokenizer(std::move(impl));
}

std::vector<int> ClipTokenizer::encode(const std::string& text) const {
  std::vector<int> out;
  // The start/end strings are matched on the raw text, before normalization.
  size_t pos = 0;
  while (pos <= text.size()) {
    const size_t b = text.find(impl_->bos_text, pos), e = text.find(impl_->eos_text, pos);
    const size_t hit = std::min(b, e);
    impl_->encode_text(text.substr(pos, hit == std::string::npos ? std::string::npos : hit - pos), out);
    if (hit == std::string::npos) break;
    out.push_back(hit == b ? impl_->bos : impl_->eos);
    pos = hit + (hit == b ? impl_->bos_text.size() : impl_->eos_text.size());
  }
  return out;
}

std::vector<int> ClipTokenizer::encode_padded(const std::string& text, int length) const {
  if (length < 2) throw std::invalid_argument("encode_padded: length must be at least 2");
  std::vector<int> ids = encode(text);
  if (ids.size() > static_cast<size_t>(length - 2)) ids.resize(static_cast<size_t>(length - 2));
  std::vector<int> out;
  out.reserve(static_cast<size_t>(length));
  out.push_back(impl_->bos);
  out.insert(out.end(), ids.begin(), ids.end());
  out.push_back(impl_->eos);
  out.resize(static_cast<size_t>(length), impl_->pad);
  return out;
}

std::string ClipTokenizer::decode(const std::vector<int>& ids) const {
  std::string bytes;
  for (int id : ids) {
    const std::string& tok = token(id);
    for (int32_t i = 0; i < static_cast<int32_t>(tok.size());) {
      UChar32 c;
      U8_NEXT(tok.data(), i, static_cast<int32_t>(tok.size()), c);
      if (c >= 0 && static_cast<size_t>(c) < impl_->code_point_byte.size() && impl_->code_point_byte[c] >= 0)
        bytes.push_back(static_cast<char>(impl_->code_point_byte[c]));
      else
        append_utf8(bytes, c < 0 ? 0xFFFD : c);
    }
  }
  for (size_t p; (p = bytes.find("</w>")) != std::string::npos;) bytes.replace(p, 4, " ");
  std::string text;  // a token may end inside a multi-byte character: U+FFFD, as Python's errors="replace"
  icu::UnicodeString::fromUTF8(icu::StringPiece(bytes.data(), static_cast<int32_t>(bytes.size()))).toUTF8String(text);
  const auto first = text.find_first_not_of(" \t\n\r\f\v");
  if (first == std::string::npos) return "";
  return text.substr(first, text.find_last_not_of(" \t\n\r\f\v") - first + 1);
}

int ClipTokenizer::bos() const { return impl_->bos; }
int ClipTokenizer::eos() const { return impl_->eos; }
int ClipTokenizer::pad() const { return impl_->pad; }
size_t ClipTokenizer::vocab_size() const { return impl_->vocab.size(); }

int ClipTokenizer::token_id(const std::string& token) const {
  const auto it = impl_->vocab.find(token);
  return it == impl_->vocab.end() ? -1 : it->second;
}

const std::string& ClipTokenizer::token(int id) const {
  if (id < 0 || static_cast<size_t>(id) >= impl_->tokens.size() || impl_->tokens[id].empty())
    throw std::out_of_range("tokenizer: id " + std::to_string(id) + " is not in the vocabulary");
  return impl_->tokens[static_cast<size_t>(id)];
}

}  // namespace sigma::models
