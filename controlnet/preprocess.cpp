// ControlNet hint preprocessors with OpenCV. Each one reads an RGB image and returns
// an RGB hint, white features on black, the polarity the ControlNet 1.x models were
// trained on. Where AUTOMATIC1111's sd-webui-controlnet annotators are plain OpenCV
// (canny, threshold, the scribble inversion, HWC3's alpha handling) we do what they do,
// so a hint made here matches one made there; its neural soft-edge/lineart annotators
// are replaced by the classic operators the names suggest (gradient magnitude, adaptive
// threshold), which need no weights.
#include "controlnet/preprocess.h"

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <sstream>
#include <stdexcept>

#include "imaging/opencv.h"

namespace sigma::controlnet {
namespace {

using imaging::from_mat;
using imaging::to_mat;

using Params = std::map<std::string, double>;  // resolved: every parameter present

// The input as 3-channel RGB: gray replicated, RGBA composited over white (A1111's HWC3,
// so a transparent scribble canvas reads as white paper).
cv::Mat rgb_of(const Image& image) {
  cv::Mat m = to_mat(image);
  if (m.channels() == 3) return m;
  cv::Mat out;
  if (m.channels() == 1) {
    cv::cvtColor(m, out, cv::COLOR_GRAY2RGB);
    return out;
  }
  out.create(m.rows, m.cols, CV_8UC3);
  for (int y = 0; y < m.rows; ++y) {
    const auto* src = m.ptr<cv::Vec4b>(y);
    auto* dst = out.ptr<cv::Vec3b>(y);
    for (int x = 0; x < m.cols; ++x) {
      const int a = src[x][3];
      for (int c = 0; c < 3; ++c) dst[x][c] = static_cast<uint8_t>((src[x][c] * a + 255 * (255 - a) + 127) / 255);
    }
  }
  return out;
}

cv::Mat gray_of(const cv::Mat& rgb) {
  cv::Mat gray;
  cv::cvtColor(rgb, gray, cv::COLOR_RGB2GRAY);
  return gray;
}

Image rgb_image(const cv::Mat& single_or_rgb) {
  if (single_or_rgb.channels() == 3) return from_mat(single_or_rgb);
  cv::Mat rgb;
  cv::cvtColor(single_or_rgb, rgb, cv::COLOR_GRAY2RGB);
  return from_mat(rgb);
}

// A1111's canny annotator: cv2.Canny on the RGB image itself. OpenCV then takes, per
// pixel, the channel with the strongest gradient, so an edge between two colours of the
// same brightness (red on green) is still found.
Image run_canny(const cv::Mat& rgb, const Params& p) {
  cv::Mat edges;
  cv::Canny(rgb, edges, p.at("low"), p.at("high"));
  return rgb_image(edges);
}

// White where the gray value is above `threshold` (A1111 "threshold").
Image run_threshold(const cv::Mat& rgb, const Params& p) {
  cv::Mat out;
  cv::threshold(gray_of(rgb), out, p.at("threshold"), 255, cv::THRESH_BINARY);
  return rgb_image(out);
}

// A drawing of dark strokes on light paper -> white strokes on black, the scribble
// model's hint (A1111's "invert (from white bg & black line)" followed by a threshold).
Image run_scribble(const cv::Mat& rgb, const Params& p) {
  cv::Mat out;
  cv::threshold(gray_of(rgb), out, p.at("threshold"), 255, cv::THRESH_BINARY_INV);
  return rgb_image(out);
}

// Pixels darker than their Gaussian-weighted neighbourhood by more than `c` become white:
// ink lines of a drawing or photo edges, independent of overall lighting.
Image run_lineart(const cv::Mat& rgb, const Params& p) {
  const int block = static_cast<int>(p.at("block_size"));
  if (block % 2 == 0)
    throw std::invalid_argument("preprocessor lineart: block_size " + std::to_string(block) +
                                " must be odd (e.g. " + std::to_string(block + 1) + ")");
  cv::Mat out;
  cv::adaptiveThreshold(gray_of(rgb), out, 255, cv::ADAPTIVE_THRESH_GAUSSIAN_C, cv::THRESH_BINARY_INV, block,
                        p.at("c"));
  return rgb_image(out);
}

// Soft edges: Sobel gradient magnitude after a Gaussian blur, the strongest channel per
// pixel (as canny), scaled so the strongest edge is 255. A flat image gives black.
Image run_softedge(const cv::Mat& rgb, const Params& p) {
  cv::Mat src;
  rgb.convertTo(src, CV_32FC3, 1.0 / 255.0);
  const double sigma = p.at("blur");
  if (sigma > 0) cv::GaussianBlur(src, src, cv::Size(0, 0), sigma, sigma, cv::BORDER_REPLICATE);
  cv::Mat dx, dy, mag;
  cv::Sobel(src, dx, CV_32F, 1, 0, 3, 1, 0, cv::BORDER_REPLICATE);
  cv::Sobel(src, dy, CV_32F, 0, 1, 3, 1, 0, cv::BORDER_REPLICATE);
  cv::magnitude(dx.reshape(1), dy.reshape(1), mag);  // per channel, interleaved
  cv::Mat strongest = mag.reshape(3, rgb.rows);
  std::vector<cv::Mat> ch;
  cv::split(strongest, ch);
  cv::Mat m = cv::max(cv::max(ch[0], ch[1]), ch[2]);
  double peak = 0;
  cv::minMaxLoc(m, nullptr, &peak);
  cv::Mat out;
  m.convertTo(out, CV_8U, peak > 1e-6 ? 255.0 / peak : 0.0);
  return rgb_image(out);
}

Image run_grayscale(const cv::Mat& rgb, const Params&) { return rgb_image(gray_of(rgb)); }
Image run_none(const cv::Mat& rgb, const Params&) { return from_mat(rgb); }

struct Entry {
  PreprocessorInfo info;
  std::function<Image(const cv::Mat&, const Params&)> run;
};

const std::vector<Entry>& registry() {
  static const std::vector<Entry> entries = {
      {{"none", "the image itself as the hint (already a condition map)", {}}, run_none},
      {{"canny",
        "Canny edges: white 1-pixel lines on black",
        {{"low", 100, 0, 1000, "lower hysteresis threshold (weak edges kept if joined to strong ones)"},
         {"high", 200, 0, 1000, "upper hysteresis threshold (edges above it always kept)"}}},
       run_canny},
      {{"scribble",
        "dark strokes on light paper -> white strokes on black",
        {{"threshold", 127, 0, 255, "gray values below it count as a stroke"}}},
       run_scribble},
      {{"threshold",
        "binary threshold: bright areas white, the rest black",
        {{"threshold", 127, 0, 255, "gray values above it become white"}}},
       run_threshold},
      {{"lineart",
        "adaptive threshold, inverted: lines darker than their surroundings become white",
        {{"block_size", 11, 3, 255, "odd neighbourhood size in pixels"},
         {"c", 2, -50, 50, "how much darker than the neighbourhood mean a line must be"}}},
       run_lineart},
      {{"softedge",
        "soft edges: gradient magnitude, normalized so the strongest edge is white",
        {{"blur", 1.0, 0, 10, "Gaussian blur sigma in pixels before the gradient (0 = none)"}}},
       run_softedge},
      {{"grayscale", "the image in gray (for recolor-style models)", {}}, run_grayscale},
  };
  return entries;
}

const Entry& find_entry(std::string_view name) {
  for (const auto& e : registry())
    if (e.info.name == name) return e;
  std::string known;
  for (const auto& e : registry()) known += (known.empty() ? "" : ", ") + e.info.name;
  throw std::invalid_argument("unknown preprocessor '" + std::string(name) + "'; known preprocessors: " + known);
}

Params resolve(const PreprocessorInfo& info, const PreprocessParams& given) {
  Params out;
  for (const auto& p : info.params) out[p.name] = p.default_value;
  for (const auto& [name, value] : given) {
    const auto it = std::find_if(info.params.begin(), info.params.end(),
                                 [&](const PreprocessorParam& p) { return p.name == name; });
    if (it == info.params.end()) {
      std::string known;
      for (const auto& p : info.params) known += (known.empty() ? "" : ", ") + p.name;
      throw std::invalid_argument("preprocessor " + info.name + " has no parameter '" + name + "'" +
                                  (known.empty() ? std::string(" (it takes none)") : "; its parameters: " + known));
    }
    if (!(value >= it->min && value <= it->max)) {
      std::ostringstream ss;
      ss << "preprocessor " << info.name << ": " << name << " = " << value << " is outside " << it->min << ".."
         << it->max;
      throw std::invalid_argument(ss.str());
    }
    out[name] = value;
  }
  return out;
}

}  // namespace

const std::vector<PreprocessorInfo>& preprocessors() {
  static const std::vector<PreprocessorInfo> infos = [] {
    std::vector<PreprocessorInfo> v;
    for (const auto& e : registry()) v.push_back(e.info);
    return v;
  }();
  return infos;
}

const PreprocessorInfo& find_preprocessor(std::string_view name) { return find_entry(name).info; }

Image preprocess(const Image& input, std::string_view name, const PreprocessParams& params) {
  const Entry& entry = find_entry(name);  // name and parameters first: errors before work
  const Params resolved = resolve(entry.info, params);
  if (!input.valid()) throw std::invalid_argument("preprocessor " + entry.info.name + ": empty or malformed image");
  return entry.run(rgb_of(input), resolved);
}

Image prepare_hint(const Image& input, std::string_view name, int width, int height, imaging::ResizeMode mode,
                   const PreprocessParams& params) {
  resolve(find_entry(name).info, params);  // fail on a bad name or parameter before resizing
  return preprocess(imaging::resize_to(input, width, height, mode), name, params);
}

}  // namespace sigma::controlnet
