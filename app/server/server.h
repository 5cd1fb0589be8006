// `sigma serve`: an HTTP server over app::JobRunner that keeps models loaded, speaks
// AUTOMATIC1111's /sdapi/v1 API and our own /v1 job API (with Server-Sent Events), and
// serves the web page (assets/web/index.html). docs/server.md describes it for users.
#pragma once

#include <atomic>
#include <cstddef>
#include <string>
#include <vector>

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
  int timeout_seconds = 30;        // a request's body must arrive within this (and each write)
  int header_timeout_seconds = 5;  // a request's line and headers must arrive within this
  int threads = 64;                // HTTP worker threads (each open event stream holds one)
  // Browsers and DNS rebinding (docs/server.md, "Threat model"): the Host names a request may
  // carry besides the listen address and loopback names, and the cross-origin pages allowed
  // to call the API ("*" allows any). Empty: only this server's own page.
  std::vector<std::string> allowed_hosts;
  std::vector<std::string> cors_origins;
  // Folders outside the models root that names may lead into through symlinks (a
  // `checkpoints -> /mnt/big/models` link), as ComfyUI's extra_model_paths allows.
  std::vector<std::string> allowed_roots;
};

// Runs until `stop` becomes true (the CLI sets it from SIGTERM/SIGINT), then stops taking
// jobs, cancels the queued ones, lets the running one stop after its step (nothing partial
// is written) and returns 0. Configuration errors throw std::invalid_argument.
int run_server(const ServeOptions& options, std::atomic<bool>& stop);

}  // namespace sigma::server
