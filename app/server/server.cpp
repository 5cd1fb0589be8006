// The server's frame: options checked, the HTTP library configured (limits, timeouts,
// threads, authentication), the simple routes, and an orderly shutdown. The A1111 routes
// are in routes_a1111.cpp, our job API in routes_jobs.cpp.
#include "app/server/server.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <unistd.h>

#include "app/image_io.h"
#include "app/parameters.h"
#include "app/process.h"
#include "app/server/base64.h"
#include "app/server/connection.h"
#include "app/server/context.h"
#include "models/io/json_text.h"

namespace sigma::app {
// app/engine.h (a LibTorch header) declares it; this library stays free of LibTorch headers.
std::string assets_dir();
}  // namespace sigma::app

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace sigma::server {

AdmitContext Context::admit_context() {
  AdmitContext a;
  a.catalog = catalog.get();
  a.output_dir = options.output;
  a.upload_dir = (fs::path(upload_root) / std::to_string(++upload_seq)).string();
  a.max_prompt_chunks = options.max_prompt_chunks;
  a.tokenizer = tokenizer ? &*tokenizer : nullptr;
  std::lock_guard<std::mutex> l(m);
  a.default_model = default_model;
  a.default_clip_skip = default_clip_skip;
  return a;
}

namespace {
const char* status_text(int status) {
  switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
  }
  return status >= 500 ? "Server Error" : "Client Error";
}
}  // namespace

void reply_json(httplib::Response& res, const json& j, int status) {
  res.status = status;
  // `replace`: a string with invalid UTF-8 (a client's, echoed) must not turn a finished
  // job's answer into a 500.
  res.set_content(j.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

void reply_error(httplib::Response& res, int status, const std::string& message, const std::string& field) {
  json j = {{"error", status_text(status)}, {"detail", message}};
  if (!field.empty()) j["field"] = field;
  reply_json(res, j, status);
}

std::optional<json> parse_body(const httplib::Request& req, httplib::Response& res) {
  try {
    return models::parse_json(req.body, "body");
  } catch (const models::JsonError& e) {
    reply_error(res, 400, e.what(), "body");
  }
  return std::nullopt;
}

void guarded(Context& ctx, httplib::Response& res, const std::function<void()>& f) {
  try {
    f();
  } catch (const BadRequest& e) {
    reply_error(res, 400, ctx.catalog->scrub(e.what()), e.field);
  } catch (const QueueFull& e) {
    res.set_header("Retry-After", "2");
    reply_error(res, 429, e.what());
  } catch (const NotAccepting& e) {
    reply_error(res, 503, e.what());
  } catch (const models::JsonError& e) {
    reply_error(res, 400, e.what(), "body");
  } catch (const json::exception& e) {
    reply_error(res, 400, std::string("body: ") + e.what(), "body");
  } catch (const std::exception& e) {
    reply_error(res, 500, ctx.catalog->scrub(e.what()));
  }
}

std::string result_png(const Context& ctx, const app::JobResult& r) {
  return app::encode_png(r.image, {{"parameters", r.parameters}, {"sigma-request", public_request(r.request, *ctx.catalog).dump()}});
}

namespace {

bool loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

bool wildcard(const std::string& host) { return host == "0.0.0.0" || host == "::" || host.empty(); }

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// The host part of a Host header ("127.0.0.1:7860", "[::1]:7860", "Example.org"), lower case.
std::string host_name(const std::string& header) {
  if (!header.empty() && header[0] == '[') return lower(header.substr(1, header.find(']') - 1));
  const auto colon = header.find(':');
  return lower(colon == std::string::npos || header.find(':', colon + 1) != std::string::npos ? header : header.substr(0, colon));
}

// Compares in time independent of where the strings differ.
bool same_secret(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  return diff == 0;
}

// `Authorization: Bearer KEY`, or A1111's --api-auth form `Basic base64(user:KEY)` (any user),
// which is also what a browser sends after its password prompt for the web page. Scheme
// names are case-insensitive (RFC 7235).
bool authorized(const httplib::Request& req, const std::string& key) {
  const auto h = req.get_header_value("Authorization");
  const auto space = h.find(' ');
  if (space == std::string::npos) return false;
  const auto start = h.find_first_not_of(' ', space);
  const std::string scheme = lower(h.substr(0, space)), value = start == std::string::npos ? "" : h.substr(start);
  if (scheme == "bearer") return same_secret(value, key);
  if (scheme == "basic") {
    const auto decoded = base64_decode(value);
    if (!decoded) return false;
    const auto colon = decoded->find(':');
    return colon != std::string::npos && same_secret(decoded->substr(colon + 1), key);
  }
  return false;
}

// Who may talk to the server from a browser (docs/server.md, "Threat model"). A page of
// another origin can send "simple" requests (text/plain POSTs, no preflight) to a loopback
// server, and a DNS-rebinding page reads answers under its own host name: so the Host must
// name this server, a cross-origin Origin needs --cors-origins, and bodies must be JSON.
struct BrowserPolicy {
  std::string listen;
  std::vector<std::string> hosts, origins;

  bool host_allowed(const std::string& header) const {
    if (header.empty()) return true;  // not a browser: browsers always send Host
    const std::string h = host_name(header);
    if (loopback(h) || h == lower(listen) || (wildcard(listen) && hosts.empty())) return true;
    for (const auto& a : hosts)
      if (a == "*" || lower(a) == h) return true;
    return false;
  }
  // Listed in --cors-origins (which then also gets the CORS answer headers).
  bool cors_listed(const std::string& origin) const {
    for (const auto& o : origins)
      if (o == "*" || lower(o) == lower(origin)) return true;
    return false;
  }
  bool origin_allowed(const httplib::Request& req) const {
    if (!req.has_header("Origin")) {
      // No Origin: not a browser, a same-origin GET, or a no-cors GET (answers unreadable).
      // Fetch metadata still tells a cross-site subresource request; navigations are fine.
      const auto site = req.get_header_value("Sec-Fetch-Site");
      return site.empty() || site == "same-origin" || site == "none" || req.get_header_value("Sec-Fetch-Mode") == "navigate";
    }
    const std::string origin = req.get_header_value("Origin");
    const std::string host = req.get_header_value("Host");
    return lower(origin) == "http://" + lower(host) || lower(origin) == "https://" + lower(host) || cors_listed(origin);
  }
};

// JSON endpoints take JSON: a browser's cross-origin "simple" POST can only be text/plain,
// form-encoded or multipart. An empty body may come without a type (POST /sdapi/v1/interrupt).
// Checked from the headers: this runs before the body is read.
bool json_body(const httplib::Request& req) {
  if (req.method != "POST" && req.method != "PUT" && req.method != "PATCH") return true;
  const std::string type = lower(req.get_header_value("Content-Type"));
  const std::string length = req.get_header_value("Content-Length");
  const bool has_body = req.has_header("Transfer-Encoding") || (!length.empty() && length != "0");
  if (type.empty()) return !has_body;
  return type == "application/json" || type.rfind("application/json;", 0) == 0 || type.rfind("application/json ", 0) == 0;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

int run_server(const ServeOptions& opts_in, std::atomic<bool>& stop) {
  Context ctx;
  ctx.options = opts_in;
  auto& o = ctx.options;
  if (o.port < 0 || o.port > 65535) throw std::invalid_argument("--port must be 0..65535 (0: any free port)");
  if (o.max_queue < 1) throw std::invalid_argument("--max-queue must be 1 or more");
  if (o.max_engines < 1 || o.max_engines > 64) throw std::invalid_argument("--max-models must be between 1 and 64 (models kept loaded)");
  if (o.max_prompt_chunks < 1 || o.max_prompt_chunks > 1000)
    throw std::invalid_argument("--max-prompt-chunks must be between 1 and 1000 (75-token chunks a prompt may have)");
  if (o.timeout_seconds < 1 || o.timeout_seconds > 3600) throw std::invalid_argument("--timeout must be between 1 and 3600 seconds");
  if (o.header_timeout_seconds < 1 || o.header_timeout_seconds > 600)
    throw std::invalid_argument("--header-timeout must be between 1 and 600 seconds");
  if (o.threads < 4 || o.threads > 1024) throw std::invalid_argument("--threads must be between 4 and 1024");
  if (!loopback(o.listen) && o.api_key.empty()) {
    if (!o.insecure)
      throw std::invalid_argument("--listen " + o.listen + " is reachable from other machines: give --api-key KEY "
                                  "(clients send 'Authorization: Bearer KEY'), or --insecure to serve without one");
    std::fprintf(stderr, "sigma serve: WARNING: listening on %s without --api-key: anyone who can reach this port can "
                         "run jobs and read every image\n", o.listen.c_str());
  }
  if (o.models_root.empty()) o.models_root = app::models_root();
  fs::create_directories(o.output);
  o.output = fs::canonical(o.output).string();
  const fs::path assets = app::assets_dir();
  ctx.catalog = std::make_unique<ModelCatalog>(o.models_root, (assets / "models").string(), o.allowed_roots);
  ctx.catalog->add_scrub(o.output, "<output>");
  ctx.upload_root = (fs::temp_directory_path() / ("sigma-serve-" + std::to_string(::getpid()))).string();
  fs::create_directories(ctx.upload_root);
  ctx.catalog->add_scrub(ctx.upload_root, "<upload>");
  try {
    ctx.tokenizer = models::ClipTokenizer::from_files((assets / "clip-bpe" / "vocab.json").string(),
                                                     (assets / "clip-bpe" / "merges.txt").string());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sigma serve: warning: no CLIP vocabulary (%s); prompt lengths are capped by characters only\n", e.what());
  }
  ctx.page = read_file(assets / "web" / "index.html");
  BoardOptions bo;
  bo.output_dir = o.output;
  bo.max_queue = o.max_queue;
  bo.max_engines = o.max_engines;
  bo.scrub = [cat = ctx.catalog.get()](const std::string& m) { return cat->scrub(m); };
  ctx.board = std::make_unique<JobBoard>(bo);

  ConnectionLimits limits;
  limits.header_deadline = std::chrono::seconds(o.header_timeout_seconds);
  limits.body_deadline = std::chrono::seconds(o.timeout_seconds);
  limits.write = std::chrono::seconds(o.timeout_seconds);
  HttpServer http(limits);
  http.new_task_queue = [n = o.threads] { return new httplib::ThreadPool(static_cast<size_t>(n)); };
  http.set_payload_max_length(o.max_body_bytes);  // larger bodies: 413 before they are read
  const std::string key = o.api_key;
  const BrowserPolicy browser{o.listen, o.allowed_hosts, o.cors_origins};
  http.set_pre_routing_handler([key, browser](const httplib::Request& req, httplib::Response& res) {
    using R = httplib::Server::HandlerResponse;
    const std::string host = req.get_header_value("Host");
    if (!browser.host_allowed(host)) {
      reply_error(res, 403, "Host '" + models::utf8_prefix(host, 80) + "' is not a name of this server (a DNS-rebinding page?); "
                                "start the server with --allowed-hosts NAME to serve it under that name");
      return R::Handled;
    }
    if (!browser.origin_allowed(req)) {
      reply_error(res, 403, "cross-origin request from '" + models::utf8_prefix(req.get_header_value("Origin"), 80) +
                                "' refused; start the server with --cors-origins ORIGIN to let that page use the API");
      return R::Handled;
    }
    const std::string origin = req.get_header_value("Origin");
    if (!origin.empty() && browser.cors_listed(origin)) {
      res.set_header("Access-Control-Allow-Origin", origin);
      res.set_header("Vary", "Origin");
      if (req.method == "OPTIONS") {  // the preflight of a listed origin
        res.set_header("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS");
        res.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type");
        res.set_header("Access-Control-Max-Age", "600");
        res.status = 204;
        return R::Handled;
      }
    }
    if (!key.empty() && req.path != "/healthz" && !authorized(req, key)) {
      res.set_header("WWW-Authenticate", "Basic realm=\"sigma serve\"");
      reply_error(res, 401, "missing or wrong API key: send 'Authorization: Bearer KEY'");
      return R::Handled;
    }
    if (!json_body(req)) {
      reply_error(res, 415, "this endpoint takes a JSON body: send 'Content-Type: application/json'", "body");
      return R::Handled;
    }
    return R::Unhandled;
  });
  http.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string detail = res.status == 413   ? "the request body is larger than this server's limit"
                         : res.status == 404 ? "no such endpoint"
                                             : status_text(res.status);
    reply_error(res, res.status, detail);
  });
  http.set_exception_handler([&ctx](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      reply_error(res, 500, ctx.catalog->scrub(e.what()));
      return;
    } catch (...) {
    }
    reply_error(res, 500, "internal error");
  });

  http.Get("/healthz", [&ctx](const httplib::Request&, httplib::Response& res) {
    reply_json(res, {{"status", ctx.stopping ? "stopping" : "ok"}}, ctx.stopping ? 503 : 200);
  });
  http.Get("/metrics", [&ctx](const httplib::Request&, httplib::Response& res) {
    res.set_content(ctx.board->metrics(), "text/plain; version=0.0.4");
  });
  http.Get("/", [&ctx](const httplib::Request&, httplib::Response& res) {
    if (ctx.page.empty()) return reply_error(res, 404, "the web page (assets/web/index.html) is missing from this installation");
    res.set_content(ctx.page, "text/html; charset=utf-8");
  });
  add_a1111_routes(http, ctx);
  add_job_routes(http, ctx);

  int port = o.port;
  if (port == 0) port = http.bind_to_any_port(o.listen);
  else if (!http.bind_to_port(o.listen, port)) port = -1;
  if (port <= 0) throw std::invalid_argument("cannot listen on " + o.listen + ":" + std::to_string(o.port) + " (in use, or not an address of this machine)");
  http.widen_backlog();  // a burst of clients waits in the kernel's queue instead of being reset
  std::thread listener([&http] { http.listen_after_bind(); });
  const std::string host = o.listen.find(':') != std::string::npos ? "[" + o.listen + "]" : o.listen;
  std::printf("sigma serve: listening on http://%s:%d\n", host.c_str(), port);
  std::fflush(stdout);
  std::fprintf(stderr, "sigma serve: models root %s, output %s, queue %zu\n", ctx.catalog->root().c_str(), o.output.c_str(), o.max_queue);

  while (!stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(50));

  // Shutdown: no new jobs, queued ones dropped, the running one stops after its current step
  // (the runner writes an image only once it is complete, atomically), then the HTTP side.
  std::fprintf(stderr, "sigma serve: stopping: no new jobs; cancelling the queue and the running job\n");
  ctx.stopping = true;
  ctx.board->stop_accepting();
  ctx.board->cancel_all();
  ctx.board->wait_idle(600);
  http.stop();
  listener.join();
  ctx.board.reset();
  std::error_code ec;
  fs::remove_all(ctx.upload_root, ec);
  std::fprintf(stderr, "sigma serve: stopped\n");
  return 0;
}

}  // namespace sigma::server
