// Fitting an image to a size: the resize modes users of AUTOMATIC1111 and ComfyUI know
// ("crop and resize", "resize and fill", "just resize"). img2img and inpainting inputs,
// ControlNet condition images and the GUI's previews all use these, so they live beside
// the Image type rather than in any one of those folders.
//
// Built only where OpenCV is (the GPU machine has none: imaging/CMakeLists.txt leaves
// resize.cpp out there, and SIGMA_WITH_OPENCV tells callers); the mode names below are
// inline so they parse in every build.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

#include "imaging/image.h"

namespace sigma::imaging {

// How an image is fitted to a target size.
enum class ResizeMode {
  crop,     // scale to cover, then center-crop  (A1111 "Crop and Resize", the default)
  fit,      // scale to fit, pad with black      (A1111 "Resize and Fill")
  stretch,  // scale each axis independently     (A1111 "Just Resize")
};

// "crop" | "fit" | "stretch"; anything else => invalid_argument listing the three.
inline ResizeMode parse_resize_mode(std::string_view name) {
  if (name == "crop") return ResizeMode::crop;
  if (name == "fit") return ResizeMode::fit;
  if (name == "stretch") return ResizeMode::stretch;
  throw std::invalid_argument("unknown resize mode '" + std::string(name) +
                              "'; known: crop (scale to cover, center-crop), fit (scale to fit, pad black), "
                              "stretch (ignore aspect ratio)");
}

inline const char* resize_mode_name(ResizeMode mode) {
  switch (mode) {
    case ResizeMode::crop: return "crop";
    case ResizeMode::fit: return "fit";
    case ResizeMode::stretch: return "stretch";
  }
  return "?";
}

// `input` (any channel count, kept) scaled to exactly width x height: INTER_AREA when
// shrinking, INTER_CUBIC when enlarging. Padding in `fit` is split evenly (the odd pixel
// goes to the right/bottom). Needs OpenCV.
Image resize_to(const Image& input, int width, int height, ResizeMode mode);

}  // namespace sigma::imaging
