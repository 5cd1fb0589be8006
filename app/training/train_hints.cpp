// Canny hint packs for ControlNet training: made here, where OpenCV is, with the same
// preprocessor the CLI's `--preprocessor canny` runs, and read by `sigma train controlnet`
// on a machine without OpenCV.
#include "app/training/shape_world.h"
#include "app/training/train.h"
#include "app/training/train_util.h"
#include "controlnet/preprocess.h"
#include "models/io/safetensors.h"

namespace sigma::app {

std::string make_hint_pack(uint64_t first_seed, int64_t count, const std::string& path, int threads) {
  if (count <= 0) throw std::invalid_argument("train-hints: --count must be positive");
  auto packed = torch::zeros({count, kShapeWorldSize, kShapeWorldSize / 8}, torch::kUInt8);
  uint8_t* out = packed.data_ptr<uint8_t>();
  training::parallel_for(count, threads, [&](int64_t i) {
    const auto sample = generate(first_seed + static_cast<uint64_t>(i));
    const auto hint = controlnet::preprocess(sample.image, "canny");
    uint8_t* row = out + i * kShapeWorldSize * (kShapeWorldSize / 8);
    for (int y = 0; y < kShapeWorldSize; ++y)
      for (int x = 0; x < kShapeWorldSize; ++x)
        if (hint.at(x, y, 0) > 127) row[y * (kShapeWorldSize / 8) + x / 8] |= static_cast<uint8_t>(0x80 >> (x % 8));
  });
  models::save_safetensors(path, {{"hints", packed}, {"first_seed", torch::tensor(static_cast<int64_t>(first_seed))}},
                           {{"sigma.hints", "canny 100/200 of shape-world seeds, 1 bit per pixel, MSB first"}});
  return path;
}

}  // namespace sigma::app
