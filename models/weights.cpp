#include "models/weights.h"

#include <algorithm>
#include <set>
#include <sstream>

namespace sigma::models {

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string TensorRef::dtype() const {
  if (value.defined()) return safetensors_dtype_name(value.scalar_type());
  return file->find(key)->dtype;
}

int64_t TensorRef::numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

torch::Tensor TensorRef::load(torch::ScalarType dtype) const {
  auto t = value.defined() ? value.to(dtype) : file->load(key, dtype);
  return t.sizes().vec() == shape ? t : t.reshape(shape);
}

TensorIndex index_file(const std::shared_ptr<const SafeTensors>& file, const std::string& prefix) {
  TensorIndex index;
  for (const auto& t : file->tensors()) {
    if (t.name.compare(0, prefix.size(), prefix) != 0) continue;
    index[t.name.substr(prefix.size())] = TensorRef{file, t.name, t.shape, {}};
  }
  return index;
}

std::string LoadReport::describe(size_t max_per_list) const {
  std::ostringstream s;
  auto list = [&](const char* title, const std::vector<std::string>& v) {
    if (v.empty()) return;
    s << "\n  " << title << " (" << v.size() << "):";
    for (size_t i = 0; i < v.size() && i < max_per_list; ++i) s << "\n    " << v[i];
    if (v.size() > max_per_list) s << "\n    ... and " << (v.size() - max_per_list) << " more";
  };
  list("missing keys", missing);
  list("unexpected keys", unexpected);
  list("wrong shapes", mismatched);
  return s.str();
}

void load_module(torch::nn::Module& module, const TensorIndex& index, const std::string& what,
                 torch::ScalarType dtype, torch::Device device, const std::vector<std::string>& ignore) {
  LoadReport report;
  std::set<std::string> used(ignore.begin(), ignore.end());
  std::vector<std::pair<torch::Tensor, const TensorRef*>> plan;
  auto visit = [&](const std::string& name, torch::Tensor& target) {
    auto it = index.find(name);
    if (it == index.end()) {
      report.missing.push_back(name);
      return;
    }
    used.insert(name);
    if (it->second.shape != target.sizes().vec()) {
      // A reshape is fine when only unit dimensions differ (Linear weights stored as 1x1 convs).
      if (it->second.numel() != target.numel() || target.numel() == 0) {
        report.mismatched.push_back(name + ": file " + shape_string(it->second.shape) + " vs model " +
                                    shape_string(target.sizes().vec()));
        return;
      }
    }
    plan.emplace_back(target, &it->second);
  };
  for (auto& p : module.named_parameters(true)) visit(p.key(), p.value());
  for (auto& b : module.named_buffers(true)) visit(b.key(), b.value());
  for (const auto& [name, ref] : index)
    if (!used.count(name)) report.unexpected.push_back(name);
  if (!report.ok())
    throw ModelLoadError(what + " does not match the expected structure:" + report.describe() +
                         "\n  (is this the right kind of model file, and complete?)");

  // Each parameter takes the file's tensor, converted once to `dtype` and moved once to the
  // device (set_data, as Module::to does): nothing is converted or copied twice, and a
  // module built under SkipInit (models/layers.h) never touches its uninitialised weights.
  // Every parameter and buffer is in `plan` (a missing one threw above).
  torch::NoGradGuard no_grad;
  for (auto& [target, ref] : plan) {
    auto t = ref->load(dtype).reshape(target.sizes()).to(device);
    // A tensor made in memory (ref->value) can come back as itself: the module gets its own.
    if (ref->value.defined() && t.is_alias_of(ref->value)) t = t.clone();
    target.set_data(t);
  }
}

int64_t count_parameters(const TensorIndex& index) {
  int64_t n = 0;
  for (const auto& [name, ref] : index) n += ref.numel();
  return n;
}

}  // namespace sigma::models
