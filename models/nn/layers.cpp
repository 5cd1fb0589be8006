#include "models/nn/layers.h"

#include "models/runtime/fp8.h"

#include <cmath>

#include "models/kernels/cuda_ops.h"

namespace sigma::models {

namespace {
thread_local bool skip_init = false;
}

SkipInit::SkipInit() : previous_(skip_init) { skip_init = true; }
SkipInit::~SkipInit() { skip_init = previous_; }
bool SkipInit::active() { return skip_init; }

namespace layers {
namespace F = torch::nn::functional;

namespace {

// LibTorch's reset_parameters() of Conv and Linear (and PyTorch's): Kaiming-uniform with
// a = √5 for the weight, U(-1/√fan_in, 1/√fan_in) for the bias, in that order.
void kaiming_reset(torch::Tensor& weight, torch::Tensor& bias) {
  torch::NoGradGuard no_grad;
  torch::nn::init::kaiming_uniform_(weight, /*a=*/std::sqrt(5.0));
  if (bias.defined()) {
    const auto fan_in = std::get<0>(torch::nn::init::_calculate_fan_in_and_fan_out(weight));
    const double bound = fan_in > 0 ? 1 / std::sqrt(static_cast<double>(fan_in)) : 0;
    torch::nn::init::uniform_(bias, -bound, bound);
  }
}

}  // namespace

Conv2dImpl::Conv2dImpl(Conv2dOptions options_) : options(std::move(options_)) { reset(); }

void Conv2dImpl::reset() {
  TORCH_CHECK(options.in_channels() % options.groups() == 0 && options.out_channels() % options.groups() == 0,
              "sigma Conv2d: channels must be divisible by groups");
  std::vector<int64_t> shape = {options.out_channels(), options.in_channels() / options.groups()};
  shape.insert(shape.end(), (*options.kernel_size()).begin(), (*options.kernel_size()).end());
  weight = register_parameter("weight", torch::empty(shape));
  if (options.bias())
    bias = register_parameter("bias", torch::empty({options.out_channels()}));
  else
    bias = register_parameter("bias", {}, /*requires_grad=*/false);
  if (!SkipInit::active()) kaiming_reset(weight, bias);
}


// LibTorch's Conv2dImpl::forward for padding_mode zeros (the only mode the models use).
torch::Tensor Conv2dImpl::forward(const torch::Tensor& x) { return forward_with_image_bias(x, {}); }

torch::Tensor Conv2dImpl::forward_with_image_bias(const torch::Tensor& x, const torch::Tensor& image_bias) {
  auto opt = F::Conv2dFuncOptions().stride(options.stride()).padding(options.padding()).dilation(options.dilation())
                 .groups(options.groups());
  // On CUDA with NHWC weights, the biases through our kernel (models/kernels/cuda_ops.h says why).
  const bool grad = torch::GradMode::is_enabled() &&
                    (x.requires_grad() || weight.requires_grad() || (bias.defined() && bias.requires_grad()) ||
                     (image_bias.defined() && image_bias.requires_grad()));
  if ((bias.defined() || image_bias.defined()) && !grad && x.is_cuda() &&
      weight.is_contiguous(torch::MemoryFormat::ChannelsLast) && fused_bias_enabled()) {
    auto y = F::conv2d(x, weight, opt);
    if (!add_bias_nhwc(y, bias, image_bias)) {
      if (bias.defined()) y.add_(bias.view({1, -1, 1, 1}));
      if (image_bias.defined()) y = y + image_bias.unsqueeze(-1).unsqueeze(-1);
    }
    return y;
  }
  auto y = F::conv2d(x, weight, opt.bias(bias));
  return image_bias.defined() ? y + image_bias.unsqueeze(-1).unsqueeze(-1) : y;  // broadcasts as before
}

LinearImpl::LinearImpl(LinearOptions options_) : options(std::move(options_)) { reset(); }

void LinearImpl::reset() {
  weight = register_parameter("weight", torch::empty({options.out_features(), options.in_features()}));
  if (options.bias())
    bias = register_parameter("bias", torch::empty({options.out_features()}));
  else
    bias = register_parameter("bias", {}, /*requires_grad=*/false);
  if (!SkipInit::active()) kaiming_reset(weight, bias);
}

// A [.., in] input goes through addmm as [rows, in]: F::linear on 3-D input is a matmul then a
// broadcast bias add that CUDA does not vectorise (0.68 ms of SD 1.5's 7.5 ms H200 step);
// addmm folds the bias into the GEMM.
torch::Tensor LinearImpl::forward(const torch::Tensor& x) {
  const auto w = dense_weight();
  if (x.dim() <= 2 || !bias.defined() || !x.is_cuda()) return F::linear(x, w, bias);
  auto sizes = x.sizes().vec();
  sizes.back() = w.size(0);
  return torch::addmm(bias, x.reshape({-1, x.size(-1)}), w.t()).view(sizes);
}

void LinearImpl::keep_fp8(torch::Tensor bytes, bool e4m3, torch::Tensor scale) {
  TORCH_CHECK(bytes.scalar_type() == torch::kByte && bytes.dim() == 2, "keep_fp8: [out, in] bytes expected");
  fp8_bytes = register_buffer("fp8_bytes", std::move(bytes));
  fp8_scale = scale.defined() ? register_buffer("fp8_scale", scale.to(fp8_bytes.device(), torch::kFloat32)) : scale;
  fp8_e4m3 = e4m3;
  torch::NoGradGuard no_grad;
  weight.set_data(torch::empty({0}, weight.options()));
}

torch::Tensor LinearImpl::dense_weight() const {
  if (!fp8_bytes.defined()) return weight;
  if (fp8_patches.empty()) {
    auto w = decode_fp8(fp8_bytes, fp8_e4m3, weight.scalar_type());
    return fp8_scale.defined() ? w * fp8_scale.to(w.scalar_type()) : w;
  }
  // With adapters: dequantized and patched in float32, cast once, as a merge into a
  // float32 copy would be (the ModelPatcher's rule for every other weight).
  auto w = decode_fp8(fp8_bytes, fp8_e4m3, torch::kFloat32);
  if (fp8_scale.defined()) w = w * fp8_scale;
  for (const auto& patch : fp8_patches) patch(w);
  return w.to(weight.scalar_type());
}

std::vector<int64_t> LinearImpl::on_the_fly_shape() const {
  return fp8_bytes.defined() ? fp8_bytes.sizes().vec() : std::vector<int64_t>{};
}

EmbeddingImpl::EmbeddingImpl(EmbeddingOptions options_) : options(std::move(options_)) { reset(); }

void EmbeddingImpl::reset() {
  TORCH_CHECK(!options.padding_idx() && !options.max_norm() && !options._weight().defined(),
              "sigma Embedding: padding_idx, max_norm and a given weight are not supported");
  weight = register_parameter("weight", torch::empty({options.num_embeddings(), options.embedding_dim()}));
  if (!SkipInit::active()) {
    torch::NoGradGuard no_grad;
    torch::nn::init::normal_(weight);  // LibTorch's EmbeddingImpl::reset_parameters
  }
}

torch::Tensor EmbeddingImpl::forward(const torch::Tensor& ids) { return torch::embedding(weight, ids); }

}  // namespace layers
layers::Conv2d conv(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t pad) {
  return layers::Conv2d(layers::Conv2dOptions(in, out, k).stride(stride).padding(pad < 0 ? k / 2 : pad));
}

layers::Linear linear(int64_t in, int64_t out, bool bias) {
  return layers::Linear(layers::LinearOptions(in, out).bias(bias));
}

torch::nn::GroupNorm group_norm(int64_t channels, double eps) {
  return torch::nn::GroupNorm(torch::nn::GroupNormOptions(32, channels).eps(eps));
}

}  // namespace sigma::models
