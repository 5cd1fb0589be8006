// What the route files share (internal to app/server/): options, the catalog, the board,
// the handful of server-wide settings clients can change, and reply helpers.
#pragma once

#include <cstdint>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <mutex>
#include <optional>
#include <string>

#include "app/server/admit.h"
#include "app/server/board.h"
#include "app/server/catalog.h"
#include "app/server/server.h"

namespace sigma::server {

struct Context {
  ServeOptions options;
  std::unique_ptr<ModelCatalog> catalog;
  std::unique_ptr<JobBoard> board;
  std::optional<models::ClipTokenizer> tokenizer;  // counts prompt tokens
  std::string upload_root;                         // per-request folders of decoded images
  std::atomic<uint64_t> upload_seq{0};
  std::atomic<bool> stopping{false};
  std::string page;                                // GET /
  mutable std::mutex m;                            // guards the settings below
  std::string default_model;                       // resolved path; "" = bundled
  int64_t default_clip_skip = 1;

  AdmitContext admit_context();
};

void reply_json(httplib::Response& res, const nlohmann::json& j, int status = 200);
void reply_error(httplib::Response& res, int status, const std::string& message, const std::string& field = "");
// Parses the body as JSON; on failure replies 400 and returns nullopt.
std::optional<nlohmann::json> parse_body(const httplib::Request& req, httplib::Response& res);
// Runs `f`, turning BadRequest into 400, QueueFull into 429, NotAccepting into 503 and
// anything else into 500 (messages scrubbed of server paths).
void guarded(Context& ctx, httplib::Response& res, const std::function<void()>& f);
// PNG bytes of a result with its `parameters` and the client-safe `sigma-request`.
std::string result_png(const Context& ctx, const app::JobResult& r);

void add_a1111_routes(httplib::Server& http, Context& ctx);
void add_job_routes(httplib::Server& http, Context& ctx);

}  // namespace sigma::server
