// ControlNet hint preprocessors and resize modes: each preprocessor's output checked
// against where the features of a drawn test image actually are (edges on the circle
// and nowhere else, strokes turned white, flat areas black), resize modes against the
// exact placement A1111 documents, and the registry's errors at the boundary.
// Needs OpenCV, like the code it tests (absent on the GPU machine).
#include <doctest/doctest.h>

#ifdef SIGMA_WITH_OPENCV

#include <opencv2/imgproc.hpp>

#include <cmath>
#include <set>

#include "controlnet/preprocess.h"
#include "imaging/opencv.h"
#include "imaging/resize.h"
#include "tests/support.h"

using namespace sigma::controlnet;
using namespace sigma::imaging;
using sigma::Image;

using sigma::test::error_of;

namespace {

// 128x128 RGB, background `bg`, a filled disc of colour `fg` at (64, 64), radius 30.
Image disc_image(cv::Scalar fg, cv::Scalar bg = {0, 0, 0}) {
  cv::Mat m(128, 128, CV_8UC3, bg);
  cv::circle(m, {64, 64}, 30, fg, cv::FILLED, cv::LINE_AA);
  return from_mat(m);
}

int count_white(const Image& img) {
  int n = 0;
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x) n += img.at(x, y, 0) > 127;
  return n;
}

bool is_gray_binary(const Image& img) {  // every pixel 0 or 255 with R = G = B
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x) {
      const int v = img.at(x, y, 0);
      if ((v != 0 && v != 255) || img.at(x, y, 1) != v || img.at(x, y, 2) != v) return false;
    }
  return true;
}

}  // namespace

TEST_SUITE("unit.preprocess") {
  TEST_CASE("canny finds the edges of a drawn circle where the circle is and nowhere else") {
    const Image hint = preprocess(disc_image({255, 255, 255}), "canny");
    REQUIRE(hint.width == 128);
    REQUIRE(hint.height == 128);
    REQUIRE(hint.channels == 3);
    CHECK(is_gray_binary(hint));
    int on_circle = 0, elsewhere = 0;
    std::set<int> octants;
    for (int y = 0; y < 128; ++y)
      for (int x = 0; x < 128; ++x) {
        if (hint.at(x, y, 0) == 0) continue;
        const double dx = x - 64, dy = y - 64, r = std::hypot(dx, dy);
        if (std::abs(r - 30) <= 2) {
          ++on_circle;
          octants.insert(static_cast<int>(std::floor((std::atan2(dy, dx) + M_PI) / (M_PI / 4))) % 8);
        } else {
          ++elsewhere;
        }
      }
    CHECK(elsewhere == 0);
    CHECK(on_circle >= 150);      // the circumference is ~188 pixels; edges are one pixel thin
    CHECK(octants.size() == 8);   // all the way round
  }

  TEST_CASE("canny sees an edge between two colours of equal brightness (it reads RGB, as A1111)") {
    // Red (255,0,0) and a green of nearly the same luma: the gray image is almost flat.
    const Image img = disc_image({255, 0, 0}, {0, 130, 0});
    CHECK(count_white(preprocess(img, "canny")) >= 150);
  }

  TEST_CASE("canny thresholds change how many edges survive") {
    // Three discs of decreasing contrast: high thresholds keep only the strongest.
    cv::Mat m(128, 128, CV_8UC3, cv::Scalar(0, 0, 0));
    cv::circle(m, {30, 30}, 18, {255, 255, 255}, cv::FILLED);
    cv::circle(m, {90, 40}, 18, {60, 60, 60}, cv::FILLED);
    cv::circle(m, {60, 95}, 18, {25, 25, 25}, cv::FILLED);
    cv::GaussianBlur(m, m, {0, 0}, 1.0);
    const Image img = from_mat(m);
    const int loose = count_white(preprocess(img, "canny", {{"low", 10}, {"high", 30}}));
    const int standard = count_white(preprocess(img, "canny"));
    const int strict = count_white(preprocess(img, "canny", {{"low", 400}, {"high", 800}}));
    CHECK(loose > standard);
    CHECK(standard > strict);
    CHECK(strict > 0);
  }

  TEST_CASE("scribble turns dark strokes on paper white on black; threshold keeps bright areas") {
    cv::Mat m(64, 64, CV_8UC3, cv::Scalar(240, 240, 240));
    cv::line(m, {10, 32}, {54, 32}, {10, 10, 10}, 3);
    const Image drawing = from_mat(m);
    const Image s = preprocess(drawing, "scribble");
    CHECK(is_gray_binary(s));
    CHECK(s.at(32, 32, 0) == 255);  // on the stroke
    CHECK(s.at(32, 10, 0) == 0);    // paper
    const Image t = preprocess(drawing, "threshold");
    CHECK(t.at(32, 32, 0) == 0);
    CHECK(t.at(32, 10, 0) == 255);
    CHECK(count_white(s) + count_white(t) == 64 * 64);  // exact complements at the same threshold
    // A threshold above the paper's gray makes everything a stroke.
    CHECK(count_white(preprocess(drawing, "scribble", {{"threshold", 250}})) == 64 * 64);
  }

  TEST_CASE("lineart marks lines darker than their surroundings, whatever the lighting") {
    cv::Mat m(64, 64, CV_8UC3);
    for (int x = 0; x < 64; ++x) m.col(x).setTo(cv::Scalar::all(100 + x));  // a lighting gradient
    cv::line(m, {32, 4}, {32, 60}, cv::Scalar::all(40), 1);
    const Image l = preprocess(from_mat(m), "lineart");
    CHECK(is_gray_binary(l));
    int line = 0, off_line = 0;
    for (int y = 8; y < 56; ++y) {
      line += l.at(32, y, 0) == 255;
      for (int x = 0; x < 64; ++x) off_line += std::abs(x - 32) > 2 && l.at(x, y, 0) == 255;
    }
    CHECK(line == 48);
    CHECK(off_line == 0);
    CHECK(!error_of([&] { preprocess(from_mat(m), "lineart", {{"block_size", 10}}); }).empty());  // even
  }

  TEST_CASE("softedge is normalized gradient magnitude: white at the edge, black where flat") {
    const Image e = preprocess(disc_image({255, 255, 255}), "softedge");
    int peak = 0;
    for (auto v : e.pixels) peak = std::max(peak, int(v));
    CHECK(peak == 255);
    CHECK(e.at(64, 64, 0) == 0);   // inside, flat
    CHECK(e.at(5, 5, 0) == 0);     // outside, flat
    CHECK(e.at(94, 64, 0) > 100);  // on the rim
    const Image flat = preprocess(Image(16, 16, 3, 77), "softedge");
    CHECK(count_white(flat) == 0);
  }

  TEST_CASE("grayscale and none; gray and RGBA inputs become RGB (RGBA over white)") {
    const Image g = preprocess(disc_image({255, 0, 0}), "grayscale");
    CHECK(g.at(64, 64, 0) == g.at(64, 64, 1));
    CHECK(g.at(64, 64, 1) == g.at(64, 64, 2));
    CHECK(g.at(64, 64, 0) == 76);  // 0.299 * 255
    Image rgba(4, 4, 4, 0);        // fully transparent black
    rgba.at(1, 1, 0) = 200, rgba.at(1, 1, 3) = 255;
    const Image n = preprocess(rgba, "none");
    REQUIRE(n.channels == 3);
    CHECK(n.at(0, 0, 0) == 255);  // transparent reads as white paper
    CHECK(n.at(1, 1, 0) == 200);
    CHECK(n.at(1, 1, 1) == 0);
    const Image from_gray = preprocess(Image(4, 4, 1, 90), "none");
    CHECK(from_gray.channels == 3);
    CHECK(from_gray.at(3, 3, 2) == 90);
  }

  TEST_CASE("the registry: names, descriptions, parameters; unknown names and parameters fail loudly") {
    std::vector<std::string> names;
    for (const auto& p : preprocessors()) {
      names.push_back(p.name);
      CHECK(!p.description.empty());
      for (const auto& q : p.params) CHECK((q.default_value >= q.min && q.default_value <= q.max));
    }
    CHECK(names == std::vector<std::string>{"none", "canny", "scribble", "threshold", "lineart", "softedge", "grayscale"});
    CHECK(find_preprocessor("canny").params.size() == 2);
    const std::string unknown = error_of([] { preprocess(Image(8, 8), "hed"); });
    CHECK(unknown.find("'hed'") != std::string::npos);
    for (const auto& n : names) CHECK(unknown.find(n) != std::string::npos);
    CHECK(error_of([] { find_preprocessor("Canny"); }).find("known preprocessors") != std::string::npos);
    const std::string param = error_of([] { preprocess(Image(8, 8), "canny", {{"sigma", 1}}); });
    CHECK(param.find("'sigma'") != std::string::npos);
    CHECK(param.find("low") != std::string::npos);
    CHECK(error_of([] { preprocess(Image(8, 8), "canny", {{"low", -1}}); }).find("0..1000") != std::string::npos);
    CHECK(error_of([] { preprocess(Image(8, 8), "grayscale", {{"x", 1}}); }).find("takes none") != std::string::npos);
    CHECK(error_of([] { parse_resize_mode("fill"); }).find("crop") != std::string::npos);
    CHECK(parse_resize_mode("fit") == ResizeMode::fit);
    CHECK(std::string(resize_mode_name(ResizeMode::stretch)) == "stretch");
  }

  TEST_CASE("resize modes: exact sizes and content placed as specified") {
    // 200x100: red left quarter, green middle half, blue right quarter.
    cv::Mat m(100, 200, CV_8UC3, cv::Scalar(0, 255, 0));
    m.colRange(0, 50).setTo(cv::Scalar(255, 0, 0));
    m.colRange(150, 200).setTo(cv::Scalar(0, 0, 255));
    const Image src = from_mat(m);

    // crop: scale 0.64 -> 128x64, the middle 64 columns = the source's green half exactly.
    const Image crop = resize_to(src, 64, 64, ResizeMode::crop);
    REQUIRE((crop.width == 64 && crop.height == 64));
    bool all_green = true;
    for (int y = 0; y < 64; ++y)
      for (int x = 0; x < 64; ++x) all_green = all_green && crop.at(x, y, 0) == 0 && crop.at(x, y, 1) == 255;
    CHECK(all_green);

    // fit: 64x32 content, 16 black rows above and 16 below; the whole width used.
    const Image fit = resize_to(src, 64, 64, ResizeMode::fit);
    REQUIRE((fit.width == 64 && fit.height == 64));
    int black_top = 0, black_bottom = 0;
    while (black_top < 64 && fit.at(32, black_top, 1) == 0) ++black_top;
    while (black_bottom < 64 && fit.at(32, 63 - black_bottom, 1) == 0) ++black_bottom;
    CHECK(black_top == 16);
    CHECK(black_bottom == 16);
    CHECK(fit.at(2, 32, 0) == 255);   // red reaches the left edge
    CHECK(fit.at(61, 32, 2) == 255);  // blue the right edge
    // An odd difference puts the extra pixel on the bottom: 200x100 into 64x65.
    const Image odd = resize_to(src, 64, 65, ResizeMode::fit);
    CHECK(odd.at(32, 15, 1) == 0);
    CHECK(odd.at(32, 16, 1) == 255);
    CHECK(odd.at(32, 47, 1) == 255);
    CHECK(odd.at(32, 48, 1) == 0);

    // stretch: all three bands, in proportion, over the full square.
    const Image st = resize_to(src, 64, 64, ResizeMode::stretch);
    REQUIRE((st.width == 64 && st.height == 64));
    CHECK(st.at(4, 60, 0) == 255);
    CHECK(st.at(32, 0, 1) == 255);
    CHECK(st.at(60, 30, 2) == 255);

    // Enlarging (cubic) and odd sizes still give the exact size; channels are kept.
    const Image up = resize_to(Image(3, 5, 1, 9), 50, 37, ResizeMode::crop);
    CHECK((up.width == 50 && up.height == 37 && up.channels == 1));
    CHECK(up.at(25, 18) == 9);
    CHECK(!error_of([&] { resize_to(src, 0, 64, ResizeMode::fit); }).empty());
  }

  TEST_CASE("prepare_hint resizes first, so canny lines stay one pixel thin at the target size") {
    cv::Mat m(256, 512, CV_8UC3, cv::Scalar(0, 0, 0));
    cv::circle(m, {256, 128}, 100, {255, 255, 255}, cv::FILLED, cv::LINE_AA);
    const Image hint = prepare_hint(from_mat(m), "canny", 128, 128, ResizeMode::crop);
    REQUIRE((hint.width == 128 && hint.height == 128));
    CHECK(is_gray_binary(hint));
    int near = 0, far = 0;  // the circle is now radius 50 at (64, 64)
    for (int y = 0; y < 128; ++y)
      for (int x = 0; x < 128; ++x)
        if (hint.at(x, y, 0)) (std::abs(std::hypot(x - 63.5, y - 63.5) - 50) <= 2 ? near : far)++;
    CHECK(far == 0);
    CHECK(near >= 250);  // circumference ~314
    CHECK(error_of([&] { prepare_hint(from_mat(m), "nope", 64, 64); }).find("known") != std::string::npos);
  }
}

#endif  // SIGMA_WITH_OPENCV
