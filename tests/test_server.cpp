// `sigma serve` end to end over loopback (issue 15): every endpoint with the bundled model,
// A1111 txt2img equal to `sigma generate`, event order, cancel, SIGTERM, queue limits.
#include <regex>

#include "app/parameters.h"
#include "app/server/base64.h"
#include "tests/server_support.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace sigma {
namespace {

// The same picture as the CLI: 128x128, 8 steps of DPM++ 2M Karras, seed 42.
json small_txt2img(const std::string& prompt = "a red circle on the left", int steps = 8) {
  return {{"prompt", prompt}, {"negative_prompt", ""}, {"seed", 42}, {"steps", steps}, {"width", 128}, {"height", 128},
          {"cfg_scale", 7}, {"sampler_name", "DPM++ 2M"}, {"scheduler", "Karras"}, {"batch_size", 1}, {"n_iter", 1},
          {"restore_faces", false}, {"tiling", false}, {"send_images", true}, {"save_images", false}};
}

// SSE frames "event: X\ndata: {...}" of a finished stream.
std::vector<std::pair<std::string, json>> parse_sse(const std::string& text) {
  std::vector<std::pair<std::string, json>> out;
  size_t at = 0;
  while (at < text.size()) {
    const auto end = text.find("\n\n", at);
    const std::string block = text.substr(at, end == std::string::npos ? std::string::npos : end - at);
    at = end == std::string::npos ? text.size() : end + 2;
    std::string event, data;
    std::istringstream lines(block);
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind("event: ", 0) == 0) event = line.substr(7);
      if (line.rfind("data: ", 0) == 0) data = line.substr(6);
    }
    if (!event.empty()) out.emplace_back(event, json::parse(data));
  }
  return out;
}

// Waits until the job reports a step (it runs), up to 60 s.
void wait_running(httplib::Client& c, const std::string& id) {
  for (int i = 0; i < 600; ++i) {
    auto j = test::body_json(c.Get(("/v1/jobs/" + id).c_str()));
    if (j["state"] == "running" && j["step"].get<int>() > 0) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  FAIL("job " << id << " never started");
}

}  // namespace

TEST_SUITE("e2e.server") {
  TEST_CASE("every read endpoint answers with the bundled model listed") {
    test::ServeProcess s(test::scratch("server-endpoints"));
    fs::create_directories(s.models / "loras" / "style");
    fs::copy_file(test::sd15() + "/lora/tiny-sd15-loha.safetensors", s.models / "loras" / "style" / "tiny-loha.safetensors");
    auto c = s.client();
    CHECK(test::body_json(c.Get("/healthz"))["status"] == "ok");
    auto page = c.Get("/");
    REQUIRE(page);
    CHECK(page->status == 200);
    CHECK(page->body.find("<html") != std::string::npos);
    auto models = test::body_json(c.Get("/sdapi/v1/sd-models"));
    REQUIRE(models.is_array());
    CHECK(models[0]["model_name"] == "sigma-shapes");
    CHECK(models[0]["title"] == "sigma-shapes.safetensors");
    auto samplers = test::body_json(c.Get("/sdapi/v1/samplers"));
    bool dpm = false;
    for (const auto& x : samplers) dpm |= x["name"] == "DPM++ 2M";
    CHECK(dpm);
    auto schedulers = test::body_json(c.Get("/sdapi/v1/schedulers"));
    bool karras = false;
    for (const auto& x : schedulers) karras |= x["label"] == "Karras" && x["name"] == "karras";
    CHECK(karras);
    auto loras = test::body_json(c.Get("/sdapi/v1/loras"));
    REQUIRE(loras.size() == 1);
    CHECK(loras[0]["name"] == "style/tiny-loha");
    CHECK(loras[0]["path"] == "loras/style/tiny-loha.safetensors");
    auto own = test::body_json(c.Get("/v1/models"));
    CHECK(own["default"] == "sigma-shapes");
    CHECK(own["controlnets"][0]["name"] == "sigma-shapes-canny");
    auto progress = test::body_json(c.Get("/sdapi/v1/progress"));
    CHECK(progress["progress"] == 0);
    CHECK(progress["current_image"].is_null());
    auto metrics = c.Get("/metrics");
    REQUIRE(metrics);
    CHECK(metrics->body.find("sigma_queue_length 0") != std::string::npos);
    CHECK(metrics->body.find("# TYPE sigma_jobs_total counter") != std::string::npos);

    // Options: switch the model (and back); an unknown one is a 400 naming the field.
    CHECK(test::body_json(c.Get("/sdapi/v1/options"))["sd_model_checkpoint"] == "sigma-shapes.safetensors");
    int status = 0;
    test::post_json(c, "/sdapi/v1/options", {{"sd_model_checkpoint", "sigma-shapes-flow.safetensors"}}, &status);
    CHECK(status == 200);
    CHECK(test::body_json(c.Get("/sdapi/v1/options"))["sd_model_checkpoint"] == "sigma-shapes-flow.safetensors");
    auto r = json::parse(test::post_json(c, "/sdapi/v1/txt2img", small_txt2img("a blue square", 4), &status));
    CHECK(status == 200);
    CHECK(json::parse(r["info"].get<std::string>())["sd_model_name"] == "sigma-shapes-flow");
    auto bad = json::parse(test::post_json(c, "/sdapi/v1/options", {{"sd_model_checkpoint", "no-such-model"}}, &status));
    CHECK(status == 400);
    CHECK(bad["field"] == "sd_model_checkpoint");
    test::post_json(c, "/sdapi/v1/options", {{"sd_model_checkpoint", "sigma-shapes"}}, &status);
    CHECK(status == 200);
    r = json::parse(test::post_json(c, "/sdapi/v1/txt2img", small_txt2img("a blue square", 4), &status));
    CHECK(json::parse(r["info"].get<std::string>())["sd_model_name"] == "sigma-shapes");
    CHECK(s.stop() == 0);
  }

  TEST_CASE("an A1111-shaped txt2img gives the pixels of `sigma generate` with the same settings") {
    const auto dir = test::scratch("server-txt2img");
    test::ServeProcess s(dir);
    auto c = s.client();
    auto body = small_txt2img();
    body["override_settings"] = {{"CLIP_stop_at_last_layers", 1}};
    body["subseed_strength"] = 0;
    body["enable_hr"] = false;
    body["restore_faces"] = true;  // accepted, not honoured: listed in info
    int status = 0;
    const auto res = json::parse(test::post_json(c, "/sdapi/v1/txt2img", body, &status));
    REQUIRE(status == 200);
    REQUIRE(res["images"].size() == 1);
    CHECK(res["parameters"]["prompt"] == "a red circle on the left");
    const auto info = json::parse(res["info"].get<std::string>());
    CHECK(info["seed"] == 42);
    CHECK(info["all_seeds"] == json::array({42}));
    CHECK(info["sampler_name"] == "DPM++ 2M");
    CHECK(info["infotexts"][0].get<std::string>().find("Seed: 42") != std::string::npos);
    REQUIRE(info["not_honoured"].size() == 1);
    CHECK(info["not_honoured"][0] == "restore_faces=true");
    const auto served = test::decode_b64_png(res["images"][0], dir / "served.png");
    CHECK(served.width == 128);
    CHECK(served.height == 128);
    const auto text = app::read_png_text((dir / "served.png").string());
    REQUIRE(text.count("parameters"));
    REQUIRE(text.count("sigma-request"));
    CHECK(text.at("sigma-request").find(dir.string()) == std::string::npos);  // no server paths in responses
    CHECK(test::count_files(s.out) == 1);  // saved under the output folder

    const auto cli = test::sigma_cli("generate -q -p \"a red circle on the left\" -s 42 --steps 8 -W 128 -H 128 --cfg 7 "
                                     "--sampler dpmpp_2m --scheduler karras -o " + (dir / "cli.png").string());
    INFO(cli.output);
    REQUIRE(cli.code == 0);
    const auto expected = app::load_image((dir / "cli.png").string(), 3);
    CHECK(served.pixels == expected.pixels);
    CHECK(s.stop() == 0);
  }

  TEST_CASE("img2img with a mask and a ControlNet unit in sd-webui-controlnet's shape") {
    const auto dir = test::scratch("server-img2img");
    test::ServeProcess s(dir);
    auto c = s.client();
    int status = 0;
    const auto first = json::parse(test::post_json(c, "/sdapi/v1/txt2img", small_txt2img("a red circle in the center", 6), &status));
    REQUIRE(status == 200);
    const std::string init = first["images"][0];
    Image mask(128, 128, 3, 0);
    for (int y = 0; y < 64; ++y)
      for (int x = 0; x < 128 * 3; ++x) mask.pixels[static_cast<size_t>(y) * 128 * 3 + x] = 255;
    const auto mask_b64 = server::base64_encode(app::encode_png(mask));
    json i2i = {{"prompt", "a blue square"}, {"init_images", {"data:image/png;base64," + init}}, {"mask", mask_b64},
                {"denoising_strength", 0.6}, {"steps", 6}, {"width", 128}, {"height", 128}, {"seed", 7},
                {"sampler_name", "Euler"}, {"scheduler", "automatic"}, {"mask_blur", 4}};
    auto res = json::parse(test::post_json(c, "/sdapi/v1/img2img", i2i, &status));
    INFO(res.dump().substr(0, 400));
    REQUIRE(status == 200);
    const auto out = test::decode_b64_png(res["images"][0], dir / "i2i.png");
    CHECK(out.width == 128);
    const auto params = json::parse(res["info"].get<std::string>())["infotexts"][0].get<std::string>();
    CHECK(params.find("Denoising strength: 0.6") != std::string::npos);
    CHECK(params.find("Mask blur: 4") != std::string::npos);
    // The unmasked lower half stays close to the init image; the masked upper half changes.
    const auto before = test::decode_b64_png(init, dir / "init.png");
    double top = 0, bottom = 0;
    for (size_t i = 0; i < out.pixels.size(); ++i) (i < out.pixels.size() / 2 ? top : bottom) += std::abs(int(out.pixels[i]) - int(before.pixels[i]));
    CHECK(top > bottom);

    json cn = small_txt2img("a green triangle", 6);
    cn["alwayson_scripts"] = {{"controlnet", {{"args", {{{"enabled", true}, {"module", "canny"}, {"model", "sigma-shapes-canny [abcdef12]"},
                                                        {"weight", 1.0}, {"image", init}, {"resize_mode", "Crop and Resize"},
                                                        {"guidance_start", 0.0}, {"guidance_end", 1.0}, {"threshold_a", 100},
                                                        {"threshold_b", 200}, {"low_vram", false}, {"processor_res", 512},
                                                        {"pixel_perfect", false}, {"control_mode", "Balanced"}}}}}}};
    res = json::parse(test::post_json(c, "/sdapi/v1/txt2img", cn, &status));
    INFO(res.dump().substr(0, 400));
    REQUIRE(status == 200);
    const auto with_cn = json::parse(res["info"].get<std::string>())["infotexts"][0].get<std::string>();
    CHECK(with_cn.find("ControlNet") != std::string::npos);
    cn["alwayson_scripts"]["controlnet"]["args"][0]["no_such_key"] = 1;
    res = json::parse(test::post_json(c, "/sdapi/v1/txt2img", cn, &status));
    CHECK(status == 400);
    CHECK(res["field"] == "alwayson_scripts.controlnet.args[0].no_such_key");
    CHECK(s.stop() == 0);
  }

  TEST_CASE("job API: events arrive in order, images carry metadata, a PNG's sigma-request runs again") {
    const auto dir = test::scratch("server-jobs");
    test::ServeProcess s(dir);
    auto c = s.client();
    int status = 0;
    const auto sub = json::parse(test::post_json(c, "/v1/jobs", {{"prompt", "a yellow star at the top"}, {"steps", 6}, {"seed", 3},
                                                               {"width", 128}, {"height", 128}}, &status));
    REQUIRE(status == 202);
    const std::string id = sub["id"];
    auto ev = c.Get(("/v1/jobs/" + id + "/events").c_str());
    REQUIRE(ev);
    CHECK(ev->get_header_value("Content-Type") == "text/event-stream");
    const auto events = parse_sse(ev->body);
    REQUIRE(events.size() >= 10);
    CHECK(events.front().first == "queued");
    CHECK(events[1].first == "started");
    CHECK(events.back().first == "done");
    int last_step = 0, previews = 0, images = 0;
    double last_sigma = 1e9;
    for (const auto& [name, data] : events) {
      if (name == "step") {
        CHECK(data["step"].get<int>() == last_step + 1);
        CHECK(data["sigma"].get<double>() < last_sigma);
        CHECK(data["step_seconds"].get<double>() > 0);
        last_step = data["step"];
        last_sigma = data["sigma"];
      }
      if (name == "preview") {
        ++previews;
        CHECK(data["image"].get<std::string>().rfind("data:image/png;base64,", 0) == 0);
      }
      if (name == "image") {
        ++images;
        CHECK(last_step == 6);  // after the last step
      }
    }
    CHECK(last_step == 6);
    CHECK(previews >= 1);
    CHECK(images == 1);
    auto state = test::body_json(c.Get(("/v1/jobs/" + id).c_str()));
    CHECK(state["state"] == "done");
    CHECK(state["progress"] == 1.0);
    auto png = c.Get(("/v1/jobs/" + id + "/images/0").c_str());
    REQUIRE(png);
    CHECK(png->get_header_value("Content-Type") == "image/png");
    const auto chunks = app::png_text_chunks(png->body, "served image");
    REQUIRE(chunks.count("sigma-request"));
    CHECK(chunks.at("parameters").find("Seed: 3") != std::string::npos);
    CHECK(c.Get(("/v1/jobs/" + id + "/images/1").c_str())->status == 404);
    CHECK(c.Get("/v1/jobs/999999")->status == 404);

    // The sigma-request of the served PNG (and of the saved file) is a valid job: same pixels.
    std::string saved;
    for (const auto& e : fs::directory_iterator(s.out)) saved = e.path().string();
    for (const std::string& req : {chunks.at("sigma-request"), app::read_png_text(saved).at("sigma-request")}) {
      const auto again = json::parse(test::post_json(c, "/v1/jobs", json::parse(req), &status));
      INFO(again.dump());
      REQUIRE(status == 202);
      c.Get(("/v1/jobs/" + again["id"].get<std::string>() + "/events").c_str());
      auto png2 = c.Get(("/v1/jobs/" + again["id"].get<std::string>() + "/images/0").c_str());
      REQUIRE(png2);
      std::ofstream(dir / "a.png", std::ios::binary) << png->body;
      std::ofstream(dir / "b.png", std::ios::binary) << png2->body;
      CHECK(app::load_image((dir / "a.png").string()).pixels == app::load_image((dir / "b.png").string()).pixels);
    }
    CHECK(s.stop() == 0);
  }

  TEST_CASE("cancel: a running job stops after its step, a queued one at once; /interrupt and /progress") {
    const auto dir = test::scratch("server-cancel");
    test::ServeProcess s(dir);
    auto c = s.client();
    int status = 0;
    const json long_job = {{"prompt", "a red ring"}, {"steps", 400}, {"width", 128}, {"height", 128}};
    const std::string a = json::parse(test::post_json(c, "/v1/jobs", long_job, &status))["id"];
    const std::string b = json::parse(test::post_json(c, "/v1/jobs", long_job, &status))["id"];
    wait_running(c, a);
    auto progress = test::body_json(c.Get("/sdapi/v1/progress"));
    CHECK(progress["progress"].get<double>() > 0);
    CHECK(progress["state"]["job_count"] == 2);
    CHECK(progress["state"]["sampling_steps"] == 400);
    for (int i = 0; i < 100 && progress["current_image"].is_null(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      progress = test::body_json(c.Get("/sdapi/v1/progress"));
    }
    CHECK(progress["current_image"].is_string());
    // The queued one first: cancelled at once.
    auto del = c.Delete(("/v1/jobs/" + b).c_str());
    REQUIRE(del);
    CHECK(del->status == 200);
    CHECK(test::body_json(c.Get(("/v1/jobs/" + b).c_str()))["state"] == "cancelled");
    CHECK(c.Delete(("/v1/jobs/" + b).c_str())->status == 409);
    // The running one: after its current step.
    CHECK(c.Delete(("/v1/jobs/" + a).c_str())->status == 200);
    auto events = parse_sse(c.Get(("/v1/jobs/" + a + "/events").c_str())->body);
    REQUIRE(!events.empty());
    CHECK(events.back().first == "cancelled");
    auto ja = test::body_json(c.Get(("/v1/jobs/" + a).c_str()));
    CHECK(ja["state"] == "cancelled");
    CHECK(ja["step"].get<int>() < 400);
    CHECK(ja["images"].empty());

    // A1111: /interrupt stops the running txt2img, whose request then answers without images.
    auto body = small_txt2img("a red ring", 400);
    std::thread interrupter([&] {
      auto c2 = s.client();
      for (int i = 0; i < 600; ++i) {
        auto p = test::body_json(c2.Get("/sdapi/v1/progress"));
        if (p["state"]["sampling_step"].get<int>() > 0) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      c2.Post("/sdapi/v1/interrupt", "", "application/json");
    });
    const auto res = json::parse(test::post_json(c, "/sdapi/v1/txt2img", body, &status));
    interrupter.join();
    CHECK(status == 200);
    CHECK(res["images"].empty());
    CHECK(json::parse(res["info"].get<std::string>())["interrupted"] == true);
    CHECK(test::count_files(s.out) == 0);  // nothing partial was saved
    auto metrics = c.Get("/metrics")->body;
    CHECK(metrics.find("sigma_jobs_total{state=\"cancelled\"} 3") != std::string::npos);
    CHECK(s.stop() == 0);
  }

  TEST_CASE("a full queue answers 429; SIGTERM mid-job exits 0 and leaves no partial file") {
    const auto dir = test::scratch("server-sigterm");
    test::ServeProcess s(dir, "--max-queue 1");
    auto c = s.client();
    int status = 0;
    const json long_job = {{"prompt", "a purple cross"}, {"steps", 1000}, {"width", 128}, {"height", 128}};
    const std::string a = json::parse(test::post_json(c, "/v1/jobs", long_job, &status))["id"];
    CHECK(status == 202);
    wait_running(c, a);
    test::post_json(c, "/v1/jobs", long_job, &status);
    CHECK(status == 202);  // waits behind the running one
    auto full = json::parse(test::post_json(c, "/v1/jobs", long_job, &status));
    CHECK(status == 429);
    CHECK(full["detail"].get<std::string>().find("queue is full") != std::string::npos);
    test::post_json(c, "/sdapi/v1/txt2img", small_txt2img(), &status);
    CHECK(status == 429);
    CHECK(c.Get("/metrics")->body.find("sigma_jobs_rejected_total 2") != std::string::npos);
    const auto t0 = std::chrono::steady_clock::now();
    CHECK(s.stop() == 0);
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20));
    CHECK(test::count_files(s.out) == 0);  // no PNG, no temporary
    CHECK(s.log_text().find("sigma serve: stopped") != std::string::npos);
  }
}

}  // namespace sigma
