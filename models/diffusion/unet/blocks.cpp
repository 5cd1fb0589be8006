#include "models/diffusion/unet/blocks.h"

#include <cmath>

#include "models/nn/ops.h"

namespace sigma::models {
namespace nn = sigma::models::layers;  // torch::nn with our Conv2d, Linear, Embedding (models/nn/layers.h)

torch::Tensor timestep_embedding(const torch::Tensor& t, int64_t dim) {
  const int64_t half = dim / 2;
  auto freqs = torch::exp(-std::log(10000.0) * torch::arange(half, t.options().dtype(torch::kFloat32)) /
                          static_cast<double>(half));
  auto args = t.to(torch::kFloat32).unsqueeze(1) * freqs.unsqueeze(0);
  auto emb = torch::cat({torch::cos(args), torch::sin(args)}, 1);
  if (dim % 2) emb = torch::cat({emb, torch::zeros_like(emb.narrow(1, 0, 1))}, 1);
  return emb;
}

torch::Tensor norm_silu_conv(nn::Sequential& layers, const torch::Tensor& x, const torch::Tensor& image_bias) {
  auto h = group_norm_act(layers->at<nn::GroupNormImpl>(0), x, true);
  return layers->at<layers::Conv2dImpl>(layers->size() - 1).forward_with_image_bias(h, image_bias);
}

ResBlockImpl::ResBlockImpl(int64_t in, int64_t out, int64_t emb_dim) {
  in_layers = register_module("in_layers", nn::Sequential(group_norm(in, 1e-5), nn::SiLU(), conv(in, out, 3)));
  emb_layers = register_module("emb_layers", nn::Sequential(nn::SiLU(), linear(emb_dim, out)));
  out_layers = register_module("out_layers",
                               nn::Sequential(group_norm(out, 1e-5), nn::SiLU(), nn::Identity(), conv(out, out, 3)));
  if (in != out) skip_connection = register_module("skip_connection", conv(in, out, 1));
}

torch::Tensor ResBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& emb) {
  // x [B,Cin,H,W], emb [B,E] -> [B,Cout,H,W]
  // The embedding [B, Cout] is a per-image bias of the first conv: one pass on CUDA.
  auto h = norm_silu_conv(in_layers, x, emb_layers->forward(emb));
  h = norm_silu_conv(out_layers, h);
  return (skip_connection ? skip_connection->forward(x) : x) + h;
}

CrossAttentionImpl::CrossAttentionImpl(int64_t query_dim, int64_t context_dim, int64_t heads_, int64_t dim_head)
    : heads(heads_) {
  const int64_t inner = heads * dim_head;
  to_q = register_module("to_q", linear(query_dim, inner, false));
  to_k = register_module("to_k", linear(context_dim, inner, false));
  to_v = register_module("to_v", linear(context_dim, inner, false));
  to_out = register_module("to_out", nn::Sequential(linear(inner, query_dim), nn::Identity()));
}

torch::Tensor CrossAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& context) {
  // x [B,N,C], context [B,M,Cc] (empty: self-attention) -> [B,N,C]
  const auto& ctx = context.defined() ? context : x;
  const int64_t B = x.size(0);
  auto split = [&](const torch::Tensor& t) { return t.view({B, t.size(1), heads, -1}).transpose(1, 2); };
  auto q = split(to_q->forward(x)), k = split(to_k->forward(ctx)), v = split(to_v->forward(ctx));
  auto out = attention(q, k, v).transpose(1, 2).reshape({B, x.size(1), -1});
  return to_out->forward(out);
}

GEGLUImpl::GEGLUImpl(int64_t dim_in, int64_t dim_out) { proj = register_module("proj", linear(dim_in, dim_out * 2)); }

torch::Tensor GEGLUImpl::forward(const torch::Tensor& x) {
  return geglu(proj->forward(x));  // models/kernels/cpu_ops.h
}

FeedForwardImpl::FeedForwardImpl(int64_t dim) {
  net = register_module("net", nn::Sequential(GEGLU(dim, dim * 4), nn::Identity(), linear(dim * 4, dim)));
}

torch::Tensor FeedForwardImpl::forward(const torch::Tensor& x) { return net->forward(x); }

BasicTransformerBlockImpl::BasicTransformerBlockImpl(int64_t dim, int64_t heads, int64_t dim_head,
                                                     int64_t context_dim) {
  attn1 = register_module("attn1", CrossAttention(dim, dim, heads, dim_head));
  ff = register_module("ff", FeedForward(dim));
  attn2 = register_module("attn2", CrossAttention(dim, context_dim, heads, dim_head));
  norm1 = register_module("norm1", nn::LayerNorm(nn::LayerNormOptions({dim})));
  norm2 = register_module("norm2", nn::LayerNorm(nn::LayerNormOptions({dim})));
  norm3 = register_module("norm3", nn::LayerNorm(nn::LayerNormOptions({dim})));
}

torch::Tensor BasicTransformerBlockImpl::forward(torch::Tensor x, const torch::Tensor& context) {
  x = x + attn1->forward(layer_norm(*norm1, x));
  x = x + attn2->forward(layer_norm(*norm2, x), context);
  return x + ff->forward(layer_norm(*norm3, x));
}

SpatialTransformerImpl::SpatialTransformerImpl(int64_t channels, int64_t heads, int64_t dim_head, int64_t depth,
                                               int64_t context_dim, bool linear_proj_)
    : linear_proj(linear_proj_) {
  norm = register_module("norm", group_norm(channels, 1e-6));
  const int64_t inner = heads * dim_head;
  if (linear_proj) {
    proj_in = nn::AnyModule(linear(channels, inner));
    proj_out = nn::AnyModule(linear(inner, channels));
  } else {
    proj_in = nn::AnyModule(conv(channels, inner, 1));
    proj_out = nn::AnyModule(conv(inner, channels, 1));
  }
  register_module("proj_in", proj_in.ptr());
  transformer_blocks = register_module("transformer_blocks", nn::ModuleList());
  for (int64_t i = 0; i < depth; ++i)
    transformer_blocks->push_back(BasicTransformerBlock(inner, heads, dim_head, context_dim));
  register_module("proj_out", proj_out.ptr());
}

torch::Tensor SpatialTransformerImpl::forward(const torch::Tensor& x, const torch::Tensor& context) {
  // x [B,C,H,W], context [B,M,Cc] -> [B,C,H,W]
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  auto h = group_norm_act(*norm, x, false);
  auto to_tokens = [&](const torch::Tensor& t) { return t.permute({0, 2, 3, 1}).reshape({B, H * W, -1}); };
  auto to_image = [&](const torch::Tensor& t) { return t.reshape({B, H, W, -1}).permute({0, 3, 1, 2}); };
  h = linear_proj ? proj_in.forward(to_tokens(h)) : to_tokens(proj_in.forward(h));
  for (const auto& block : *transformer_blocks) h = block->as<BasicTransformerBlock>()->forward(h, context);
  // The 1x1 conv takes the tokens as an image in the layout its input came in: a free view when
  // the UNet runs channels-last (models/runtime/options.h), one NCHW copy otherwise.
  h = linear_proj ? to_image(proj_out.forward(h)) : proj_out.forward(to_image(h).contiguous(x.suggest_memory_format()));
  return h.view({B, C, H, W}) + x;
}

DownsampleImpl::DownsampleImpl(int64_t channels) { op = register_module("op", conv(channels, channels, 3, 2)); }

UpsampleImpl::UpsampleImpl(int64_t channels) { conv = register_module("conv", sigma::models::conv(channels, channels, 3)); }

torch::Tensor UpsampleImpl::forward(const torch::Tensor& x) {
  namespace F = torch::nn::functional;
  auto up = F::interpolate(x, F::InterpolateFuncOptions().scale_factor(std::vector<double>{2, 2}).mode(torch::kNearest));
  return conv->forward(up);
}

void TimestepBlockImpl::push(std::shared_ptr<torch::nn::Module> m, Call call) {
  register_module(std::to_string(layers_.size()), std::move(m));
  layers_.push_back(std::move(call));
}
void TimestepBlockImpl::add(ResBlock m) {
  push(m.ptr(), [p = m.ptr()](const auto& x, const auto& emb, const auto&) { return p->forward(x, emb); });
}
void TimestepBlockImpl::add(SpatialTransformer m) {
  push(m.ptr(), [p = m.ptr()](const auto& x, const auto&, const auto& ctx) { return p->forward(x, ctx); });
}
void TimestepBlockImpl::add(Downsample m) {
  push(m.ptr(), [p = m.ptr()](const auto& x, const auto&, const auto&) { return p->forward(x); });
}
void TimestepBlockImpl::add(Upsample m) {
  push(m.ptr(), [p = m.ptr()](const auto& x, const auto&, const auto&) { return p->forward(x); });
}
void TimestepBlockImpl::add(layers::Conv2d m) {
  push(m.ptr(), [p = m.ptr()](const auto& x, const auto&, const auto&) { return p->forward(x); });
}

torch::Tensor TimestepBlockImpl::forward(torch::Tensor x, const torch::Tensor& emb, const torch::Tensor& context) {
  for (const auto& layer : layers_) x = layer(x, emb, context);
  return x;
}

}  // namespace sigma::models
