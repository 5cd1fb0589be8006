// The runner's image work and the name lists the GUI offers: loading a file, fitting and
// preprocessing a ControlNet condition image (OpenCV, when this build has it), and the
// solver / schedule / preprocessor catalogs, copied into plain structs so that the GUI
// sees names and descriptions without including samplers/ or controlnet/ headers.
#include "app/image_io.h"
#include "app/job_runner.h"
#include "samplers/registry.h"
#include "samplers/schedules.h"
#ifdef SIGMA_WITH_OPENCV
#include "controlnet/preprocess.h"
#endif

namespace sigma::app {

ImageTaskResult run_image_task(const ImageTask& task) {
  ImageTaskResult out;
  out.task = task;
  try {
    auto source = std::make_shared<Image>(load_image(task.path, 3));
    out.source = source;
    if (!task.preprocessor.empty()) {
#ifdef SIGMA_WITH_OPENCV
      const int w = task.width > 0 ? task.width : source->width, h = task.height > 0 ? task.height : source->height;
      out.processed = std::make_shared<Image>(controlnet::prepare_hint(*source, task.preprocessor, w, h,
                                                                       imaging::parse_resize_mode(task.resize), task.params));
#else
      if (task.preprocessor != "none")
        throw std::runtime_error("this build has no OpenCV, so hint preprocessors are unavailable; choose 'none'");
      out.processed = source;
#endif
    }
  } catch (const std::exception& e) {
    out.error = e.what();
  }
  return out;
}

std::vector<CatalogEntry> sampler_catalog() {
  std::vector<CatalogEntry> out;
  for (const auto& s : samplers::all_samplers())
    out.push_back({s.name, s.description + (s.stochastic ? " (stochastic)" : ""), s.paper});
  return out;
}

std::vector<CatalogEntry> schedule_catalog() {
  std::vector<CatalogEntry> out;
  for (const auto& s : samplers::all_schedules()) out.push_back({s.name, s.description, s.paper});
  return out;
}

std::vector<PreprocessorEntry> preprocessor_catalog() {
  std::vector<PreprocessorEntry> out;
#ifdef SIGMA_WITH_OPENCV
  for (const auto& p : controlnet::preprocessors()) {
    PreprocessorEntry e{p.name, p.description, {}};
    for (const auto& q : p.params) e.params.push_back({q.name, q.description, q.default_value, q.min, q.max});
    out.push_back(std::move(e));
  }
#else
  out.push_back({"none", "the condition image as it is (this build has no OpenCV preprocessors)", {}});
#endif
  return out;
}

}  // namespace sigma::app
