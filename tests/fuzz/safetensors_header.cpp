// The safetensors header and its tensor index (models/io/safetensors_header.h).
// Input: a file's first bytes. The 8-byte length prefix is checked as the reader does
// (against the limit and the input's size); then the rest is parsed as the JSON header
// with the prefix read as the data buffer's size, so offsets of any size can be tried
// without the fuzzer having to write the data.
#include <cstring>

#include "models/io/safetensors_header.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sigma::models;
  if (size > (1u << 20)) return -1;
  try {
    if (size >= 8) {
      const uint64_t n = safetensors_header_length("fuzz", data, size);
      if (n > size - 8) __builtin_trap();  // the check promised this
    } else {
      safetensors_header_length("fuzz", data, size);
      __builtin_trap();  // a file shorter than 8 bytes must be refused
    }
  } catch (const SafetensorsError&) {
  }
  if (size < 8) return 0;
  uint64_t data_size = 0;
  for (int i = 7; i >= 0; --i) data_size = (data_size << 8) | data[i];
  std::map<std::string, std::string> metadata;
  try {
    const auto tensors = parse_safetensors_header("fuzz", sigma::fuzz::as_string(data + 8, size - 8), data_size, &metadata);
    // What the parser promises: sorted by name, every tensor inside the buffer, byte sizes
    // that match the shapes, and the buffer covered exactly.
    uint64_t covered = 0;
    for (size_t i = 0; i < tensors.size(); ++i) {
      const auto& t = tensors[i];
      if (i && !(tensors[i - 1].name < t.name)) __builtin_trap();
      if (t.end < t.begin || t.end > data_size) __builtin_trap();
      if (static_cast<uint64_t>(t.numel()) * safetensors_dtype_bytes(t.dtype) != t.end - t.begin) __builtin_trap();
      covered += t.end - t.begin;
    }
    if (covered != data_size) __builtin_trap();
  } catch (const SafetensorsError&) {
  }
  return 0;
}
