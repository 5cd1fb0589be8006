// The project's plain image: 8-bit, row-major, interleaved channels (RGB unless said
// otherwise). It is the currency between image I/O, the hint preprocessors, the
// pipeline, the CLI and the GUI, so it depends on nothing: no OpenCV (absent on the GPU
// machine) and no LibTorch (the UI includes it). Converting to a tensor or a cv::Mat is
// the job of the code that needs one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace sigma {

struct Image {
  int width = 0, height = 0, channels = 3;  // channels: 1 (gray), 3 (RGB) or 4 (RGBA)
  std::vector<uint8_t> pixels;              // height rows of width*channels bytes

  Image() = default;
  // A width x height image filled with `fill`; a bad size or channel count is an error
  // here, at construction, rather than an out-of-bounds write later.
  Image(int width_, int height_, int channels_ = 3, uint8_t fill = 0)
      : width(width_), height(height_), channels(channels_) {
    if (width_ <= 0 || height_ <= 0)
      throw std::invalid_argument("image: size " + std::to_string(width_) + "x" + std::to_string(height_) +
                                  " is not positive");
    if (channels_ != 1 && channels_ != 3 && channels_ != 4)
      throw std::invalid_argument("image: " + std::to_string(channels_) + " channels (expected 1, 3 or 4)");
    pixels.assign(static_cast<size_t>(width_) * static_cast<size_t>(height_) * static_cast<size_t>(channels_), fill);
  }

  bool empty() const { return width <= 0 || height <= 0 || pixels.empty(); }
  size_t row_bytes() const { return static_cast<size_t>(width) * static_cast<size_t>(channels); }
  // True when the pixel buffer holds exactly width*height*channels bytes (e.g. after a
  // caller filled `pixels` by hand).
  bool valid() const {
    return width > 0 && height > 0 && (channels == 1 || channels == 3 || channels == 4) &&
           pixels.size() == row_bytes() * static_cast<size_t>(height);
  }

  // Channel c of the pixel in column x, row y (x first, as in "width x height"; note
  // that cv::Mat::at takes the row first). Unchecked, like operator[].
  uint8_t& at(int x, int y, int c = 0) { return pixels[offset(x, y, c)]; }
  uint8_t at(int x, int y, int c = 0) const { return pixels[offset(x, y, c)]; }

  uint8_t* row(int y) { return pixels.data() + static_cast<size_t>(y) * row_bytes(); }
  const uint8_t* row(int y) const { return pixels.data() + static_cast<size_t>(y) * row_bytes(); }

  bool operator==(const Image& o) const {
    return width == o.width && height == o.height && channels == o.channels && pixels == o.pixels;
  }
  bool operator!=(const Image& o) const { return !(*this == o); }

 private:
  size_t offset(int x, int y, int c) const {
    return (static_cast<size_t>(y) * static_cast<size_t>(width) + static_cast<size_t>(x)) *
               static_cast<size_t>(channels) +
           static_cast<size_t>(c);
  }
};

}  // namespace sigma
