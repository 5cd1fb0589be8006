// safetensors: the reader (memory-mapped, validated like the reference implementation)
// and a writer. Format: u64 little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}},
// then the data buffer that the offsets index.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
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

class SafeTensors {
 public:
  // Maps the file and validates the whole header; throws SafetensorsError.
  static std::shared_ptr<const SafeTensors> open(const std::string& path);
  ~SafeTensors();
  SafeTensors(const SafeTensors&) = delete;
  SafeTensors& operator=(const SafeTensors&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // sorted by name
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const TensorInfo* find(const std::string& name) const;
  bool contains(const std::string& name) const { return find(name) != nullptr; }

  // A CPU tensor that owns its memory, converted to `dtype` when given
  // (F8 formats are decoded to float32 first).
  torch::Tensor load(const std::string& name, std::optional<torch::ScalarType> dtype = std::nullopt) const;

 private:
  SafeTensors() = default;
  std::string path_;
  const uint8_t* map_ = nullptr;
  size_t map_size_ = 0;
  const uint8_t* data_ = nullptr;  // start of the data buffer
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Validates and parses a header (exposed for tests); data_size is the byte length
// of the buffer that follows the header.
std::vector<TensorInfo> parse_safetensors_header(const std::string& path, const std::string& json,
                                                 uint64_t data_size,
                                                 std::map<std::string, std::string>* metadata);

// Writes tensors (any device/dtype; stored as their dtype) atomically: a temporary
// file in the same folder, then rename.
void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// "F16" etc. for a torch dtype; throws for dtypes safetensors cannot hold.
std::string safetensors_dtype_name(torch::ScalarType t);

}  // namespace sigma::models
