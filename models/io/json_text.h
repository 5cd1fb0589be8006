// Every JSON text the project reads (request bodies, job lines, PNG text chunks, settings,
// safetensors headers, model folders' config.json) goes through parse_json, and every message
// that quotes a JSON value quotes json_excerpt of it.
//
// Why: nlohmann parses any depth without recursion, but copying, comparing, dumping and most
// walks of the parsed tree recurse once per level, so a 200 KB value nested 100,000 levels deep
// ended the process with a stack overflow (issue 25). The depth is checked on the text, before
// a tree exists, by a plain loop; no file or request the project knows nests deeper than ~10.
// Header-only and free of LibTorch: the server and the GUI include it.
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>

namespace sigma::models {

// Deepest nesting of arrays and objects accepted anywhere.
constexpr int kMaxJsonDepth = 64;

// A JSON text that is not acceptable: malformed, or nested deeper than the limit. The message
// starts with `what` (the file, flag or field the text came from) and quotes none of the text.
struct JsonError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// The deepest nesting of `[`/`{` in `text`, strings skipped; stops counting past `limit + 1`.
inline int json_depth(std::string_view text, int limit = kMaxJsonDepth) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (const char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '[' || c == '{') {
      if (++depth > deepest && (deepest = depth) > limit) return deepest;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

// Parses `text`; throws JsonError starting "`what`: " (nothing when `what` is empty) when it is
// malformed or nested deeper than `max_depth`.
inline nlohmann::json parse_json(std::string_view text, const std::string& what, int max_depth = kMaxJsonDepth) {
  const std::string at = what.empty() ? "" : what + ": ";
  if (json_depth(text, max_depth) > max_depth)
    throw JsonError(at + "JSON nested deeper than " + std::to_string(max_depth) + " levels; refused (no valid input nests that deep)");
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for a number like 1e400
    // nlohmann's message quotes the last token read, at most a few characters.
    std::string why = e.what();
    if (const auto at = why.find("] "); why.rfind("[json.exception", 0) == 0 && at != std::string::npos) why = why.substr(at + 2);
    throw JsonError(at + "not valid JSON (" + why + ")");
  }
}

// At most `max` bytes of `s`, cut on a UTF-8 character boundary, "..." added when cut.
inline std::string utf8_prefix(const std::string& s, size_t max) {
  if (s.size() <= max) return s;
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;  // not inside a character
  return s.substr(0, n) + "...";
}

// The value as JSON text for a message: at most `max` bytes, never invalid UTF-8 (a string
// with invalid bytes is shown with U+FFFD), never recursing deeper than the parse limit.
inline std::string json_excerpt(const nlohmann::json& v, size_t max = 60) {
  return utf8_prefix(v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), max);
}

// Whether `s` is well-formed UTF-8 (no overlong forms, surrogates or values past U+10FFFF).
inline bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = 0;
    unsigned cp = 0;
    if (c < 0x80) { ++i; continue; }
    if ((c & 0xE0) == 0xC0) n = 1, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0) n = 2, cp = c & 0x0F;
    else if ((c & 0xF8) == 0xF0) n = 3, cp = c & 0x07;
    else return false;
    if (i + n >= s.size()) return false;  // the sequence runs past the end
    for (size_t k = 1; k <= n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += n + 1;
  }
  return true;
}

}  // namespace sigma::models
