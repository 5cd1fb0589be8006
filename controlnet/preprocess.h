// ControlNet condition ("hint") preprocessors and the resize modes that fit a condition
// image to the generation size, named and behaving as users of the AUTOMATIC1111 and
// ComfyUI ControlNet extensions expect (canny thresholds 100/200, "crop and resize",
// "resize and fill", "just resize", ...). One registry describes every preprocessor and
// its parameters, so `--help`, `sigma preprocess`, the job runner and the GUI list the
// same names and an unknown name fails at the boundary with the known ones listed.
//
// Built only where OpenCV is (the GPU machine has none: controlnet/CMakeLists.txt leaves
// files named *preprocess* out there); this header keeps OpenCV out of its includers.
// Every function returns an RGB Image (hints are 3-channel, white on black).
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "controlnet/image.h"

namespace cv {
class Mat;  // only for the conversion helpers at the end
}

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

// How a condition image is fitted to the generation size.
enum class ResizeMode {
  crop,     // scale to cover, then center-crop  (A1111 "Crop and Resize", the default)
  fit,      // scale to fit, pad with black      (A1111 "Resize and Fill")
  stretch,  // scale each axis independently     (A1111 "Just Resize")
};
ResizeMode parse_resize_mode(std::string_view name);  // "crop" | "fit" | "stretch"; else invalid_argument
const char* resize_mode_name(ResizeMode mode);

// `input` (any channel count, kept) scaled to exactly width x height: INTER_AREA when
// shrinking, INTER_CUBIC when enlarging. Padding in `fit` is split evenly (the odd pixel
// goes to the right/bottom).
Image resize_to(const Image& input, int width, int height, ResizeMode mode);

// The hint a generation uses: `input` fitted to width x height first, then preprocessed,
// so edge maps are found at the generation resolution and stay one pixel thin (resizing
// an edge map afterwards would blur its lines).
Image prepare_hint(const Image& input, std::string_view name, int width, int height,
                   ResizeMode mode = ResizeMode::crop, const PreprocessParams& params = {});

// Conversions for code that works in OpenCV (include <opencv2/core.hpp> to use them).
// The Mat keeps the Image's channel order (RGB, not OpenCV's usual BGR) and owns a copy.
cv::Mat to_mat(const Image& image);
Image from_mat(const cv::Mat& mat);  // CV_8UC1/3/4; anything else => invalid_argument

}  // namespace sigma::controlnet
