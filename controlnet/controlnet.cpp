#include "controlnet/controlnet.h"

#include <filesystem>
#include <sstream>

#include "models/families/checkpoint.h"
#include "models/io/keymaps.h"

namespace fs = std::filesystem;

namespace sigma::controlnet {
namespace nn = sigma::models::layers;  // torch::nn with our Conv2d, Linear, Embedding (models/nn/layers.h)
using models::ModelLoadError;

std::string ControlNetConfig::describe() const {
  std::ostringstream s;
  s << unet.describe() << "; hint encoder (";
  for (size_t i = 0; i < hint_channels.size(); ++i) s << (i ? ", " : "") << hint_channels[i];
  s << ")";
  return s.str();
}

using models::conv;  // models/nn/layers.h

ControlNetImpl::ControlNetImpl(ControlNetConfig c) : config(std::move(c)) {
  const auto& u = config.unet;
  time_embed = register_module("time_embed", models::make_time_embed(u));
  // conv_in, then per width step: conv(c,c), SiLU, conv(c,c',stride 2), SiLU; then conv_out to model_channels.
  input_hint_block = nn::Sequential();
  const auto& hc = config.hint_channels;
  input_hint_block->push_back(conv(config.hint_in_channels, hc[0], 3));
  input_hint_block->push_back(nn::SiLU());
  for (size_t i = 0; i + 1 < hc.size(); ++i) {
    input_hint_block->push_back(conv(hc[i], hc[i], 3));
    input_hint_block->push_back(nn::SiLU());
    input_hint_block->push_back(conv(hc[i], hc[i + 1], 3, 2));
    input_hint_block->push_back(nn::SiLU());
  }
  input_hint_block->push_back(conv(hc.back(), u.model_channels, 3));
  register_module("input_hint_block", input_hint_block);

  auto enc = models::build_unet_encoder(u);
  input_blocks = register_module("input_blocks", enc.input_blocks);
  zero_convs = register_module("zero_convs", nn::ModuleList());
  for (auto ch : enc.skip_channels) zero_convs->push_back(nn::Sequential(conv(ch, ch, 1)));
  middle_block = register_module("middle_block", enc.middle_block);
  const int64_t mid = enc.skip_channels.back();
  middle_block_out = register_module("middle_block_out", nn::Sequential(conv(mid, mid, 1)));
}

models::ControlResiduals ControlNetImpl::forward(const torch::Tensor& x, const torch::Tensor& t,
                                                 const torch::Tensor& context, const torch::Tensor& hint) {
  auto emb = time_embed->forward(models::timestep_embedding(t.to(x.device()), config.unet.model_channels).to(x.scalar_type()));
  auto guided_hint = input_hint_block->forward(hint.to(x.device(), x.scalar_type()));
  models::ControlResiduals out;
  auto h = x;
  for (size_t i = 0; i < input_blocks->size(); ++i) {
    h = input_blocks[i]->as<models::TimestepBlockImpl>()->forward(h, emb, context);
    if (i == 0) h = h + guided_hint;  // the hint enters after conv_in
    out.down.push_back(zero_convs[i]->as<nn::Sequential>()->forward(h));
  }
  h = middle_block->forward(h, emb, context);
  out.mid = middle_block_out->forward(h);
  return out;
}

ControlNetCheckpoint open_controlnet(const std::string& path, models::Family family) {
  ControlNetCheckpoint ck;
  ck.path = path;
  if (!fs::exists(path)) throw ModelLoadError(path + ": no such ControlNet file or folder");
  std::string file = path;
  if (fs::is_directory(path)) {
    file = (fs::path(path) / "diffusion_pytorch_model.safetensors").string();
    if (!fs::exists(file))
      throw ModelLoadError(path + ": no diffusion_pytorch_model.safetensors in this ControlNet folder");
  }
  auto f = models::SafeTensors::open(file);
  auto all = models::index_file(f);
  if (models::has_prefix(all, "control_model.")) {
    ck.weights = models::index_file(f, "control_model.");
  } else if (all.count("controlnet_cond_embedding.conv_in.weight")) {
    ck.diffusers = true;
    ck.weights = models::controlnet_from_diffusers(all);
  } else if (all.count("input_hint_block.0.weight")) {
    ck.weights = all;
  } else {
    throw ModelLoadError(path + ": not a ControlNet (no 'control_model.*', 'input_hint_block.*' or "
                                "'controlnet_cond_embedding.*' keys); pass base models with --model");
  }
  const std::string what = path + " (ControlNet)";
  // The encoder half has no output blocks; give infer_unet_config the keys it reads from them.
  auto probe = ck.weights;
  const auto& conv_in = probe.at("input_blocks.0.0.weight");
  probe["out.2.weight"] = models::TensorRef{nullptr, "", {conv_in.shape[1], conv_in.shape[0], 3, 3}, {}, {}};
  ck.config.unet = models::infer_unet_config(probe, family, what);
  if (ck.diffusers) {
    const auto cfg_path = fs::path(file).parent_path() / "config.json";
    if (fs::exists(cfg_path)) models::apply_diffusers_heads(ck.config.unet, models::read_json_file(cfg_path.string()));
  }
  ck.config.hint_channels.clear();
  ck.config.hint_in_channels = ck.weights.at("input_hint_block.0.weight").shape.at(1);
  for (int64_t i = 0; ck.weights.count("input_hint_block." + std::to_string(i) + ".weight"); i += 2) {
    const auto& s = ck.weights.at("input_hint_block." + std::to_string(i) + ".weight").shape;
    if (i == 0 || (i % 4 == 0 && ck.weights.count("input_hint_block." + std::to_string(i + 2) + ".weight")))
      ck.config.hint_channels.push_back(s[0]);
  }
  return ck;
}

}  // namespace sigma::controlnet

namespace sigma::controlnet {
ControlNet load_controlnet(const ControlNetCheckpoint& ck, torch::Device device, torch::ScalarType dtype) {
  auto net = models::build_uninitialised<ControlNet>(ck.config);  // every weight is loaded right after
  models::load_module(*net, ck.weights, "ControlNet " + ck.path, dtype, device);
  net->eval();
  return net;
}
}  // namespace sigma::controlnet
