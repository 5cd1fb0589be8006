// A1111's prompt syntax and chunking. Expected values are worked out by hand from
// modules/prompt_parser.py (parse_prompt_attention, its docstring examples included)
// and modules/sd_hijack_clip.py (tokenize_line), with CLIP's real table from the fixture.
#include <doctest/doctest.h>

#include "app/prompt.h"
#include "tests/support.h"

using sigma::app::PromptChunks;
using sigma::app::WeightedText;
using sigma::models::ClipTokenizer;

namespace {

const ClipTokenizer& clip() {
  static const ClipTokenizer tok =
      ClipTokenizer::from_dir(sigma::test::sd15() + "/models/tiny-sd15-diffusers/tokenizer");
  return tok;
}

// Compares text exactly and weights as doubles, exactly: A1111 merges on exact equality.
void check_parse(const std::string& prompt, const std::vector<WeightedText>& expected) {
  const auto got = sigma::app::parse_prompt_attention(prompt);
  INFO("prompt: ", prompt);
  REQUIRE(got.size() == expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("entry ", i);
    CHECK(got[i].text == expected[i].text);
    CHECK(got[i].weight == expected[i].weight);
  }
}

std::string repeat(const std::string& word, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += word + " ";
  return s;
}

int id(const std::string& token) {
  const int v = clip().token_id(token);
  REQUIRE_MESSAGE(v >= 0, token);
  return v;
}

// A 77-id chunk: start, `body`, end, then `fill` to the end.
std::array<int, 77> chunk_of(const std::vector<int>& body, int fill = 49407) {
  std::array<int, 77> a;
  a.fill(fill);
  a[0] = 49406;
  for (size_t i = 0; i < body.size(); ++i) a[i + 1] = body[i];
  a[body.size() + 1] = 49407;
  return a;
}

std::vector<int> times(int token, int n) { return std::vector<int>(static_cast<size_t>(n), token); }
std::vector<int> cat(std::vector<int> a, const std::vector<int>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

}  // namespace

TEST_SUITE("unit.prompt") {
  TEST_CASE("A1111's docstring examples") {
    check_parse("normal text", {{"normal text", 1.0}});
    check_parse("an (important) word", {{"an ", 1.0}, {"important", 1.1}, {" word", 1.0}});
    check_parse("(unbalanced", {{"unbalanced", 1.1}});
    check_parse("\\(literal\\]", {{"(literal]", 1.0}});
    check_parse("(unnecessary)(parens)", {{"unnecessaryparens", 1.1}});
    check_parse("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
                {{"a ", 1.0},
                 {"house", 1.5730000000000004},
                 {" ", 1.1},
                 {"on", 1.0},
                 {" a ", 1.1},
                 {"hill", 0.55},
                 {", sun, ", 1.1},
                 {"sky", 1.4641000000000006},
                 {".", 1.1}});
  }

  TEST_CASE("weights: explicit numbers, square brackets, nesting multiplies") {
    check_parse("(cat:1.3)", {{"cat", 1.3}});
    check_parse("( cat : 1.3 )", {{" cat ", 1.3}});
    check_parse("(cat:-0.5) (dog:+.5) (owl:2.)", {{"cat", -0.5}, {" ", 1.0}, {"dog", 0.5}, {" ", 1.0}, {"owl", 2.0}});
    check_parse("[a] [[b]]", {{"a", 1.0 * (1 / 1.1)}, {" ", 1.0}, {"b", 1.0 * (1 / 1.1) * (1 / 1.1)}});
    check_parse("((cat:1.5) dog:0.8)", {{"cat", 1.5 * 0.8}, {" dog", 0.8}});
    check_parse("[(cat)]", {{"cat", 1.1 * (1 / 1.1)}});
    // A weight with no open "(" is text; a ':' that starts no number is text inside the bracket.
    check_parse("cat:1.5) dog", {{"cat:1.5) dog", 1.0}});
    check_parse("(a:x)", {{"a:x", 1.1}});
  }

  TEST_CASE("escapes and unmatched brackets are literal text") {
    check_parse("a \\\\ b", {{"a \\ b", 1.0}});
    check_parse("\\[x\\) (y)", {{"[x) ", 1.0}, {"y", 1.1}});
    check_parse("a\\b", {{"ab", 1.0}});  // a backslash before anything else disappears, as in A1111
    check_parse("a) b] c:", {{"a) b] c:", 1.0}});
    // Brackets still open at the end close there: round ones first, then square ones.
    check_parse("[unbalanced", {{"unbalanced", 1.0 * (1 / 1.1)}});
    check_parse("(a [b", {{"a ", 1.1}, {"b", 1.0 * 1.1 * (1 / 1.1)}});
    check_parse("{curly} braces", {{"{curly} braces", 1.0}});
  }

  TEST_CASE("an invalid weight is an error, as Python's float() raises there") {
    CHECK_THROWS_WITH_AS(sigma::app::parse_prompt_attention("(cat:1.2.3)"), doctest::Contains("'1.2.3'"),
                         std::invalid_argument);
    CHECK_THROWS_AS(sigma::app::parse_prompt_attention("(cat:.)"), std::invalid_argument);
    check_parse("cat:1.2.3)", {{"cat:1.2.3)", 1.0}});  // no "(": plain text, no number read
  }

  TEST_CASE("BREAK as its own word, empty prompts") {
    check_parse("cat BREAK dog", {{"cat", 1.0}, {"BREAK", -1.0}, {"dog", 1.0}});
    check_parse("cat,BREAK,dog", {{"cat,", 1.0}, {"BREAK", -1.0}, {",dog", 1.0}});
    check_parse("cat BREAK", {{"cat", 1.0}, {"BREAK", -1.0}, {"", 1.0}});
    check_parse("BREAKfast, a BREAK_ point, 2BREAK, break", {{"BREAKfast, a BREAK_ point, 2BREAK, break", 1.0}});
    // Inside brackets A1111 multiplies the marker's weight too, so it no longer breaks.
    check_parse("(cat BREAK dog)", {{"cat", 1.1}, {"BREAK", -1.0 * 1.1}, {"dog", 1.1}});
    check_parse("", {{"", 1.0}});
    check_parse("()", {{"", 1.0}});
  }

  TEST_CASE("a short prompt: one chunk, weights on their tokens, 1.0 on start/end/padding") {
    const auto c = sigma::app::tokenize_prompt(clip(), "a (cat) dog");
    REQUIRE(c.ids.size() == 1);
    CHECK(c.ids[0] == chunk_of({id("a</w>"), id("cat</w>"), id("dog</w>")}));
    std::array<float, 77> w;
    w.fill(1.0f);
    w[2] = 1.1f;
    CHECK(c.weights[0] == w);
    CHECK(c.token_count == 3);
    CHECK(sigma::app::chunk_token_counts(c) == std::vector<int>{3});
  }

  TEST_CASE("the empty prompt is one chunk of start and end tokens") {
    const auto c = sigma::app::tokenize_prompt(clip(), "");
    REQUIRE(c.ids.size() == 1);
    CHECK(c.ids[0] == chunk_of({}));
    CHECK(c.token_count == 0);
    CHECK(sigma::app::chunk_token_counts(c) == std::vector<int>{0});
    CHECK(sigma::app::target_token_count(c.token_count) == 75);
  }

  TEST_CASE("emphasis off: brackets and BREAK are words of weight 1") {
    const std::string prompt = "(cat:1.5) BREAK [dog]";
    const auto c = sigma::app::tokenize_prompt(clip(), prompt, false);
    const auto ids = clip().encode(prompt);
    REQUIRE(c.ids.size() == 1);
    CHECK(c.ids[0] == chunk_of(ids));
    for (float w : c.weights[0]) CHECK(w == 1.0f);
  }

  TEST_CASE("75 tokens fill one chunk; the 76th starts a second") {
    const int k = id("cat</w>");
    const auto full = sigma::app::tokenize_prompt(clip(), repeat("cat", 75));
    REQUIRE(full.ids.size() == 1);
    CHECK(full.ids[0] == chunk_of(times(k, 75)));
    CHECK(full.token_count == 75);
    CHECK(sigma::app::target_token_count(full.token_count) == 75);

    const auto over = sigma::app::tokenize_prompt(clip(), repeat("cat", 76));
    REQUIRE(over.ids.size() == 2);
    CHECK(over.ids[0] == chunk_of(times(k, 75)));
    CHECK(over.ids[1] == chunk_of({k}));
    CHECK(over.token_count == 76);
    CHECK(sigma::app::chunk_token_counts(over) == std::vector<int>{75, 1});
    CHECK(sigma::app::target_token_count(over.token_count) == 150);
  }

  TEST_CASE("comma backtrack: a full chunk ends after a comma within its last 20 tokens") {
    const int k = id("cat</w>"), comma = id(",</w>");
    // Comma at index 70: the 4 tokens after it move to the next chunk.
    auto c = sigma::app::tokenize_prompt(clip(), repeat("cat", 70) + ", " + repeat("cat", 10));
    REQUIRE(c.ids.size() == 2);
    CHECK(c.ids[0] == chunk_of(cat(times(k, 70), {comma})));
    CHECK(c.ids[1] == chunk_of(times(k, 10)));
    CHECK(c.token_count == 85);
    CHECK(sigma::app::chunk_token_counts(c) == std::vector<int>{71, 10});

    // Index 55 is exactly 20 back from 75: still moves.
    c = sigma::app::tokenize_prompt(clip(), repeat("cat", 55) + ", " + repeat("cat", 25));
    REQUIRE(c.ids.size() == 2);
    CHECK(sigma::app::chunk_token_counts(c) == std::vector<int>{56, 25});
    CHECK(c.ids[1] == chunk_of(times(k, 25)));

    // Index 54 is 21 back: the chunk is cut at 75 as it stands.
    c = sigma::app::tokenize_prompt(clip(), repeat("cat", 54) + ", " + repeat("cat", 26));
    REQUIRE(c.ids.size() == 2);
    CHECK(c.ids[0] == chunk_of(cat(cat(times(k, 54), {comma}), times(k, 20))));
    CHECK(c.ids[1] == chunk_of(times(k, 6)));
    CHECK(c.token_count == 81);
  }

  TEST_CASE("moved tokens keep their weights") {
    const int d = id("dog</w>");
    const auto c = sigma::app::tokenize_prompt(clip(), repeat("cat", 70) + ", (" + repeat("dog", 10) + ")");
    REQUIRE(c.ids.size() == 2);
    CHECK(c.ids[1] == chunk_of(times(d, 10)));
    for (int i = 1; i <= 10; ++i) CHECK(c.weights[1][i] == 1.1f);
    CHECK(c.weights[1][11] == 1.0f);
    for (int i = 72; i < 77; ++i) CHECK(c.weights[0][i] == 1.0f);  // the padding left behind
  }

  TEST_CASE("BREAK pads the current chunk") {
    const int k = id("cat</w>"), d = id("dog</w>");
    auto c = sigma::app::tokenize_prompt(clip(), "cat BREAK dog");
    REQUIRE(c.ids.size() == 2);
    CHECK(c.ids[0] == chunk_of({k}));
    CHECK(c.ids[1] == chunk_of({d}));
    CHECK(c.token_count == 76);  // a closed chunk counts 75
    CHECK(sigma::app::chunk_token_counts(c) == std::vector<int>{1, 1});

    c = sigma::app::tokenize_prompt(clip(), "cat BREAK");  // nothing after: no empty extra chunk
    REQUIRE(c.ids.size() == 1);
    CHECK(c.token_count == 75);

    c = sigma::app::tokenize_prompt(clip(), "(cat BREAK dog)");  // bracketed: the word "break", weight -1.1
    REQUIRE(c.ids.size() == 1);
    CHECK(c.ids[0] == chunk_of({k, id("break</w>"), d}));
    CHECK(c.weights[0][2] == static_cast<float>(-1.0 * 1.1));
  }

  TEST_CASE("SD 2.x padding: pad id after the end token") {
    const std::string dir = sigma::test::sd15() + "/models/tiny-sd15-diffusers/tokenizer";
    const auto sd2 = ClipTokenizer::from_files(dir + "/vocab.json", dir + "/merges.txt", 0);
    const int k = id("cat</w>");
    auto c = sigma::app::tokenize_prompt(sd2, "cat");
    REQUIRE(c.ids.size() == 1);
    CHECK(c.ids[0] == chunk_of({k}, 0));
    c = sigma::app::tokenize_prompt(sd2, repeat("cat", 76));
    REQUIRE(c.ids.size() == 2);
    CHECK(c.ids[0] == chunk_of(times(k, 75)));
    CHECK(c.ids[1] == chunk_of({k}, 0));
  }

  TEST_CASE("a negative prompt is padded with empty chunks to the positive's count") {
    const auto positive = sigma::app::tokenize_prompt(clip(), repeat("cat", 160));
    REQUIRE(positive.ids.size() == 3);
    auto negative = sigma::app::tokenize_prompt(clip(), "blurry");
    sigma::app::pad_to_chunks(negative, positive.ids.size(), clip());
    REQUIRE(negative.ids.size() == 3);
    CHECK(negative.ids[0] == chunk_of({id("blurry</w>")}));
    CHECK(negative.ids[1] == chunk_of({}));
    CHECK(negative.ids[2] == chunk_of({}));
    for (float w : negative.weights[2]) CHECK(w == 1.0f);
    CHECK(negative.token_count == 1);
    CHECK(sigma::app::chunk_token_counts(negative) == std::vector<int>{1, 0, 0});
    sigma::app::pad_to_chunks(negative, 1, clip());  // never shrinks
    CHECK(negative.ids.size() == 3);

    const std::string dir = sigma::test::sd15() + "/models/tiny-sd15-diffusers/tokenizer";
    const auto sd2 = ClipTokenizer::from_files(dir + "/vocab.json", dir + "/merges.txt", 0);
    PromptChunks empty = sigma::app::tokenize_prompt(sd2, "");
    sigma::app::pad_to_chunks(empty, 2, sd2);
    CHECK(empty.ids[1] == chunk_of({}, 0));
  }
}
