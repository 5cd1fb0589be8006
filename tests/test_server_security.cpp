// `sigma serve` against bad and hostile input (issue 15, security): 401 without the key,
// 413 for huge bodies, 400 naming the field for malformed input and over-limit values,
// traversal out of the models root refused, slow clients dropped, no server paths in
// answers, and /healthz still answering after each.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>

#include "app/server/base64.h"
#include "tests/server_support.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace sigma {
namespace {

json tiny() { return {{"prompt", "a red circle"}, {"steps", 2}, {"width", 64}, {"height", 64}, {"seed", 1}}; }

// POST and expect 400 naming `field`; the body must not reveal the scratch folder.
void expect_400(test::ServeProcess& s, const std::string& path, const json& body_in, const std::string& field) {
  auto c = s.client();
  int status = 0;
  // Small values underneath, so that a check that wrongly passes costs a second, not minutes.
  json body = body_in;
  if (path.rfind("/sdapi/v1/txt2img", 0) == 0 || path.rfind("/sdapi/v1/img2img", 0) == 0) {
    body = {{"steps", 2}, {"width", 64}, {"height", 64}};
    if (body_in.is_object()) body.update(body_in);
  }
  const std::string text = test::post_json(c, path, body, &status);
  INFO(path << " " << body.dump().substr(0, 200) << " -> " << text.substr(0, 400));
  CHECK(status == 400);
  const auto j = json::parse(text);
  CHECK(j["field"] == field);
  CHECK(text.find(s.dir.string()) == std::string::npos);
  CHECK(s.healthy());
}

}  // namespace

TEST_SUITE("e2e.server_security") {
  TEST_CASE("with --api-key every endpoint but /healthz needs the key") {
    test::ServeProcess s(test::scratch("server-auth"), "--api-key s3cret");
    auto anon = s.client();
    for (const char* path : {"/", "/v1/models", "/sdapi/v1/sd-models", "/sdapi/v1/progress", "/metrics", "/v1/jobs/1"}) {
      auto r = anon.Get(path);
      REQUIRE(r);
      INFO(path);
      CHECK(r->status == 401);
      CHECK(s.healthy());
    }
    auto r = anon.Post("/sdapi/v1/txt2img", tiny().dump(), "application/json");
    CHECK(r->status == 401);
    auto wrong = s.client("s3cre7");
    CHECK(wrong.Get("/v1/models")->status == 401);
    auto right = s.client("s3cret");
    CHECK(right.Get("/v1/models")->status == 200);
    CHECK(right.Post("/v1/jobs", tiny().dump(), "application/json")->status == 202);
    auto basic = s.client();
    basic.set_basic_auth("anyone", "s3cret");  // A1111's --api-auth form
    CHECK(basic.Get("/sdapi/v1/samplers")->status == 200);
    CHECK(anon.Get("/healthz")->status == 200);
  }

  TEST_CASE("a non-loopback listen needs --api-key or --insecure") {
    const auto r = test::sigma_cli("serve --listen 0.0.0.0 --port 0");
    CHECK(r.code == 1);
    CHECK(r.output.find("--api-key") != std::string::npos);
  }

  TEST_CASE("limits: body size 413, steps/size/batch/prompt caps 400, oversized images refused before decoding") {
    const auto dir = test::scratch("server-limits");
    test::ServeProcess s(dir);
    auto c = s.client();
    std::string huge(65u << 20, 'a');
    auto r = c.Post("/v1/jobs", "{\"prompt\":\"" + huge + "\"}", "application/json");
    REQUIRE(r);
    CHECK(r->status == 413);
    CHECK(json::parse(r->body)["detail"].get<std::string>().find("larger than this server's limit") != std::string::npos);
    CHECK(s.healthy());
    expect_400(s, "/sdapi/v1/txt2img", {{"steps", 5000}}, "steps");
    expect_400(s, "/sdapi/v1/txt2img", {{"width", 8192}, {"height", 64}}, "width");
    expect_400(s, "/sdapi/v1/txt2img", {{"width", 100}}, "width");
    expect_400(s, "/sdapi/v1/txt2img", {{"batch_size", 1000}}, "batch_size");
    expect_400(s, "/sdapi/v1/txt2img", {{"n_iter", 1000}}, "n_iter");
    expect_400(s, "/sdapi/v1/txt2img", {{"cfg_scale", 1e9}}, "cfg_scale");
    expect_400(s, "/v1/jobs", json{{"steps", -1}}, "steps");
    // A 100,000-character prompt is refused at once (not after 30 s of text encoding).
    const auto t0 = std::chrono::steady_clock::now();
    std::string words;
    while (words.size() < 100000) words += "red circle ";
    expect_400(s, "/sdapi/v1/txt2img", {{"prompt", words}}, "prompt");
    expect_400(s, "/v1/jobs", json{{"negative", words.substr(0, 8000)}}, "negative");
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10));
    // A PNG header claiming 100000 x 100000 pixels: refused from the header.
    std::string png = app::encode_png(Image(8, 8, 3, 128));
    for (int i : {16, 20}) {  // IHDR width and height, big-endian
      const uint32_t v = 100000;
      png[i] = char(v >> 24), png[i + 1] = char(v >> 16), png[i + 2] = char(v >> 8), png[i + 3] = char(v);
    }
    json i2i = tiny();
    i2i["init_images"] = {server::base64_encode(png)};
    expect_400(s, "/sdapi/v1/img2img", i2i, "init_images[0]");
    CHECK(test::count_files(s.out) == 0);
  }

  TEST_CASE("malformed input: bad JSON, wrong types, unknown fields, bad base64, bad images -> 400 naming the field") {
    test::ServeProcess s(test::scratch("server-bad"));
    auto c = s.client();
    auto r = c.Post("/sdapi/v1/txt2img", "{\"prompt\": ", "application/json");
    CHECK(r->status == 400);
    CHECK(json::parse(r->body)["field"] == "body");
    r = c.Post("/v1/jobs", "[1,2]", "application/json");
    CHECK(r->status == 400);
    CHECK(s.healthy());
    expect_400(s, "/sdapi/v1/txt2img", {{"steps", "many"}}, "steps");
    expect_400(s, "/sdapi/v1/txt2img", {{"seed", 1.5}}, "seed");
    expect_400(s, "/sdapi/v1/txt2img", {{"prompt", 7}}, "prompt");
    expect_400(s, "/sdapi/v1/txt2img", {{"not_an_a1111_field", 1}}, "not_an_a1111_field");
    expect_400(s, "/sdapi/v1/txt2img", {{"sampler_name", "Euler z"}}, "sampler_name");
    expect_400(s, "/sdapi/v1/txt2img", {{"scheduler", "Sideways"}}, "scheduler");
    expect_400(s, "/v1/jobs", json{{"stepz", 4}}, "stepz");
    expect_400(s, "/v1/jobs", json{{"cfg", "high"}}, "cfg");
    json i2i = tiny();
    i2i["init_images"] = {"@@@ not base64 @@@"};
    expect_400(s, "/sdapi/v1/img2img", i2i, "init_images[0]");
    i2i["init_images"] = {server::base64_encode("this is not an image at all")};
    expect_400(s, "/sdapi/v1/img2img", i2i, "init_images[0]");
    i2i["init_images"] = {server::base64_encode(app::encode_png(Image(64, 64, 3, 9)))};
    i2i["mask"] = "%%%";
    expect_400(s, "/sdapi/v1/img2img", i2i, "mask");
    expect_400(s, "/sdapi/v1/img2img", tiny(), "init_images");
    expect_400(s, "/v1/jobs", json{{"init-img", "/etc/passwd"}}, "init-img");  // no paths: images come as base64
    // The server goes on serving real work.
    int status = 0;
    test::post_json(c, "/sdapi/v1/txt2img", tiny(), &status);
    CHECK(status == 200);
  }

  TEST_CASE("names stay inside the models root: '..', absolute paths and symlinks out are refused") {
    const auto dir = test::scratch("server-traversal");
    test::ServeProcess s(dir);
    // A real model file outside the root, and a symlink to it inside the root.
    fs::copy_file(test::source_dir() + "/assets/models/sigma-shapes.safetensors", dir / "outside.safetensors");
    fs::create_symlink(dir / "outside.safetensors", s.models / "checkpoints" / "sneaky.safetensors");
    fs::create_directories(s.models / "loras");
    fs::create_symlink(dir / "outside.safetensors", s.models / "loras" / "sneaky-lora.safetensors");
    const std::string outside = (dir / "outside.safetensors").string();
    for (const std::string& name : {std::string("../outside"), std::string("../outside.safetensors"), outside,
                                    std::string("/etc/passwd"), std::string("checkpoints/../../outside"), std::string("sneaky")}) {
      json t = tiny();
      t["override_settings"] = {{"sd_model_checkpoint", name}};
      expect_400(s, "/sdapi/v1/txt2img", t, "override_settings.sd_model_checkpoint");
      expect_400(s, "/sdapi/v1/options", {{"sd_model_checkpoint", name}}, "sd_model_checkpoint");
      json j = tiny();
      j["model"] = name;
      expect_400(s, "/v1/jobs", j, "model");
    }
    json j = tiny();
    j["vae"] = outside;
    expect_400(s, "/v1/jobs", j, "vae");
    j = tiny();
    j["tokenizer"] = "../../";
    expect_400(s, "/v1/jobs", j, "tokenizer");
    j = tiny();
    j["prompt"] = "a red circle <lora:../outside:1>";
    expect_400(s, "/v1/jobs", j, "prompt");
    j["prompt"] = "a red circle <lora:" + outside + ":1>";
    expect_400(s, "/v1/jobs", j, "prompt");
    j["prompt"] = "a red circle <lora:sneaky-lora:1>";
    expect_400(s, "/v1/jobs", j, "prompt");
    j = tiny();
    j["lora"] = {"../outside"};
    expect_400(s, "/v1/jobs", j, "lora");
    j = tiny();
    j["lora-dir"] = dir.string();
    expect_400(s, "/v1/jobs", j, "lora-dir");
    json cn = tiny();
    cn["alwayson_scripts"] = {{"controlnet", {{"args", {{{"model", "/etc/passwd"}, {"image", server::base64_encode(app::encode_png(Image(64, 64, 3, 9)))}}}}}}};
    expect_400(s, "/sdapi/v1/txt2img", cn, "alwayson_scripts.controlnet.args");
    // A model that fails to load inside the root: the job fails with a message that names
    // the file without the server's folders, and the server goes on.
    std::ofstream(s.models / "checkpoints" / "broken.safetensors") << "not a safetensors file";
    auto c = s.client();
    int status = 0;
    j = tiny();
    j["model"] = "broken";
    const auto sub = json::parse(test::post_json(c, "/v1/jobs", j, &status));
    REQUIRE(status == 202);
    const std::string id = sub["id"];
    const auto events = c.Get(("/v1/jobs/" + id + "/events").c_str())->body;
    CHECK(events.find("event: error") != std::string::npos);
    CHECK(events.find(dir.string()) == std::string::npos);
    const auto failed = test::body_json(c.Get(("/v1/jobs/" + id).c_str()));
    CHECK(failed["state"] == "failed");
    CHECK(failed["error"].get<std::string>().find("broken.safetensors") != std::string::npos);
    CHECK(failed["error"].get<std::string>().find(dir.string()) == std::string::npos);
    json t = tiny();
    t["override_settings"] = {{"sd_model_checkpoint", "broken"}};
    const auto a1111 = test::post_json(c, "/sdapi/v1/txt2img", t, &status);
    CHECK(status == 500);
    CHECK(a1111.find(dir.string()) == std::string::npos);
    CHECK(s.healthy());
    // The symlink out is not even listed.
    const auto models = c.Get("/v1/models")->body;
    CHECK(models.find("sneaky") == std::string::npos);
    CHECK(models.find(dir.string()) == std::string::npos);
  }

  TEST_CASE("a client that stalls mid-request is dropped after --timeout; others are served meanwhile") {
    test::ServeProcess s(test::scratch("server-slow"), "--timeout 2");
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(s.port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    const std::string partial = "POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"prompt\":";
    REQUIRE(send(fd, partial.data(), partial.size(), 0) == ssize_t(partial.size()));
    CHECK(s.healthy());
    const auto t0 = std::chrono::steady_clock::now();
    char buf[512];
    timeval tv{10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ssize_t n = 0;
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0) {
    }
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    close(fd);
    CHECK(n == 0);          // closed by the server, not by our 10 s receive timeout
    CHECK(waited < 8.0);
    CHECK(s.healthy());
  }
}

}  // namespace sigma
