#include "models/runtime/cuda_graph.h"

#include <sstream>

#ifdef SIGMA_WITH_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include "models/runtime/options.h"

namespace sigma::models {

struct GraphCache::Entry {
#ifdef SIGMA_WITH_CUDA
  at::cuda::CUDAGraph graph;
#endif
  std::vector<torch::Tensor> inputs;  // static input buffers (undefined where the call has none)
  std::vector<torch::Tensor> outputs;  // static outputs, written by each replay
};

GraphCache::~GraphCache() = default;

bool GraphCache::enabled() {
#ifdef SIGMA_WITH_CUDA
  return runtime_options().cuda_graphs;
#else
  return false;
#endif
}

#ifdef SIGMA_WITH_CUDA
namespace {

std::string signature(const std::vector<torch::Tensor>& inputs) {
  std::ostringstream s;
  for (const auto& t : inputs) {
    if (!t.defined()) {
      s << "-;";
      continue;
    }
    s << t.device() << ' ' << t.scalar_type() << ' ' << t.sizes() << ' ' << t.is_contiguous(t.suggest_memory_format()) << ';';
  }
  return s.str();
}

}  // namespace
#endif

torch::Tensor GraphCache::run(const std::vector<torch::Tensor>& inputs, const Fn& fn) {
  return run_all(inputs, [&fn](const std::vector<torch::Tensor>& in) { return std::vector<torch::Tensor>{fn(in)}; }).front();
}

std::vector<torch::Tensor> GraphCache::run_all(const std::vector<torch::Tensor>& inputs, const MultiFn& fn,
                                               const std::string& variant) {
  const bool cuda = !inputs.empty() && inputs.front().defined() && inputs.front().is_cuda();
  if (!cuda || !enabled()) return fn(inputs);
#ifdef SIGMA_WITH_CUDA
  std::lock_guard<std::mutex> lock(mutex_);
  const std::string key = variant + '|' + signature(inputs);
  auto it = entries_.begin();
  while (it != entries_.end() && it->first != key) ++it;
  if (it != entries_.end()) {
    entries_.splice(entries_.begin(), entries_, it);  // most recently used first
  } else {
    auto e = std::make_shared<Entry>();
    for (const auto& t : inputs) e->inputs.push_back(t.defined() ? t.clone() : torch::Tensor());
    // Capture on a side stream after warm-up calls there (cuDNN/cuBLAS pick algorithms and
    // allocate workspaces outside the graph), as torch.cuda.graphs does.
    torch::cuda::synchronize();
    {
      const auto stream = c10::cuda::getStreamFromPool();
      c10::cuda::CUDAStreamGuard guard(stream);
      for (int i = 0; i < 2; ++i) fn(e->inputs);
      stream.synchronize();
      e->graph.capture_begin();
      try {
        e->outputs = fn(e->inputs);
      } catch (...) {
        // (An out-of-memory inside the call, say.) End the capture so the stream leaves
        // capture mode; the half-made graph and its memory pool go with `e`.
        try {
          e->graph.capture_end();
        } catch (...) {
        }
        throw;
      }
      e->graph.capture_end();
    }
    torch::cuda::synchronize();
    entries_.emplace_front(key, std::move(e));
    while (entries_.size() > capacity_) entries_.pop_back();  // frees that graph's memory pool
  }
  auto& e = *entries_.front().second;
  for (size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i].defined()) e.inputs[i].copy_(inputs[i], /*non_blocking=*/true);
  e.graph.replay();
  std::vector<torch::Tensor> out;
  for (const auto& t : e.outputs) out.push_back(t.defined() ? t.clone() : t);
  return out;
#else
  (void)variant;
  return fn(inputs);
#endif
}

size_t GraphCache::captured() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return entries_.size();
}

void GraphCache::clear() {
  std::lock_guard<std::mutex> lock(mutex_);
  entries_.clear();
}

}  // namespace sigma::models
