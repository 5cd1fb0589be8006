// A1111's parse_prompt_attention and tokenize_line, step for step (see prompt.h).
// The parser walks the prompt with the same alternatives, in the same order, as A1111's
// re_attention regex; the characters that regex treats specially are all ASCII, so it
// scans UTF-8 bytes and decodes code points only where Python's Unicode classes
// (\s, \d, \b) decide. Weights are doubles multiplied in A1111's order, so merging
// "equal" neighbours gives the same runs as Python does.
#include "app/prompt.h"

#include <cctype>
#include <filesystem>

#include <unicode/uchar.h>
#include <unicode/utf8.h>

#include "models/io/json_text.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <map>
#include <stdexcept>
#include <string_view>

namespace sigma::app {
namespace {

// The code point at byte i (-1 if ill-formed); `len` receives its byte length.
UChar32 code_point_at(const std::string& s, size_t i, size_t* len) {
  int32_t j = static_cast<int32_t>(i);
  UChar32 c;
  U8_NEXT(s.data(), j, static_cast<int32_t>(s.size()), c);
  *len = static_cast<size_t>(j) - i;
  return c;
}

// The start of the code point that ends just before byte i.
size_t previous_start(const std::string& s, size_t i) {
  do --i;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80);
  return i;
}

// Python's str.isspace(): bidirectional class WS, B or S, or category Zs (\x1c..\x1f included).
bool py_space(UChar32 c) {
  if (c < 0) return false;
  const UCharDirection d = u_charDirection(c);
  return d == U_WHITE_SPACE_NEUTRAL || d == U_BLOCK_SEPARATOR || d == U_SEGMENT_SEPARATOR ||
         u_charType(c) == U_SPACE_SEPARATOR;
}

// Python's \w: letters, anything with a numeric value, and "_".
bool py_word(UChar32 c) {
  if (c < 0) return false;
  return c == '_' || (U_GET_GC_MASK(c) & U_GC_L_MASK) ||
         u_getIntPropertyValue(c, UCHAR_NUMERIC_TYPE) != U_NT_NONE;
}

// Python's \d: a decimal digit (category Nd); its value, or -1.
int py_digit(UChar32 c) { return (c >= 0 && u_charType(c) == U_DECIMAL_DIGIT_NUMBER) ? u_charDigitValue(c) : -1; }

bool is_syntax(char ch) {
  return ch == '\\' || ch == '(' || ch == ')' || ch == '[' || ch == ']' || ch == ':';
}

// re.split(r"\s*\bBREAK\b\s*", text): the pieces between BREAK words.
std::vector<std::string> split_break(const std::string& text) {
  static const std::string kBreak = "BREAK";
  std::vector<std::string> parts;
  size_t piece_start = 0, search = 0, len = 0;
  for (size_t p; (p = text.find(kBreak, search)) != std::string::npos;) {
    const size_t after = p + kBreak.size();
    const bool word_before = p > 0 && py_word(code_point_at(text, previous_start(text, p), &len));
    const bool word_after = after < text.size() && py_word(code_point_at(text, after, &len));
    if (word_before || word_after) {
      search = p + 1;
      continue;
    }
    size_t begin = p;  // \s* before: back over whitespace, not into the previous match
    while (begin > piece_start) {
      const size_t prev = previous_start(text, begin);
      if (!py_space(code_point_at(text, prev, &len))) break;
      begin = prev;
    }
    size_t end = after;  // \s* after
    while (end < text.size()) {
      const UChar32 c = code_point_at(text, end, &len);
      if (!py_space(c)) break;
      end += len;
    }
    parts.push_back(text.substr(piece_start, begin - piece_start));
    piece_start = search = end;
  }
  parts.push_back(text.substr(piece_start));
  return parts;
}

// At a ':', the alternative :\s*([+-]?[.\d]+)\s*\) of re_attention. On a match, returns
// true with `end` after the ')' and `number` holding the group in ASCII digits.
bool match_weight(const std::string& s, size_t i, size_t* end, std::string* number) {
  size_t p = i + 1, len = 0;
  auto skip_space = [&] {
    while (p < s.size() && py_space(code_point_at(s, p, &len))) p += len;
  };
  skip_space();
  number->clear();
  if (p < s.size() && (s[p] == '+' || s[p] == '-')) number->push_back(s[p++]);
  const size_t sign = number->size();
  while (p < s.size()) {
    const UChar32 c = code_point_at(s, p, &len);
    if (c == '.') {
      number->push_back('.');
    } else if (const int d = py_digit(c); d >= 0) {
      number->push_back(static_cast<char>('0' + d));
    } else {
      break;
    }
    p += len;
  }
  if (number->size() == sign) return false;
  skip_space();
  if (p >= s.size() || s[p] != ')') return false;
  *end = p + 1;
  return true;
}

// Python's float() on "[+-]?[.\d]+": throws where Python raises ValueError ("1.2.3", ".").
double parse_weight(const std::string& number, const std::string& prompt) {
  const bool negative = !number.empty() && number[0] == '-';
  const size_t start = (!number.empty() && (number[0] == '+' || number[0] == '-')) ? 1 : 0;
  double value = 0;
  const char* first = number.data() + start;
  const char* last = number.data() + number.size();
  const auto [ptr, ec] = std::from_chars(first, last, value, std::chars_format::fixed);
  if (ec != std::errc() || ptr != last)
    throw std::invalid_argument("prompt \"" + models::utf8_prefix(prompt, 80) + "\": the attention weight '" + number +
                                "' is not a number; write it like (text:1.2)");
  return negative ? -value : value;
}

// A chunk's tokens wrapped to 77: [start] tokens [end] filled with end tokens, then, as
// A1111 does for SD 2.x, everything after the first end token replaced by the pad id.
void append_chunk(PromptChunks& out, const models::ClipTokenizer& tok, const std::vector<int>& tokens,
                  const std::vector<float>& mults) {
  std::array<int, kChunkLength> ids;
  std::array<float, kChunkLength> weights;
  ids.fill(tok.eos());
  weights.fill(1.0f);
  ids[0] = tok.bos();
  for (size_t i = 0; i < tokens.size(); ++i) {
    ids[i + 1] = tokens[i];
    weights[i + 1] = mults[i];
  }
  if (tok.pad() != tok.eos()) {
    size_t first_end = 0;
    while (ids[first_end] != tok.eos()) ++first_end;  // ids[76] is always the end token
    for (size_t i = first_end + 1; i < ids.size(); ++i) ids[i] = tok.pad();
  }
  out.ids.push_back(ids);
  out.weights.push_back(weights);
  out.used.push_back(static_cast<int>(tokens.size()));
}

}  // namespace

std::vector<WeightedText> parse_prompt_attention(const std::string& prompt) {
  constexpr double kRound = 1.1, kSquare = 1 / 1.1;
  std::vector<WeightedText> res;
  std::vector<size_t> round, square;
  auto multiply_range = [&](size_t start, double multiplier) {
    for (size_t p = start; p < res.size(); ++p) res[p].weight *= multiplier;
  };
  auto add_text = [&](const std::string& text) {
    const auto parts = split_break(text);
    for (size_t i = 0; i < parts.size(); ++i) {
      if (i > 0) res.push_back({"BREAK", -1});
      res.push_back({parts[i], 1.0});
    }
  };

  std::string number;
  for (size_t i = 0, end = 0; i < prompt.size();) {
    const char ch = prompt[i];
    if (ch == '\\') {  // \( \) \[ \] \\ give the character; a lone backslash gives nothing
      const bool escape = i + 1 < prompt.size() && std::string_view("()[]\\").find(prompt[i + 1]) != std::string_view::npos;
      res.push_back({escape ? std::string(1, prompt[i + 1]) : std::string(), 1.0});
      i += escape ? 2 : 1;
    } else if (ch == '(') {
      round.push_back(res.size());
      ++i;
    } else if (ch == '[') {
      square.push_back(res.size());
      ++i;
    } else if (ch == ':' && match_weight(prompt, i, &end, &number)) {
      if (!round.empty()) {
        const size_t start = round.back();
        round.pop_back();
        multiply_range(start, parse_weight(number, prompt));
      } else {
        add_text(prompt.substr(i, end - i));
      }
      i = end;
    } else if (ch == ')' && !round.empty()) {
      const size_t start = round.back();
      round.pop_back();
      multiply_range(start, kRound);
      ++i;
    } else if (ch == ']' && !square.empty()) {
      const size_t start = square.back();
      square.pop_back();
      multiply_range(start, kSquare);
      ++i;
    } else if (is_syntax(ch)) {  // an unmatched ')' or ']', or a ':' that starts no weight
      add_text(std::string(1, ch));
      ++i;
    } else {
      size_t j = i;
      while (j < prompt.size() && !is_syntax(prompt[j])) ++j;
      add_text(prompt.substr(i, j - i));
      i = j;
    }
  }
  for (size_t pos : round) multiply_range(pos, kRound);
  for (size_t pos : square) multiply_range(pos, kSquare);
  if (res.empty()) res.push_back({"", 1.0});
  // Each bracket multiplies by 1.1: ~100 nested ones reach 10^4, 7,500 overflow a double, and
  // such a weight turns the text encoder's output into Inf whatever the dtype. Refused here,
  // with the reason, instead of a NaN picture or a "try --dtype fp32" that cannot help.
  constexpr double kMaxWeight = 1e4;
  for (const auto& piece : res)
    if (piece.weight != -1 && !(std::fabs(piece.weight) <= kMaxWeight))
      throw std::invalid_argument("prompt: the attention weight of \"" + models::utf8_prefix(piece.text, 40) + "\" is " +
                                  std::to_string(piece.weight) + ", outside -10000..10000 (each ( ) multiplies by 1.1, " +
                                  "each (text:w) by w); remove some brackets");

  for (size_t i = 0; i + 1 < res.size();) {  // merge runs of identical weights
    if (res[i].weight == res[i + 1].weight) {
      res[i].text += res[i + 1].text;
      res.erase(res.begin() + static_cast<std::ptrdiff_t>(i) + 1);
    } else {
      ++i;
    }
  }
  return res;
}

namespace {

// `word` -> first_id.., everywhere in ids (models::expand_embedding, without LibTorch).
std::vector<int> expand_word(const std::vector<int>& ids, const PromptEmbedding& e) {
  if (e.word.empty()) return ids;
  std::vector<int> out;
  for (size_t i = 0; i < ids.size();) {
    if (i + e.word.size() <= ids.size() && std::equal(e.word.begin(), e.word.end(), ids.begin() + static_cast<std::ptrdiff_t>(i))) {
      for (int k = 0; k < e.count; ++k) out.push_back(e.first_id + k);
      i += e.word.size();
    } else {
      out.push_back(ids[i++]);
    }
  }
  return out;
}

}  // namespace

std::string strip_extra_networks(const std::string& prompt, std::vector<ExtraNetworkTag>* tags) {
  // re.sub(r"<(\w+):([^>]+)>", "", prompt): at each '<', a word, ':', one or more non-'>'
  // characters and '>'; a failed match moves on by one character, as the regex scan does.
  auto word_byte = [](unsigned char c) { return std::isalnum(c) || c == '_' || c >= 0x80; };
  std::string out;
  size_t i = 0;
  while (i < prompt.size()) {
    if (prompt[i] == '<') {
      size_t j = i + 1;
      while (j < prompt.size() && word_byte(static_cast<unsigned char>(prompt[j]))) ++j;
      if (j > i + 1 && j < prompt.size() && prompt[j] == ':') {
        const size_t close = prompt.find('>', j + 1);
        if (close != std::string::npos && close > j + 1) {
          if (tags) {
            ExtraNetworkTag t;
            t.type = prompt.substr(i + 1, j - i - 1);
            t.begin = i;
            t.length = close + 1 - i;
            const std::string args = prompt.substr(j + 1, close - j - 1);
            size_t a = 0;
            for (size_t b; (b = args.find(':', a)) != std::string::npos; a = b + 1) t.items.push_back(args.substr(a, b - a));
            t.items.push_back(args.substr(a));
            tags->push_back(std::move(t));
          }
          i = close + 1;
          continue;
        }
      }
    }
    out.push_back(prompt[i++]);
  }
  return out;
}

PromptTokens tokenize_runs(const models::ClipTokenizer& tok, const std::string& prompt, bool emphasis) {
  PromptTokens out;
  for (auto& [text, weight] : emphasis ? parse_prompt_attention(prompt) : std::vector<WeightedText>{{prompt, 1.0}}) {
    const bool chunk_break = text == "BREAK" && weight == -1;
    out.runs.push_back({chunk_break ? std::vector<int>{} : tok.encode(text), weight, chunk_break});
  }
  return out;
}

PromptChunks tokenize_prompt(const models::ClipTokenizer& tok, const std::string& prompt, bool emphasis,
                             const std::vector<PromptEmbedding>* embeddings) {
  return chunk_prompt(tok, tokenize_runs(tok, prompt, emphasis), embeddings);
}

PromptChunks chunk_prompt(const models::ClipTokenizer& tok, const PromptTokens& prompt_tokens,
                          const std::vector<PromptEmbedding>* embeddings) {
  constexpr int kCommaBacktrack = 20;  // A1111's default comma_padding_backtrack
  const int comma = tok.token_id(",</w>");
  std::map<int, int> embedding_starts;  // first extra id -> vectors
  if (embeddings)
    for (const auto& e : *embeddings) embedding_starts[e.first_id] = e.count;

  PromptChunks out;
  std::vector<int> tokens;
  std::vector<float> mults;
  int last_comma = -1;
  auto next_chunk = [&](bool is_last) {
    out.token_count += is_last ? static_cast<int>(tokens.size()) : kChunkTokens;
    append_chunk(out, tok, tokens, mults);
    tokens.clear();
    mults.clear();
    last_comma = -1;
  };

  for (const auto& [ids, weight, chunk_break] : prompt_tokens.runs) {
    if (chunk_break) {
      next_chunk(false);
      continue;
    }
    std::vector<int> encoded = ids;
    if (embeddings)
      for (const auto& e : *embeddings) encoded = expand_word(encoded, e);
    for (int id : encoded) {
      const int n = static_cast<int>(tokens.size());
      if (id == comma) {
        last_comma = n;
      } else if (n == kChunkTokens && last_comma != -1 && n - last_comma <= kCommaBacktrack) {
        // The chunk is full and a comma is near its end: the words after that comma move
        // to the next chunk so a phrase is not cut in two.
        const auto cut = static_cast<std::ptrdiff_t>(last_comma + 1);
        std::vector<int> moved_tokens(tokens.begin() + cut, tokens.end());
        std::vector<float> moved_mults(mults.begin() + cut, mults.end());
        tokens.resize(static_cast<size_t>(cut));
        mults.resize(static_cast<size_t>(cut));
        next_chunk(false);
        tokens = std::move(moved_tokens);
        mults = std::move(moved_mults);
      }
      if (static_cast<int>(tokens.size()) == kChunkTokens) next_chunk(false);
      // An embedding stays whole: when its vectors do not fit, the chunk ends before it (A1111).
      if (auto e = embedding_starts.find(id);
          e != embedding_starts.end() && !tokens.empty() && static_cast<int>(tokens.size()) + e->second > kChunkTokens)
        next_chunk(false);
      tokens.push_back(id);
      mults.push_back(static_cast<float>(weight));
    }
  }
  if (!tokens.empty() || out.ids.empty()) next_chunk(true);
  return out;
}

void pad_to_chunks(PromptChunks& chunks, size_t n, const models::ClipTokenizer& tok) {
  while (chunks.ids.size() < n) append_chunk(chunks, tok, {}, {});
}

std::vector<int> chunk_token_counts(const PromptChunks& chunks) { return chunks.used; }

int target_token_count(int token_count) {
  const int chunks = (std::max(token_count, 1) + kChunkTokens - 1) / kChunkTokens;
  return chunks * kChunkTokens;
}

namespace {

// ComfyUI's `embedding:NAME` (also embedding:sub/NAME.safetensors): the word NAME.
std::string comfy_embedding_words(const std::string& s) {
  static const std::string kPrefix = "embedding:";
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    const bool at_word = i == 0 || !(std::isalnum(static_cast<unsigned char>(s[i - 1])) || s[i - 1] == '_');
    if (at_word && s.compare(i, kPrefix.size(), kPrefix) == 0) {
      size_t j = i + kPrefix.size();
      size_t end = j;
      while (end < s.size() && !std::isspace(static_cast<unsigned char>(s[end])) && std::string(",()[]:").find(s[end]) == std::string::npos)
        ++end;
      if (end > j) {
        std::filesystem::path p(s.substr(j, end - j));
        std::string ext = p.extension().string();
        for (auto& ch : ext) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        const bool file = ext == ".safetensors" || ext == ".pt" || ext == ".ckpt" || ext == ".bin" || ext == ".pth";
        std::string name = file ? p.stem().string() : p.filename().string();
        out += name;
        i = end;
        continue;
      }
    }
    out.push_back(s[i++]);
  }
  return out;
}

double strength(const std::string& v, const std::string& tag) {
  const auto w = parse_number(v);
  if (!w) throw std::invalid_argument("prompt tag " + tag + ": '" + v + "' is not a number (AUTOMATIC1111's form is <lora:name:0.8>)");
  return *w;
}

// A1111's extensions-builtin/Lora/extra_networks_lora.py: positional[1] is the text-encoder
// multiplier (default 1), positional[2] the UNet's (default: the text one); te= and unet= override.
LoraRef lora_from_tag(const ExtraNetworkTag& t) {
  std::string tag = "<" + t.type;
  for (const auto& i : t.items) tag += ":" + i;
  tag += ">";
  std::vector<std::string> positional;
  std::map<std::string, std::string> named;
  for (const auto& item : t.items) {
    const auto eq = item.find('=');
    if (eq != std::string::npos) named[item.substr(0, eq)] = item.substr(eq + 1);
    else positional.push_back(item);
  }
  if (positional.empty() || positional[0].empty()) throw std::invalid_argument("prompt tag " + tag + ": no LoRA name");
  LoraRef l;
  l.name = positional[0];
  l.text = positional.size() > 1 ? strength(positional[1], tag) : 1.0;
  if (named.count("te")) l.text = strength(named["te"], tag);
  l.unet = positional.size() > 2 ? strength(positional[2], tag) : l.text;
  if (named.count("unet")) l.unet = strength(named["unet"], tag);
  return l;
}

}  // namespace

ParsedPrompt parse_prompt(const std::string& prompt) {
  ParsedPrompt p;
  p.text = comfy_embedding_words(strip_extra_networks(prompt, &p.tags));
  return p;
}

RequestPrompts read_prompts(const Request& r) {
  RequestPrompts p;
  p.positive = parse_prompt(r.prompt);
  p.negative = parse_prompt(r.negative);
  for (const auto& t : p.positive.tags)
    if (t.type == "lora" || t.type == "lyco") p.loras.push_back(lora_from_tag(t));
  p.loras.insert(p.loras.end(), r.lora.begin(), r.lora.end());
  return p;
}

void tokenize(RequestPrompts& p, const models::ClipTokenizer& tokenizer, bool emphasis) {
  p.positive_tokens = tokenize_runs(tokenizer, p.positive.text, emphasis);
  p.negative_tokens = tokenize_runs(tokenizer, p.negative.text, emphasis);
}


}  // namespace sigma::app
