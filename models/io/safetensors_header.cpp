#include "models/io/safetensors_header.h"

#include <algorithm>
#include <climits>
#include <nlohmann/json.hpp>

#include "models/io/json_text.h"

namespace sigma::models {
namespace {

struct DTypeBytes {
  const char* name;
  size_t bytes;
};
constexpr DTypeBytes kDTypes[] = {{"F64", 8}, {"F32", 4},    {"F16", 2},     {"BF16", 2},    {"I64", 8},
                                  {"I32", 4}, {"I16", 2},    {"I8", 1},      {"U8", 1},      {"BOOL", 1},
                                  {"F8_E4M3", 1}, {"F8_E5M2", 1}};

std::string known_dtypes() {
  std::string s;
  for (const auto& d : kDTypes) s += (s.empty() ? "" : ", ") + std::string(d.name);
  return s;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw SafetensorsError(path + ": " + what);
}

}  // namespace

int64_t TensorInfo::numel() const {
  // Parsed shapes are checked to fit; a zero anywhere makes the count 0 without overflow.
  if (std::find(shape.begin(), shape.end(), 0) != shape.end()) return 0;
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

size_t safetensors_dtype_bytes(const std::string& dtype) {
  for (const auto& d : kDTypes)
    if (dtype == d.name) return d.bytes;
  return 0;
}

uint64_t safetensors_header_length(const std::string& path, const uint8_t* first8, uint64_t file_size) {
  if (file_size < 8)
    fail(path, "file is " + std::to_string(file_size) + " bytes, shorter than the 8-byte header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | first8[i];  // little-endian on every host
  if (n > kMaxSafetensorsHeaderBytes)
    fail(path, "header length " + std::to_string(n) +
                   " exceeds the 100000000-byte limit: the file is damaged or not safetensors");
  if (n > file_size - 8)
    fail(path, "header length " + std::to_string(n) + " runs past the end of the " + std::to_string(file_size) +
                   "-byte file: the file is truncated or not safetensors");
  return n;
}

std::vector<TensorInfo> parse_safetensors_header(const std::string& path, const std::string& text,
                                                 uint64_t data_size,
                                                 std::map<std::string, std::string>* metadata) {
  nlohmann::json j;
  try {
    j = parse_json(text, "the header");
  } catch (const JsonError& e) {
    fail(path, std::string(e.what()) + "; the file is damaged or not safetensors");
  }
  if (!j.is_object()) fail(path, "header is not a JSON object; the file is damaged or not safetensors");

  std::vector<TensorInfo> out;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) fail(path, "__metadata__ is not an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) fail(path, "__metadata__ entry '" + m.key() + "' is not a string");
        if (metadata) (*metadata)[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "': ";
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      fail(path, where + "entry needs dtype, shape and data_offsets");
    TensorInfo t;
    t.name = name;
    if (!v["dtype"].is_string()) fail(path, where + "dtype is not a string");
    t.dtype = v["dtype"].get<std::string>();
    const size_t elem_bytes = safetensors_dtype_bytes(t.dtype);
    if (!elem_bytes) fail(path, where + "unknown dtype '" + t.dtype + "' (known: " + known_dtypes() + ")");
    const auto& shape = v["shape"];
    if (!shape.is_array()) fail(path, where + "shape is not a list");
    // The element count is a checked product in shape order, as the reference's
    // checked_mul: [2^32, 2^32, 0] is refused, not wrapped to 0 (and a dimension above
    // 2^63 - 1 would turn negative as int64).
    uint64_t count = 1;
    for (const auto& d : shape) {
      if (!d.is_number_unsigned()) fail(path, where + "shape " + shape.dump() + " has a non-integer or negative dimension");
      const uint64_t dim = d.get<uint64_t>();
      if (dim > static_cast<uint64_t>(INT64_MAX) || __builtin_mul_overflow(count, dim, &count) ||
          count > static_cast<uint64_t>(INT64_MAX))
        fail(path, where + "shape " + shape.dump() + " has more elements than a 64-bit count holds");
      t.shape.push_back(static_cast<int64_t>(dim));
    }
    const auto& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      fail(path, where + "data_offsets must be two non-negative integers");
    t.begin = off[0].get<uint64_t>();
    t.end = off[1].get<uint64_t>();
    if (t.end < t.begin) fail(path, where + "data_offsets end before they begin");
    uint64_t expect = 0;
    const bool too_big = __builtin_mul_overflow(count, static_cast<uint64_t>(elem_bytes), &expect);
    if (too_big || expect != t.end - t.begin)
      fail(path, where + "byte size " + std::to_string(t.end - t.begin) + " does not match shape " +
                     shape_str(t.shape) + " x " + t.dtype + " (" +
                     (too_big ? std::string("more than 2^64") : std::to_string(expect)) + " bytes)");
    if (t.end > data_size)
      fail(path, where + "data ends at byte " + std::to_string(t.end) + " but the data buffer has only " +
                     std::to_string(data_size) + " bytes: the file is truncated");
    out.push_back(std::move(t));
  }

  // The buffer must be covered exactly: sorted by offset, no overlap, no gap, nothing left over.
  std::vector<const TensorInfo*> by_offset;
  for (const auto& t : out) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t pos = 0;
  const TensorInfo* prev = nullptr;
  for (const auto* t : by_offset) {
    if (t->begin < pos)
      fail(path, "tensor '" + t->name + "': data [" + std::to_string(t->begin) + "," + std::to_string(t->end) +
                     ") overlaps tensor '" + prev->name + "'");
    if (t->begin > pos)
      fail(path, "tensor '" + t->name + "': gap of " + std::to_string(t->begin - pos) + " bytes before its data" +
                     (prev ? " (after tensor '" + prev->name + "')" : " (at the start of the buffer)"));
    pos = t->end;
    prev = t;
  }
  if (pos != data_size)
    fail(path, std::to_string(data_size - pos) + " bytes at the end of the data buffer belong to no tensor" +
                   (prev ? " (last tensor '" + prev->name + "')" : ""));

  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

}  // namespace sigma::models
