// The sampler, schedule and preprocessor catalogs for the torch-free fuzz targets. The real
// ones (app/job_runner_images.cpp) read the LibTorch-bound registries of samplers/ and
// controlnet/, which these targets do not link; admission only needs their names and
// parameter ranges, so a representative subset stands in here, with the real ranges.
#include "app/job_runner.h"

namespace sigma::app {

std::vector<CatalogEntry> sampler_catalog() {
  return {{"euler", "", ""}, {"euler_ancestral", "", ""}, {"dpmpp_2m", "", ""}, {"dpmpp_sde", "", ""}, {"ddim", "", ""}, {"flow_euler", "", ""}};
}

std::vector<CatalogEntry> schedule_catalog() {
  return {{"karras", "", ""}, {"normal", "", ""}, {"simple", "", ""}, {"discrete", "", ""}, {"sgm_uniform", "", ""}, {"custom", "", ""}};
}

std::vector<PreprocessorEntry> preprocessor_catalog() {
  return {{"none", "", {}},
          {"canny", "", {{"low", "", 100, 0, 1000}, {"high", "", 200, 0, 1000}}},
          {"threshold", "", {{"threshold", "", 127, 0, 255}}}};
}

}  // namespace sigma::app
