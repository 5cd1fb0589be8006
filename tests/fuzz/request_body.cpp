// The server's JSON request path (issue 25): an HTTP body as `sigma serve` receives it ->
// models::parse_json -> the A1111 translation or the job API -> admission (names resolved in
// a models root, images decoded, validate()) -> a Request the runner may run. The first byte
// picks the endpoint, the rest is the body. Every refusal must be an exception (a 400 for the
// client); an admitted request must validate again and serialize as the server answers it.
// Run with a small stack (scripts/fuzz.sh: 1 MB) so that recursion over a deeply nested
// value, which ended the server with SIGSEGV, is a finding here.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "app/server/admit.h"
#include "models/io/json_text.h"
#include "tests/fuzz/fuzz_common.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

struct Setting {
  fs::path root;
  std::unique_ptr<sigma::server::ModelCatalog> catalog;
  std::optional<sigma::models::ClipTokenizer> tokenizer;
};

// A models root with the folders a server has, a LoRA-named file and a symlink loop, made once.
Setting& setting() {
  static Setting s = [] {
    Setting t;
    char tmpl[] = "/tmp/sigma-fuzz-request-XXXXXX";
    t.root = ::mkdtemp(tmpl);
    for (const char* d : {"checkpoints", "loras/sub", "embeddings", "controlnet", "out"}) fs::create_directories(t.root / d);
    std::ofstream(t.root / "loras" / "sub" / "style.safetensors") << "x";
    fs::create_directory_symlink(t.root / "loras", t.root / "loras" / "sub" / "loop");
    const std::string assets = std::string(SIGMA_SOURCE_DIR) + "/assets";
    t.catalog = std::make_unique<sigma::server::ModelCatalog>(t.root.string(), assets + "/models");
    t.tokenizer = sigma::models::ClipTokenizer::from_files(assets + "/clip-bpe/vocab.json", assets + "/clip-bpe/merges.txt");
    return t;
  }();
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sigma;
  if (size < 1 || size > (256u << 10)) return -1;
  auto& s = setting();
  const int endpoint = data[0] % 3;  // 0: POST /v1/jobs, 1: /sdapi/v1/txt2img, 2: /sdapi/v1/img2img
  const std::string body = fuzz::as_string(data + 1, size - 1);
  server::AdmitContext ctx;
  ctx.catalog = s.catalog.get();
  ctx.output_dir = (s.root / "out").string();
  ctx.upload_dir = (s.root / "upload").string();
  ctx.tokenizer = &*s.tokenizer;
  app::Request r;
  bool admitted = false;
  try {
    const json j = models::parse_json(body, "body");
    if (endpoint == 0) {
      std::vector<std::string> warnings;
      r = server::job_request(j, ctx, warnings);
    } else {
      r = server::a1111_request(j, endpoint == 2, ctx).request;
    }
    admitted = true;
  } catch (const std::exception&) {
    // A refusal: the server answers 400 with the message.
  }
  if (admitted) {
    app::validate(r);  // must not throw: the request was admitted
    // What the server then sends and stores: the public request and the runner's JSON.
    (void)server::public_request(r, *s.catalog).dump(-1, ' ', false, json::error_handler_t::strict);
    (void)app::to_json(r).dump(-1, ' ', false, json::error_handler_t::strict);
  }
  std::error_code ec;
  fs::remove_all(ctx.upload_dir, ec);
  return 0;
}
