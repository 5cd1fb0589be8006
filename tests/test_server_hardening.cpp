// Issue 25, an attacker's probe, item by item: deeply nested JSON at every parser entry point,
// pages of other origins and foreign Host names, symlinks out of the models folders, unbounded
// work (mask blur, slow-drip clients, symlink loops, device files), leaks and wrong status
// codes, misleading messages. Every server case ends with /healthz answering.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <regex>
#include <thread>

#include "app/adapters.h"
#include "app/cli/jobs.h"
#include "app/parameters.h"
#include "app/request.h"
#include "models/io/json_text.h"
#include "models/io/safetensors.h"
#include "tests/server_support.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace sigma {
namespace {

std::string nested(size_t levels) { return std::string(levels, '[') + std::string(levels, ']'); }
// {"prompt": [[[...]]]}: the value of a known field nested `levels` deep.
std::string nested_body(size_t levels) { return "{\"prompt\":" + nested(levels) + "}"; }

json tiny_job() { return {{"prompt", "a red circle"}, {"steps", 2}, {"width", 64}, {"height", 64}, {"seed", 1}}; }

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// A raw TCP connection to the server, for what cpp-httplib's client cannot send.
struct RawConnection {
  int fd = -1;
  explicit RawConnection(int port) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    timeval tv{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~RawConnection() {
    if (fd >= 0) ::close(fd);
  }
  bool send_all(const std::string& s) { return ::send(fd, s.data(), s.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(s.size()); }
  // Reads until the peer closes or `want` occurrences of `marker` arrived (or 10 s pass).
  std::string read_until(const std::string& marker, size_t want) {
    std::string got;
    char buf[4096];
    for (;;) {
      size_t count = 0;
      for (size_t at = got.find(marker); at != std::string::npos; at = got.find(marker, at + 1)) ++count;
      if (count >= want) return got;
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) return got;
      got.append(buf, static_cast<size_t>(n));
    }
  }
};

// POST a raw body and expect `status`; the detail must be short (no echo of the value).
void expect_status(test::ServeProcess& s, const std::string& path, const std::string& body, int status,
                   const std::string& type = "application/json") {
  auto c = s.client();
  const auto t0 = Clock::now();
  auto r = c.Post(path.c_str(), body, type.c_str());
  REQUIRE(r);
  INFO(path << " (" << body.size() << " bytes) -> " << r->status << " " << r->body.substr(0, 300));
  CHECK(r->status == status);
  CHECK(r->body.size() < 2000);
  CHECK(seconds_since(t0) < 20);
  CHECK(s.healthy());
}

// A PNG whose sigma-request text chunk is `text`.
void write_png_with_request(const fs::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << app::encode_png(Image(8, 8, 3, 100), {{"sigma-request", text}, {"parameters", "x\nSteps: 2"}});
}

}  // namespace

TEST_SUITE("unit.hardening") {
  TEST_CASE("parse_json caps the depth before building a tree; messages quote a short UTF-8-safe prefix") {
    using models::parse_json;
    CHECK(models::json_depth("[[{\"a\": \"[[[[\"}]]") == 3);
    CHECK(models::json_depth("\"\\\"[[[\"") == 0);  // brackets inside a string with an escaped quote
    CHECK(parse_json(nested(64), "x").is_array());
    const auto deep = test::error_of([] { parse_json(nested(1000000), "body"); });
    CHECK(test::has(deep, "body: JSON nested deeper than 64 levels"));
    CHECK(deep.size() < 200);
    CHECK(test::has(test::error_of([] { parse_json("{\"a\": ", "settings.json"); }), "settings.json: not valid JSON"));
    CHECK(test::has(test::error_of([] { parse_json("[1e400]", "body"); }), "body: not valid JSON"));
    // Excerpts: at most N bytes, cut between characters, never throwing on invalid UTF-8.
    const json v = std::string(50, 'a') + "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9";
    const std::string e = models::json_excerpt(v, 52);
    CHECK(e.size() <= 55);
    CHECK(models::valid_utf8(e));
    CHECK(models::valid_utf8(models::json_excerpt(json("bad \xff byte"))));
    CHECK(models::valid_utf8("ascii \xe2\x82\xac \xf0\x9f\x98\x80"));
    CHECK_FALSE(models::valid_utf8("\xff"));
    CHECK_FALSE(models::valid_utf8("\xc3"));              // cut short
    CHECK_FALSE(models::valid_utf8("\xed\xa0\x80"));      // a surrogate
    CHECK_FALSE(models::valid_utf8("\xc0\xaf"));          // overlong '/'
  }

  TEST_CASE("job lines and PNG requests nested 1,000,000 deep are refused with a short message") {
    const auto job = app::parse_job_line(nested_body(1000000), 1, 0);
    REQUIRE(job);
    CHECK(test::has(job->error, "nested deeper than 64 levels"));
    CHECK(job->error.size() < 400);
    const auto error = test::error_of([] { app::request_from_png_text({{"sigma-request", nested_body(1000000)}}, "x.png", nullptr); });
    CHECK(test::has(error, "x.png: damaged sigma-request metadata"));
    CHECK(error.size() < 400);
    // 50,000 levels used to give a message holding the whole value.
    const auto type_error = test::error_of([] {
      app::request_from_json(models::parse_json("{\"steps\": " + nested(60) + "}", "x"));
    });
    CHECK(test::has(type_error, "job field 'steps'"));
    CHECK(type_error.size() < 300);
  }

  TEST_CASE("every numeric field has a range; text must be UTF-8; A1111 numbers are read whole") {
    app::Request r;
    r.mask_blur = 10000000;
    CHECK(test::has(test::error_of([&] { app::validate(r); }), "--mask-blur must be between 0 and 64"));
    r = {};
    r.clip_skip = 1000;
    CHECK(test::has(test::error_of([&] { app::validate(r); }), "--clip-skip must be between 1"));
    r = {};
    r.prompt = "a \xff\xfe cat";
    CHECK(test::has(test::error_of([&] { app::validate(r); }), "--prompt is not valid UTF-8"));
    CHECK(test::has(test::error_of([] { app::parse_parameters("a cat\nSteps: 1e9, Seed: 1", nullptr, nullptr); }),
                    "cannot read 'Steps: 1e9'"));
    CHECK(app::parse_parameters("a cat\nSteps: 25, Seed: 7, CFG scale: 6.5", nullptr, nullptr).steps == 25);
    // ((((...)))) 5,000 deep overflows the weight: refused with the reason, not a NaN picture.
    const std::string prompt = std::string(5000, '(') + "cat" + std::string(5000, ')');
    CHECK(test::has(test::error_of([&] { app::parse_prompt_attention(prompt); }), "outside -10000..10000"));
  }

  TEST_CASE("names resolve by one rule: inside before an outside twin, loops reported, entries capped") {
    const auto dir = test::scratch("model-files");
    const auto root = dir / "root", outside = dir / "outside";
    fs::create_directories(root / "loras" / "sub");
    fs::create_directories(outside);
    std::ofstream(root / "loras" / "x.safetensors") << "inside";
    std::ofstream(root / "loras" / "sub" / "decoy.safetensors") << "decoy";
    std::ofstream(outside / "x.safetensors") << "outside";
    std::ofstream(outside / "only.safetensors") << "outside";
    fs::create_directory_symlink(outside, root / "loras" / "a-link");  // sorts before x.safetensors
    fs::create_directory_symlink(root / "loras", root / "loras" / "sub" / "loop");
    const app::Confinement confine{{root.string()}};
    const auto folder = (root / "loras").string();
    CHECK(app::resolve_named_file("x", folder, "LoRA", confine) == (root / "loras" / "x.safetensors").string());
    CHECK(app::resolve_named_file("sub/decoy", folder, "LoRA", confine) == (root / "loras" / "sub" / "decoy.safetensors").string());
    const auto only = test::error_of([&] { app::resolve_named_file("only", folder, "LoRA", confine); });
    CHECK(test::has(only, "unknown LoRA 'only'"));
    CHECK(test::has(only, "leads outside the allowed folders"));
    CHECK(test::has(only, "symlink loop"));
    CHECK(test::has(test::error_of([&] { app::resolve_named_file((outside / "x.safetensors").string(), folder, "LoRA", confine); }),
                    "leads outside the models folders"));
    // Without confinement (the CLI, the GUI) links to other disks are followed, loops still once.
    const auto scan = app::scan_folder(folder, {".safetensors"});
    CHECK(scan.files.size() == 4);
    // An entry cap: a folder with more entries than the cap stops, and says so.
    const auto many = dir / "many";
    fs::create_directories(many);
    for (size_t i = 0; i <= app::kMaxScanEntries; ++i) std::ofstream(many / (std::to_string(i) + ".txt"));
    const auto capped = app::scan_folder(many.string(), {".safetensors"});
    REQUIRE(capped.skipped.size() == 1);
    CHECK(test::has(capped.skipped[0], "everything after the first"));
  }
}

TEST_SUITE("e2e.server_hardening") {
  TEST_CASE("1: a body nested 1,000,000 levels deep is a 400 at every endpoint, and the server lives") {
    test::ServeProcess s(test::scratch("hard-json"));
    for (const char* path : {"/sdapi/v1/txt2img", "/sdapi/v1/img2img", "/v1/jobs", "/sdapi/v1/options"}) {
      expect_status(s, path, nested_body(1000000), 400);
      expect_status(s, path, nested(1000000), 400);
    }
    // 50,000 levels: a short answer, not the whole value.
    expect_status(s, "/v1/jobs", "{\"steps\":" + nested(50000) + "}", 400);
    // Numbers JSON cannot hold and strings cut inside a character are client errors, not 500s.
    expect_status(s, "/sdapi/v1/txt2img", "{\"cfg_scale\": 1e400}", 400);
    auto c = s.client();
    json body = {{"prompt", "a red circle"}, {"steps", 2}, {"width", 64}, {"height", 64},
                 {"styles", {std::string(70, 'x') + "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"}}};
    int status = 0;
    const auto answer = test::post_json(c, "/sdapi/v1/txt2img", body, &status);
    CHECK(status == 200);
    CHECK(json::parse(json::parse(answer)["info"].get<std::string>())["not_honoured"].size() == 1);
    CHECK(s.healthy());
  }

  TEST_CASE("2: other origins, foreign Host names and non-JSON bodies are refused; job ids are unguessable") {
    test::ServeProcess s(test::scratch("hard-origin"));
    auto c = s.client();
    // A page elsewhere posting a "simple" request: text/plain with an Origin.
    httplib::Headers evil_origin = {{"Origin", "http://evil.example"}};
    auto r = c.Post("/v1/jobs", evil_origin, tiny_job().dump(), "text/plain");
    REQUIRE(r);
    CHECK(r->status == 403);
    r = c.Post("/sdapi/v1/options", evil_origin, json{{"sd_model_checkpoint", "sigma-shapes-flow"}}.dump(), "application/json");
    CHECK(r->status == 403);
    CHECK(test::body_json(c.Get("/sdapi/v1/options"))["sd_model_checkpoint"] == "sigma-shapes.safetensors");
    // text/plain without an Origin (no browser would): still not JSON.
    r = c.Post("/v1/jobs", tiny_job().dump(), "text/plain");
    CHECK(r->status == 415);
    // The server's own page: same origin.
    const std::string self = "http://127.0.0.1:" + std::to_string(s.port);
    r = c.Post("/v1/jobs", httplib::Headers{{"Origin", self}}, tiny_job().dump(), "application/json");
    CHECK(r->status == 202);
    // DNS rebinding: the attacker's name in Host.
    r = c.Get("/v1/models", httplib::Headers{{"Host", "evil.example:" + std::to_string(s.port)}});
    CHECK(r->status == 403);
    r = c.Get("/v1/models", httplib::Headers{{"Sec-Fetch-Site", "cross-site"}, {"Sec-Fetch-Mode", "cors"}});
    CHECK(r->status == 403);
    CHECK(c.Get("/v1/models", httplib::Headers{{"Host", "localhost:" + std::to_string(s.port)}})->status == 200);
    // Job ids: 128 random bits, not a counter.
    const auto a = json::parse(test::post_json(c, "/v1/jobs", tiny_job()))["id"].get<std::string>();
    const auto b = json::parse(test::post_json(c, "/v1/jobs", tiny_job()))["id"].get<std::string>();
    CHECK(std::regex_match(a, std::regex("[0-9a-f]{32}")));
    CHECK(a != b);
    CHECK(c.Get("/v1/jobs/1")->status == 404);
    CHECK(c.Get("/v1/jobs/00000000000000000000000000000001")->status == 404);
    CHECK(test::body_json(c.Get(("/v1/jobs/" + a).c_str()))["id"] == a);
    CHECK(s.healthy());
  }

  TEST_CASE("2: --allowed-hosts and --cors-origins open exactly what they name") {
    test::ServeProcess s(test::scratch("hard-cors"), "--allowed-hosts studio.lan --cors-origins http://app.example");
    auto c = s.client();
    CHECK(c.Get("/v1/models", httplib::Headers{{"Host", "studio.lan:7860"}})->status == 200);
    CHECK(c.Get("/v1/models", httplib::Headers{{"Host", "other.lan"}})->status == 403);
    auto r = c.Post("/v1/jobs", httplib::Headers{{"Origin", "http://app.example"}}, tiny_job().dump(), "application/json");
    CHECK(r->status == 202);
    CHECK(r->get_header_value("Access-Control-Allow-Origin") == "http://app.example");
    r = c.Options("/v1/jobs", httplib::Headers{{"Origin", "http://app.example"}, {"Access-Control-Request-Method", "POST"}});
    CHECK(r->status == 204);
    CHECK(r->get_header_value("Access-Control-Allow-Headers").find("Content-Type") != std::string::npos);
    CHECK(c.Post("/v1/jobs", httplib::Headers{{"Origin", "http://evil.example"}}, tiny_job().dump(), "application/json")->status == 403);
    CHECK(s.healthy());
  }

  TEST_CASE("3: LoRA and embedding names are resolved once, by the runner's rule: an outside twin never loads") {
    const auto dir = test::scratch("hard-symlinks");
    const auto outside = dir / "outside";
    fs::create_directories(outside / "embeddings");
    test::ServeProcess s(dir);
    fs::copy(test::sd15() + "/models/tiny-sd15-diffusers", s.models / "checkpoints" / "tiny", fs::copy_options::recursive);
    fs::create_directories(s.models / "loras");
    fs::create_directories(s.models / "embeddings");
    const std::string inside_lora = (s.models / "loras" / "x.safetensors").string();
    fs::copy_file(test::sd15() + "/lora/tiny-sd15-loha.safetensors", inside_lora);
    fs::copy_file(test::sd15() + "/lora/tiny-sd15-lokr.safetensors", outside / "x.safetensors");
    fs::copy_file(test::sd15() + "/lora/tiny-sd15-lokr.safetensors", outside / "only.safetensors");
    fs::create_directory_symlink(outside, s.models / "loras" / "a-link");  // sorts first
    fs::copy_file(test::sd15() + "/embeddings/tinyemb.safetensors", s.models / "embeddings" / "inemb.safetensors");
    fs::copy_file(test::sd15() + "/embeddings/tinyemb.safetensors", outside / "embeddings" / "outemb.safetensors");
    fs::create_symlink(outside / "embeddings" / "outemb.safetensors", s.models / "embeddings" / "outemb.safetensors");
    fs::create_directory_symlink(outside / "embeddings", s.models / "embeddings" / "linked");
    auto c = s.client();
    const std::string inside_hash = app::addnet_hash(inside_lora).substr(0, 12);
    const std::string outside_hash = app::addnet_hash((outside / "x.safetensors").string()).substr(0, 12);
    json j = tiny_job();
    j["model"] = "tiny";
    j["prompt"] = "a red circle <lora:x:1> inemb outemb embedding:outemb";
    int status = 0;
    const auto id = json::parse(test::post_json(c, "/v1/jobs", j, &status))["id"].get<std::string>();
    REQUIRE(status == 202);
    c.Get(("/v1/jobs/" + id + "/events").c_str());
    const auto done = test::body_json(c.Get(("/v1/jobs/" + id).c_str()));
    INFO(done.dump().substr(0, 1500));
    REQUIRE(done["state"] == "done");
    const std::string parameters = done["images"][0]["parameters"];
    CHECK(test::has(parameters, "x: " + inside_hash));
    CHECK_FALSE(test::has(parameters, outside_hash));
    CHECK(test::has(parameters, "inemb: "));
    CHECK_FALSE(test::has(parameters, "outemb: "));
    // The only match is outside: refused at admission, naming what was skipped.
    j["prompt"] = "a red circle <lora:only:1>";
    const auto refused = json::parse(test::post_json(c, "/v1/jobs", j, &status));
    CHECK(status == 400);
    CHECK(refused["field"] == "prompt");
    CHECK(test::has(refused["detail"].get<std::string>(), "leads outside"));
    CHECK_FALSE(test::has(refused["detail"].get<std::string>(), dir.string()));
    j = tiny_job();
    j["model"] = "tiny";
    j["lora"] = {"only"};
    test::post_json(c, "/v1/jobs", j, &status);
    CHECK(status == 400);
    CHECK(s.healthy());
  }

  TEST_CASE("4: mask blur has a bound; slow-drip clients cannot starve /healthz; symlink loops are reported") {
    const auto dir = test::scratch("hard-dos");
    test::ServeProcess s(dir);
    fs::create_directories(s.models / "loras" / "deep");
    fs::copy_file(test::sd15() + "/lora/tiny-sd15-loha.safetensors", s.models / "loras" / "deep" / "style.safetensors");
    fs::create_directory_symlink(s.models / "loras", s.models / "loras" / "deep" / "loop");
    auto c = s.client();
    const std::string png = server::base64_encode(app::encode_png(Image(64, 64, 3, 128)));
    json i2i = {{"prompt", "x"}, {"steps", 2}, {"width", 64}, {"height", 64}, {"init_images", {png}}, {"mask", png},
                {"mask_blur", 10000000}};
    int status = 0;
    auto answer = json::parse(test::post_json(c, "/sdapi/v1/img2img", i2i, &status));
    CHECK(status == 400);
    CHECK(answer["field"] == "mask_blur");
    json job = tiny_job();
    job["mask-blur"] = 65;
    answer = json::parse(test::post_json(c, "/v1/jobs", job, &status));
    CHECK(status == 400);
    CHECK(answer["field"] == "mask-blur");

    // The loop: listed once, quickly; an unknown name says what was skipped.
    const auto t0 = Clock::now();
    const auto loras = test::body_json(c.Get("/sdapi/v1/loras"));
    CHECK(seconds_since(t0) < 5);
    REQUIRE(loras.size() == 1);
    CHECK(loras[0]["name"] == "deep/style");
    job = tiny_job();
    job["prompt"] = "a red circle <lora:nothing:1>";
    answer = json::parse(test::post_json(c, "/v1/jobs", job, &status));
    CHECK(status == 400);
    CHECK(test::has(answer["detail"].get<std::string>(), "symlink loop"));
    CHECK(seconds_since(t0) < 10);

    // 40 clients dripping a header byte a second: each is dropped at the header deadline (5 s),
    // and /healthz answers meanwhile.
    std::atomic<int> dropped{0};
    std::vector<std::thread> drips;
    for (int i = 0; i < 40; ++i)
      drips.emplace_back([&, i] {
        RawConnection conn(s.port);
        const std::string request = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow-" + std::to_string(i) + ": " + std::string(30, 'a');
        for (char ch : request) {
          if (!conn.send_all(std::string(1, ch))) {
            ++dropped;
            return;
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(500));
          char probe;
          if (::recv(conn.fd, &probe, 1, MSG_DONTWAIT) == 0) {  // the server closed it
            ++dropped;
            return;
          }
        }
      });
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    for (int k = 0; k < 3; ++k) {
      const auto t = Clock::now();
      CHECK(s.healthy());
      CHECK(seconds_since(t) < 3);
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
    for (auto& t : drips) t.join();
    CHECK(dropped == 40);
    CHECK(s.healthy());
  }

  TEST_CASE("5: no ControlNet path in any output; client errors are 400s; bursts and pipelining are served") {
    const auto dir = test::scratch("hard-leaks");
    test::ServeProcess s(dir);
    fs::create_directories(s.models / "controlnet");
    fs::copy_file(test::source_dir() + "/assets/models/sigma-shapes-canny.safetensors", s.models / "controlnet" / "mine.safetensors");
    fs::create_directories(s.models / "loras" / "zz");
    fs::copy_file(test::sd15() + "/lora/tiny-sd15-loha.safetensors", s.models / "loras" / "zz" / "decoy.safetensors");
    auto c = s.client();
    const std::string png = server::base64_encode(app::encode_png(Image(64, 64, 3, 128)));
    json body = {{"prompt", "a red circle"}, {"steps", 2}, {"width", 64}, {"height", 64}, {"seed", 3},
                 {"alwayson_scripts", {{"controlnet", {{"args", {{{"model", "mine"}, {"image", png}, {"module", "canny"}}}}}}}}};
    int status = 0;
    const std::string answer = test::post_json(c, "/sdapi/v1/txt2img", body, &status);
    REQUIRE(status == 200);
    const std::string root = fs::canonical(s.models).string();
    CHECK_FALSE(test::has(answer, root));
    CHECK_FALSE(test::has(answer, "controlnet/mine"));
    CHECK(test::has(json::parse(answer)["info"].get<std::string>(), "Model: mine"));
    const auto image = test::decode_b64_png(json::parse(answer)["images"][0], dir / "cn.png");
    (void)image;
    const auto text = app::read_png_text((dir / "cn.png").string());
    CHECK_FALSE(test::has(text.at("parameters"), root));
    json job = tiny_job();
    job["control-net"] = {{{"model", "mine"}, {"image", png}}};
    const auto id = json::parse(test::post_json(c, "/v1/jobs", job, &status))["id"].get<std::string>();
    REQUIRE(status == 202);
    const std::string events = c.Get(("/v1/jobs/" + id + "/events").c_str())->body;
    CHECK_FALSE(test::has(events, root));
    CHECK_FALSE(test::has(c.Get(("/v1/jobs/" + id).c_str())->body, root));

    // Client errors: 400 naming the field, never a 500.
    auto field_of = [&](const json& b, const std::string& path) {
      const auto j = json::parse(test::post_json(c, path, b, &status));
      CHECK(status == 400);
      return j.value("field", std::string());
    };
    json clip = tiny_job();
    clip["override_settings"] = {{"CLIP_stop_at_last_layers", 1000}};
    clip.erase("seed");
    CHECK(field_of(clip, "/sdapi/v1/txt2img") == "override_settings.CLIP_stop_at_last_layers");
    json thr = body;
    thr["alwayson_scripts"]["controlnet"]["args"][0]["threshold_a"] = 1e308;
    CHECK(field_of(thr, "/sdapi/v1/txt2img") == "alwayson_scripts.controlnet.args");
    CHECK(field_of({{"sd_model_checkpoint", "loras/zz/decoy"}}, "/sdapi/v1/options") == "sd_model_checkpoint");
    // A LoRA listed with its subfolder is usable by that name.
    const auto loras = test::body_json(c.Get("/sdapi/v1/loras"));
    REQUIRE(loras.size() == 1);
    CHECK(loras[0]["name"] == "zz/decoy");
    json sub = tiny_job();
    sub["lora"] = {"zz/decoy"};
    test::post_json(c, "/v1/jobs", sub, &status);
    CHECK(status == 202);
    // Auth scheme names are case-insensitive (RFC 7235): checked on a server with a key below.

    // 32 clients at once: each gets an answer (200), none a reset.
    std::atomic<int> answered{0};
    std::vector<std::thread> burst;
    for (int i = 0; i < 32; ++i)
      burst.emplace_back([&] {
        auto k = s.client();
        auto r = k.Get("/sdapi/v1/samplers");
        if (r && (r->status == 200 || r->status == 429)) ++answered;
      });
    for (auto& t : burst) t.join();
    CHECK(answered == 32);
    // Two pipelined requests in one write: two answers.
    RawConnection conn(s.port);
    REQUIRE(conn.send_all("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"));
    CHECK(conn.read_until("HTTP/1.1 200", 2).find("HTTP/1.1 200", 20) != std::string::npos);
    CHECK(s.healthy());
  }

  TEST_CASE("5: server flags out of range are refused; auth schemes are case-insensitive") {
    for (const char* flags : {"--max-prompt-chunks 0", "--max-prompt-chunks -1", "--max-models 0", "--timeout -5", "--header-timeout 0"}) {
      const auto r = test::sigma_cli(std::string("serve --port 0 ") + flags);
      INFO(flags << ": " << r.output);
      CHECK(r.code == 1);
      CHECK(test::has(r.output, "must be between"));
    }
    test::ServeProcess s(test::scratch("hard-auth"), "--api-key s3cret");
    auto c = s.client();
    CHECK(c.Get("/v1/models", httplib::Headers{{"Authorization", "bearer s3cret"}})->status == 200);
    CHECK(c.Get("/v1/models", httplib::Headers{{"Authorization", "BEARER s3cret"}})->status == 200);
    CHECK(c.Get("/v1/models", httplib::Headers{{"Authorization", "bearer wrong"}})->status == 401);
    CHECK(s.healthy());
  }
}

TEST_SUITE("e2e.cli_hardening") {
  TEST_CASE("1: --from-png and sigma batch with 1,000,000-deep JSON fail with a message, not a crash") {
    const auto dir = test::scratch("cli-deep");
    write_png_with_request(dir / "deep.png", nested_body(1000000));
    auto r = test::sigma_cli("generate --from-png " + (dir / "deep.png").string() + " -o " + (dir / "out").string());
    INFO(r.output.substr(0, 500));
    CHECK(r.code == 1);
    CHECK(test::has(r.output, "nested deeper than 64 levels"));
    std::ofstream(dir / "jobs.jsonl") << nested_body(1000000) << "\n";
    r = test::sigma_cli("batch -q " + (dir / "jobs.jsonl").string() + " -o " + (dir / "out").string());
    CHECK(r.code == 1);
    CHECK(test::has(r.output, "nested deeper than 64 levels"));
    CHECK(r.output.size() < 4000);
  }

  TEST_CASE("4, 6: devices, unbounded values, bad text and unwritable folders are refused before generating") {
    const auto dir = test::scratch("cli-refusals");
    const std::string out = " -o " + (dir / "out").string();
    auto refused = [&](const std::string& args, const std::string& says) {
      const auto t0 = Clock::now();
      const auto r = test::sigma_cli("generate -q --steps 2 -W 64 -H 64 " + args);
      INFO(args << " -> " << r.output.substr(0, 600));
      CHECK(r.code == 1);
      CHECK(test::has(r.output, says));
      CHECK(seconds_since(t0) < 20);
    };
    refused("-p x -i /dev/zero" + out, "--init-img /dev/zero: not a regular file");
    std::ofstream(dir / "init.png", std::ios::binary) << app::encode_png(Image(64, 64, 3, 10));
    refused("-p x -i " + (dir / "init.png").string() + " --mask /dev/zero" + out, "--mask /dev/zero: not a regular file");
    refused("-p x --mask-blur 10000000 -i " + (dir / "init.png").string() + " --mask " + (dir / "init.png").string() + out,
            "--mask-blur must be between 0 and 64");
    refused("-p \"$(printf 'a \\377 cat')\"" + out, "--prompt is not valid UTF-8");
    fs::create_directories(dir / "locked");
    ::chmod((dir / "locked").c_str(), 0555);
    if (::geteuid() != 0) refused("-p x -o " + (dir / "locked" / "sub").string(), "cannot create the output folder");
    std::ofstream(dir / "afile") << "x";
    refused("-p x -o " + (dir / "afile" / "sub").string(), "cannot create the output folder");
    CHECK_FALSE(fs::exists(dir / "out"));
    // A1111 text with a number written in a way A1111 never writes: refused, not read as 1.
    std::ofstream(dir / "a1111.png", std::ios::binary)
        << app::encode_png(Image(8, 8, 3, 1), {{"parameters", "a cat\nSteps: 1e9, Sampler: Euler, Seed: 1, Size: 64x64"}});
    refused("--from-png " + (dir / "a1111.png").string() + out, "cannot read 'Steps: 1e9'");
    // A prompt whose brackets overflow: the reason, not "try --dtype fp32".
    refused("--dtype fp32 -p '" + std::string(200, '(') + "cat" + std::string(200, ')') + "'" + out, "outside -10000..10000");
    CHECK(test::has(test::sigma_cli("--help").output, "SDXL"));
  }

  TEST_CASE("6: a Flux transformer file alone names its missing parts and the flags that give them") {
    const auto dir = test::scratch("cli-flux");
    std::vector<std::pair<std::string, torch::Tensor>> tensors = {
        {"double_blocks.0.img_attn.qkv.weight", torch::zeros({6, 2})}, {"img_in.weight", torch::zeros({2, 4})}};
    models::save_safetensors((dir / "flux1-dev.safetensors").string(), tensors);
    const auto r = test::sigma_cli("generate -q -p x -m " + (dir / "flux1-dev.safetensors").string() + " -o " + (dir / "out").string());
    INFO(r.output);
    CHECK(r.code == 1);
    CHECK(test::has(r.output, "a Flux transformer without its other parts: no CLIP-L (--clip_l FILE), T5-XXL (--t5xxl FILE), VAE (--vae FILE)"));
    CHECK((!fs::exists(dir / "out") || fs::is_empty(dir / "out")));  // no picture, not a black one
  }
}

}  // namespace sigma
