#include "models/runtime/streaming.h"

#include <stdexcept>

namespace sigma::models {
namespace {

// set_data() takes a normal tensor: one made under InferenceMode could not be swapped back in.
template <class F>
void outside_inference_mode(F&& f) {
  c10::InferenceMode normal(false);
  torch::NoGradGuard no_grad;
  f();
}

// The module's parameters and buffers, each checked to be swappable.
std::vector<torch::Tensor> tensors_of(torch::nn::Module& m) {
  auto all = m.parameters();
  for (auto& b : m.buffers()) all.push_back(b);
  for (const auto& t : all)
    if (t.defined() && t.is_inference())
      throw std::logic_error("--lowvram: the module was loaded under c10::InferenceMode, so its weights cannot move "
                             "between host and GPU memory; load it outside InferenceMode");
  return all;
}

}  // namespace

void park_in_host_memory(torch::nn::Module& module) {
  outside_inference_mode([&] {
    for (auto& t : tensors_of(module)) {
      if (!t.defined()) continue;
      auto host = t.to(torch::kCPU);
      t.set_data(torch::cuda::is_available() ? host.pin_memory() : host);
    }
  });
}

OnDevice::OnDevice(torch::nn::Module& module, const torch::Device& device) {
  if (device.is_cpu()) return;
  outside_inference_mode([&] {
    for (auto& t : tensors_of(module)) {
      if (!t.defined() || t.device() == device) continue;
      visited_.emplace_back(t, t.data());
      t.set_data(t.to(device, t.scalar_type(), /*non_blocking=*/true));
    }
  });
}

OnDevice::~OnDevice() {
  outside_inference_mode([&] {
    for (auto& [t, host] : visited_) t.set_data(host);
  });
}

}  // namespace sigma::models
