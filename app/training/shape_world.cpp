// The shape world's generator, renderer and caption grammar (see shape_world.h for the
// why). Everything random flows through Rng below, in a fixed order of draws, so a
// seed means the same picture on every platform; changing the order of draws changes
// the data set, so do it only on purpose (and retrain).
#include "app/training/shape_world.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <random>
#include <sstream>
#include <stdexcept>

namespace sigma::app {
namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr double kBorderMargin = 2.0;   // object circumcircle to picture edge, pixels
constexpr double kCellMargin = 4.0;     // object centre to its grid cell's edge, pixels
constexpr double kObjectGap = 3.0;      // between two objects' circumcircles, pixels
constexpr double kRingInner = 0.55;     // hole radius / outer radius
constexpr double kStarInner = 0.5;      // inner vertex radius / tip radius
constexpr double kCrossHalfWidth = 0.3; // arm half-width / circumradius
constexpr int kSuper = 4;               // 4x4 samples per pixel
constexpr Color kBackgrounds[] = {Color::white, Color::black, Color::gray};

// Uniform draws from std::mt19937_64 written out, so every standard library agrees.
struct Rng {
  std::mt19937_64 engine;
  explicit Rng(uint64_t seed) : engine(seed) {}
  double uniform() { return static_cast<double>(engine() >> 11) * 0x1.0p-53; }  // [0, 1)
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  int below(int n) { return std::min(n - 1, static_cast<int>(uniform() * n)); }  // [0, n)
  bool chance(double p) { return uniform() < p; }
};

// Captions draw from their own stream, so how much a caption leaves out never changes the scene.
uint64_t caption_seed(uint64_t seed) { return seed ^ 0x9E3779B97F4A7C15ULL; }


// Scene sampling: per object its shape, colour (not the background's) and size, then up
// to 64 tries for a free grid cell and a centre that keeps clear of the border and the
// other objects; a scene with an object that finds no place is drawn again.
Scene sample_scene(Rng& rng, const ShapeWorldOptions& options) {
  check_options(options);
  const double cell = kShapeWorldSize / 3.0;
  for (;;) {
    Scene scene;
    const Color bg = kBackgrounds[rng.below(3)];
    scene.background = bg;
    const int count = options.min_objects + rng.below(options.max_objects - options.min_objects + 1);
    bool complete = true;
    for (int i = 0; i < count && complete; ++i) {
      SceneObject o;
      o.shape = static_cast<Shape>(rng.below(kShapeCount));
      int c = rng.below(kColorCount - 1);
      if (c >= static_cast<int>(bg)) ++c;
      o.color = static_cast<Color>(c);
      o.size = static_cast<Size>(rng.below(kSizeCount));
      o.radius = *o.size == Size::small ? rng.uniform(kSmallRadiusMin, kSmallRadiusMax)
                                        : rng.uniform(kLargeRadiusMin, kLargeRadiusMax);
      std::vector<Position> free;
      for (int p = 0; p < kPositionCount; ++p) {
        bool used = false;
        for (const auto& other : scene.objects) used = used || *other.position == static_cast<Position>(p);
        if (!used) free.push_back(static_cast<Position>(p));
      }
      bool placed = false;
      for (int attempt = 0; attempt < 64 && !placed; ++attempt) {
        const Position pos = free[static_cast<size_t>(rng.below(static_cast<int>(free.size())))];
        const int row = static_cast<int>(pos) / 3, col = static_cast<int>(pos) % 3;
        const double lo_edge = o.radius + kBorderMargin, hi_edge = kShapeWorldSize - o.radius - kBorderMargin;
        const double x0 = std::max(col * cell + kCellMargin, lo_edge), x1 = std::min((col + 1) * cell - kCellMargin, hi_edge);
        const double y0 = std::max(row * cell + kCellMargin, lo_edge), y1 = std::min((row + 1) * cell - kCellMargin, hi_edge);
        const double x = rng.uniform(x0, x1), y = rng.uniform(y0, y1);
        if (x0 > x1 || y0 > y1) continue;
        bool clear = true;
        for (const auto& other : scene.objects)
          clear = clear && std::hypot(x - other.cx, y - other.cy) >= o.radius + other.radius + kObjectGap;
        if (!clear) continue;
        o.position = pos;
        o.cx = x;
        o.cy = y;
        placed = true;
      }
      if (placed) scene.objects.push_back(o);
      else complete = false;
    }
    if (complete) return scene;
  }
}

// An object's outline around its centre, upright (the triangle and star point up), with
// every shape touching its circumcircle of radius r.
struct Outline {
  Shape shape;
  double r2, hole2, half_side, arm_half_width, arm_length;
  double solid2;                               // squared radius of the largest centred disc inside
  std::vector<std::array<double, 2>> polygon;  // triangle and star

  Outline(Shape s, double r)
      : shape(s),
        r2(r * r),
        hole2(r * r * kRingInner * kRingInner),
        half_side(r / std::sqrt(2.0)),
        arm_half_width(r * kCrossHalfWidth),
        arm_length(std::sqrt(r * r - arm_half_width * arm_half_width)) {
    // circle r, square r/sqrt(2), cross sqrt(2) w (its inner corners), triangle r/2,
    // star: its inner vertices at kStarInner r; a ring has no solid centre.
    const double solid = s == Shape::circle ? r : s == Shape::square ? half_side
                         : s == Shape::cross ? std::sqrt(2.0) * arm_half_width
                         : s == Shape::triangle ? r / 2 : s == Shape::star ? r * kStarInner : 0;
    solid2 = solid * solid;
    const int corners = s == Shape::triangle ? 3 : s == Shape::star ? 10 : 0;
    for (int k = 0; k < corners; ++k) {
      const double a = -kPi / 2 + k * 2 * kPi / corners, rr = s == Shape::star && k % 2 ? r * kStarInner : r;
      polygon.push_back({rr * std::cos(a), rr * std::sin(a)});
    }
  }

  // Point (dx, dy) relative to the centre inside the shape?
  bool contains(double dx, double dy) const {
    const double d2 = dx * dx + dy * dy;
    switch (shape) {
      case Shape::circle: return d2 <= r2;
      case Shape::ring: return d2 <= r2 && d2 > hole2;
      case Shape::square: return std::abs(dx) <= half_side && std::abs(dy) <= half_side;
      case Shape::cross:
        return (std::abs(dx) <= arm_length && std::abs(dy) <= arm_half_width) ||
               (std::abs(dx) <= arm_half_width && std::abs(dy) <= arm_length);
      case Shape::triangle:
      case Shape::star: break;
    }
    bool in = false;  // crossing number
    for (size_t i = 0, j = polygon.size() - 1; i < polygon.size(); j = i++) {
      const auto& a = polygon[i];
      const auto& b = polygon[j];
      if ((a[1] > dy) != (b[1] > dy) && dx < (b[0] - a[0]) * (dy - a[1]) / (b[1] - a[1]) + a[0]) in = !in;
    }
    return in;
  }
};

// Calls f(x, y, covered samples 1..16) for every pixel the object touches. Pixel (x, y)
// spans [x, x+1) x [y, y+1); samples sit at the centres of its 4x4 sub-cells.
template <typename F>
void for_coverage(const SceneObject& o, F&& f) {
  if (!(o.radius > 0)) throw std::invalid_argument("shape world: rendering needs object geometry (radius > 0)");
  const Outline shape(o.shape, o.radius);
  const int x0 = std::max(0, static_cast<int>(std::floor(o.cx - o.radius)) - 1);
  const int x1 = std::min(kShapeWorldSize - 1, static_cast<int>(std::ceil(o.cx + o.radius)) + 1);
  const int y0 = std::max(0, static_cast<int>(std::floor(o.cy - o.radius)) - 1);
  const int y1 = std::min(kShapeWorldSize - 1, static_cast<int>(std::ceil(o.cy + o.radius)) + 1);
  for (int y = y0; y <= y1; ++y)
    for (int x = x0; x <= x1; ++x) {
      // A pixel wholly outside the circumcircle holds no sample of the shape, one wholly
      // inside the solid centre disc holds all (exact shortcuts, not approximations).
      const double nx = std::clamp(o.cx, double(x), x + 1.0) - o.cx, ny = std::clamp(o.cy, double(y), y + 1.0) - o.cy;
      if (nx * nx + ny * ny > shape.r2) continue;
      const double fx = std::max(std::abs(x - o.cx), std::abs(x + 1 - o.cx));
      const double fy = std::max(std::abs(y - o.cy), std::abs(y + 1 - o.cy));
      int covered = kSuper * kSuper;
      if (fx * fx + fy * fy >= shape.solid2) {
        covered = 0;
        for (int sy = 0; sy < kSuper; ++sy)
          for (int sx = 0; sx < kSuper; ++sx)
            covered += shape.contains(x + (sx + 0.5) / kSuper - o.cx, y + (sy + 0.5) / kSuper - o.cy);
      }
      if (covered > 0) f(x, y, covered);
    }
}

std::string caption_in_style(Scene told, uint64_t seed, const CaptionStyle& style) {
  Rng rng(caption_seed(seed));
  for (auto& o : told.objects) {  // fixed order of draws: size, position per object, then background
    if (rng.chance(style.omit_size)) o.size.reset();
    if (rng.chance(style.omit_position)) o.position.reset();
  }
  if (rng.chance(style.omit_background)) told.background.reset();
  return caption_of(told);
}

std::string article(const std::string& next) {
  return std::string("aeiou").find(next[0]) != std::string::npos ? "an" : "a";
}

[[noreturn]] void parse_fail(const std::string& text, const std::vector<std::string>& words, size_t i,
                             const std::string& expected) {
  const std::string got = i < words.size() ? "'" + words[i] + "'" : "the end";
  throw std::invalid_argument("caption \"" + text + "\": expected " + expected + " at word " + std::to_string(i + 1) +
                              ", found " + got + " (grammar: 'a [small|large] [COLOR] SHAPE [PLACE] and ... "
                              "[on a COLOR background]')");
}

template <typename E, int N>
std::optional<E> lookup(const std::string& w) {
  for (int k = 0; k < N; ++k)
    if (w == word(static_cast<E>(k))) return static_cast<E>(k);
  return std::nullopt;
}

template <typename E, int N>
std::string alternatives() {
  std::string s;
  for (int k = 0; k < N; ++k) s += (k ? "|" : "") + std::string(word(static_cast<E>(k)));
  return s;
}

}  // namespace

void check_options(const ShapeWorldOptions& o) {
  if (o.min_objects < 1 || o.max_objects > 3 || o.min_objects > o.max_objects)
    throw std::invalid_argument("shape world: objects per scene must satisfy 1 <= min (" +
                                std::to_string(o.min_objects) + ") <= max (" + std::to_string(o.max_objects) +
                                ") <= 3");
}

const char* word(Shape s) {
  static const char* names[] = {"circle", "square", "triangle", "star", "ring", "cross"};
  return names[static_cast<int>(s)];
}
const char* word(Color c) {
  static const char* names[] = {"red", "orange", "yellow", "green", "blue", "purple", "white", "black", "gray"};
  return names[static_cast<int>(c)];
}
const char* word(Size s) { return s == Size::small ? "small" : "large"; }
const char* phrase(Position p) {
  static const char* names[] = {"at the top left",    "at the top",    "at the top right",
                                "on the left",        "in the center", "on the right",
                                "at the bottom left", "at the bottom", "at the bottom right"};
  return names[static_cast<int>(p)];
}

// Hues 0, 31, 54, 130, 225, 278 degrees at high saturation, and three neutrals far apart in value.
std::array<uint8_t, 3> rgb(Color c) {
  static const std::array<uint8_t, 3> values[] = {{215, 35, 35},   {240, 135, 20},  {235, 215, 30},
                                                  {45, 165, 65},   {40, 85, 215},   {135, 50, 185},
                                                  {245, 245, 245}, {20, 20, 20},    {128, 128, 128}};
  return values[static_cast<int>(c)];
}

Position position_of(double x, double y, int width, int height) {
  const int col = std::clamp(static_cast<int>(std::floor(3 * x / width)), 0, 2);
  const int row = std::clamp(static_cast<int>(std::floor(3 * y / height)), 0, 2);
  return static_cast<Position>(row * 3 + col);
}

Scene random_scene(uint64_t seed, const ShapeWorldOptions& options) {
  Rng rng(seed);
  return sample_scene(rng, options);
}

std::string random_caption(uint64_t seed, const ShapeWorldOptions& options) {
  return caption_in_style(random_scene(seed, options), seed, options.caption);
}

ShapeSample generate(uint64_t seed, const ShapeWorldOptions& options) {
  ShapeSample s;
  s.scene = random_scene(seed, options);
  s.caption = caption_in_style(s.scene, seed, options.caption);
  s.image = render(s.scene);
  return s;
}

std::string caption_of(const Scene& scene) {
  std::string out;
  for (const auto& o : scene.objects) {
    std::string noun;
    if (o.size) noun += std::string(word(*o.size)) + " ";
    if (o.color) noun += std::string(word(*o.color)) + " ";
    noun += word(o.shape);
    out += (out.empty() ? "" : " and ") + article(noun) + " " + noun;
    if (o.position) out += std::string(" ") + phrase(*o.position);
  }
  if (scene.background) {
    const std::string bg = word(*scene.background);
    out += " on " + article(bg) + " " + bg + " background";
  }
  return out;
}

Image render(const Scene& scene) {
  if (!scene.background) throw std::invalid_argument("shape world: rendering needs a background colour");
  const auto bg = rgb(*scene.background);
  Image img(kShapeWorldSize, kShapeWorldSize, 3);
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = bg[i % 3];
  constexpr int full = kSuper * kSuper;
  for (const auto& o : scene.objects) {
    if (!o.color) throw std::invalid_argument("shape world: rendering needs every object's colour");
    const auto fg = rgb(*o.color);
    for_coverage(o, [&](int x, int y, int k) {  // objects never overlap: blend over the background
      for (int c = 0; c < 3; ++c) img.at(x, y, c) = static_cast<uint8_t>((bg[c] * (full - k) + fg[c] * k + full / 2) / full);
    });
  }
  return img;
}

Image render_mask(const Scene& scene) {
  Image mask(kShapeWorldSize, kShapeWorldSize, 1);
  constexpr int full = kSuper * kSuper;
  for (const auto& o : scene.objects)
    for_coverage(o, [&](int x, int y, int k) {
      mask.at(x, y) = std::max(mask.at(x, y), static_cast<uint8_t>((255 * k + full / 2) / full));
    });
  return mask;
}

Scene parse_caption(const std::string& text) {
  std::vector<std::string> w;
  {
    std::string cleaned = text;
    for (char& ch : cleaned) ch = ch == ',' ? ' ' : static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    while (!cleaned.empty() && (cleaned.back() == '.' || std::isspace(static_cast<unsigned char>(cleaned.back()))))
      cleaned.pop_back();
    std::istringstream in(cleaned);
    for (std::string s; in >> s;) w.push_back(s);
  }
  size_t i = 0;
  auto at = [&](size_t k) -> std::string { return i + k < w.size() ? w[i + k] : std::string(); };
  auto is_article = [](const std::string& s) { return s == "a" || s == "an"; };
  const std::string colors = alternatives<Color, kColorCount>(), shapes = alternatives<Shape, kShapeCount>();

  Scene scene;
  for (;;) {
    if (!is_article(at(0))) parse_fail(text, w, i, scene.objects.empty() ? "'a' (an object such as 'a red circle')" : "'a'");
    ++i;
    SceneObject o;
    if (auto s = lookup<Size, kSizeCount>(at(0))) o.size = s, ++i;
    if (auto c = lookup<Color, kColorCount>(at(0))) o.color = c, ++i;
    const auto shape = lookup<Shape, kShapeCount>(at(0));
    if (!shape) parse_fail(text, w, i, (o.color ? "" : "a colour (" + colors + ") or ") + "a shape (" + shapes + ")");
    o.shape = *shape;
    ++i;
    if ((at(0) == "on" || at(0) == "at" || at(0) == "in") && at(1) == "the") {
      i += 2;
      const std::string a = at(0), b = at(1);
      int row = 1, col = 1;
      if (a == "left" || a == "right") col = a == "left" ? 0 : 2;
      else if (a == "top" || a == "bottom") {
        row = a == "top" ? 0 : 2;
        if (b == "left" || b == "right") col = b == "left" ? 0 : 2, ++i;
      } else if (a != "center") parse_fail(text, w, i, "a place (left|right|top|bottom|center|top left|...)");
      ++i;
      o.position = static_cast<Position>(row * 3 + col);
    }
    scene.objects.push_back(o);
    if (at(0) != "and") break;
    ++i;
  }
  if (at(0) == "on" && is_article(at(1))) {
    i += 2;
    const auto bg = lookup<Color, kColorCount>(at(0));
    if (!bg) parse_fail(text, w, i, "a background colour (" + colors + ")");
    ++i;
    if (at(0) != "background") parse_fail(text, w, i, "'background'");
    ++i;
    scene.background = bg;
  }
  if (i != w.size()) parse_fail(text, w, i, "'and', a place ('on the left', ...), 'on a COLOR background' or the end");
  return scene;
}

const std::vector<std::string>& caption_words() {
  static const std::vector<std::string> words = [] {
    std::vector<std::string> v = {"a", "an", "and", "on", "background"};
    for (int k = 0; k < kShapeCount; ++k) v.push_back(word(static_cast<Shape>(k)));
    for (int k = 0; k < kColorCount; ++k) v.push_back(word(static_cast<Color>(k)));
    for (int k = 0; k < kSizeCount; ++k) v.push_back(word(static_cast<Size>(k)));
    for (int k = 0; k < kPositionCount; ++k) {
      std::istringstream in(phrase(static_cast<Position>(k)));
      for (std::string s; in >> s;) v.push_back(s);
    }
    std::sort(v.begin(), v.end());
    v.erase(std::unique(v.begin(), v.end()), v.end());
    return v;
  }();
  return words;
}

}  // namespace sigma::app
