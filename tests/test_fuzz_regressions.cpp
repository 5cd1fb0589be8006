// What fuzzing found (issue 14, docs/reliability.md "Fuzzing"), one test per fix, plus the
// reader's behaviour when a checkpoint changes under it and the batch runner's clean-up of
// temporaries a killed process left. The inputs named regress-* under tests/fuzz/<target>/
// corpus are the fuzzers' own findings; they are replayed here through the same functions.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "app/cli/jobs.h"
#include "app/image_io.h"
#include "models/io/safetensors.h"
#include "tests/support.h"

namespace fs = std::filesystem;
using namespace sigma;

namespace {

using sigma::test::has;

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string header_error(const std::string& json, uint64_t data_size) {
  try {
    models::parse_safetensors_header("t.safetensors", json, data_size, nullptr);
  } catch (const models::SafetensorsError& e) {
    return e.what();
  }
  return "";
}

fs::path corpus(const std::string& target) { return fs::path(test::source_dir()) / "tests/fuzz" / target / "corpus"; }

}  // namespace

TEST_SUITE("unit.fuzz_regressions") {
  TEST_CASE("safetensors: the element count is a checked product, as the reference's checked_mul") {
    // [2^32, 2^32, 0] wrapped to 0 elements and matched an empty byte range.
    CHECK(has(header_error(R"({"t":{"dtype":"F32","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}})", 0),
                    "has more elements than a 64-bit count holds"));
    // A dimension above 2^63 - 1 turned negative as int64.
    CHECK(has(header_error(R"({"t":{"dtype":"F32","shape":[18446744073709551615,0],"data_offsets":[0,0]}})", 0),
                    "has more elements than a 64-bit count holds"));
    // Zero dimensions that fit are fine, as before.
    CHECK(header_error(R"({"t":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]}})", 0).empty());
    for (const auto& e : fs::directory_iterator(corpus("safetensors_header"))) {
      if (e.path().filename().string().rfind("regress-", 0) != 0) continue;
      const auto bytes = read_bytes(e.path());
      INFO(e.path().string());
      CHECK_FALSE(header_error(bytes.substr(8), 0).empty());
    }
  }

  TEST_CASE("job lines: whole-number fields refuse floats out of range, fractions and too-large unsigned values") {
    // nlohmann's get<int64_t>() of 4.99e25 is a float-to-int cast out of range (UBSan).
    for (const char* line : {R"({"width": 49918446744073709551615999})", R"({"steps": 18446744073709551615})",
                             R"({"seed": 1.5})", R"({"batch-size": 1e300})"}) {
      const auto job = app::parse_job_line(line, 1, 0);
      REQUIRE(job);
      INFO(line);
      CHECK(has(job->error, "expected a whole number in range"));
    }
    // {"batch-count": 2000620} made job_outputs() name 2 million files (a fuzzer timeout):
    // batch counts stop at 1000, and a seed must leave room for every image's seed.
    for (const auto& [line, message] :
         {std::pair{R"({"batch-count": 2000620})", "--batch-count must be between 1 and 1000"},
          std::pair{R"({"seed": 9223372036854775807, "batch-size": 2})", "the seeds of the request's images must stay below 2^63"}}) {
      const auto job = app::parse_job_line(line, 1, 0);
      REQUIRE(job);
      INFO(line);
      CHECK(has(job->error, message));
    }
    const auto ok = app::parse_job_line(R"({"prompt": "a red circle", "steps": 4.0, "seed": 18446744073709551})", 1, 0);
    REQUIRE(ok);
    CHECK(ok->error.empty());
    CHECK(ok->request.steps == 4);
    for (const auto& e : fs::directory_iterator(corpus("job_line"))) {
      if (e.path().filename().string().rfind("regress-", 0) != 0) continue;
      std::istringstream in(read_bytes(e.path()));
      for (std::string line; std::getline(in, line);)
        if (auto job = app::parse_job_line(line, 1, 0)) CHECK_FALSE(job->error.empty());
    }
  }

  TEST_CASE("images: JPEG Huffman tables are checked before stb 2.27 sees them; only PNG, JPEG and BMP are decoded") {
    const auto dir = corpus("image_loader");
    auto error_of = [&](const std::string& name) {
      try {
        app::decode_image(read_bytes(dir / name), name);
      } catch (const app::ImageError& e) {
        return std::string(e.what());
      }
      return std::string();
    };
    CHECK(has(error_of("regress-jpeg-dht-over-256"), "damaged JPEG"));
    CHECK(has(error_of("regress-jpeg-undefined-huffman-table"), "damaged JPEG"));
    CHECK_FALSE(error_of("regress-png-empty-first-idat").empty());  // refused (now by the chunk-length check), no UB
    CHECK(has(error_of("regress-png-huge-chunk-length"), "damaged PNG (a chunk runs past the end of the file"));
    // stb 2.27's DC prediction overflows int on this damaged JPEG (see tests/fuzz/CMakeLists.txt):
    // arithmetic only, no memory access out of bounds; it decodes to some picture or is refused.
    CHECK_NOTHROW(error_of("regress-jpeg-dc-overflow"));
    CHECK_NOTHROW(error_of("regress-jpeg-bit-reader-shift"));  // its bit reader's shift by 32, likewise
    // A 70-byte BMP whose height is -458704 (top-down rows): refused from its header, before
    // stb allocates and decodes 458704 rows.
    CHECK(has(error_of("regress-bmp-negative-height"), "63x458704 is larger than the 8192x8192 limit"));
    {
      // A valid top-down BMP (bmp-2x2 with its height negated) still decodes, upside up.
      auto bottom_up = read_bytes(dir / "bmp-2x2"), top_down = bottom_up;
      const int32_t minus_two = -2;
      std::memcpy(top_down.data() + 22, &minus_two, 4);  // BITMAPINFOHEADER biHeight
      const auto a = app::decode_image(bottom_up, "bottom-up.bmp"), b = app::decode_image(top_down, "top-down.bmp");
      REQUIRE(b.width == 2);
      REQUIRE(b.height == 2);
      const size_t row = 2 * 3;
      CHECK(std::equal(a.pixels.begin(), a.pixels.begin() + row, b.pixels.begin() + row));  // rows swapped
      CHECK(std::equal(a.pixels.begin() + row, a.pixels.end(), b.pixels.begin()));
    }
    CHECK(has(error_of("gif-small.gif"), "not a PNG, JPEG or BMP file"));
    CHECK(has(error_of("png-60000"), "60000x60000 is larger than the 8192x8192 limit"));
    // Real files of each kind still decode, baseline and progressive JPEG included.
    for (const char* name : {"jpeg-baseline.jpg", "jpeg-progressive.jpg", "jpeg-gray.jpg", "png-rgba-2x2", "png-palette", "bmp-2x2"}) {
      INFO(name);
      CHECK(error_of(name).empty());
    }
    const auto png = app::decode_image(read_bytes(fs::path(test::source_dir()) / "docs/first-command.png"), "first-command.png");
    CHECK(png.width == 128);
  }

  TEST_CASE("a checkpoint that shrinks, grows or is rewritten after it was opened gives an error, not SIGBUS") {
    const auto dir = test::scratch("shrinking-file");
    const auto path = (dir / "w.safetensors").string();
    auto write = [&] {
      models::save_safetensors(path, {{"a", torch::arange(4096, torch::kFloat32)}, {"b", torch::ones({64, 64})}});
    };
    write();
    {
      auto f = models::SafeTensors::open(path);
      CHECK(f->load("a")[4095].item<float>() == 4095.0f);
      REQUIRE(::truncate(path.c_str(), 8 + 64) == 0);  // a download cut short, a copy still running
      try {
        f->load("b");
        FAIL("no error for a file that shrank");
      } catch (const models::SafetensorsError& e) {
        CHECK(has(e.what(), "changed while it was being read"));
        CHECK(has(e.what(), "w.safetensors"));
      }
    }
    write();
    {
      auto f = models::SafeTensors::open(path);
      std::ofstream(path, std::ios::app) << "more bytes";  // still downloading
      CHECK_THROWS_AS(f->load("a"), models::SafetensorsError);
    }
    write();
    {
      auto f = models::SafeTensors::open(path);
      struct timespec times[2] = {{0, UTIME_OMIT}, {1234567890, 0}};  // rewritten in place: same size, new time
      ::utimensat(AT_FDCWD, path.c_str(), times, 0);
      CHECK_THROWS_AS(f->load("a"), models::SafetensorsError);
    }
    write();
    auto f = models::SafeTensors::open(path);
    CHECK(f->load("b").sum().item<float>() == 4096.0f);  // an unchanged file reads as before
  }

  TEST_CASE("batch: temporaries left by a dead process are removed, a live writer's are kept") {
    const auto dir = test::scratch("stale-temporaries");
    const pid_t dead = fork();
    if (dead == 0) _exit(0);
    int status = 0;
    waitpid(dead, &status, 0);
    const auto target = (dir / "jobs-00002.png").string();
    const auto stale = dir / (".jobs-00002.png.tmp-" + std::to_string(dead));
    const auto live = dir / (".jobs-00002.png.tmp-" + std::to_string(::getpid()));
    const auto other = dir / (".jobs-00003.png.tmp-" + std::to_string(dead));
    for (const auto& p : {stale, live, other}) std::ofstream(p) << "partial";
    CHECK(app::remove_stale_temporaries(target) == 1);
    CHECK_FALSE(fs::exists(stale));
    CHECK(fs::exists(live));   // this process is alive
    CHECK(fs::exists(other));  // another job's file
    CHECK(app::remove_stale_temporaries((dir / "nothing.png").string()) == 0);
  }
}
