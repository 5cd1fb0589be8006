#include "models/runtime.h"

#include <torch/torch.h>

#include <cstdlib>
#include <string>
#include <thread>

namespace sigma::models {

void init_runtime() {
  int threads = static_cast<int>(std::thread::hardware_concurrency());
  if (const char* env = std::getenv("SIGMA_THREADS")) threads = std::atoi(env);
  else if (const char* omp = std::getenv("OMP_NUM_THREADS")) threads = std::atoi(omp);
  if (threads > 0) at::set_num_threads(threads);
}

}  // namespace sigma::models
