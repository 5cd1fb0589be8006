// The judge behind `sigma eval-shapes`: does a picture show what its shape-world prompt
// asked for? It finds the objects with classic OpenCV (background from the border,
// foreground by colour distance, connected components, contour features), names each
// one's colour, shape, size and grid position with the shape world's own vocabulary,
// matches them to the prompt's objects, and reports every attribute separately, so a
// model's accuracy can be read per attribute and as exact matches.
//
// The judge is only worth something if it is right on pictures whose truth is known:
// tests/test_shape_world.cpp scores it on the generator's own pictures (each attribute
// >= 98%) and on deliberately wrong prompts (which must fail).
//
// Needs OpenCV: compiled only where SIGMA_WITH_OPENCV is defined (not on the GPU
// training machine); the header itself includes no OpenCV.
#pragma once

#include <optional>
#include <vector>

#include "app/training/shape_world.h"
#include "imaging/image.h"

namespace sigma::app {

// One object found in a picture, described in the shape world's terms.
struct FoundObject {
  Shape shape = Shape::circle;
  Color color = Color::red;
  Size size = Size::small;
  Position position = Position::center;
  double cx = 0, cy = 0;  // centroid, pixels (continuous coordinates: pixel x spans [x, x+1))
  double radius = 0;      // minimum enclosing circle, pixels
  double area = 0;        // foreground pixels
  // The features the shape is read from (deep_defects and vertices only for reports):
  double fill = 0;        // area / area of the enclosing circle (circle ~1, square 0.64, triangle 0.41)
  double solidity = 0;    // area / convex hull area (star ~0.62, cross ~0.73, convex shapes ~1)
  double hole = 0;        // hole area / outline area (ring ~0.30)
  int deep_defects = 0;   // convexity defects deeper than 12% of the radius (star 5, cross 4)
  int vertices = 0;       // approxPolyDP vertices of the hull
  double roundness = 0;   // 4 pi area / perimeter^2 of the hull (circle 1, square 0.79, triangle 0.60)
  // Rotational symmetry: soft IoU of the silhouette with itself turned about the centroid
  // by 72, 90 and 120 degrees (star, cross/square and triangle are the ones that match).
  double sym72 = 0, sym90 = 0, sym120 = 0;
};

struct AttributeCheck {
  bool asked = false;    // the prompt named this attribute
  bool correct = false;  // ... and the matched object has it (false when nothing matched)
};

struct ObjectVerdict {
  int found = -1;  // index into Judgement::found; -1 when no found object was left for it
  AttributeCheck color, shape, size, position;
  // Found, the shape right, and every asked attribute right.
  bool exact() const {
    return found >= 0 && shape.correct && (!color.asked || color.correct) && (!size.asked || size.correct) &&
           (!position.asked || position.correct);
  }
};

struct Judgement {
  Color background = Color::white;  // nearest palette colour of the border
  AttributeCheck background_check;
  std::vector<FoundObject> found;      // largest first
  std::vector<ObjectVerdict> objects;  // one per intended object, in the prompt's order
  int extra = 0;                       // found objects no intended object was matched to

  bool objects_exact() const {  // every intended object found and exactly right
    for (const auto& o : objects)
      if (!o.exact()) return false;
    return true;
  }
  bool exact() const { return objects_exact() && extra == 0; }  // ... and nothing else in the picture
};

// Objects of an RGB picture (any size; sizes and positions scale with it). Components
// smaller than 30 pixels per 128x128 are noise and ignored.
std::vector<FoundObject> find_objects(const Image& picture, Color* background = nullptr);

// `picture` against the intended scene (usually parse_caption(prompt)). The matching
// maximises the number of agreeing attributes, so one wrong attribute does not pull
// the other objects' verdicts with it.
Judgement judge(const Image& picture, const Scene& intended);

// Masks: 1-channel images, a pixel is "in" when nonzero.
Image foreground_mask(const Image& picture);  // differs from the border colour
Image edge_hint_mask(const Image& edges);     // the regions an edge map (canny hint) encloses, holes kept open
double mask_iou(const Image& a, const Image& b);  // same size; 1 when both are empty
// ControlNet check: the generated picture's objects against the shapes its edge hint outlines.
double control_iou(const Image& generated, const Image& edge_hint);

}  // namespace sigma::app
