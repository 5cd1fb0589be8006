// The CLIP tokenizer against Hugging Face's ids (refs/tokenizer.json of the sd15-tiny
// fixture: every string, both the raw BPE ids and the padded 77), and its boundary
// rules: missing or broken files named with the fix, and the pad id of each model family.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <fstream>

#include "models/text/clip_tokenizer.h"
#include "tests/support.h"

using sigma::models::ClipTokenizer;
using sigma::models::TokenizerError;

namespace {

std::string tokenizer_dir() { return sigma::test::sd15() + "/models/tiny-sd15-diffusers/tokenizer"; }

// "#07 hello\tworld" cut to ~40 bytes on a code-point boundary, control characters escaped.
std::string case_label(size_t index, const std::string& text) {
  std::string out = (index < 10 ? "#0" : "#") + std::to_string(index) + " \"";
  size_t i = 0;
  for (; i < text.size() && i < 40; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else out += static_cast<char>(c);
  }
  while (i < text.size() && (static_cast<unsigned char>(text[i]) & 0xC0) == 0x80) out += text[i++];
  return out + (i < text.size() ? "...\"" : "\"");
}

// Where two id lists first differ, for the report line.
std::string first_difference(const char* what, const std::vector<int>& ours, const std::vector<int>& ref) {
  if (ours == ref) return "";
  size_t i = 0;
  while (i < ours.size() && i < ref.size() && ours[i] == ref[i]) ++i;
  auto at = [&](const std::vector<int>& v) { return i < v.size() ? std::to_string(v[i]) : std::string("end"); };
  return std::string(what) + " differs at " + std::to_string(i) + ": ours " + at(ours) + " vs ref " + at(ref) +
         " (lengths " + std::to_string(ours.size()) + "/" + std::to_string(ref.size()) + ") ";
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const TokenizerError& e) {
    return e.what();
  }
  return "";
}

using sigma::test::has;

// A tokenizer folder in scratch: the fixture's vocab.json and merges.txt plus `config` (none if empty).
std::string folder_with_config(const std::string& name, const std::string& config) {
  const auto dir = sigma::test::scratch(name);
  std::filesystem::copy_file(tokenizer_dir() + "/vocab.json", dir / "vocab.json");
  std::filesystem::copy_file(tokenizer_dir() + "/merges.txt", dir / "merges.txt");
  if (!config.empty()) std::ofstream(dir / "tokenizer_config.json") << config;
  return dir.string();
}

}  // namespace

TEST_SUITE("conformance.tokenizer") {
  TEST_CASE("every string of refs/tokenizer.json gives Hugging Face's ids exactly") {
    const std::string refs = sigma::test::sd15() + "/refs/tokenizer.json";
    std::ifstream in(refs);
    REQUIRE_MESSAGE(in.good(), "missing " << refs << " (set SIGMA_FIXTURES to the fixtures folder)");
    const auto ref = nlohmann::json::parse(in);
    const auto tok = ClipTokenizer::from_dir(tokenizer_dir());
    CHECK(tok.pad() == tok.token_id(ref.at("pad").get<std::string>()));

    sigma::test::CaseReport report("conformance.tokenizer");
    const auto& cases = ref.at("cases");
    REQUIRE(!cases.empty());
    for (size_t i = 0; i < cases.size(); ++i) {
      const auto text = cases[i].at("text").get<std::string>();
      const auto ref_raw = cases[i].at("ids_raw").get<std::vector<int>>();
      const auto ref_padded = cases[i].at("ids_77").get<std::vector<int>>();
      const auto raw = tok.encode(text);
      const auto padded = tok.encode_padded(text, static_cast<int>(ref_padded.size()));
      const bool ok = raw == ref_raw && padded == ref_padded;
      const auto label = case_label(i, text);
      report.add_exact(label, ok, first_difference("ids_raw", raw, ref_raw) + first_difference("ids_77", padded, ref_padded));
      CHECK_MESSAGE(ok, label);
    }
    report.close();
    CHECK(report.passed == report.total);
    CHECK(report.total == static_cast<int>(cases.size()));
  }
}

TEST_SUITE("unit.tokenizer") {
  TEST_CASE("CLIP's table: sizes, special ids, and the pieces A1111's rules look up") {
    const auto tok = ClipTokenizer::from_dir(tokenizer_dir());
    CHECK(tok.vocab_size() == 49408);
    CHECK(tok.bos() == 49406);
    CHECK(tok.eos() == 49407);
    CHECK(tok.pad() == 49407);
    CHECK(tok.token_id(",</w>") == 267);
    CHECK(tok.token_id("no such token") == -1);
    CHECK(tok.token(49406) == "<|startoftext|>");
    CHECK_THROWS_AS(tok.token(49408), std::out_of_range);
  }

  TEST_CASE("encode_padded truncates to length-2 ids between start and end, then pads") {
    const auto tok = ClipTokenizer::from_dir(tokenizer_dir());
    const auto ids = tok.encode("a photograph of an astronaut riding a horse");
    REQUIRE(ids.size() == 8);
    const auto five = tok.encode_padded("a photograph of an astronaut riding a horse", 5);
    CHECK(five == std::vector<int>{49406, ids[0], ids[1], ids[2], 49407});
    const auto twelve = tok.encode_padded("a photograph of an astronaut riding a horse", 12);
    CHECK(twelve.size() == 12);
    CHECK(twelve[9] == 49407);
    CHECK(twelve[10] == tok.pad());
    CHECK(tok.encode_padded("", 2) == std::vector<int>{49406, 49407});
    CHECK_THROWS_AS(tok.encode_padded("x", 1), std::invalid_argument);
  }

  TEST_CASE("decode reads tokens back as text for the UI") {
    const auto tok = ClipTokenizer::from_dir(tokenizer_dir());
    CHECK(tok.decode(tok.encode("A Photograph of an ASTRONAUT")) == "a photograph of an astronaut");
    CHECK(tok.decode(tok.encode("café 東京 🐱")) == "café 東京 🐱");
    CHECK(tok.decode({49406, tok.token_id("cat</w>"), 49407}) == "<|startoftext|>cat <|endoftext|>");
    // One byte of a multi-byte character alone is not UTF-8: it reads as U+FFFD.
    const auto cat_char = tok.encode("猫");  // three bytes, three tokens
    REQUIRE(cat_char.size() == 3);
    CHECK(tok.decode({cat_char[0]}) == "\xEF\xBF\xBD");
    CHECK(tok.decode(cat_char) == "猫");
  }

  TEST_CASE("the start/end strings in text become their ids; other text is lower-cased and split") {
    const auto tok = ClipTokenizer::from_dir(tokenizer_dir());
    const int cat = tok.token_id("cat</w>");
    CHECK(tok.encode("cat<|endoftext|>cat") == std::vector<int>{cat, 49407, cat});
    CHECK(tok.encode("<|startoftext|>") == std::vector<int>{49406});
    CHECK(tok.encode("CAT") == std::vector<int>{cat});
    CHECK(tok.encode("cat's") == std::vector<int>{cat, tok.token_id("'s</w>")});
    // NFC first: "e" + combining acute is the same word as the precomposed "é".
    CHECK(tok.encode("cafe\xCC\x81") == tok.encode("caf\xC3\xA9"));
  }

  TEST_CASE("pad id: end token by default, explicit in from_files, pad_token in from_dir") {
    const std::string vocab = tokenizer_dir() + "/vocab.json", merges = tokenizer_dir() + "/merges.txt";
    CHECK(ClipTokenizer::from_files(vocab, merges).pad() == 49407);
    CHECK(ClipTokenizer::from_files(vocab, merges, 0).pad() == 0);
    CHECK(ClipTokenizer::from_files(vocab, merges, 0).encode_padded("cat", 5) ==
          std::vector<int>{49406, 2368, 49407, 0, 0});
    CHECK(ClipTokenizer::from_dir(folder_with_config("tok-sd2", R"({"pad_token": "!"})")).pad() == 0);
    CHECK(ClipTokenizer::from_dir(folder_with_config(
              "tok-sd2-added", R"({"pad_token": {"__type": "AddedToken", "content": "!", "lstrip": false}})"))
              .pad() == 0);
    CHECK(ClipTokenizer::from_dir(folder_with_config("tok-sd1", R"({"pad_token": "<|endoftext|>"})")).pad() == 49407);
    CHECK(ClipTokenizer::from_dir(folder_with_config("tok-noconfig", "")).pad() == 49407);
    // "!" pads, but in text it is still ordinary punctuation.
    const auto sd2 = ClipTokenizer::from_dir(folder_with_config("tok-sd2-text", R"({"pad_token": "!"})"));
    CHECK(sd2.encode("wow!!!") == ClipTokenizer::from_files(vocab, merges).encode("wow!!!"));
  }

  TEST_CASE("bad pad settings are refused with the reason") {
    const std::string vocab = tokenizer_dir() + "/vocab.json", merges = tokenizer_dir() + "/merges.txt";
    CHECK(has(error_of([&] { ClipTokenizer::from_files(vocab, merges, 49408); }), "pad id 49408 is not an id of"));
    CHECK(has(error_of([&] { ClipTokenizer::from_files(vocab, merges, -2); }), "pad id -2"));
    const auto dir = folder_with_config("tok-badpad", R"({"pad_token": "<pad>"})");
    const auto e = error_of([&] { ClipTokenizer::from_dir(dir); });
    CHECK(has(e, "tokenizer_config.json"));
    CHECK(has(e, "pad_token '<pad>' is not in vocab.json"));
    CHECK(has(error_of([&] { ClipTokenizer::from_dir(folder_with_config("tok-badjson", "{pad")); }), "not valid JSON"));
  }

  TEST_CASE("a missing file is named with what to do") {
    const auto dir = sigma::test::scratch("tok-empty").string();
    const auto e = error_of([&] { ClipTokenizer::from_dir(dir); });
    CHECK(has(e, dir + "/vocab.json: missing"));
    CHECK(has(e, "put the tokenizer files (vocab.json, merges.txt) of the model's family in " + dir +
                     " or pass --tokenizer DIR"));
    std::filesystem::copy_file(tokenizer_dir() + "/vocab.json", dir + "/vocab.json");
    const auto m = error_of([&] { ClipTokenizer::from_dir(dir); });
    CHECK(has(m, dir + "/merges.txt: missing"));
    CHECK(has(m, "or pass --tokenizer DIR"));
  }

  TEST_CASE("broken files are refused: bad JSON, wrong shapes, merges of unknown tokens") {
    const auto dir = sigma::test::scratch("tok-broken");
    const auto merges = tokenizer_dir() + "/merges.txt";
    auto write = [&](const std::string& name, const std::string& text) {
      const auto p = (dir / name).string();
      std::ofstream(p, std::ios::binary) << text;
      return p;
    };
    CHECK(has(error_of([&] { ClipTokenizer::from_files(write("trunc.json", "{\"a\": 1,"), merges); }),
              "trunc.json: not valid JSON"));
    CHECK(has(error_of([&] { ClipTokenizer::from_files(write("list.json", "[1, 2]"), merges); }),
              "not a JSON object of token -> id"));
    CHECK(has(error_of([&] { ClipTokenizer::from_files(write("neg.json", "{\"a\": -4}"), merges); }),
              "the id of token 'a' is not a non-negative integer"));
    const auto vocab = tokenizer_dir() + "/vocab.json";
    const auto e = error_of([&] { ClipTokenizer::from_files(vocab, write("m1.txt", "#version: 0.2\ni n\nzq# xw\n")); });
    CHECK(has(e, "m1.txt: line 3 merges tokens that vocab.json lacks"));
    CHECK(has(error_of([&] { ClipTokenizer::from_files(vocab, write("m2.txt", "#version: 0.2\ni n t\n")); }),
              "line 2 is not two tokens separated by one space"));
    CHECK(has(error_of([&] { ClipTokenizer::from_files(vocab, write("m3.txt", "#version: 0.2\n")); }), "holds no merges"));
    // A vocabulary that is valid JSON but not CLIP's byte-level table.
    CHECK(has(error_of([&] { ClipTokenizer::from_files(write("tiny.json", "{\"i\": 0, \"n\": 1, \"in\": 2}"),
                                                        write("m4.txt", "i n\n")); }),
              "not a CLIP byte-level BPE vocabulary"));
  }
}
