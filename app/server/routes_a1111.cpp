// AUTOMATIC1111's /sdapi/v1 endpoints (modules/api/api.py), answered in its shapes: txt2img
// and img2img block until the images are made, as A1111 does, while running through the
// same queue as our job API, so /progress and /interrupt see them.
#include <cstdint>
#include <ctime>
#include <filesystem>
#include <regex>

#include "app/image_io.h"
#include "app/parameters.h"
#include "app/server/base64.h"
#include "app/server/context.h"
#include "models/io/json_text.h"

using json = nlohmann::json;

namespace sigma::server {

namespace {

std::string model_title(const CatalogEntry& e) {
  return e.name + (std::filesystem::path(e.file).extension() == ".safetensors" ? ".safetensors" : "");
}

std::string field_of_parameters(const std::string& parameters, const std::string& key) {
  const std::regex re(key + ": ([^,\\n]+)");
  std::smatch m;
  return std::regex_search(parameters, m, re) ? m[1].str() : "";
}

// A1111's `info` (modules/processing.py Processed.js), plus our list of what was not honoured.
json info_json(const A1111Request& a, const ServerJob& j, const std::string& job_timestamp) {
  const auto& r = a.request;
  json seeds = json::array(), prompts = json::array(), negatives = json::array(), infotexts = json::array(), subseeds = json::array();
  for (const auto& res : j.results) {
    seeds.push_back(res->seed);
    subseeds.push_back(res->seed);
    prompts.push_back(r.prompt);
    negatives.push_back(r.negative);
    infotexts.push_back(res->parameters);
  }
  const std::string params = j.results.empty() ? "" : j.results[0]->parameters;
  const int64_t seed = j.results.empty() ? r.seed : j.results[0]->seed;
  json info = {
      {"prompt", r.prompt},
      {"all_prompts", prompts},
      {"negative_prompt", r.negative},
      {"all_negative_prompts", negatives},
      {"seed", seed},
      {"all_seeds", seeds},
      {"subseed", seed},
      {"all_subseeds", subseeds},
      {"subseed_strength", 0},
      {"width", r.width},
      {"height", r.height},
      {"sampler_name", app::a1111_sampler_name(r.sampler)},
      {"cfg_scale", r.cfg},
      {"steps", r.steps},
      {"batch_size", r.batch_size},
      {"restore_faces", false},
      {"face_restoration_model", nullptr},
      {"sd_model_name", j.model},
      {"sd_model_hash", field_of_parameters(params, "Model hash")},
      {"sd_vae_name", nullptr},
      {"sd_vae_hash", nullptr},
      {"seed_resize_from_w", -1},
      {"seed_resize_from_h", -1},
      {"denoising_strength", r.init_image.empty() ? json(nullptr) : json(r.strength)},
      {"extra_generation_params", {{"Schedule type", app::a1111_schedule_name(r.scheduler)}}},
      {"index_of_first_image", 0},
      {"infotexts", infotexts},
      {"styles", json::array()},
      {"job_timestamp", job_timestamp},
      {"clip_skip", r.clip_skip},
      {"is_using_inpainting_conditioning", false},
      {"version", "sigma-studio"},
      {"not_honoured", a.not_honoured},
  };
  if (j.state == "cancelled") info["interrupted"] = true;
  return info;
}

std::string timestamp() {
  char buf[32];
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  std::strftime(buf, sizeof buf, "%Y%m%d%H%M%S", &tm);
  return buf;
}

void generate(Context& ctx, const httplib::Request& req, httplib::Response& res, bool img2img) {
  auto body = parse_body(req, res);
  if (!body) return;
  guarded(ctx, res, [&] {
    auto a = ctx.admit_context();
    A1111Request t;
    uint64_t id = 0;
    try {
      t = a1111_request(*body, img2img, a);
      ServerJob job;
      job.warnings = t.not_honoured;
      job.model = ctx.catalog->name_of(ModelCatalog::Kind::checkpoint, t.request.model);
      job.upload_dir = a.upload_dir;
      id = ctx.board->submit(t.request, job);
    } catch (...) {
      std::error_code ec;
      std::filesystem::remove_all(a.upload_dir, ec);
      throw;
    }
    const std::string stamp = timestamp();
    std::optional<ServerJob> j;
    for (;;) {  // A1111 answers when the images are made; shutdown cancels the job, so this ends
      j = ctx.board->wait(id, 1.0);
      if (!j || j->terminal()) break;
    }
    if (!j) throw std::runtime_error("the job was lost");
    if (j->state == "failed") {
      reply_json(res, {{"error", "GenerationError"}, {"detail", ctx.catalog->scrub(j->error)}, {"body", ""},
                       {"errors", ctx.catalog->scrub(j->error)}}, 500);
      return;
    }
    json images = json::array();
    if (t.send_images)
      for (const auto& r : j->results) images.push_back(base64_encode(result_png(ctx, *r)));
    reply_json(res, {{"images", images}, {"parameters", t.echo}, {"info", info_json(t, *j, stamp).dump()}});
  });
}

}  // namespace

void add_a1111_routes(httplib::Server& http, Context& ctx) {
  http.Post("/sdapi/v1/txt2img", [&ctx](const httplib::Request& q, httplib::Response& s) { generate(ctx, q, s, false); });
  http.Post("/sdapi/v1/img2img", [&ctx](const httplib::Request& q, httplib::Response& s) { generate(ctx, q, s, true); });

  http.Get("/sdapi/v1/sd-models", [&ctx](const httplib::Request&, httplib::Response& res) {
    json a = json::array();
    for (const auto& e : ctx.catalog->list(ModelCatalog::Kind::checkpoint))
      a.push_back({{"title", model_title(e)}, {"model_name", e.name}, {"hash", nullptr}, {"sha256", nullptr},
                   {"filename", e.file}, {"config", nullptr}});
    reply_json(res, a);
  });

  http.Get("/sdapi/v1/samplers", [](const httplib::Request&, httplib::Response& res) {
    json a = json::array();
    for (const auto& s : app::sampler_catalog())
      a.push_back({{"name", app::a1111_sampler_name(s.name)}, {"aliases", {s.name}}, {"options", json::object()}});
    reply_json(res, a);
  });

  http.Get("/sdapi/v1/schedulers", [](const httplib::Request&, httplib::Response& res) {
    json a = json::array({{{"name", "automatic"}, {"label", "Automatic"}, {"aliases", nullptr}, {"default_rho", -1}, {"need_inner_model", false}}});
    for (const auto& s : app::schedule_catalog()) {
      if (s.name == "custom") continue;  // needs a σ list, which the A1111 API cannot carry
      a.push_back({{"name", s.name}, {"label", app::a1111_schedule_name(s.name)}, {"aliases", nullptr},
                   {"default_rho", s.name == "karras" ? 7.0 : -1.0}, {"need_inner_model", false}});
    }
    reply_json(res, a);
  });

  http.Get("/sdapi/v1/loras", [&ctx](const httplib::Request&, httplib::Response& res) {
    json a = json::array();
    for (const auto& e : ctx.catalog->list(ModelCatalog::Kind::lora))
      a.push_back({{"name", e.name}, {"alias", e.name}, {"path", e.file}, {"metadata", json::object()}});
    reply_json(res, a);
  });

  http.Get("/sdapi/v1/options", [&ctx](const httplib::Request&, httplib::Response& res) {
    std::lock_guard<std::mutex> l(ctx.m);
    std::string title = "sigma-shapes.safetensors";
    for (const auto& e : ctx.catalog->list(ModelCatalog::Kind::checkpoint))
      if ((ctx.default_model.empty() && e.name == "sigma-shapes") || (!ctx.default_model.empty() && e.path == ctx.default_model))
        title = model_title(e);
    reply_json(res, {{"sd_model_checkpoint", title}, {"sd_checkpoint_hash", nullptr},
                     {"CLIP_stop_at_last_layers", ctx.default_clip_skip}, {"samples_format", "png"},
                     {"outdir_samples", ""}, {"save_images_add_number", true}});
  });

  http.Post("/sdapi/v1/options", [&ctx](const httplib::Request& req, httplib::Response& res) {
    auto body = parse_body(req, res);
    if (!body) return;
    guarded(ctx, res, [&] {
      if (!body->is_object()) throw BadRequest("body", "the body must be a JSON object of option names and values");
      std::optional<std::string> model;
      std::optional<int64_t> clip;
      std::string ignored;
      for (auto it = body->begin(); it != body->end(); ++it) {
        if (it.key() == "sd_model_checkpoint") {
          if (!it.value().is_string()) throw BadRequest("sd_model_checkpoint", "sd_model_checkpoint: expected a string");
          model = ctx.catalog->resolve(ModelCatalog::Kind::checkpoint, it.value().get<std::string>(), "sd_model_checkpoint");
        } else if (it.key() == "CLIP_stop_at_last_layers") {
          if (!it.value().is_number_integer() || it.value().get<int64_t>() < 1)
            throw BadRequest("CLIP_stop_at_last_layers", "CLIP_stop_at_last_layers: expected an integer of 1 or more");
          clip = it.value().get<int64_t>();
        } else {
          ignored += (ignored.empty() ? "" : ",") + it.key();  // A1111 has hundreds of options; these do nothing here
        }
      }
      {
        std::lock_guard<std::mutex> l(ctx.m);
        if (model) ctx.default_model = *model;
        if (clip) ctx.default_clip_skip = *clip;
      }
      if (model) {  // A1111 loads at once; we queue the load so the next job finds it loaded
        app::Request r;
        r.model = *model;
        ctx.board->load(r);
      }
      if (!ignored.empty()) res.set_header("X-Sigma-Ignored-Options", models::utf8_prefix(ignored, 1000));
      reply_json(res, nullptr);
    });
  });

  http.Get("/sdapi/v1/progress", [&ctx](const httplib::Request& req, httplib::Response& res) {
    const bool skip_image = req.get_param_value("skip_current_image") == "true";
    const uint64_t id = ctx.board->running();
    std::optional<ServerJob> j;
    if (id) j = ctx.board->get(id);
    const size_t waiting = ctx.board->runner().queued();
    json state = {{"skipped", false}, {"interrupted", false}, {"stopping_generation", false}, {"job", ""},
                  {"job_count", waiting + (j ? 1 : 0)}, {"job_timestamp", "0"}, {"job_no", 0},
                  {"sampling_step", j ? j->step : 0}, {"sampling_steps", j ? j->total : 0}};
    double progress = 0, eta = 0;
    json image = nullptr;
    if (j) {
      state["job"] = "job " + j->key;
      state["job_no"] = j->batch;
      const double steps = std::max(1, j->total) * std::max(1, j->batches);
      progress = (j->batch * std::max(1, j->total) + j->step) / steps;
      eta = std::max(0.0, j->eta_seconds);
      if (j->preview && !skip_image) image = base64_encode(app::encode_png(*j->preview));
    }
    reply_json(res, {{"progress", progress}, {"eta_relative", eta}, {"state", state}, {"current_image", image},
                     {"textinfo", nullptr}, {"current_task", j ? json("task(" + j->key + ")") : json(nullptr)}});
  });

  http.Post("/sdapi/v1/interrupt", [&ctx](const httplib::Request&, httplib::Response& res) {
    // A1111 stops the job that runs now; queued requests go on.
    if (const uint64_t id = ctx.board->running()) ctx.board->cancel(id);
    reply_json(res, nullptr);
  });
}

}  // namespace sigma::server
