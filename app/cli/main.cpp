// `sigma`: the headless front end. Subcommands live in cli_*.cpp; this file wires them,
// sets up the runtime and turns errors into one line and an exit status.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>

#include "app/cli/cli.h"
#include "app/process.h"
#include "models/runtime/options.h"

namespace sigma::app {
std::atomic<bool> g_interrupted{false};
}

namespace {
void on_sigint(int) {
  if (sigma::app::g_interrupted.exchange(true)) {
    std::signal(SIGINT, SIG_DFL);  // a second Ctrl-C ends the process at once
    std::raise(SIGINT);
  }
}
}  // namespace

int main(int argc, char** argv) {
  sigma::app::reexec_with_passive_openmp(argv);
  CLI::App app{"Sigma Studio: latent-diffusion image generation (Stable Diffusion 1.x, 2.x and SDXL checkpoints, and the bundled model)",
               "sigma"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("sigma-studio ") + SIGMA_VERSION);
  sigma::app::CliState state;
  sigma::app::register_generate(app, state);
  sigma::app::register_tools(app, state);
  sigma::app::register_train(app, state);
  sigma::app::register_bench(app, state);
  sigma::app::register_serve(app, state);
  sigma::models::trace_time("sigma " + std::string(argc > 1 ? argv[1] : "") + " started");
  try {
    sigma::models::init_runtime();
    sigma::app::sequential_opencv_under_tsan();
    std::signal(SIGINT, on_sigint);
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sigma: error: %s\n", e.what());
    return 1;
  }
  sigma::models::trace_time("sigma " + std::string(argc > 1 ? argv[1] : "") + " done");
  // The static destructors after the last output cost time the user waits for and nothing
  // else: ~50 ms of LibTorch's ~290 libraries on the CPU (the README's command), 0.3 s after a
  // CUDA run (the engine's device memory, CUDA graphs, cuDNN/cuBLAS handles, the context), all
  // of which the OS and the driver reclaim when the process ends. Every file is written and
  // closed by now (atomic renames), so only the buffered streams need flushing.
  if (!sigma::models::runtime_options().clean_exit) {
    std::fflush(nullptr);
    std::_Exit(state.exit_code);
  }
  return state.exit_code;
}
