#include "app/training/shape_eval.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "app/engine.h"
#include "app/image_io.h"
#include "app/pipeline.h"
#include "app/training/shape_judge.h"
#include "app/training/shape_world.h"
#include "controlnet/preprocess.h"

namespace fs = std::filesystem;

namespace sigma::app {

std::string EvalResult::summary() const {
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "%d prompts, %d objects: colour %.1f%%  shape %.1f%%  size %.1f%%  position %.1f%%  exact %.1f%%%s  (%.0f s)",
                prompts, objects, 100 * rate(color), 100 * rate(shape), 100 * rate(size), 100 * rate(position),
                100 * exact_rate(),
                control_iou > 0 ? (std::string("  control IoU ") + std::to_string(control_iou).substr(0, 5)).c_str() : "",
                seconds);
  return buf;
}

EvalResult eval_shapes(const EvalOptions& o) {
  if (o.objects < 1 || o.objects > 3) throw std::invalid_argument("eval-shapes: --objects must be 1, 2 or 3");
  const auto start = std::chrono::steady_clock::now();
  Request base = o.base;
  base.model = o.model;
  base.batch_size = base.batch_count = 1;
  auto engine = Engine::load(model_spec(base));
  if (!o.save_dir.empty()) fs::create_directories(o.save_dir);
  const auto scratch = fs::temp_directory_path() / ("sigma-eval-" + std::to_string(::getpid()));
  fs::create_directories(scratch);

  ShapeWorldOptions world;
  world.min_objects = world.max_objects = o.objects;
  EvalResult result;
  double iou_sum = 0;
  for (int k = 0; k < o.count; ++k) {
    const uint64_t seed = o.first_seed + static_cast<uint64_t>(k);
    const auto truth = generate(seed, world);  // the full caption (default CaptionStyle omits nothing)
    Request r = base;
    r.prompt = truth.caption;
    r.seed = static_cast<int64_t>(seed);
    r.width = r.height = kShapeWorldSize;
    Image hint;
    if (!o.controlnet.empty()) {
      const auto ref = (scratch / "reference.png").string();
      write_file_atomic(ref, encode_png(truth.image), true);
      hint = controlnet::preprocess(truth.image, "canny");
      r.controlnets = {ControlUnit{o.controlnet, ref, "canny", 1.0, 0.0, 1.0, "crop", {}}};
    }
    auto out = generate(*engine, r);
    const Image& picture = out.images.at(0).image;
    if (!o.save_dir.empty()) {
      char name[64];
      std::snprintf(name, sizeof name, "%03d.png", k);
      write_file_atomic((fs::path(o.save_dir) / name).string(), encode_png(picture, {{"parameters", out.images[0].parameters}}), true);
    }
    const auto verdict = judge(picture, parse_caption(truth.caption));
    ++result.prompts;
    for (const auto& v : verdict.objects) {
      ++result.objects;
      result.color += v.color.correct;
      result.shape += v.shape.correct;
      result.size += v.size.correct;
      result.position += v.position.correct;
    }
    result.exact_prompts += verdict.objects_exact();
    if (!hint.empty()) iou_sum += control_iou(picture, hint);
  }
  fs::remove_all(scratch);
  if (!o.controlnet.empty() && result.prompts) result.control_iou = iou_sum / result.prompts;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace sigma::app
