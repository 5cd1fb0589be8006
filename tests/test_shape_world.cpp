// The shape world (issue 6): the generator's invariants and determinism, the caption
// grammar both ways, the tokenizer vocabulary through the real ClipTokenizer, and the
// judge scored on pictures whose truth is known: the generator's own (it must be right)
// and deliberately wrong prompts (it must say so). The judge cases need OpenCV.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <set>
#include <sstream>

#include "app/training/shape_vocab.h"
#include "app/training/shape_world.h"
#include "app/training/train_util.h"
#include "models/text/clip_tokenizer.h"
#include "tests/support.h"
#ifdef SIGMA_WITH_OPENCV
#include <opencv2/imgproc.hpp>

#include <random>

#include "app/training/shape_judge.h"
#include "controlnet/preprocess.h"
#include "imaging/opencv.h"
#endif

using namespace sigma::app;
using sigma::Image;

namespace {

std::vector<std::string> split(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

using sigma::test::has;

std::string parse_error(const std::string& text) {
  try {
    parse_caption(text);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

// Area of each shape of circumradius r, from the generator's geometry.
double shape_area(Shape s, double r) {
  switch (s) {
    case Shape::circle: return M_PI * r * r;
    case Shape::ring: return M_PI * r * r * (1 - 0.55 * 0.55);
    case Shape::square: return 2 * r * r;
    case Shape::triangle: return 3 * std::sqrt(3.0) / 4 * r * r;
    case Shape::star: return 5 * r * (0.5 * r) * std::sin(M_PI / 5);
    case Shape::cross: {
      const double w = 0.3 * r, l = std::sqrt(r * r - w * w);
      return 8 * l * w - 4 * w * w;
    }
  }
  return 0;
}

}  // namespace

TEST_SUITE("unit.shapes") {
  TEST_CASE("same seed => identical pixels and caption; different seeds differ") {
    for (uint64_t seed : {0ULL, 7ULL, 123456789ULL}) {
      const ShapeSample a = generate(seed), b = generate(seed);
      CHECK(a.image == b.image);
      CHECK(a.caption == b.caption);
      CHECK(random_caption(seed) == a.caption);
      CHECK(caption_of(a.scene) == a.caption);  // the default style leaves nothing out
    }
    CHECK(generate(1).image != generate(2).image);
    // The first scene of seed 0 pins the data set: a change to the draws changes this line.
    std::printf("shape world seed 0: %s\n", generate(0).caption.c_str());
  }

  TEST_CASE("scenes: 1-3 objects in free cells, inside the picture, apart, sized and coloured by the rules") {
    std::set<int> counts, shapes, colors, positions, backgrounds;
    for (uint64_t seed = 0; seed < 400; ++seed) {
      const Scene s = random_scene(seed);
      REQUIRE(s.background.has_value());
      backgrounds.insert(static_cast<int>(*s.background));
      counts.insert(static_cast<int>(s.objects.size()));
      for (size_t i = 0; i < s.objects.size(); ++i) {
        const SceneObject& o = s.objects[i];
        REQUIRE((o.color && o.size && o.position));
        shapes.insert(static_cast<int>(o.shape));
        colors.insert(static_cast<int>(*o.color));
        positions.insert(static_cast<int>(*o.position));
        CHECK(*o.color != *s.background);
        if (*o.size == Size::small) CHECK((o.radius >= kSmallRadiusMin && o.radius <= kSmallRadiusMax));
        else CHECK((o.radius >= kLargeRadiusMin && o.radius <= kLargeRadiusMax));
        CHECK(o.cx - o.radius >= 2);
        CHECK(o.cy - o.radius >= 2);
        CHECK(o.cx + o.radius <= kShapeWorldSize - 2);
        CHECK(o.cy + o.radius <= kShapeWorldSize - 2);
        CHECK(position_of(o.cx, o.cy) == *o.position);
        for (size_t j = 0; j < i; ++j) {
          const SceneObject& p = s.objects[j];
          CHECK(*p.position != *o.position);
          CHECK(std::hypot(o.cx - p.cx, o.cy - p.cy) >= o.radius + p.radius + 3);
        }
      }
    }
    CHECK((counts == std::set<int>{1, 2, 3}));
    CHECK(shapes.size() == kShapeCount);
    CHECK(colors.size() == kColorCount);  // gray objects appear on white and black backgrounds
    CHECK(positions.size() == kPositionCount);
    CHECK((backgrounds == std::set<int>{int(Color::white), int(Color::black), int(Color::gray)}));

    ShapeWorldOptions two;
    two.min_objects = two.max_objects = 2;
    for (uint64_t seed = 0; seed < 50; ++seed) CHECK(random_scene(seed, two).objects.size() == 2);
    ShapeWorldOptions bad;
    bad.max_objects = 4;
    CHECK_THROWS_AS(random_scene(0, bad), std::invalid_argument);
  }

  TEST_CASE("pixels: object colours at the centres, background elsewhere, antialiased edges, true areas") {
    for (uint64_t seed = 0; seed < 60; ++seed) {
      const ShapeSample s = generate(seed);
      REQUIRE((s.image.width == kShapeWorldSize && s.image.height == kShapeWorldSize && s.image.channels == 3));
      const auto bg = rgb(*s.scene.background);
      for (int c = 0; c < 3; ++c) CHECK(s.image.at(0, 0, c) == bg[c]);
      int blended = 0;
      for (size_t i = 0; i < s.image.pixels.size(); i += 3) {
        bool is_bg = true, is_object = false;
        for (int c = 0; c < 3; ++c) is_bg = is_bg && s.image.pixels[i + c] == bg[c];
        for (const auto& o : s.scene.objects) {
          const auto fg = rgb(*o.color);
          is_object = is_object || (s.image.pixels[i] == fg[0] && s.image.pixels[i + 1] == fg[1] && s.image.pixels[i + 2] == fg[2]);
        }
        blended += !is_bg && !is_object;
      }
      CHECK(blended > 20);  // edges are mixtures, not jagged
      const Image mask = render_mask(s.scene);
      double covered = 0;  // coverage-weighted: thresholding would favour axis-aligned edges
      for (auto v : mask.pixels) covered += v / 255.0;
      double expected = 0;
      for (const auto& o : s.scene.objects) {
        expected += shape_area(o.shape, o.radius);
        const auto want = o.shape == Shape::ring ? bg : rgb(*o.color);  // a ring's centre is its hole
        const int x = static_cast<int>(o.cx), y = static_cast<int>(o.cy);
        for (int c = 0; c < 3; ++c) CHECK(s.image.at(x, y, c) == want[c]);
      }
      CHECK(std::abs(covered - expected) <= 0.01 * expected + 2);
    }
  }

  TEST_CASE("captions: parse back to the scene, use only grammar words, and leave out what the style omits") {
    const auto& words = caption_words();
    const std::set<std::string> vocab(words.begin(), words.end());
    for (uint64_t seed = 0; seed < 200; ++seed) {
      const ShapeSample s = generate(seed);
      for (const auto& w : split(s.caption)) CHECK(vocab.count(w) == 1);
      CHECK(has(s.caption, std::string(" on a ") + word(*s.scene.background) + " background"));
      const Scene p = parse_caption(s.caption);
      REQUIRE(p.objects.size() == s.scene.objects.size());
      CHECK(p.background == s.scene.background);
      for (size_t i = 0; i < p.objects.size(); ++i) {
        CHECK(p.objects[i].shape == s.scene.objects[i].shape);
        CHECK(p.objects[i].color == s.scene.objects[i].color);
        CHECK(p.objects[i].size == s.scene.objects[i].size);
        CHECK(p.objects[i].position == s.scene.objects[i].position);
        CHECK(p.objects[i].radius == 0);
      }
    }
    ShapeWorldOptions terse;
    terse.caption = {1, 1, 1};
    ShapeWorldOptions half;
    half.caption = {0.5, 0.5, 0.5};
    int sized = 0, objects = 0;
    for (uint64_t seed = 0; seed < 100; ++seed) {
      const ShapeSample full = generate(seed), t = generate(seed, terse), h = generate(seed, half);
      CHECK(t.image == full.image);  // leaving words out never changes the picture
      const Scene pt = parse_caption(t.caption);
      for (const auto& o : pt.objects) CHECK((o.color && !o.size && !o.position));
      CHECK(!pt.background);
      for (const auto& o : parse_caption(h.caption).objects) sized += o.size.has_value(), ++objects;
    }
    CHECK(sized > objects * 0.3);
    CHECK(sized < objects * 0.7);
    CHECK(has(caption_of(parse_caption("an orange ring")), "an orange ring"));
  }

  TEST_CASE("parse_caption reads the grammar and names the problem otherwise") {
    const Scene s = parse_caption("a large red circle on the left and a small blue star at the top right on a white background");
    REQUIRE(s.objects.size() == 2);
    CHECK(s.objects[0].shape == Shape::circle);
    CHECK(s.objects[0].color == Color::red);
    CHECK(s.objects[0].size == Size::large);
    CHECK(s.objects[0].position == Position::left);
    CHECK(s.objects[1].shape == Shape::star);
    CHECK(s.objects[1].size == Size::small);
    CHECK(s.objects[1].position == Position::top_right);
    CHECK(s.background == Color::white);
    const Scene t = parse_caption("A Red Circle, and an orange cross in the center.");
    REQUIRE(t.objects.size() == 2);
    CHECK((!t.objects[0].size && !t.objects[0].position && !t.background));
    CHECK(t.objects[1].position == Position::center);
    CHECK(parse_caption("a green square at the bottom").objects[0].position == Position::bottom);
    CHECK(parse_caption("a ring at the bottom left").objects[0].position == Position::bottom_left);
    CHECK(has(parse_error("a red"), "shape"));
    CHECK(has(parse_error("a red circle on the middle"), "'middle'"));
    CHECK(has(parse_error("two circles"), "'two'"));
    CHECK(has(parse_error(""), "the end"));
    CHECK(has(parse_error("a red circle on a pink background"), "'pink'"));
    CHECK(has(parse_error("a red circle please"), "'please'"));
  }

  TEST_CASE("training pool: a bad scene option is an error on the calling thread, not an abort") {
    const auto tok = training::shapes_tokenizer(sigma::test::scratch("shape-pool-vocab"));
    CHECK_THROWS_WITH_AS(training::make_pool(1, 16, tok, 2, true, 3, 2), doctest::Contains("1 <= min (3) <= max (2)"),
                         std::invalid_argument);
    const auto pool = training::make_pool(1, 16, tok, 2, true, 2, 2);  // two objects in every scene
    for (const auto& caption : pool.captions) CHECK(caption.find(" and ") != std::string::npos);
  }

  TEST_CASE("vocabulary: the project's ClipTokenizer encodes each caption word as one id") {
    const auto dir = sigma::test::scratch("shape-vocab");
    write_shape_vocab(dir.string());
    const auto tok = sigma::models::ClipTokenizer::from_dir(dir.string());
    const auto files = build_clip_vocab(caption_words());
    CHECK(files.vocab_json == build_clip_vocab(caption_words()).vocab_json);  // deterministic
    const size_t merges = static_cast<size_t>(std::count(files.merges_txt.begin(), files.merges_txt.end(), '\n')) - 1;
    CHECK(tok.vocab_size() == 512 + merges + 2);
    CHECK(tok.bos() == static_cast<int>(tok.vocab_size()) - 2);  // the two special tokens come last
    CHECK(tok.eos() == static_cast<int>(tok.vocab_size()) - 1);
    CHECK(tok.pad() == tok.eos());
    CHECK(tok.token(0) == "!");  // CLIP's byte order
    std::set<int> ids;
    for (const auto& w : caption_words()) {
      const auto e = tok.encode(w);
      REQUIRE(e.size() == 1);
      CHECK(e[0] == tok.token_id(w + "</w>"));
      ids.insert(e[0]);
    }
    CHECK(ids.size() == caption_words().size());
    ShapeWorldOptions varied;
    varied.caption = CaptionStyle::training();
    for (uint64_t seed = 0; seed < 100; ++seed) {
      const std::string caption = random_caption(seed, varied);
      std::vector<int> expected;
      for (const auto& w : split(caption)) expected.push_back(tok.token_id(w + "</w>"));
      CHECK(tok.encode(caption) == expected);
      CHECK(tok.decode(tok.encode(caption)) == caption);
    }
    CHECK(tok.encode("A LARGE Red circle") == tok.encode("a large red circle"));
    for (const std::string unknown : {"zebra", "circles", "reddish", "café"}) {
      const auto e = tok.encode(unknown);
      CHECK(!e.empty());
      CHECK(tok.decode(e) == unknown);
    }
    CHECK(tok.encode("circles").size() > 1);
    CHECK(tok.encode("42").size() == 2);  // CLIP splits digits
    const auto padded = tok.encode_padded("a red circle", 8);
    const std::vector<int> want = {tok.bos(), tok.token_id("a</w>"), tok.token_id("red</w>"),
                                   tok.token_id("circle</w>"), tok.eos(), tok.eos(), tok.eos(), tok.eos()};
    CHECK(padded == want);
    CHECK_THROWS_AS(build_clip_vocab({"Red"}), std::invalid_argument);
  }

#ifdef SIGMA_WITH_OPENCV
  TEST_CASE("judge: >= 98% on every attribute of the generator's own pictures") {
    constexpr int kScenes = 300;
    int asked[5] = {}, right[5] = {}, exact = 0, counted = 0, objects = 0;  // colour, shape, size, position, background
    double centre_err = 0, radius_err = 0;
    for (uint64_t seed = 1000; seed < 1000 + kScenes; ++seed) {
      const ShapeSample s = generate(seed);
      const Judgement j = judge(s.image, parse_caption(s.caption));
      REQUIRE(j.objects.size() == s.scene.objects.size());
      counted += j.found.size() == s.scene.objects.size();
      exact += j.exact();
      asked[4] += j.background_check.asked, right[4] += j.background_check.correct;
      for (size_t i = 0; i < j.objects.size(); ++i) {
        const ObjectVerdict& v = j.objects[i];
        const AttributeCheck* checks[4] = {&v.color, &v.shape, &v.size, &v.position};
        for (int a = 0; a < 4; ++a) asked[a] += checks[a]->asked, right[a] += checks[a]->correct;
        ++objects;
        if (v.found < 0) continue;
        const FoundObject& f = j.found[static_cast<size_t>(v.found)];
        const SceneObject& o = s.scene.objects[i];
        centre_err = std::max(centre_err, std::hypot(f.cx - o.cx, f.cy - o.cy));
        radius_err = std::max(radius_err, std::abs(f.radius - o.radius));
        if (!v.exact())
          std::printf("  seed %llu object %zu (%s): found %s %s %s fill %.2f solidity %.2f hole %.2f defects %d vertices %d\n",
                      static_cast<unsigned long long>(seed), i, s.caption.c_str(), word(f.size), word(f.color),
                      word(f.shape), f.fill, f.solidity, f.hole, f.deep_defects, f.vertices);
      }
    }
    const char* names[5] = {"colour", "shape", "size", "position", "background"};
    for (int a = 0; a < 5; ++a) {
      std::printf("judge on %d generated scenes: %-10s %d/%d = %.2f%%\n", kScenes, names[a], right[a], asked[a],
                  100.0 * right[a] / asked[a]);
      CHECK(asked[a] == (a == 4 ? kScenes : objects));
      CHECK(right[a] >= 0.98 * asked[a]);
    }
    std::printf("judge: object count right %d/%d, exact scenes %d/%d = %.2f%%; worst centre error %.2f px, radius %.2f px\n",
                counted, kScenes, exact, kScenes, 100.0 * exact / kScenes, centre_err, radius_err);
    CHECK(counted >= 0.98 * kScenes);
    CHECK(exact >= 0.95 * kScenes);
    CHECK(centre_err < 1.0);
    CHECK(radius_err < 1.5);
  }

  TEST_CASE("judge: still right on blurred, grainy, washed-out pictures (as a model draws them)") {
    // Gaussian blur sigma 1, uniform grain +-20 levels, 20% contrast lost toward mid-gray:
    // worse than a decoded latent of a good model, so the judge's verdicts on real
    // generations are not an artefact of crisp edges.
    std::mt19937_64 grain(11);
    int asked[4] = {}, right[4] = {};
    for (uint64_t seed = 4000; seed < 4200; ++seed) {
      const ShapeSample s = generate(seed);
      cv::Mat m = sigma::imaging::to_mat(s.image), f;
      m.convertTo(f, CV_32FC3);
      cv::GaussianBlur(f, f, {0, 0}, 1.0);
      for (auto it = f.begin<cv::Vec3f>(); it != f.end<cv::Vec3f>(); ++it)
        for (int c = 0; c < 3; ++c)
          (*it)[c] = 128 + ((*it)[c] - 128) * 0.8f + 20 * static_cast<float>((grain() >> 11) * 0x1.0p-53 * 2 - 1);
      f.convertTo(m, CV_8UC3);
      for (const auto& v : judge(sigma::imaging::from_mat(m), s.scene).objects) {
        const AttributeCheck* checks[4] = {&v.color, &v.shape, &v.size, &v.position};
        for (int a = 0; a < 4; ++a) asked[a] += checks[a]->asked, right[a] += checks[a]->correct;
      }
    }
    const char* names[4] = {"colour", "shape", "size", "position"};
    for (int a = 0; a < 4; ++a) {
      std::printf("judge on 200 degraded scenes: %-8s %d/%d\n", names[a], right[a], asked[a]);
      CHECK(right[a] >= 0.97 * asked[a]);
    }
  }

  TEST_CASE("judge: wrong prompts fail on exactly the wrong attribute") {
    Scene blue_square;
    blue_square.background = Color::white;
    blue_square.objects.push_back({Shape::square, Color::blue, Size::large, Position::center, 64, 64, 24});
    const Judgement j = judge(render(blue_square), parse_caption("a red circle"));
    REQUIRE(j.objects.size() == 1);
    CHECK(j.objects[0].found == 0);
    CHECK((j.objects[0].color.asked && !j.objects[0].color.correct));
    CHECK(!j.objects[0].shape.correct);
    CHECK(!j.objects[0].size.asked);
    CHECK(!j.exact());
    CHECK(judge(render(blue_square), parse_caption("a large blue square in the center on a white background")).exact());
    CHECK(judge(render(blue_square), parse_caption("a blue square and a red star")).objects[1].found == -1);

    // Each attribute of one object changed in the prompt: the judge must notice that one.
    int tried[4] = {}, caught[4] = {}, others_kept = 0, others = 0;
    for (uint64_t seed = 2000; seed < 2150; ++seed) {
      const ShapeSample s = generate(seed);
      for (int a = 0; a < 4; ++a) {
        Scene wrong = s.scene;
        SceneObject& o = wrong.objects[0];
        if (a == 0) o.color = static_cast<Color>((static_cast<int>(*o.color) + 1 + static_cast<int>(seed % 7)) % kColorCount);
        if (a == 1) o.shape = static_cast<Shape>((static_cast<int>(o.shape) + 1 + static_cast<int>(seed % 5)) % kShapeCount);
        if (a == 2) o.size = *o.size == Size::small ? Size::large : Size::small;
        if (a == 3) o.position = static_cast<Position>((static_cast<int>(*o.position) + 1 + seed % 8) % kPositionCount);
        const Judgement w = judge(s.image, parse_caption(caption_of(wrong)));
        const AttributeCheck* checks[4] = {&w.objects[0].color, &w.objects[0].shape, &w.objects[0].size, &w.objects[0].position};
        ++tried[a];
        // The whole verdict fails; with one object, on that very attribute.
        caught[a] += !w.objects_exact() && (w.objects.size() > 1 || !checks[a]->correct);
        for (size_t i = 1; i < w.objects.size(); ++i) others_kept += w.objects[i].exact(), ++others;
      }
    }
    const char* names[4] = {"colour", "shape", "size", "position"};
    for (int a = 0; a < 4; ++a) {
      std::printf("judge rejects a wrong %s: %d/%d\n", names[a], caught[a], tried[a]);
      CHECK(caught[a] >= 0.98 * tried[a]);
    }
    CHECK(others_kept >= 0.95 * others);  // the other objects' verdicts are not dragged along
  }

  TEST_CASE("masks: foreground vs the true silhouette, and ControlNet IoU against a canny hint") {
    double worst_fg = 1, sum_hint = 0, worst_hint = 1, sum_other = 0;
    constexpr int kScenes = 60;
    for (uint64_t seed = 3000; seed < 3000 + kScenes; ++seed) {
      const ShapeSample s = generate(seed);
      Image truth = render_mask(s.scene);
      for (auto& v : truth.pixels) v = v >= 128 ? 255 : 0;
      worst_fg = std::min(worst_fg, mask_iou(foreground_mask(s.image), truth));
      const Image hint = sigma::controlnet::preprocess(s.image, "canny");
      const double iou = control_iou(s.image, hint);
      sum_hint += iou;
      worst_hint = std::min(worst_hint, iou);
      sum_other += control_iou(generate(seed + 1).image, hint);
    }
    std::printf("masks: foreground IoU worst %.3f; canny-hint IoU mean %.3f worst %.3f; other scene's hint mean %.3f\n",
                worst_fg, sum_hint / kScenes, worst_hint, sum_other / kScenes);
    CHECK(worst_fg >= 0.95);
    CHECK(sum_hint / kScenes >= 0.9);
    CHECK(worst_hint >= 0.8);
    CHECK(sum_other / kScenes < 0.3);

    Image a(10, 10, 1), b(10, 10, 1);
    for (int x = 0; x < 10; ++x) a.at(x, 0) = b.at(x, 0) = 255;
    CHECK(mask_iou(a, b) == doctest::Approx(1.0));
    for (int x = 0; x < 5; ++x) b.at(x, 0) = 0;
    CHECK(mask_iou(a, b) == doctest::Approx(0.5));
    CHECK(mask_iou(Image(4, 4, 1), Image(4, 4, 1)) == doctest::Approx(1.0));
    CHECK_THROWS_AS(mask_iou(a, Image(5, 10, 1)), std::invalid_argument);
  }
#endif
}
