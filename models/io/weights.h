// Where each weight of a component lives (file + stored key + target shape), and
// loading a module from that index by its parameter names, with every missing,
// unexpected or wrong-shaped key reported by name in one error.
#pragma once

#include <torch/torch.h>

#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "models/io/safetensors.h"

namespace sigma::models {

struct ModelLoadError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct TensorRef {
  std::shared_ptr<const SafeTensors> file;
  std::string key;               // name in the file
  std::vector<int64_t> shape;    // shape the module expects (a reshape of the stored one, e.g. linear -> 1x1 conv)
  torch::Tensor value;           // set instead of file/key for tensors made in memory (LoRA merges, splits)
  torch::Tensor scale;           // a per-tensor factor of the stored value (ComfyUI's scaled fp8), else undefined
  std::string dtype() const;     // as stored
  int64_t numel() const;
  torch::Tensor load(torch::ScalarType dtype) const;
};

// Canonical (LDM / Hugging Face) name within a component -> where the weight is.
using TensorIndex = std::map<std::string, TensorRef>;

TensorIndex index_file(const std::shared_ptr<const SafeTensors>& file, const std::string& prefix = "");

struct LoadReport {
  std::vector<std::string> missing, unexpected, mismatched;  // mismatched: "name: file [..] vs model [..]"
  bool ok() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }
  std::string describe(size_t max_per_list = 12) const;
};

// Copies every parameter and buffer of `module` from `index`, converted to `dtype` and
// moved to `device`. Throws ModelLoadError naming `what` (e.g. "UNet of model.safetensors")
// and each bad key; `ignore` lists index keys that are known and deliberately unused.
void load_module(torch::nn::Module& module, const TensorIndex& index, const std::string& what,
                 torch::ScalarType dtype, torch::Device device, const std::vector<std::string>& ignore = {});

int64_t count_parameters(const TensorIndex& index);
std::string shape_string(const std::vector<int64_t>& shape);

}  // namespace sigma::models
