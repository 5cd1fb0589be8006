// Resizing with OpenCV (see resize.h for the modes) and the Image <-> cv::Mat bridge.
#include "imaging/resize.h"

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>

#include "imaging/opencv.h"

namespace sigma::imaging {
namespace {

cv::Mat resized(const cv::Mat& src, int width, int height) {
  if (src.cols == width && src.rows == height) return src.clone();
  const bool shrinking = width <= src.cols && height <= src.rows;
  cv::Mat dst;
  cv::resize(src, dst, cv::Size(width, height), 0, 0, shrinking ? cv::INTER_AREA : cv::INTER_CUBIC);
  return dst;
}

}  // namespace

Image resize_to(const Image& input, int width, int height, ResizeMode mode) {
  if (width <= 0 || height <= 0)
    throw std::invalid_argument("resize: target size " + std::to_string(width) + "x" + std::to_string(height) +
                                " is not positive");
  if (!input.valid()) throw std::invalid_argument("resize: empty or malformed image");
  const cv::Mat src = to_mat(input);
  if (mode == ResizeMode::stretch) return from_mat(resized(src, width, height));
  const double sx = static_cast<double>(width) / src.cols, sy = static_cast<double>(height) / src.rows;
  if (mode == ResizeMode::crop) {
    const double s = std::max(sx, sy);
    const int w = std::max(width, static_cast<int>(std::lround(src.cols * s)));
    const int h = std::max(height, static_cast<int>(std::lround(src.rows * s)));
    const cv::Mat big = resized(src, w, h);
    return from_mat(big(cv::Rect((w - width) / 2, (h - height) / 2, width, height)));
  }
  const double s = std::min(sx, sy);
  const int w = std::clamp(static_cast<int>(std::lround(src.cols * s)), 1, width);
  const int h = std::clamp(static_cast<int>(std::lround(src.rows * s)), 1, height);
  cv::Mat canvas = cv::Mat::zeros(height, width, src.type());
  resized(src, w, h).copyTo(canvas(cv::Rect((width - w) / 2, (height - h) / 2, w, h)));
  return from_mat(canvas);
}

cv::Mat to_mat(const Image& image) {
  if (!image.valid()) throw std::invalid_argument("image: empty or malformed (pixel count does not match the size)");
  const int type = image.channels == 1 ? CV_8UC1 : image.channels == 3 ? CV_8UC3 : CV_8UC4;
  return cv::Mat(image.height, image.width, type, const_cast<uint8_t*>(image.pixels.data())).clone();
}

Image from_mat(const cv::Mat& mat) {
  if (mat.empty() || mat.depth() != CV_8U || (mat.channels() != 1 && mat.channels() != 3 && mat.channels() != 4))
    throw std::invalid_argument("image: only non-empty 8-bit 1/3/4-channel matrices convert to an Image");
  Image out(mat.cols, mat.rows, mat.channels());
  for (int y = 0; y < mat.rows; ++y) std::copy_n(mat.ptr<uint8_t>(y), out.row_bytes(), out.row(y));
  return out;
}

}  // namespace sigma::imaging
