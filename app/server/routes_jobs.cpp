// Our own API: POST /v1/jobs (a job-file line), GET /v1/jobs/{id}, its event stream, its
// images, DELETE to cancel, and GET /v1/models.
#include <chrono>
#include <cstdint>
#include <filesystem>

#include "app/server/base64.h"
#include "app/server/context.h"

using json = nlohmann::json;

namespace sigma::server {

namespace {

json job_json(const ServerJob& j) {
  json images = json::array();
  for (size_t i = 0; i < j.results.size(); ++i)
    images.push_back({{"index", i}, {"seed", j.results[i]->seed}, {"parameters", j.results[i]->parameters},
                      {"url", "/v1/jobs/" + j.key + "/images/" + std::to_string(i)}});
  const double steps = std::max(1, j.total) * std::max(1, j.batches);
  const double progress = j.state == "done" ? 1.0 : (j.batch * std::max(1, j.total) + j.step) / steps;
  json out = {{"id", j.key}, {"state", j.state},  {"model", j.model},      {"step", j.step},
              {"total", j.total},           {"batch", j.batch},  {"batches", j.batches},  {"sigma", j.sigma},
              {"progress", progress},       {"eta_seconds", j.eta_seconds}, {"elapsed_seconds", j.elapsed_seconds},
              {"images", images},           {"warnings", j.warnings}};
  if (!j.error.empty()) out["error"] = j.error;
  return out;
}

// Job ids in paths are the board's random keys; an unknown one is 0, which no job has.
uint64_t job_id(const Context& ctx, const httplib::Request& req) { return ctx.board->find(req.matches[1].str()); }

}  // namespace

void add_job_routes(httplib::Server& http, Context& ctx) {
  http.Post("/v1/jobs", [&ctx](const httplib::Request& req, httplib::Response& res) {
    auto body = parse_body(req, res);
    if (!body) return;
    guarded(ctx, res, [&] {
      auto a = ctx.admit_context();
      ServerJob job;
      try {
        const auto r = job_request(*body, a, job.warnings);
        job.model = ctx.catalog->name_of(ModelCatalog::Kind::checkpoint, r.model);
        job.upload_dir = a.upload_dir;
        std::string key;
        ctx.board->submit(r, job, &key);
        reply_json(res, {{"id", key}, {"state", "queued"}, {"warnings", job.warnings},
                         {"status_url", "/v1/jobs/" + key},
                         {"events_url", "/v1/jobs/" + key + "/events"}}, 202);
      } catch (...) {
        std::error_code ec;
        std::filesystem::remove_all(a.upload_dir, ec);
        throw;
      }
    });
  });

  http.Get(R"(/v1/jobs/([0-9a-f]{32}))", [&ctx](const httplib::Request& req, httplib::Response& res) {
    const auto j = ctx.board->get(job_id(ctx, req));
    if (!j) return reply_error(res, 404, "no such job (finished jobs are remembered for a while only)");
    reply_json(res, job_json(*j));
  });

  http.Delete(R"(/v1/jobs/([0-9a-f]{32}))", [&ctx](const httplib::Request& req, httplib::Response& res) {
    const uint64_t id = job_id(ctx, req);
    const auto j = ctx.board->get(id);
    if (!j) return reply_error(res, 404, "no such job");
    if (j->terminal()) return reply_error(res, 409, "the job has already finished (" + j->state + ")");
    ctx.board->cancel(id);
    const auto now = ctx.board->wait(id, 0);  // a queued job is cancelled at once; a running one after its step
    reply_json(res, {{"id", j->key}, {"state", now ? now->state : "cancelled"}, {"cancelling", true}});
  });

  http.Get(R"(/v1/jobs/([0-9a-f]{32})/images/(\d{1,6}))", [&ctx](const httplib::Request& req, httplib::Response& res) {
    const auto j = ctx.board->get(job_id(ctx, req));
    const size_t n = std::stoul(req.matches[2].str());
    if (!j) return reply_error(res, 404, "no such job");
    if (n >= j->results.size()) return reply_error(res, 404, "no image " + std::to_string(n) + " (the job has " + std::to_string(j->results.size()) + " so far)");
    res.set_content(result_png(ctx, *j->results[n]), "image/png");
  });

  http.Get(R"(/v1/jobs/([0-9a-f]{32})/events)", [&ctx](const httplib::Request& req, httplib::Response& res) {
    const uint64_t id = job_id(ctx, req);
    if (!ctx.board->get(id)) return reply_error(res, 404, "no such job");
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");  // nginx: do not hold the stream back
    auto from = std::make_shared<size_t>(0);
    auto quiet = std::make_shared<int>(0);
    res.set_chunked_content_provider("text/event-stream", [&ctx, id, from, quiet](size_t, httplib::DataSink& sink) {
      std::vector<std::string> frames;
      const bool more = ctx.board->next_events(id, *from, frames, 1.0);
      for (const auto& f : frames)
        if (!sink.write(f.data(), f.size())) return false;  // the client went away
      if (frames.empty() && ++*quiet >= 10) {  // a comment every ~10 s keeps proxies from timing out
        *quiet = 0;
        if (!sink.write(": keep-alive\n\n", 14)) return false;
      }
      if (!more || ctx.stopping) sink.done();
      return true;
    });
  });

  http.Get("/v1/models", [&ctx](const httplib::Request&, httplib::Response& res) {
    auto list = [&](ModelCatalog::Kind k) {
      json a = json::array();
      for (const auto& e : ctx.catalog->list(k)) a.push_back({{"name", e.name}, {"file", e.file}, {"bundled", e.bundled}});
      return a;
    };
    std::string def;
    {
      std::lock_guard<std::mutex> l(ctx.m);
      def = ctx.catalog->name_of(ModelCatalog::Kind::checkpoint, ctx.default_model);
    }
    const auto snap = ctx.board->runner().snapshot();
    reply_json(res, {{"checkpoints", list(ModelCatalog::Kind::checkpoint)},
                     {"controlnets", list(ModelCatalog::Kind::controlnet)},
                     {"loras", list(ModelCatalog::Kind::lora)},
                     {"default", def},
                     {"loaded", snap.model ? json(snap.model->name) : json(nullptr)}});
  });
}

}  // namespace sigma::server
