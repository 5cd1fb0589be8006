// The safetensors header, without LibTorch: the 8-byte length prefix, the JSON header
// and the tensor index it describes, validated like the reference implementation
// (safetensors' own validator): known dtypes, byte sizes that match the shapes, offsets
// that cover the data buffer exactly. The reader (safetensors.h) and the fuzz target
// tests/fuzz/safetensors_header share it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace sigma::models {

// Every violation of the format, with the file (and tensor) named in what().
struct SafetensorsError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct TensorInfo {
  std::string name;
  std::string dtype;            // as stored: "F16", "BF16", "F32", "I64", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte offsets into the data buffer
  int64_t numel() const;
};

// The header-length limit the reference implementation enforces (100 MB), so a hostile
// header cannot make us allocate gigabytes before the first check.
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

// Bytes per element of a stored dtype name, 0 for a name safetensors does not define.
size_t safetensors_dtype_bytes(const std::string& dtype);

// The header length N from the first 8 bytes of a file of `file_size` bytes, checked
// against the limit and the file size; throws SafetensorsError naming `path`.
uint64_t safetensors_header_length(const std::string& path, const uint8_t* first8, uint64_t file_size);

// Validates and parses a header; data_size is the byte length of the buffer that
// follows it. The result is sorted by name; metadata receives __metadata__ when given.
std::vector<TensorInfo> parse_safetensors_header(const std::string& path, const std::string& json,
                                                 uint64_t data_size,
                                                 std::map<std::string, std::string>* metadata);

}  // namespace sigma::models
