#include "models/diffusion/unet/unet.h"

#include "models/runtime/streaming.h"

#include <sstream>
#include <stdexcept>

namespace sigma::models {
namespace nn = sigma::models::layers;  // torch::nn with our Conv2d, Linear, Embedding (models/nn/layers.h)

std::string UNetConfig::describe() const {
  std::ostringstream s;
  s << "model_channels " << model_channels << ", channel_mult (";
  for (size_t i = 0; i < channel_mult.size(); ++i) s << (i ? ", " : "") << channel_mult[i];
  s << "), num_res_blocks " << num_res_blocks << ", transformer depth per level (";
  for (size_t i = 0; i < transformer_depth.size(); ++i) s << (i ? ", " : "") << transformer_depth[i];
  s << "), middle " << middle_transformer_depth << ", context_dim " << context_dim << ", ";
  if (num_heads > 0) s << num_heads << " heads";
  else s << "head width " << head_dim;
  s << ", " << (linear_proj ? "linear" : "conv") << " proj_in/proj_out, in/out channels " << in_channels << "/"
    << out_channels;
  if (adm_in_channels > 0) s << ", additional embedding (label_emb) input " << adm_in_channels;
  return s.str();
}

nn::Sequential make_time_embed(const UNetConfig& c) {
  const auto E = c.time_embed_dim();
  return nn::Sequential(nn::Linear(c.model_channels, E), nn::SiLU(), nn::Linear(E, E));
}

torch::Tensor additional_embedding_input(const torch::Tensor& pooled, const torch::Tensor& time_ids, int64_t fourier_dim) {
  const int64_t B = time_ids.size(0);
  auto fourier = timestep_embedding(time_ids.reshape({-1}), fourier_dim).reshape({B, -1});
  return torch::cat({pooled, fourier.to(pooled.device(), pooled.scalar_type())}, 1);
}

namespace {
SpatialTransformer attention(const UNetConfig& c, int64_t ch, int64_t depth) {
  const int64_t heads = c.heads_for(ch);
  if (heads <= 0 || ch % heads) throw std::invalid_argument("UNet: " + std::to_string(ch) + " channels cannot be split into attention heads");
  return SpatialTransformer(ch, heads, ch / heads, depth, c.context_dim, c.linear_proj);
}
}  // namespace

UNetEncoder build_unet_encoder(const UNetConfig& c) {
  UNetEncoder enc;
  enc.input_blocks = nn::ModuleList();
  const int64_t E = c.time_embed_dim();
  TimestepBlock first;
  first->add(nn::Conv2d(nn::Conv2dOptions(c.in_channels, c.model_channels, 3).padding(1)));
  enc.input_blocks->push_back(first);
  enc.skip_channels.push_back(c.model_channels);
  int64_t ch = c.model_channels;
  const size_t levels = c.channel_mult.size();
  for (size_t level = 0; level < levels; ++level) {
    for (int64_t i = 0; i < c.num_res_blocks; ++i) {
      TimestepBlock block;
      const int64_t out = c.model_channels * c.channel_mult[level];
      block->add(ResBlock(ch, out, E));
      ch = out;
      if (c.transformer_depth[level] > 0) block->add(attention(c, ch, c.transformer_depth[level]));
      enc.input_blocks->push_back(block);
      enc.skip_channels.push_back(ch);
    }
    if (level + 1 != levels) {
      TimestepBlock down;
      down->add(Downsample(ch));
      enc.input_blocks->push_back(down);
      enc.skip_channels.push_back(ch);
    }
  }
  enc.middle_block = TimestepBlock();
  enc.middle_block->add(ResBlock(ch, ch, E));
  if (c.middle_transformer_depth > 0) enc.middle_block->add(attention(c, ch, c.middle_transformer_depth));
  enc.middle_block->add(ResBlock(ch, ch, E));
  return enc;
}

UNetImpl::UNetImpl(UNetConfig c) : config(std::move(c)) {
  if (config.transformer_depth.size() != config.channel_mult.size())
    throw std::invalid_argument("UNet: transformer_depth needs one entry per level");
  time_embed = register_module("time_embed", make_time_embed(config));
  if (config.adm_in_channels > 0) {
    const auto E = config.time_embed_dim();
    // SGM's label_emb = Sequential(Sequential(Linear, SiLU, Linear)); a ModuleList gives the
    // same names (LibTorch cannot nest a Sequential in a Sequential).
    label_emb_net = nn::Sequential(nn::Linear(config.adm_in_channels, E), nn::SiLU(), nn::Linear(E, E));
    label_emb = register_module("label_emb", nn::ModuleList(label_emb_net));
  }
  auto enc = build_unet_encoder(config);
  input_blocks = register_module("input_blocks", enc.input_blocks);
  middle_block = register_module("middle_block", enc.middle_block);

  output_blocks = register_module("output_blocks", nn::ModuleList());
  const int64_t E = config.time_embed_dim();
  auto skips = enc.skip_channels;
  int64_t ch = skips.back();
  for (size_t level = config.channel_mult.size(); level-- > 0;) {
    for (int64_t i = 0; i <= config.num_res_blocks; ++i) {
      TimestepBlock block;
      const int64_t skip = skips.back();
      skips.pop_back();
      const int64_t out = config.model_channels * config.channel_mult[level];
      block->add(ResBlock(ch + skip, out, E));
      ch = out;
      if (config.transformer_depth[level] > 0) block->add(attention(config, ch, config.transformer_depth[level]));
      if (level > 0 && i == config.num_res_blocks) block->add(Upsample(ch));
      output_blocks->push_back(block);
    }
  }
  out = register_module("out", nn::Sequential(group_norm(ch, 1e-5), nn::SiLU(),
                                              nn::Conv2d(nn::Conv2dOptions(ch, config.out_channels, 3).padding(1))));
}

torch::Tensor UNetImpl::forward(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& context,
                                const ControlResiduals* control, const torch::Tensor& y) {
  // x [B,4,H,W], t [B], context [B,M,C], y [B,adm] -> [B,4,H,W]
  const auto dtype = x.scalar_type();
  auto emb = time_embed->forward(timestep_embedding(t.to(x.device()), config.model_channels).to(dtype));
  if (label_emb_net) {
    if (!y.defined() || y.dim() != 2 || y.size(0) != x.size(0) || y.size(1) != config.adm_in_channels)
      throw std::invalid_argument("UNet: this model (SDXL) needs y [" + std::to_string(x.size(0)) + ", " +
                                  std::to_string(config.adm_in_channels) +
                                  "]: the pooled text vector and the micro-conditioning Fourier features");
    emb = emb + label_emb_net->forward(y.to(x.device(), dtype));
  }
  const bool with_control = control && !control->empty();
  if (with_control && control->down.size() != input_blocks->size())
    throw std::invalid_argument("UNet: the ControlNet gives " + std::to_string(control->down.size()) +
                                " residuals but this UNet has " + std::to_string(input_blocks->size()) +
                                " input blocks: the ControlNet was made for another model family");
  std::vector<torch::Tensor> hs;
  hs.reserve(input_blocks->size());
  auto run = [&](TimestepBlockImpl& block, const torch::Tensor& in) {
    std::optional<OnDevice> visit;
    if (stream_blocks_to) visit.emplace(block, *stream_blocks_to);
    return block.forward(in, emb, context);
  };
  auto h = x;
  for (size_t i = 0; i < input_blocks->size(); ++i) {
    h = run(*input_blocks[i]->as<TimestepBlockImpl>(), h);
    hs.push_back(h);
  }
  h = run(*middle_block, h);
  if (with_control && control->mid.defined()) h = h + control->mid;
  for (size_t i = 0; i < output_blocks->size(); ++i) {
    auto skip = hs.back();
    hs.pop_back();
    if (with_control) skip = skip + control->down[hs.size()];
    h = run(*output_blocks[i]->as<TimestepBlockImpl>(), torch::cat({h, skip}, 1));
  }
  return norm_silu_conv(out, h);
}

void UNetImpl::stream_blocks(const torch::Device& device) {
  if (device.is_cpu()) return;
  time_embed->to(device);
  if (label_emb) label_emb->to(device);
  out->to(device);
  for (auto& b : *input_blocks) park_in_host_memory(*b);
  park_in_host_memory(*middle_block);
  for (auto& b : *output_blocks) park_in_host_memory(*b);
  stream_blocks_to = device;
}

}  // namespace sigma::models
