// ControlNet condition ("hint") preprocessors, named and behaving as users of the
// AUTOMATIC1111 and ComfyUI ControlNet extensions expect (canny thresholds 100/200, ...).
// One registry describes every preprocessor and its parameters, so `--help`,
// `sigma preprocess`, the job runner and the GUI list the same names and an unknown name
// fails at the boundary with the known ones listed. Fitting the condition image to the
// generation size uses the shared resize modes of imaging/resize.h.
//
// Built only where OpenCV is (the GPU machine has none: controlnet/CMakeLists.txt leaves
// files named *preprocess* out there); this header keeps OpenCV out of its includers.
// Every function returns an RGB Image (hints are 3-channel, white on black).
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "imaging/image.h"
#include "imaging/resize.h"

namespace sigma::controlnet {

struct PreprocessorParam {
  std::string name;        // as on the command line: --control-param low=50
  double default_value;
  double min, max;         // inclusive; a value outside is an error naming the range
  std::string description;
};

struct PreprocessorInfo {
  std::string name;         // "canny"
  std::string description;  // one line for listings
  std::vector<PreprocessorParam> params;
};

// Every preprocessor, in listing order: none, canny, scribble, threshold, lineart,
// softedge, grayscale.
const std::vector<PreprocessorInfo>& preprocessors();
// The entry called `name`; unknown => std::invalid_argument listing the known names.
const PreprocessorInfo& find_preprocessor(std::string_view name);

// Parameter overrides by name; missing ones take their defaults. An unknown parameter
// name or an out-of-range value => std::invalid_argument naming it and the valid ones.
using PreprocessParams = std::map<std::string, double>;

// Runs preprocessor `name` on `input` (gray, RGB, or RGBA composited over white as
// A1111's HWC3 does) at the input's own size.
Image preprocess(const Image& input, std::string_view name, const PreprocessParams& params = {});

// The hint a generation uses: `input` fitted to width x height first, then preprocessed,
// so edge maps are found at the generation resolution and stay one pixel thin (resizing
// an edge map afterwards would blur its lines).
Image prepare_hint(const Image& input, std::string_view name, int width, int height,
                   imaging::ResizeMode mode = imaging::ResizeMode::crop, const PreprocessParams& params = {});

}  // namespace sigma::controlnet
