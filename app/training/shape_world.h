// The "shape world": the procedurally generated, captioned data the bundled default
// model is trained on (issue 6), and the truth its checker (`sigma eval-shapes`) judges
// generated pictures against. A 128x128 RGB picture holds 1-3 non-overlapping objects
// on a plain background, described by a small grammar:
//
//   caption  := object ("and" object)* ["on" "a" COLOR "background"]
//   object   := ("a"|"an") [SIZE] [COLOR] SHAPE [PLACE]
//   PLACE    := "on the left" | "on the right" | "at the top" | "at the bottom" |
//               "in the center" | "at the top left" | ... | "at the bottom right"
//   e.g. "a large red circle on the left and a small blue star at the top right on a
//         white background"
//
// Deterministic by construction: the same seed gives the same scene, pixels and caption
// on every machine. The random numbers come from std::mt19937_64 (whose sequence the
// standard fixes) through distributions written here (std::uniform_*_distribution
// differ between standard libraries), and the rasterizer is our own 4x4-supersampled
// coverage renderer instead of OpenCV drawing, which also keeps this file free of
// OpenCV: the GPU training machine has none. Positions are cells of a 3x3 grid; sizes
// are two ranges of circumradius, far enough apart to judge from the picture.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "imaging/image.h"

namespace sigma::app {

constexpr int kShapeWorldSize = 128;  // pictures are kShapeWorldSize x kShapeWorldSize

enum class Shape { circle, square, triangle, star, ring, cross };
enum class Color { red, orange, yellow, green, blue, purple, white, black, gray };
enum class Size { small, large };
// The 3x3 grid, row-major: index = row * 3 + column.
enum class Position { top_left, top, top_right, left, center, right, bottom_left, bottom, bottom_right };

constexpr int kShapeCount = 6, kColorCount = 9, kSizeCount = 2, kPositionCount = 9;

const char* word(Shape s);      // "circle"
const char* word(Color c);      // "red"
const char* word(Size s);       // "small"
const char* phrase(Position p); // "on the left", "at the top right", "in the center"
std::array<uint8_t, 3> rgb(Color c);  // the RGB value the generator paints
// The grid cell of a point in a width x height picture (ties go to the later cell).
Position position_of(double x, double y, int width = kShapeWorldSize, int height = kShapeWorldSize);

// Circumradius ranges in pixels at 128x128: every shape's outline lies on a circle of
// this radius, so the same number sizes a star and a square. The judge splits at
// sqrt(small max * large min).
constexpr double kSmallRadiusMin = 10.5, kSmallRadiusMax = 13.5;
constexpr double kLargeRadiusMin = 21.0, kLargeRadiusMax = 26.0;
constexpr double kSizeSplitRadius = 16.8;

// An object of a scene. A generated scene sets every attribute and the geometry; one
// parsed from a prompt sets what the prompt says (an attribute it leaves out is nullopt,
// "not asked") and leaves the geometry at 0.
struct SceneObject {
  Shape shape = Shape::circle;
  std::optional<Color> color;
  std::optional<Size> size;
  std::optional<Position> position;
  double cx = 0, cy = 0, radius = 0;  // centre and circumradius in pixels
};

struct Scene {
  std::vector<SceneObject> objects;
  std::optional<Color> background;
};

// How often a generated caption leaves an attribute out (training wants prompts such
// as "a red circle on the left" to mean something; the checker wants full captions).
// Leaving words out never changes the scene: captions draw from their own stream.
struct CaptionStyle {
  double omit_size = 0, omit_position = 0, omit_background = 0;
  static CaptionStyle training() { return {0.15, 0.10, 0.20}; }
};

struct ShapeWorldOptions {
  int min_objects = 1, max_objects = 3;  // 1 <= min <= max <= 3
  CaptionStyle caption;
};
// std::invalid_argument naming the bounds when `options` break them (generate() checks too).
void check_options(const ShapeWorldOptions& options);

struct ShapeSample {
  Image image;  // RGB, kShapeWorldSize square
  std::string caption;
  Scene scene;  // the truth, geometry included
};

// Scene, caption and picture of `seed`. Objects keep a 2-pixel margin from the border
// and at least 3 pixels between their circumcircles; each sits in its own grid cell.
ShapeSample generate(uint64_t seed, const ShapeWorldOptions& options = {});
Scene random_scene(uint64_t seed, const ShapeWorldOptions& options = {});      // == generate(seed).scene
std::string random_caption(uint64_t seed, const ShapeWorldOptions& options = {});  // == generate(seed).caption

std::string caption_of(const Scene& scene);  // every attribute the scene sets, in grammar order
Image render(const Scene& scene);            // needs the geometry (radius > 0) and a background
// Coverage of the objects, 0..255 per pixel (1 channel): the exact silhouette, e.g. for
// an IoU against a ControlNet output or a hint made from it.
Image render_mask(const Scene& scene);

// A prompt in the grammar -> the Scene it asks for (no geometry). Case, commas and a
// final full stop are ignored; anything else outside the grammar is a
// std::invalid_argument naming the word and what was expected there.
Scene parse_caption(const std::string& text);

// Every word a caption can contain, sorted (the tokenizer vocabulary is built from it).
const std::vector<std::string>& caption_words();

}  // namespace sigma::app
