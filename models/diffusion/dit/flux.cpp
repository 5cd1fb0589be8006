#include "models/diffusion/dit/flux.h"

#include <cmath>
#include <sstream>
#include <stdexcept>

#include "models/nn/ops.h"

namespace sigma::models {

namespace nn = layers;

namespace {

// LayerNorm without affine parameters (eps 1e-6), as every norm before a modulation in Flux.
torch::Tensor layer_norm_plain(const torch::Tensor& x) {
  return torch::layer_norm(x, {x.size(-1)}, {}, {}, 1e-6);
}

// BFL's timestep_embedding with the time already in the network's units (σ·1000): [cos, sin]
// of t·exp(−ln(10000)·i/half), computed in float32.
torch::Tensor timestep_embedding(const torch::Tensor& t, int64_t dim) {
  const int64_t half = dim / 2;
  auto freqs = torch::exp(-std::log(10000.0) * torch::arange(half, torch::TensorOptions().dtype(torch::kFloat32).device(t.device())) /
                          static_cast<double>(half));
  auto args = t.to(torch::kFloat32).unsqueeze(1) * freqs.unsqueeze(0);
  return torch::cat({torch::cos(args), torch::sin(args)}, -1);
}

// RoPE of the ids [B, L, axes] as BFL's EmbedND: per axis, angles pos·θ^(−2i/d); the rotation
// matrices [[cos, −sin], [sin, cos]] stacked to [B, 1, L, head_dim/2, 2, 2], in float32
// (angles from float64 as BFL computes them).
torch::Tensor rope(const torch::Tensor& ids, const std::vector<int64_t>& axes_dim, double theta) {
  std::vector<torch::Tensor> parts;
  for (size_t a = 0; a < axes_dim.size(); ++a) {
    const int64_t d = axes_dim[a];
    auto scale = torch::arange(0, d, 2, torch::TensorOptions().dtype(torch::kFloat64).device(ids.device())) / static_cast<double>(d);
    auto omega = 1.0 / torch::pow(theta, scale);
    auto angles = ids.select(-1, static_cast<int64_t>(a)).to(torch::kFloat64).unsqueeze(-1) * omega;  // [B, L, d/2]
    auto c = torch::cos(angles), s = torch::sin(angles);
    parts.push_back(torch::stack({c, -s, s, c}, -1).view({angles.size(0), angles.size(1), d / 2, 2, 2}));
  }
  return torch::cat(parts, -3).unsqueeze(1).to(torch::kFloat32);
}

// x [B, H, L, D] rotated pairwise by pe [B or 1, 1, L, D/2, 2, 2], in float32, back to x's dtype.
torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& pe) {
  auto pairs = x.to(torch::kFloat32).reshape({x.size(0), x.size(1), x.size(2), -1, 1, 2});
  auto out = pe.select(-1, 0) * pairs.select(-1, 0) + pe.select(-1, 1) * pairs.select(-1, 1);
  return out.reshape(x.sizes()).to(x.scalar_type());
}

// [B, L, 3·H·D] -> q, k, v each [B, H, L, D]
std::array<torch::Tensor, 3> split_qkv(const torch::Tensor& qkv, int64_t heads) {
  const int64_t B = qkv.size(0), L = qkv.size(1), D = qkv.size(2) / (3 * heads);
  auto t = qkv.view({B, L, 3, heads, D}).permute({2, 0, 3, 1, 4});
  return {t[0], t[1], t[2]};
}

// RoPE on q and k, attention, heads merged: [B, L, H·D].
torch::Tensor rope_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& pe) {
  auto out = attention(apply_rope(q, pe), apply_rope(k, pe), v);
  return out.transpose(1, 2).reshape({q.size(0), q.size(2), -1});
}

torch::Tensor modulate(const torch::Tensor& x, const torch::Tensor& shift, const torch::Tensor& scale) {
  return (1 + scale) * layer_norm_plain(x) + shift;
}

torch::nn::Sequential flux_mlp(int64_t hidden, int64_t mlp_hidden) {
  return torch::nn::Sequential(nn::Linear(hidden, mlp_hidden),
                               torch::nn::Functional([](const torch::Tensor& x) { return torch::gelu(x, "tanh"); }),
                               nn::Linear(mlp_hidden, hidden));
}

}  // namespace

std::string FluxConfig::describe() const {
  std::ostringstream s;
  s << "Flux transformer: width " << hidden << " (" << heads << " heads), " << depth << " double + " << depth_single
    << " single blocks, MLP " << mlp_hidden << ", context " << context_in << ", pooled " << vec_in << ", "
    << (guidance_embed ? "guidance embedding (dev)" : "no guidance embedding (schnell)") << ", RoPE axes (";
  for (size_t i = 0; i < axes_dim.size(); ++i) s << (i ? ", " : "") << axes_dim[i];
  s << ")";
  return s.str();
}

FluxRMSNormImpl::FluxRMSNormImpl(int64_t width) { scale = register_parameter("scale", torch::ones({width})); }

torch::Tensor FluxRMSNormImpl::forward(const torch::Tensor& x) {
  auto xf = x.to(torch::kFloat32);
  return (xf * torch::rsqrt(xf.pow(2).mean(-1, true) + 1e-6)).to(x.scalar_type()) * scale;
}

QKNormImpl::QKNormImpl(int64_t head_dim) {
  query_norm = register_module("query_norm", FluxRMSNorm(head_dim));
  key_norm = register_module("key_norm", FluxRMSNorm(head_dim));
}

MLPEmbedderImpl::MLPEmbedderImpl(int64_t in, int64_t hidden) {
  in_layer = register_module("in_layer", nn::Linear(in, hidden));
  out_layer = register_module("out_layer", nn::Linear(hidden, hidden));
}

torch::Tensor MLPEmbedderImpl::forward(const torch::Tensor& x) { return out_layer(torch::silu(in_layer(x))); }

ModulationImpl::ModulationImpl(int64_t hidden, bool two) {
  lin = register_module("lin", nn::Linear(hidden, (two ? 6 : 3) * hidden));
}

std::vector<torch::Tensor> ModulationImpl::forward(const torch::Tensor& vec) {
  return lin(torch::silu(vec)).unsqueeze(1).chunk(lin->options.out_features() / vec.size(-1), -1);
}

FluxSelfAttentionImpl::FluxSelfAttentionImpl(int64_t hidden, int64_t heads) {
  qkv = register_module("qkv", nn::Linear(hidden, 3 * hidden));
  norm = register_module("norm", QKNorm(hidden / heads));
  proj = register_module("proj", nn::Linear(hidden, hidden));
}

DoubleStreamBlockImpl::DoubleStreamBlockImpl(const FluxConfig& c) : heads(c.heads) {
  img_mod = register_module("img_mod", Modulation(c.hidden, true));
  img_attn = register_module("img_attn", FluxSelfAttention(c.hidden, c.heads));
  img_mlp = register_module("img_mlp", flux_mlp(c.hidden, c.mlp_hidden));
  txt_mod = register_module("txt_mod", Modulation(c.hidden, true));
  txt_attn = register_module("txt_attn", FluxSelfAttention(c.hidden, c.heads));
  txt_mlp = register_module("txt_mlp", flux_mlp(c.hidden, c.mlp_hidden));
}

std::pair<torch::Tensor, torch::Tensor> DoubleStreamBlockImpl::forward(torch::Tensor img, torch::Tensor txt,
                                                                       const torch::Tensor& vec, const torch::Tensor& pe) {
  const auto im = img_mod(vec), tm = txt_mod(vec);  // shift, scale, gate (attention), shift, scale, gate (MLP)
  auto [iq, ik, iv] = split_qkv(img_attn->qkv(modulate(img, im[0], im[1])), heads);
  auto [tq, tk, tv] = split_qkv(txt_attn->qkv(modulate(txt, tm[0], tm[1])), heads);
  iq = img_attn->norm->query_norm(iq).to(iv.scalar_type());
  ik = img_attn->norm->key_norm(ik).to(iv.scalar_type());
  tq = txt_attn->norm->query_norm(tq).to(tv.scalar_type());
  tk = txt_attn->norm->key_norm(tk).to(tv.scalar_type());
  // One attention over [txt; img].
  auto joint = rope_attention(torch::cat({tq, iq}, 2), torch::cat({tk, ik}, 2), torch::cat({tv, iv}, 2), pe);
  const int64_t Lt = txt.size(1);
  img = img + im[2] * img_attn->proj(joint.narrow(1, Lt, joint.size(1) - Lt));
  img = img + im[5] * img_mlp->forward(modulate(img, im[3], im[4]));
  txt = txt + tm[2] * txt_attn->proj(joint.narrow(1, 0, Lt));
  txt = txt + tm[5] * txt_mlp->forward(modulate(txt, tm[3], tm[4]));
  return {img, txt};
}

SingleStreamBlockImpl::SingleStreamBlockImpl(const FluxConfig& c) : hidden(c.hidden), heads(c.heads), mlp_hidden(c.mlp_hidden) {
  linear1 = register_module("linear1", nn::Linear(c.hidden, 3 * c.hidden + c.mlp_hidden));
  linear2 = register_module("linear2", nn::Linear(c.hidden + c.mlp_hidden, c.hidden));
  norm = register_module("norm", QKNorm(c.hidden / c.heads));
  modulation = register_module("modulation", Modulation(c.hidden, false));
}

torch::Tensor SingleStreamBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& vec, const torch::Tensor& pe) {
  const auto m = modulation(vec);  // shift, scale, gate
  auto h = linear1(modulate(x, m[0], m[1]));
  auto [q, k, v] = split_qkv(h.narrow(-1, 0, 3 * hidden), heads);
  q = norm->query_norm(q).to(v.scalar_type());
  k = norm->key_norm(k).to(v.scalar_type());
  auto attn = rope_attention(q, k, v, pe);
  auto mlp = torch::gelu(h.narrow(-1, 3 * hidden, mlp_hidden), "tanh");
  return x + m[2] * linear2(torch::cat({attn, mlp}, -1));
}

LastLayerImpl::LastLayerImpl(int64_t hidden, int64_t out) {
  linear = register_module("linear", nn::Linear(hidden, out));
  adaLN_modulation = register_module("adaLN_modulation", torch::nn::Sequential(torch::nn::SiLU(), nn::Linear(hidden, 2 * hidden)));
}

torch::Tensor LastLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& vec) {
  const auto m = adaLN_modulation->forward(vec).unsqueeze(1).chunk(2, -1);  // BFL: (shift, scale)
  return linear(modulate(x, m[0], m[1]));
}

FluxTransformerImpl::FluxTransformerImpl(FluxConfig c) : config(std::move(c)) {
  img_in = register_module("img_in", nn::Linear(config.in_channels, config.hidden));
  time_in = register_module("time_in", MLPEmbedder(256, config.hidden));
  vector_in = register_module("vector_in", MLPEmbedder(config.vec_in, config.hidden));
  if (config.guidance_embed) guidance_in = register_module("guidance_in", MLPEmbedder(256, config.hidden));
  txt_in = register_module("txt_in", nn::Linear(config.context_in, config.hidden));
  double_blocks = register_module("double_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < config.depth; ++i) double_blocks->push_back(DoubleStreamBlock(config));
  single_blocks = register_module("single_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < config.depth_single; ++i) single_blocks->push_back(SingleStreamBlock(config));
  final_layer = register_module("final_layer", LastLayer(config.hidden, config.in_channels));
}

torch::Tensor FluxTransformerImpl::forward_packed(const torch::Tensor& img_tokens, const torch::Tensor& img_ids,
                                                  const torch::Tensor& txt_tokens, const torch::Tensor& txt_ids,
                                                  const torch::Tensor& timesteps, const torch::Tensor& y,
                                                  const torch::Tensor& guidance) {
  const auto dtype = img_in->weight.scalar_type();
  auto img = img_in(img_tokens.to(dtype));
  auto vec = time_in(timestep_embedding(timesteps, 256).to(dtype));
  if (config.guidance_embed) {
    if (!guidance.defined())
      throw std::invalid_argument("this Flux model has a guidance embedding (dev): it needs a guidance value (--guidance)");
    vec = vec + guidance_in(timestep_embedding(guidance, 256).to(dtype));
  }
  vec = vec + vector_in(y.to(dtype));
  auto txt = txt_in(txt_tokens.to(dtype));
  const int64_t B = img.size(0);
  auto ids = torch::cat({txt_ids.expand({B, -1, -1}), img_ids.expand({B, -1, -1})}, 1);
  const auto pe = rope(ids, config.axes_dim, config.theta);
  for (const auto& b : *double_blocks) std::tie(img, txt) = b->as<DoubleStreamBlock>()->forward(img, txt, vec, pe);
  const int64_t Lt = txt.size(1);
  auto x = torch::cat({txt, img}, 1);
  for (const auto& b : *single_blocks) x = b->as<SingleStreamBlock>()->forward(x, vec, pe);
  return final_layer(x.narrow(1, Lt, x.size(1) - Lt), vec);
}

torch::Tensor FluxTransformerImpl::forward(const torch::Tensor& x, const torch::Tensor& t, const DiffusionConditioning& c) {
  const int64_t H = x.size(2), W = x.size(3), p = config.patch;
  if (H % p || W % p)
    throw std::invalid_argument("Flux needs a latent of even height and width (an image size in multiples of 16)");
  const auto opt = torch::TensorOptions().dtype(torch::kFloat32).device(x.device());
  const auto img_ids = flux_image_ids(H, W, p, opt);
  const auto txt_ids = torch::zeros({1, c.context.size(1), 3}, opt);
  const auto guidance = c.guidance.defined() ? c.guidance.to(torch::kFloat32) * 1000 : torch::Tensor();
  auto out = forward_packed(flux_pack(x, p), img_ids, c.context, txt_ids, t, c.y, guidance);
  return flux_unpack(out, H, W, p).to(x.scalar_type());
}

torch::Tensor flux_pack(const torch::Tensor& x, int64_t p) {
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  return x.view({B, C, H / p, p, W / p, p}).permute({0, 2, 4, 1, 3, 5}).reshape({B, (H / p) * (W / p), C * p * p});
}

torch::Tensor flux_unpack(const torch::Tensor& tokens, int64_t H, int64_t W, int64_t p) {
  const int64_t B = tokens.size(0), C = tokens.size(2) / (p * p);
  return tokens.view({B, H / p, W / p, C, p, p}).permute({0, 3, 1, 4, 2, 5}).reshape({B, C, H, W});
}

torch::Tensor flux_image_ids(int64_t H, int64_t W, int64_t p, const torch::TensorOptions& options) {
  const int64_t h = H / p, w = W / p;
  auto rows = torch::arange(h, options).view({h, 1}).expand({h, w});
  auto cols = torch::arange(w, options).view({1, w}).expand({h, w});
  return torch::stack({torch::zeros({h, w}, options), rows, cols}, -1).view({1, h * w, 3});
}

}  // namespace sigma::models
