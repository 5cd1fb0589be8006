// safetensors: the reader (validated like the reference implementation; the header part,
// without LibTorch, is models/io/safetensors_header.h) and a writer. Format: u64 little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}},
// then the data buffer that the offsets index.
#pragma once

#include <torch/torch.h>

#include "models/io/safetensors_header.h"

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace sigma::models {

class SafeTensors {
 public:
  // Opens the file and validates the whole header; throws SafetensorsError. Tensors are
  // read with pread(2) from the open file, not through a memory mapping: a file that
  // shrinks or changes after open() (still downloading, rewritten in place) makes load()
  // throw SafetensorsError naming the file, where a mapping would die of SIGBUS.
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
  // Bytes [from, from + n) of tensor t's stored data into dst (any memory: pinned staging
  // buffers for a GPU upload); the same checks as load(). Safe to call from several threads.
  void read_bytes(const TensorInfo& t, uint64_t from, uint64_t n, void* dst) const;

 private:
  SafeTensors() = default;
  std::string path_;
  // Reads [offset, offset + n) of the file into dst, after checking that the file is still
  // the one that was opened (size and modification time); throws SafetensorsError.
  void read_at(void* dst, uint64_t n, uint64_t offset, const std::string& tensor) const;
  int fd_ = -1;
  uint64_t file_size_ = 0;
  int64_t mtime_ns_ = 0;
  uint64_t data_offset_ = 0;  // file offset of the data buffer
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Writes tensors (any device/dtype; stored as their dtype) atomically: a temporary
// file in the same folder, then rename.
void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// "F16" etc. for a torch dtype; throws for dtypes safetensors cannot hold.
std::string safetensors_dtype_name(torch::ScalarType t);
// The LibTorch type of a stored dtype ("F16" -> Half); nullopt for the F8 formats and unknown names.
std::optional<torch::ScalarType> safetensors_torch_dtype(const std::string& name);

}  // namespace sigma::models
