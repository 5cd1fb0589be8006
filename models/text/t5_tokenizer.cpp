#include "models/text/t5_tokenizer.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <set>
#include <stdexcept>

#include "models/io/json_text.h"

namespace sigma::models {
namespace {

// Standard base64 (tokenizer.json's precompiled_charsmap); throws on a character outside it.
std::string base64_decode(const std::string& in) {
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v;
    if (c >= 'A' && c <= 'Z') v = c - 'A';
    else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
    else if (c >= '0' && c <= '9') v = c - '0' + 52;
    else if (c == '+') v = 62;
    else if (c == '/') v = 63;
    else if (c == '=') break;
    else throw std::runtime_error("bad base64 in precompiled_charsmap");
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return out;
}

// The "Precompiled" normalizer's table anywhere in tokenizer.json's normalizer (alone or in a Sequence).
std::string find_charsmap(const nlohmann::json& n) {
  if (n.is_object()) {
    if (n.value("type", std::string()) == "Precompiled" && n.contains("precompiled_charsmap") && n["precompiled_charsmap"].is_string())
      return base64_decode(n["precompiled_charsmap"].get<std::string>());
    for (const auto& [k, v] : n.items())
      if (auto found = find_charsmap(v); !found.empty()) return found;
  } else if (n.is_array()) {
    for (const auto& v : n)
      if (auto found = find_charsmap(v); !found.empty()) return found;
  }
  return {};
}

constexpr int kSentinels = 100;                   // <extra_id_0> .. <extra_id_99>: the last 100 ids
constexpr float kUnkPenalty = 10;                 // sentencepiece: unk scores min_score − 10
const std::string kSpaceMark = "\xE2\x96\x81";   // U+2581, sentencepiece's visible space

// ---- the protobuf wire format, as far as a ModelProto needs it ----
struct Wire {
  const std::string& bytes;
  size_t pos, end;
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; pos < end && shift < 64; shift += 7) {
      const auto b = static_cast<uint8_t>(bytes[pos++]);
      v |= uint64_t(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    throw std::runtime_error("truncated varint");
  }
  // Calls fn(field, wire type, this) for each field; fn reads or skips the value.
  template <class Fn>
  void fields(Fn&& fn) {
    while (pos < end) {
      const uint64_t key = varint();
      fn(static_cast<int>(key >> 3), static_cast<int>(key & 7));
    }
  }
  std::string bytes_field() {
    const uint64_t n = varint();
    if (n > end - pos) throw std::runtime_error("truncated field");
    std::string s = bytes.substr(pos, n);
    pos += n;
    return s;
  }
  Wire sub() {
    const uint64_t n = varint();
    if (n > end - pos) throw std::runtime_error("truncated message");
    Wire w{bytes, pos, pos + n};
    pos += n;
    return w;
  }
  float fixed32_float() {
    if (end - pos < 4) throw std::runtime_error("truncated float");
    float f;
    std::memcpy(&f, bytes.data() + pos, 4);
    pos += 4;
    return f;
  }
  void skip(int type) {
    uint64_t n = 0;
    if (type == 0) return (void)varint();
    if (type == 1) n = 8;
    else if (type == 2) n = varint();
    else if (type == 5) n = 4;
    else throw std::runtime_error("unknown wire type");
    if (n > end - pos) throw std::runtime_error("truncated field");
    pos += n;
  }
};

size_t utf8_length(unsigned char c) { return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4; }

// A well-formed UTF-8 character at text[pos] (its length), or 0.
size_t utf8_char(const std::string& text, size_t pos) {
  const auto c = static_cast<unsigned char>(text[pos]);
  if (c >= 0x80 && c < 0xC2) return 0;
  const size_t n = c > 0xF4 ? 0 : utf8_length(c);
  if (n == 0 || pos + n > text.size()) return 0;
  for (size_t i = 1; i < n; ++i)
    if ((static_cast<unsigned char>(text[pos + i]) & 0xC0) != 0x80) return 0;
  return n;
}

// The special token written at text[i], if any: its id and length.
bool special_at(const std::string& text, size_t i, int pieces, int* id, size_t* length) {
  static const std::pair<const char*, int> fixed[] = {{"<pad>", T5Tokenizer::kPad}, {"</s>", T5Tokenizer::kEos},
                                                      {"<unk>", T5Tokenizer::kUnk}};
  for (const auto& [spelling, value] : fixed)
    if (text.compare(i, std::strlen(spelling), spelling) == 0) {
      *id = value;
      *length = std::strlen(spelling);
      return true;
    }
  static const std::string kExtra = "<extra_id_";
  if (text.compare(i, kExtra.size(), kExtra) != 0) return false;
  size_t j = i + kExtra.size();
  int n = 0, digits = 0;
  while (j < text.size() && digits < 3 && text[j] >= '0' && text[j] <= '9') n = n * 10 + (text[j++] - '0'), ++digits;
  if (digits == 0 || j >= text.size() || text[j] != '>' || n >= kSentinels) return false;
  if (digits > 1 && text[i + kExtra.size()] == '0') return false;  // "<extra_id_07>" is no token
  *id = pieces + kSentinels - 1 - n;
  *length = j + 1 - i;
  return true;
}

}  // namespace

T5Tokenizer T5Tokenizer::from_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot read the T5 tokenizer (a SentencePiece spiece.model; --t5-tokenizer FILE)");
  return from_bytes(std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>()), path);
}

T5Tokenizer T5Tokenizer::from_bytes(const std::string& bytes, const std::string& path) {
  T5Tokenizer t;
  t.path_ = path;
  std::string charsmap;
  float min_score = std::numeric_limits<float>::max();
  const size_t first = bytes.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && bytes[first] == '{') {
    // Hugging Face's tokenizer.json of T5 (a Unigram model): the same pieces and scores, the
    // 100 <extra_id_N> sentinels last, the specials (<pad>, </s>, <unk>) matching no text.
    try {
      const auto j = parse_json(bytes, path);
      const auto& model = j.at("model");
      if (model.value("type", std::string()) != "Unigram") throw std::runtime_error("its model is not Unigram");
      std::set<int> specials;
      if (j.contains("added_tokens") && j["added_tokens"].is_array())
        for (const auto& a : j["added_tokens"])
          if (a.value("special", false) && a.contains("id") && a["id"].is_number_integer()) specials.insert(a["id"].get<int>());
      const auto& vocab = model.at("vocab");
      size_t count = vocab.size();
      while (count > 0 && vocab[count - 1].at(0).get<std::string>().rfind("<extra_id_", 0) == 0) --count;
      if (vocab.size() - count != static_cast<size_t>(kSentinels))
        throw std::runtime_error("T5's vocabulary ends with its 100 <extra_id_N> pieces, this one with " + std::to_string(vocab.size() - count));
      for (size_t id = 0; id < count; ++id) {
        const auto piece = vocab[id].at(0).get<std::string>();
        const float score = vocab[id].at(1).get<float>();
        t.scores_.push_back(score);
        if (specials.count(static_cast<int>(id))) continue;
        t.pieces_.emplace(piece, static_cast<int>(id));
        t.max_piece_bytes_ = std::max(t.max_piece_bytes_, piece.size());
        min_score = std::min(min_score, score);
      }
      charsmap = find_charsmap(j.value("normalizer", nlohmann::json()));
      const auto pre = j.value("pre_tokenizer", nlohmann::json());
      if (pre.is_object() && pre.contains("add_prefix_space") && pre["add_prefix_space"].is_boolean())
        t.add_dummy_prefix_ = pre["add_prefix_space"].get<bool>();
    } catch (const std::exception& e) {
      throw std::runtime_error(path + ": not a T5 tokenizer.json (" + e.what() + "); give T5's spiece.model or tokenizer.json with --t5-tokenizer");
    }
  } else try {
    Wire model{bytes, 0, bytes.size()};
    model.fields([&](int field, int type) {
      if (field == 1 && type == 2) {  // SentencePiece { 1: piece, 2: score, 3: type }
        auto w = model.sub();
        std::string piece;
        float score = 0;
        int kind = 1;  // NORMAL
        w.fields([&](int f, int ty) {
          if (f == 1 && ty == 2) piece = w.bytes_field();
          else if (f == 2 && ty == 5) score = w.fixed32_float();
          else if (f == 3 && ty == 0) kind = static_cast<int>(w.varint());
          else w.skip(ty);
        });
        const int id = static_cast<int>(t.scores_.size());
        t.scores_.push_back(score);
        if (kind == 1 || kind == 4) {  // NORMAL, USER_DEFINED (control, unknown and unused pieces never match text)
          t.pieces_.emplace(piece, id);
          t.max_piece_bytes_ = std::max(t.max_piece_bytes_, piece.size());
          min_score = std::min(min_score, score);
        }
      } else if (field == 3 && type == 2) {  // NormalizerSpec
        auto w = model.sub();
        w.fields([&](int f, int ty) {
          if (f == 2 && ty == 2) charsmap = w.bytes_field();
          else if (f == 3 && ty == 0) t.add_dummy_prefix_ = w.varint() != 0;
          else if (f == 4 && ty == 0) t.remove_extra_whitespaces_ = w.varint() != 0;
          else if (f == 5 && ty == 0) t.escape_whitespaces_ = w.varint() != 0;
          else w.skip(ty);
        });
      } else {
        model.skip(type);
      }
    });
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(path + ": not a SentencePiece model (" + e.what() + "); give T5's spiece.model with --t5-tokenizer");
  }
  if (t.scores_.size() <= kUnk || t.pieces_.empty())
    throw std::runtime_error(path + ": not a SentencePiece model (no pieces); give T5's spiece.model with --t5-tokenizer");
  t.unk_score_ = min_score - kUnkPenalty;
  // The precompiled table: a uint32 trie size, the darts-clone double array, the replacements.
  if (charsmap.size() >= 4) {
    uint32_t trie_bytes = 0;
    std::memcpy(&trie_bytes, charsmap.data(), 4);
    if (trie_bytes % 4 || 4 + size_t(trie_bytes) > charsmap.size())
      throw std::runtime_error(path + ": its normalization table is damaged");
    t.trie_.resize(trie_bytes / 4);
    std::memcpy(t.trie_.data(), charsmap.data() + 4, trie_bytes);
    t.replacements_ = charsmap.substr(4 + trie_bytes);
  }
  return t;
}

bool T5Tokenizer::table_prefix(const std::string& text, size_t pos, std::string* out, size_t* length) const {
  if (trie_.empty()) return false;
  // darts-clone's commonPrefixSearch, keeping the longest match.
  auto offset = [](uint32_t u) { return (u >> 10) << ((u & (1u << 9)) >> 6); };
  auto label = [](uint32_t u) { return u & ((1u << 31) | 0xFF); };
  auto has_leaf = [](uint32_t u) { return ((u >> 8) & 1) != 0; };
  auto value = [](uint32_t u) { return u & ((1u << 31) - 1); };
  size_t node = offset(trie_[0]);
  bool found = false;
  for (size_t i = pos; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    node ^= c;
    if (node >= trie_.size()) break;
    const uint32_t unit = trie_[node];
    if (label(unit) != c) break;
    node ^= offset(unit);
    if (node >= trie_.size()) break;
    if (has_leaf(unit)) {
      const size_t at = value(trie_[node]);
      if (at >= replacements_.size()) break;
      *out = std::string(replacements_.c_str() + at);
      *length = i + 1 - pos;
      found = true;
    }
  }
  return found;
}

std::string T5Tokenizer::normalize(const std::string& input) const {
  // The replacement of the text at pos and the bytes it covers (sentencepiece's normalize_prefix).
  auto prefix = [&](size_t pos, std::string* out) -> size_t {
    size_t length = 0;
    if (table_prefix(input, pos, out, &length)) return length;
    if (const size_t n = utf8_char(input, pos)) {
      *out = input.substr(pos, n);
      return n;
    }
    *out = "\xEF\xBF\xBD";  // a malformed byte becomes U+FFFD
    return 1;
  };
  size_t pos = 0;
  std::string piece;
  if (remove_extra_whitespaces_)
    while (pos < input.size()) {
      const size_t n = prefix(pos, &piece);
      if (piece != " ") break;
      pos += n;
    }
  std::string out;
  if (pos >= input.size()) return out;
  if (add_dummy_prefix_) out += escape_whitespaces_ ? kSpaceMark : " ";
  bool previous_space = remove_extra_whitespaces_;
  while (pos < input.size()) {
    pos += prefix(pos, &piece);
    size_t start = 0;
    while (previous_space && start < piece.size() && piece[start] == ' ') ++start;
    if (start == piece.size()) continue;
    for (size_t i = start; i < piece.size(); ++i) out += escape_whitespaces_ && piece[i] == ' ' ? kSpaceMark : std::string(1, piece[i]);
    previous_space = remove_extra_whitespaces_ && piece.back() == ' ';  // runs collapse only when asked
  }
  if (remove_extra_whitespaces_) {
    const std::string space = escape_whitespaces_ ? kSpaceMark : " ";
    while (out.size() >= space.size() && out.compare(out.size() - space.size(), space.size(), space) == 0)
      out.resize(out.size() - space.size());
  }
  return out;
}

std::vector<int> T5Tokenizer::encode_plain(const std::string& text) const {
  const std::string s = normalize(text);
  const size_t n = s.size();
  // Viterbi over byte positions at character boundaries, as sentencepiece's EncodeOptimized:
  // for each start, every piece that matches there (shortest first); a strictly better score
  // replaces a node's best path.
  struct Node {
    float score = 0;
    long start = -1;
    int id = -1;
  };
  std::vector<Node> nodes(n + 1);
  nodes[0].start = 0;
  for (size_t start = 0; start < n;) {
    if (nodes[start].start < 0) throw std::logic_error("T5 tokenizer: unreachable position");
    const float here = nodes[start].score;
    const size_t char_len = std::min(utf8_length(static_cast<unsigned char>(s[start])), n - start);
    bool single = false;
    for (size_t len = 1; len <= max_piece_bytes_ && start + len <= n; ++len) {
      auto it = pieces_.find(s.substr(start, len));
      if (it == pieces_.end()) continue;
      auto& target = nodes[start + len];
      const float candidate = here + scores_[static_cast<size_t>(it->second)];
      if (target.start < 0 || candidate > target.score) target = {candidate, static_cast<long>(start), it->second};
      if (len == char_len) single = true;
    }
    if (!single) {
      auto& target = nodes[start + char_len];
      const float candidate = here + unk_score_;
      if (target.start < 0 || candidate > target.score) target = {candidate, static_cast<long>(start), kUnk};
    }
    start += char_len;
  }
  std::vector<int> ids;
  for (size_t at = n; at > 0; at = static_cast<size_t>(nodes[at].start)) ids.push_back(nodes[at].id);
  std::vector<int> out;
  for (auto it = ids.rbegin(); it != ids.rend(); ++it)
    if (!(*it == kUnk && !out.empty() && out.back() == kUnk)) out.push_back(*it);  // a run of unknowns is one <unk>
  return out;
}

std::vector<int> T5Tokenizer::encode(const std::string& text) const {
  const int pieces = static_cast<int>(scores_.size());
  std::vector<int> ids;
  auto plain = [&](size_t begin, size_t end) {
    if (end <= begin) return;
    const auto part = encode_plain(text.substr(begin, end - begin));
    ids.insert(ids.end(), part.begin(), part.end());
  };
  size_t start = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    int id = 0;
    size_t length = 0;
    if (text[i] != '<' || !special_at(text, i, pieces, &id, &length)) continue;
    plain(start, i);
    ids.push_back(id);
    start = i + length;
    i = start - 1;
  }
  plain(start, text.size());
  ids.push_back(kEos);
  return ids;
}

std::vector<int> T5Tokenizer::encode_padded(const std::string& text, size_t length) const {
  auto ids = encode(text);
  if (length == 0) return {};
  if (ids.size() > length) {
    ids.resize(length);
    ids.back() = kEos;
  }
  ids.resize(length, kPad);
  return ids;
}

}  // namespace sigma::models
