// Checkpoints that are not what they claim: each bad file is built from the tiny
// fixture with one thing wrong, and must be rejected with the key named.
#include <doctest/doctest.h>

#include <fstream>

#include "controlnet/controlnet.h"
#include "models/families/loader.h"
#include "tests/support.h"

namespace {

using namespace sigma;

// The tiny single-file checkpoint with `edit` applied to its tensor list, saved to `dir/name`.
std::string edited_checkpoint(const std::filesystem::path& dir, const std::string& name,
                              const std::function<void(std::vector<std::pair<std::string, torch::Tensor>>&)>& edit) {
  auto f = models::SafeTensors::open(test::sd15() + "/models/tiny-sd15.safetensors");
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& t : f->tensors()) tensors.emplace_back(t.name, f->load(t.name));
  edit(tensors);
  const auto path = (dir / name).string();
  models::save_safetensors(path, tensors);
  return path;
}

std::string load_error(const std::string& path) {
  try {
    auto ck = models::open_checkpoint(path);
    models::load_unet(ck, {});
    models::load_vae(ck, {});
    models::load_text_encoder(ck, {});
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

using sigma::test::has;

}  // namespace

TEST_SUITE("unit.checkpoint") {
  TEST_CASE("a missing UNet tensor is named") {
    const auto dir = test::scratch("ck-missing");
    const std::string key = "model.diffusion_model.output_blocks.4.1.transformer_blocks.0.attn2.to_v.weight";
    auto path = edited_checkpoint(dir, "missing.safetensors", [&](auto& t) {
      t.erase(std::remove_if(t.begin(), t.end(), [&](const auto& kv) { return kv.first == key; }), t.end());
    });
    const auto e = load_error(path);
    CHECK(has(e, "UNet of " + path));
    CHECK(has(e, "missing keys (1)"));
    CHECK(has(e, "output_blocks.4.1.transformer_blocks.0.attn2.to_v.weight"));
  }

  TEST_CASE("a wrong-shaped tensor is named with both shapes") {
    const auto dir = test::scratch("ck-shape");
    auto path = edited_checkpoint(dir, "shape.safetensors", [&](auto& t) {
      for (auto& [name, value] : t)
        if (name == "model.diffusion_model.middle_block.0.in_layers.2.weight") value = torch::zeros({64, 64, 1, 1});
    });
    const auto e = load_error(path);
    CHECK(has(e, "wrong shapes (1)"));
    CHECK(has(e, "middle_block.0.in_layers.2.weight: file [64, 64, 1, 1] vs model [64, 64, 3, 3]"));
  }

  TEST_CASE("an unexpected UNet tensor is named") {
    const auto dir = test::scratch("ck-extra");
    auto path = edited_checkpoint(dir, "extra.safetensors", [&](auto& t) {
      t.emplace_back("model.diffusion_model.input_blocks.1.1.bogus.weight", torch::zeros({2}));
    });
    const auto e = load_error(path);
    CHECK(has(e, "unexpected keys (1)"));
    CHECK(has(e, "input_blocks.1.1.bogus.weight"));
  }

  TEST_CASE("files that are not base models say what they are and what to do") {
    const auto models_dir = test::sd15() + "/models/";
    CHECK(has(load_error(models_dir + "tiny-controlnet.safetensors"), "this is a ControlNet, not a base model; pass it with --control-net"));
    CHECK(has(load_error(test::sd15() + "/lora/tiny-sd15-lora-kohya.safetensors"), "this is a LoRA"));
    CHECK(has(load_error(test::sd15() + "/refs/components.safetensors"), "not a Stable Diffusion checkpoint"));
    CHECK(has(load_error(models_dir + "does-not-exist.safetensors"), "no such file or folder"));
    const auto dir = test::scratch("ck-pickle");
    std::ofstream((dir / "old.ckpt").string()) << "PK";
    CHECK(has(load_error((dir / "old.ckpt").string()), "pickle checkpoints (.ckpt)"));
    CHECK(has(load_error(models_dir + "tiny-controlnet-diffusers"), "not a pipeline"));
  }

  TEST_CASE("a ControlNet file with or without the control_model. prefix loads the same") {
    const auto dir = test::scratch("cn-prefix");
    auto f = models::SafeTensors::open(test::sd15() + "/models/tiny-controlnet.safetensors");
    std::vector<std::pair<std::string, torch::Tensor>> stripped;
    for (const auto& t : f->tensors()) stripped.emplace_back(t.name.substr(std::string("control_model.").size()), f->load(t.name));
    const auto path = (dir / "bare.safetensors").string();
    models::save_safetensors(path, stripped);
    auto a = controlnet::open_controlnet(test::sd15() + "/models/tiny-controlnet.safetensors");
    auto b = controlnet::open_controlnet(path);
    CHECK(a.weights.size() == b.weights.size());
    CHECK(b.config.hint_channels == std::vector<int64_t>{16, 32, 96, 256});
    auto na = controlnet::load_controlnet(a, torch::kCPU, torch::kFloat32);
    auto nb = controlnet::load_controlnet(b, torch::kCPU, torch::kFloat32);
    for (const auto& p : na->named_parameters()) CHECK(torch::equal(p.value(), nb->named_parameters()[p.key()]));
  }
}
