// The test binary's entry point: threads as on the CLI, and the GPU skip rule.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <iostream>

#include "app/process.h"
#include "models/runtime/options.h"
#include "models/runtime/torch_compat.h"

int main(int argc, char** argv) {
  sigma::app::reexec_with_passive_openmp(argv);
  sigma::models::init_runtime();
  sigma::app::sequential_opencv_under_tsan();
  // `--require-cuda`: the GPU suites. Exit 77 (CTest: skipped) with a visible reason on a
  // machine without a CUDA device instead of silently passing.
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--require-cuda") == 0) {
      if (!sigma::compat::cuda_available()) {
        std::cout << "SKIPPED gpu tests: this LibTorch has no CUDA device (CPU-only build or machine); "
                     "run scripts/gpu-test.sh on an NVIDIA GPU machine\n";
        return 77;
      }
    }
  }
  // Conformance on CUDA is checked in true float32: TF32 would round matmuls to 10 bits.
  if (const char* dev = std::getenv("SIGMA_TEST_DEVICE"); dev && std::string(dev) == "cuda" && sigma::compat::cuda_available())
    sigma::compat::set_allow_tf32(false);
  doctest::Context context;
  context.applyCommandLine(argc, argv);
  return context.run();
}
