// `sigma eval-shapes`: generates pictures from shape-world captions with fixed seeds
// through the normal pipeline and judges each one with OpenCV (app/training/shape_judge.h):
// per-attribute accuracy, exact-match rate, and for a ControlNet the IoU between the
// shape its canny hint encloses and the shape it generated.
#pragma once

#include <string>
#include <vector>

#include "app/request.h"

namespace sigma::app {

struct EvalOptions {
  std::string model;           // empty: the bundled model
  std::string controlnet;      // optional: also measure hint IoU
  int count = 32;              // prompts per set
  int objects = 1;             // objects per prompt (1..3)
  uint64_t first_seed = 900000;  // scene seeds (far from the training pool) and image seeds
  Request base;                // sampler, steps, cfg, device...
  std::string save_dir;        // optional: write every picture here
};

struct EvalResult {
  int prompts = 0, objects = 0;
  int color = 0, shape = 0, size = 0, position = 0;  // correct objects per attribute
  int exact_prompts = 0;                             // every object right, nothing extra
  double control_iou = 0;                            // mean over prompts (when a ControlNet ran)
  double seconds = 0;
  double rate(int n) const { return objects ? static_cast<double>(n) / objects : 0; }
  double exact_rate() const { return prompts ? static_cast<double>(exact_prompts) / prompts : 0; }
  std::string summary() const;
};

EvalResult eval_shapes(const EvalOptions& options);

}  // namespace sigma::app
