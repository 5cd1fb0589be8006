#include "models/kernels/cuda_ops.h"

#include <algorithm>
#include <optional>
#include <stdexcept>
#include <string>


#ifdef SIGMA_WITH_CUDA_KERNELS
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "models/kernels/cuda/channel_bias.h"
#include "models/kernels/cuda/geglu.h"
#include "models/kernels/cuda/group_norm.h"
#endif

namespace sigma::models {

bool fused_group_norm_enabled() {
#ifdef SIGMA_WITH_CUDA_KERNELS
  return true;
#else
  return false;
#endif
}

bool fused_bias_enabled() {
#ifdef SIGMA_WITH_CUDA_KERNELS
  return true;
#else
  return false;
#endif
}

#ifdef SIGMA_WITH_CUDA_KERNELS
namespace {

std::optional<cuda::DType> kernel_dtype(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32: return cuda::DType::f32;
    case torch::kFloat16: return cuda::DType::f16;
    case torch::kBFloat16: return cuda::DType::bf16;
    default: return std::nullopt;
  }
}

// The kernels' arguments for x, or nullopt where they do not apply (then LibTorch runs).
std::optional<cuda::GroupNormArgs> kernel_args(const torch::Tensor& x, int64_t groups, const torch::Tensor& gamma,
                                               const torch::Tensor& beta, double eps, bool silu) {
  if (!x.is_cuda() || x.dim() != 4) return std::nullopt;
  const auto dtype = kernel_dtype(x.scalar_type());
  if (!dtype) return std::nullopt;
  cuda::GroupNormArgs a;
  a.dtype = *dtype;
  const bool nchw = x.is_contiguous();
  if (!nchw && !x.is_contiguous(torch::MemoryFormat::ChannelsLast)) return std::nullopt;
  for (const auto* p : {&gamma, &beta})
    if (p->defined() && (p->scalar_type() != x.scalar_type() || p->device() != x.device() || !p->is_contiguous() ||
                         p->numel() != x.size(1)))
      return std::nullopt;
  a.x = x.data_ptr();
  a.gamma = gamma.defined() ? gamma.data_ptr() : nullptr;
  a.beta = beta.defined() ? beta.data_ptr() : nullptr;
  a.N = x.size(0);
  a.C = x.size(1);
  a.HW = x.size(2) * x.size(3);
  a.groups = groups;
  a.eps = static_cast<float>(eps);
  a.channels_last = !nchw;
  a.silu = silu;
  if (a.N == 0 || a.HW == 0 || !cuda::group_norm_supported(a)) return std::nullopt;
  return a;
}

torch::Tensor run_kernels(const torch::Tensor& x, cuda::GroupNormArgs a) {
  const c10::cuda::CUDAGuard guard(x.device());
  auto y = torch::empty_like(x);  // x is dense, so y gets x's strides (its layout)
  auto workspace = torch::empty({static_cast<int64_t>(cuda::group_norm_workspace_floats(a.N, a.C, a.groups))},
                                x.options().dtype(torch::kFloat32));
  a.y = y.data_ptr();
  a.workspace = workspace.data_ptr<float>();
  if (const char* err = cuda::group_norm(a, c10::cuda::getCurrentCUDAStream().stream()))
    throw std::runtime_error(std::string("fused GroupNorm kernel: ") + err);
  return y;
}

}  // namespace
#endif

torch::Tensor fused_group_norm(const torch::Tensor& x, int64_t groups, const torch::Tensor& gamma,
                               const torch::Tensor& beta, double eps, bool silu) {
#ifdef SIGMA_WITH_CUDA_KERNELS
  if (auto a = kernel_args(x, groups, gamma, beta, eps, silu)) return run_kernels(x, *a);
  throw std::invalid_argument("fused_group_norm: the kernels do not take a tensor of shape " +
                              std::to_string(x.dim()) + "-D " + std::string(c10::toString(x.scalar_type())) +
                              " on " + x.device().str());
#else
  (void)x, (void)groups, (void)gamma, (void)beta, (void)eps, (void)silu;
  throw std::logic_error("fused_group_norm: this build has no CUDA kernels");
#endif
}

torch::Tensor cuda_group_norm_act(const torch::Tensor& x, int64_t groups, const torch::Tensor& gamma,
                                  const torch::Tensor& beta, double eps, bool silu) {
#ifdef SIGMA_WITH_CUDA_KERNELS
  if (fused_group_norm_enabled())
    if (auto a = kernel_args(x, groups, gamma, beta, eps, silu)) return run_kernels(x, *a);
#else
  (void)x, (void)groups, (void)gamma, (void)beta, (void)eps, (void)silu;
#endif
  return {};
}

bool add_bias_nhwc(torch::Tensor& y, const torch::Tensor& bias, const torch::Tensor& image_bias) {
#ifdef SIGMA_WITH_CUDA_KERNELS
  const auto dtype = kernel_dtype(y.scalar_type());
  if (!dtype || !y.is_cuda() || y.dim() != 4 || !y.is_contiguous(torch::MemoryFormat::ChannelsLast)) return false;
  auto fits = [&](const torch::Tensor& b, int64_t n) {
    return !b.defined() || (b.scalar_type() == y.scalar_type() && b.device() == y.device() && b.is_contiguous() &&
                            b.numel() == n * y.size(1));
  };
  if (!fits(bias, 1) || !fits(image_bias, y.size(0))) return false;
  const c10::cuda::CUDAGuard guard(y.device());
  if (const char* err = cuda::add_channel_bias_nhwc(y.data_ptr(), bias.defined() ? bias.data_ptr() : nullptr,
                                                    image_bias.defined() ? image_bias.data_ptr() : nullptr, *dtype,
                                                    y.numel(), y.size(1), y.numel() / std::max<int64_t>(1, y.size(0)),
                                                    c10::cuda::getCurrentCUDAStream().stream()))
    throw std::runtime_error(std::string("convolution bias kernel: ") + err);
  return true;
#else
  (void)y, (void)bias, (void)image_bias;
  return false;
#endif
}

torch::Tensor cuda_geglu(const torch::Tensor& h) {
#ifdef SIGMA_WITH_CUDA_KERNELS
  const auto dtype = kernel_dtype(h.scalar_type());
  if (!dtype || !h.is_cuda() || h.dim() == 0 || h.size(-1) % 2 || !h.is_contiguous() || h.numel() == 0 ||
      (torch::GradMode::is_enabled() && h.requires_grad()))
    return {};
  const int64_t F = h.size(-1) / 2;
  auto sizes = h.sizes().vec();
  sizes.back() = F;
  auto out = torch::empty(sizes, h.options());
  const c10::cuda::CUDAGuard guard(h.device());
  if (const char* err = cuda::geglu(h.data_ptr(), out.data_ptr(), *dtype, h.numel() / (2 * F), F,
                                    c10::cuda::getCurrentCUDAStream().stream()))
    throw std::runtime_error(std::string("GEGLU kernel: ") + err);
  return out;
#else
  (void)h;
  return {};
#endif
}

}  // namespace sigma::models
