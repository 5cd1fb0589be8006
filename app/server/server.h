// `sigma serve`: an HTTP server over app::JobRunner that keeps models loaded, speaks
// AUTOMATIC1111's /sdapi/v1 API and our own /v1 job API (with Server-Sent Events), and
// serves the web page (assets/web/index.html). docs/server.md describes it for users.
#pragma once

#include <atomic>
#include <cstddef>
#include <string>

namespace sigma::server {

struct ServeOptions {
  std::string listen = "127.0.0.1";
  int port = 7860;                 // 0: any free port (printed at start)
  std::string api_key;             // required for a non-loopback listen unless insecure
  bool insecure = false;
  std::string models_root;         // empty: $SIGMA_MODELS or ~/models
  std::string output = "outputs";  // every image is saved here, under names the server picks
  size_t max_queue = 16;
  size_t max_engines = 2;
  int max_prompt_chunks = 8;       // 75-token chunks per prompt
  size_t max_body_bytes = 64u << 20;
  int timeout_seconds = 30;        // read/write timeout of a connection (slow clients)
  int threads = 32;                // HTTP worker threads (each open event stream holds one)
};

// Runs until `stop` becomes true (the CLI sets it from SIGTERM/SIGINT), then stops taking
// jobs, cancels the queued ones, lets the running one stop after its step (nothing partial
// is written) and returns 0. Configuration errors throw std::invalid_argument.
int run_server(const ServeOptions& options, std::atomic<bool>& stop);

}  // namespace sigma::server
