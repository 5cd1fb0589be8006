// The safetensors reader against the format's rules: a round trip through the writer,
// every dtype, and one hand-built bad file per rule, each rejected with a message that
// names the file, the tensor and the fault.
#include <doctest/doctest.h>

#include <fstream>

#include "models/io/safetensors.h"
#include "tests/support.h"

using sigma::models::SafeTensors;
using sigma::models::SafetensorsError;

namespace {

// A file from raw parts: header text, then `data` bytes; `declared_len` overrides the length field.
std::string write_raw(const std::filesystem::path& dir, const std::string& name, const std::string& header,
                      const std::string& data, std::optional<uint64_t> declared_len = std::nullopt) {
  const auto path = (dir / name).string();
  std::ofstream out(path, std::ios::binary);
  const uint64_t n = declared_len.value_or(header.size());
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xFF));
  out << header << data;
  return path;
}

// The message of the error that opening `path` raises ("" if it opens).
std::string open_error(const std::string& path) {
  try {
    SafeTensors::open(path);
  } catch (const SafetensorsError& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_SUITE("unit.safetensors") {
  TEST_CASE("round trip through the writer keeps names, dtypes, shapes and values") {
    const auto dir = sigma::test::scratch("st-roundtrip");
    const auto path = (dir / "a.safetensors").string();
    auto f32 = torch::arange(6, torch::kFloat32).reshape({2, 3});
    auto f16 = torch::tensor({1.5, -2.25}).to(torch::kFloat16);
    auto bf16 = torch::tensor({0.5, 4.0, -8.0}).to(torch::kBFloat16);
    auto i64 = torch::tensor({int64_t(1) << 40, int64_t(-3)});
    auto u8 = torch::tensor({0, 255}, torch::kUInt8);
    auto b = torch::tensor({true, false, true});
    auto scalar = torch::tensor(3.0, torch::kFloat64);
    sigma::models::save_safetensors(path, {{"f32", f32}, {"f16", f16}, {"bf16", bf16}, {"i64", i64},
                                           {"u8", u8}, {"bool", b}, {"scalar", scalar}},
                                    {{"note", "hello"}});
    auto f = SafeTensors::open(path);
    CHECK(f->tensors().size() == 7);
    CHECK(f->metadata().at("note") == "hello");
    CHECK(f->find("f16")->dtype == "F16");
    CHECK(f->find("scalar")->shape.empty());
    CHECK(torch::equal(f->load("f32"), f32));
    CHECK(torch::equal(f->load("f16"), f16));
    CHECK(torch::equal(f->load("bf16"), bf16));
    CHECK(torch::equal(f->load("i64"), i64));
    CHECK(torch::equal(f->load("u8"), u8));
    CHECK(torch::equal(f->load("bool"), b));
    CHECK(f->load("scalar").item<double>() == 3.0);
    // Conversion on demand.
    CHECK((f->load("f16", torch::kFloat32).scalar_type() == torch::kFloat32));
    CHECK(f->load("f16", torch::kFloat32)[1].item<float>() == -2.25f);
    CHECK_THROWS_WITH_AS(f->load("nope"), doctest::Contains("tensor 'nope' is not in the file"), SafetensorsError);
  }

  TEST_CASE("8-bit float formats decode to float32") {
    const auto dir = sigma::test::scratch("st-f8");
    // E4M3: 0x38 = 1.0, 0xC0 = -2.0, 0x7F = NaN; E5M2: 0x3C = 1.0, 0x7C = inf.
    const std::string h =
        R"({"a":{"dtype":"F8_E4M3","shape":[3],"data_offsets":[0,3]},"b":{"dtype":"F8_E5M2","shape":[2],"data_offsets":[3,5]}})";
    const auto path = write_raw(dir, "f8.safetensors", h, std::string("\x38\xC0\x7F\x3C\x7C", 5));
    auto f = SafeTensors::open(path);
    auto a = f->load("a");
    CHECK(a[0].item<float>() == 1.0f);
    CHECK(a[1].item<float>() == -2.0f);
    CHECK(std::isnan(a[2].item<float>()));
    auto b = f->load("b");
    CHECK(b[0].item<float>() == 1.0f);
    CHECK(std::isinf(b[1].item<float>()));
  }

  TEST_CASE("bad files are rejected with a message naming file, tensor and fault") {
    const auto dir = sigma::test::scratch("st-bad");
    const std::string ok_entry = R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
    const std::string eight(8, '\0');

    SUBCASE("truncated data") {
      auto p = write_raw(dir, "trunc.safetensors", "{" + ok_entry + "}", std::string(5, '\0'));
      auto e = open_error(p);
      CHECK(contains(e, p));
      CHECK(contains(e, "tensor 'w'"));
      CHECK(contains(e, "truncated"));
    }
    SUBCASE("header length past the end") {
      auto p = write_raw(dir, "hlen.safetensors", "{" + ok_entry + "}", eight, 5000);
      auto e = open_error(p);
      CHECK(contains(e, "header length 5000 runs past the end"));
    }
    SUBCASE("header over the limit") {
      auto p = write_raw(dir, "hbig.safetensors", "{}", "", 100'000'001);
      CHECK(contains(open_error(p), "exceeds the 100000000-byte limit"));
    }
    SUBCASE("file shorter than the length field") {
      const auto p = (dir / "tiny.safetensors").string();
      std::ofstream(p, std::ios::binary) << "abc";
      CHECK(contains(open_error(p), "shorter than the 8-byte header length"));
    }
    SUBCASE("invalid JSON") {
      auto p = write_raw(dir, "json.safetensors", "{\"w\": {\"dtype\": ", eight);
      CHECK(contains(open_error(p), "not valid JSON"));
    }
    SUBCASE("unknown dtype") {
      auto p = write_raw(dir, "dtype.safetensors", R"({"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})", eight);
      auto e = open_error(p);
      CHECK(contains(e, "tensor 'w'"));
      CHECK(contains(e, "unknown dtype 'Q4'"));
    }
    SUBCASE("overlapping offsets") {
      auto p = write_raw(dir, "overlap.safetensors",
                         R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                         std::string(12, '\0'));
      auto e = open_error(p);
      CHECK(contains(e, "tensor 'b'"));
      CHECK(contains(e, "overlaps tensor 'a'"));
    }
    SUBCASE("a gap between tensors") {
      auto p = write_raw(dir, "gap.safetensors",
                         R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                         std::string(12, '\0'));
      auto e = open_error(p);
      CHECK(contains(e, "tensor 'b'"));
      CHECK(contains(e, "gap of 4 bytes"));
    }
    SUBCASE("bytes left over at the end") {
      auto p = write_raw(dir, "tail.safetensors", "{" + ok_entry + "}", std::string(12, '\0'));
      CHECK(contains(open_error(p), "4 bytes at the end of the data buffer belong to no tensor"));
    }
    SUBCASE("size not matching the shape") {
      auto p = write_raw(dir, "size.safetensors", R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", eight);
      auto e = open_error(p);
      CHECK(contains(e, "tensor 'w'"));
      CHECK(contains(e, "byte size 8 does not match shape [3] x F32 (12 bytes)"));
    }
    SUBCASE("negative dimension") {
      auto p = write_raw(dir, "neg.safetensors", R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", eight);
      CHECK(contains(open_error(p), "non-integer or negative dimension"));
    }
    SUBCASE("missing file") {
      auto e = open_error((dir / "absent.safetensors").string());
      CHECK(contains(e, "absent.safetensors: cannot open"));
    }
  }
}
