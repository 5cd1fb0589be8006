// The Flux.1 family on flux-tiny (../shared/fixtures/flux-tiny/README.md), part by part against
// the references diffusers and transformers computed in float32 on the same weights.
#include <doctest/doctest.h>

#include "models/io/safetensors.h"
#include "models/io/weights.h"
#include "models/nn/layers.h"
#include "models/text/t5_encoder.h"
#include "tests/support.h"

namespace {
using namespace sigma;
std::string flux() { return test::fixtures() + "/flux-tiny"; }

std::map<std::string, std::vector<int64_t>> shapes_of(const models::TensorIndex& index) {
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& [name, ref] : index) shapes[name] = ref.shape;
  return shapes;
}

models::T5Encoder load_t5(const std::string& path, torch::Device device, torch::ScalarType dtype) {
  const auto index = models::index_file(models::SafeTensors::open(path));
  auto t5 = models::build_uninitialised<models::T5Encoder>(models::t5_config_from_shapes(shapes_of(index), path));
  // encoder.embed_tokens is `shared` again (tied), stored twice by Hugging Face.
  models::load_module(*t5, index, "T5 of " + path, dtype, device, {"encoder.embed_tokens.weight"});
  return t5;
}

}  // namespace

TEST_SUITE("conformance.flux") {
  TEST_CASE("Flux parts: the T5 encoder") {
    auto refs = models::SafeTensors::open(flux() + "/refs/refs.safetensors");
    auto ref = [&](const std::string& n) { return refs->load(n, torch::kFloat32); };
    const auto device = test::test_device();
    const auto dtype = test::test_dtype();
    std::printf("flux on %s, %s:\n", device.str().c_str(), c10::toString(dtype));
    test::CaseReport report("flux");

    const auto ids = refs->load("t5.ids");

    c10::InferenceMode guard;
    auto t5 = load_t5(flux() + "/models/t5xxl.safetensors", device, dtype);
    CHECK(t5->config.layers == 2);
    CHECK(report.add("t5.last_hidden", test::rel_error(t5->forward(ids.to(device)), ref("t5.last_hidden")),
                     test::tolerance(1e-4)));
    CHECK(test::error_of([&] { t5->forward(torch::full({1, 4}, 300, torch::kLong)); }).find("--t5-tokenizer") !=
          std::string::npos);
    report.close();
    CHECK(report.passed == report.total);
  }
}
