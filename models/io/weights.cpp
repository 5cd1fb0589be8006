#include "models/io/weights.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <set>
#include <sstream>
#include <thread>

#ifdef SIGMA_WITH_CUDA
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#endif


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
  auto t = value.defined() ? value.to(dtype) : file->load(key, scale.defined() ? torch::kFloat32 : dtype);
  if (scale.defined()) t = (t * scale).to(dtype);  // dequantized in float32, then rounded once
  return t.sizes().vec() == shape ? t : t.reshape(shape);
}

TensorIndex index_file(const std::shared_ptr<const SafeTensors>& file, const std::string& prefix) {
  TensorIndex index;
  for (const auto& t : file->tensors()) {
    if (t.name.compare(0, prefix.size(), prefix) != 0) continue;
    index[t.name.substr(prefix.size())] = TensorRef{file, t.name, t.shape, {}, {}};
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

namespace {

using Plan = std::vector<std::pair<torch::Tensor, const TensorRef*>>;

#ifdef SIGMA_WITH_CUDA
// The file's tensors onto a CUDA device through pinned host buffers, several tensors at once:
// one .to(device) per tensor read each into pageable memory and let the driver stage it, one
// tensor at a time (a 2 GB SD 1.5 file took 1.07-1.28 s to load on the H200). Each worker
// thread (6, 8 MB slices: 96 MB pinned while loading) reads a tensor's bytes in slices into
// its two pinned buffers (one filling while the other is copied on the worker's stream); a
// tensor stored in another dtype is converted on the GPU. The targets are allocated here, on
// the loading thread's stream, before any copy. Items that are not plain file tensors (made
// in memory, F8) are left in `rest`.
void upload_to_cuda(Plan& plan, torch::ScalarType dtype, torch::Device device, Plan& rest) {
  struct Item {
    torch::Tensor target, result;  // the module's parameter; its new data on the device
    const TensorRef* ref;
    const TensorInfo* info;
    torch::ScalarType stored;
  };
  std::vector<Item> items;
  for (auto& [target, ref] : plan) {
    const TensorInfo* info = ref->value.defined() || ref->scale.defined() || !ref->file ? nullptr : ref->file->find(ref->key);
    const auto stored = info ? safetensors_torch_dtype(info->dtype) : std::nullopt;
    if (!stored) {
      rest.emplace_back(target, ref);
      continue;
    }
    items.push_back({target, torch::empty(target.sizes(), torch::TensorOptions().dtype(dtype).device(device)), ref, info, *stored});
  }
  if (items.empty()) return;
  // Largest first, so the workers end together.
  std::sort(items.begin(), items.end(), [](const Item& a, const Item& b) { return a.info->end - a.info->begin > b.info->end - b.info->begin; });
  constexpr uint64_t kSlice = 8u << 20;
  const unsigned workers = std::max(1u, std::min({6u, std::thread::hardware_concurrency(), static_cast<unsigned>(items.size())}));
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::vector<std::exception_ptr> errors(workers);
  // The targets' memory may have been in use on the loading thread's stream until just now.
  c10::cuda::getCurrentCUDAStream(device.index()).synchronize();
  // Autograd and inference modes are per thread: the workers take the caller's, since a
  // conversion writes into targets made under the caller's InferenceMode (tests load so).
  const bool inference = c10::InferenceMode::is_enabled();
  auto work = [&](unsigned w) {
    c10::InferenceMode inference_mode(inference);
    torch::NoGradGuard no_grad;
    c10::cuda::CUDAGuard on_device(device);
    const auto stream = c10::cuda::getStreamFromPool(false, device.index());
    c10::cuda::CUDAStreamGuard on_stream(stream);
    cudaEvent_t copied[2] = {nullptr, nullptr};
    void* buffer[2] = {nullptr, nullptr};  // pinned; freed below, not kept in LibTorch's host cache
    try {
      for (auto& p : buffer) C10_CUDA_CHECK(cudaHostAlloc(&p, kSlice, cudaHostAllocDefault));
      for (auto& e : copied) C10_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
      bool queued[2] = {false, false};
      int b = 0;
      while (!failed) {
        const size_t i = next++;
        if (i >= items.size()) break;
        Item& it = items[i];
        // Stored bytes land in the target itself, or in a staging tensor converted after.
        torch::Tensor raw = it.stored == dtype ? it.result : torch::empty(it.target.sizes(), it.result.options().dtype(it.stored));
        auto* dst = static_cast<uint8_t*>(raw.data_ptr());
        const uint64_t bytes = it.info->end - it.info->begin;
        for (uint64_t from = 0; from < bytes; from += kSlice, b ^= 1) {
          const uint64_t n = std::min(kSlice, bytes - from);
          // This buffer's previous copy must be done before it is refilled; the other
          // buffer's copy runs meanwhile.
          if (queued[b]) C10_CUDA_CHECK(cudaEventSynchronize(copied[b]));
          it.ref->file->read_bytes(*it.info, from, n, buffer[b]);
          C10_CUDA_CHECK(cudaMemcpyAsync(dst + from, buffer[b], n, cudaMemcpyHostToDevice, stream.stream()));
          C10_CUDA_CHECK(cudaEventRecord(copied[b], stream.stream()));
          queued[b] = true;
        }
        if (it.stored != dtype) it.result.copy_(raw);  // on this stream, after the copies
      }
    } catch (...) {
      errors[w] = std::current_exception();
      failed = true;
    }
    // The buffers and staging tensors outlive every copy queued from them.
    cudaStreamSynchronize(stream.stream());
    for (auto e : copied)
      if (e) cudaEventDestroy(e);
    for (auto p : buffer)
      if (p) cudaFreeHost(p);
  };
  std::vector<std::thread> threads;
  for (unsigned w = 1; w < workers; ++w) threads.emplace_back(work, w);
  work(0);
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  for (auto& it : items) it.target.set_data(it.result);
}
#endif

}  // namespace

void load_module(torch::nn::Module& module, const TensorIndex& index, const std::string& what,
                 torch::ScalarType dtype, torch::Device device, const std::vector<std::string>& ignore) {
  LoadReport report;
  std::set<std::string> used(ignore.begin(), ignore.end());
  Plan plan;
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
  // module built under SkipInit (models/nn/layers.h) never touches its uninitialised weights.
  // Every parameter and buffer is in `plan` (a missing one threw above).
  torch::NoGradGuard no_grad;
#ifdef SIGMA_WITH_CUDA
  if (device.is_cuda()) {
    Plan rest;
    upload_to_cuda(plan, dtype, device, rest);
    plan.swap(rest);
  }
#endif
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
