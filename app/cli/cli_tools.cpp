// `sigma info`, `sigma samplers`, `sigma preprocess`: what a model is, what can sample it,
// and the condition images ControlNets read.
#include <filesystem>
#include <memory>

#include "app/cli/cli.h"
#include "app/image_io.h"
#include "controlnet/controlnet.h"
#include "models/families/checkpoint_info.h"
#include "samplers/registry.h"
#include "samplers/schedules.h"
#ifdef SIGMA_WITH_OPENCV
#include "controlnet/preprocess.h"
#endif

namespace fs = std::filesystem;

namespace sigma::app {
namespace {

bool is_controlnet(const std::string& path) {
  if (fs::is_directory(path)) {
    const auto cfg = fs::path(path) / "config.json";
    return fs::exists(cfg) && models::read_json_file(cfg.string()).value("_class_name", "") == "ControlNetModel";
  }
  if (fs::path(path).extension() != ".safetensors") return false;
  auto f = models::SafeTensors::open(path);
  for (const auto& t : f->tensors())
    if (t.name.rfind("control_model.", 0) == 0 || t.name.rfind("input_hint_block.", 0) == 0 ||
        t.name.rfind("controlnet_cond_embedding.", 0) == 0)
      return true;
  return false;
}

int run_info(const std::string& path) {
  if (is_controlnet(path)) {
    auto ck = controlnet::open_controlnet(path);
    std::printf("path:          %s\nkind:          ControlNet (%s layout)\nparameters:    %s, %s\nconfiguration: %s\n",
                path.c_str(), ck.diffusers ? "diffusers" : "single-file", models::format_count(models::count_parameters(ck.weights)).c_str(),
                models::dtype_summary(ck.weights).c_str(), ck.config.describe().c_str());
    return 0;
  }
  std::printf("%s", models::describe_checkpoint(models::open_checkpoint(path)).c_str());
  return 0;
}

int run_samplers() {
  std::printf("Solvers (--sampler):\n");
  for (const auto& s : samplers::all_samplers())
    std::printf("  %-22s %s%s\n  %-22s   [%s]\n", s.name.c_str(), s.description.c_str(), s.stochastic ? " (stochastic)" : "",
                "", s.paper.c_str());
  std::printf("\nSchedules (--scheduler):\n");
  for (const auto& s : samplers::all_schedules())
    std::printf("  %-16s %s  [%s]\n", s.name.c_str(), s.description.c_str(), s.paper.c_str());
#ifdef SIGMA_WITH_OPENCV
  std::printf("\nControlNet preprocessors (--preprocessor):\n");
  for (const auto& p : controlnet::preprocessors()) {
    std::printf("  %-10s %s\n", p.name.c_str(), p.description.c_str());
    for (const auto& param : p.params)
      std::printf("  %-10s   %s=%g  (%g..%g) %s\n", "", param.name.c_str(), param.default_value, param.min, param.max,
                  param.description.c_str());
  }
#endif
  return 0;
}

struct PreprocessArgs {
  std::string image, output, preprocessor = "canny", resize = "crop";
  std::vector<std::string> params;
  int width = 0, height = 0;
  bool overwrite = false;
};

int run_preprocess(const PreprocessArgs& a) {
#ifdef SIGMA_WITH_OPENCV
  controlnet::find_preprocessor(a.preprocessor);
  const auto params = parse_name_values(a.params, "--param");
  auto img = load_image(a.image, 3);
  const int w = a.width > 0 ? a.width : img.width, h = a.height > 0 ? a.height : img.height;
  auto hint = controlnet::prepare_hint(img, a.preprocessor, w, h, imaging::parse_resize_mode(a.resize), params);
  write_file_atomic(a.output, encode_png(hint), a.overwrite);
  std::printf("%s\n", a.output.c_str());
  return 0;
#else
  (void)a;
  throw std::invalid_argument("this build has no OpenCV, which the preprocessors need");
#endif
}

}  // namespace

std::map<std::string, double> parse_name_values(const std::vector<std::string>& entries, const std::string& flag) {
  std::map<std::string, double> out;
  for (const auto& kv : entries) {
    const auto eq = kv.find('=');
    size_t used = 0;
    double v = 0;
    try {
      if (eq != std::string::npos) v = std::stod(kv.substr(eq + 1), &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (eq == std::string::npos || eq == 0 || used == 0 || eq + 1 + used != kv.size())
      throw std::invalid_argument(flag + " expects NAME=VALUE with a number, e.g. low=50; got '" + kv + "'");
    out[kv.substr(0, eq)] = v;
  }
  return out;
}

void register_tools(CLI::App& app, CliState& state) {
  auto path = std::make_shared<std::string>();
  auto* info = app.add_subcommand("info", "describe a checkpoint or ControlNet: layout, family, configuration, sizes, dtypes, unused keys");
  info->add_option("path", *path, "a .safetensors file or a diffusers folder")->required();
  info->callback([path, &state] { state.exit_code = run_info(*path); });

  auto* list = app.add_subcommand("samplers", "list solvers, schedules and ControlNet preprocessors");
  list->callback([&state] { state.exit_code = run_samplers(); });

  auto pa = std::make_shared<PreprocessArgs>();
  auto* pre = app.add_subcommand("preprocess", "write a ControlNet condition image");
  pre->add_option("image", pa->image, "input image (PNG, JPEG, BMP)")->required();
  pre->add_option("-o,--output", pa->output, "output .png")->required();
  pre->add_option("--preprocessor", pa->preprocessor, "none | canny | scribble | threshold | lineart | softedge | grayscale")
      ->default_val("canny");
  pre->add_option("--param", pa->params, "preprocessor parameter NAME=VALUE, repeat for several: --param low=50 --param high=150")
      ->allow_extra_args(false);
  pre->add_option("-W,--width", pa->width, "output width (default: the input's)");
  pre->add_option("-H,--height", pa->height, "output height (default: the input's)");
  pre->add_option("--resize", pa->resize, "crop | fit | stretch when the size changes")->default_val("crop");
  pre->add_flag("--overwrite", pa->overwrite, "replace an existing output file");
  pre->callback([pa, &state] { state.exit_code = run_preprocess(*pa); });
}

}  // namespace sigma::app
