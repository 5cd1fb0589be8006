// `sigma serve`: flags -> app/server's ServeOptions; SIGTERM/SIGINT end it cleanly (the
// server stops taking jobs, cancels the running one after its step, writes nothing partial).
#include <atomic>
#include <csignal>

#include "app/cli/cli.h"
#include "app/server/server.h"

namespace sigma::app {
namespace {

std::atomic<bool> g_stop_serving{false};
void on_stop_signal(int) { g_stop_serving = true; }

}  // namespace

void register_serve(CLI::App& app, CliState& state) {
  auto o = std::make_shared<server::ServeOptions>();
  auto* c = app.add_subcommand("serve", "HTTP server: AUTOMATIC1111-compatible API, job API with events, web page");
  c->option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  c->add_option("--listen", o->listen, "address to listen on; anything but loopback needs --api-key (or --insecure)")->default_val("127.0.0.1");
  c->add_option("--port", o->port, "port; 0 picks a free one (printed on stdout)")->default_val(7860);
  c->add_option("--api-key", o->api_key, "require 'Authorization: Bearer KEY' on every endpoint but /healthz "
                                         "(also as HTTP Basic auth with KEY as password)");
  c->add_flag("--insecure", o->insecure, "allow a non-loopback --listen without --api-key (prints a warning)");
  c->add_option("--models-root", o->models_root, "folder of checkpoints/, loras/, embeddings/, controlnet/ "
                                                 "(default: $SIGMA_MODELS or ~/models); the bundled model is always there");
  c->add_option("-o,--output", o->output, "folder for every image made (numbered names chosen by the server)")->default_val("outputs");
  c->add_option("--max-queue", o->max_queue, "jobs waiting at most; more are answered 429")->default_val(16);
  c->add_option("--max-models", o->max_engines, "models kept loaded (least recently used dropped)")->default_val(2);
  c->add_option("--max-prompt-chunks", o->max_prompt_chunks, "75-token chunks a prompt may have")->default_val(8);
  c->add_option("--timeout", o->timeout_seconds, "seconds a request's body may take to arrive, and each write")->default_val(30);
  c->add_option("--header-timeout", o->header_timeout_seconds, "seconds a request's line and headers may take to arrive (slow clients)")
      ->default_val(5);
  c->add_option("--threads", o->threads, "HTTP worker threads (each open event stream holds one)")->default_val(64);
  c->add_option("--allowed-hosts", o->allowed_hosts, "Host names the server answers besides its listen address and loopback "
                                                     "(e.g. a LAN name; '*' any); other Hosts get 403 (DNS rebinding)")
      ->delimiter(',')
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  c->add_option("--cors-origins", o->cors_origins, "web origins allowed to call the API from their pages (e.g. http://localhost:3000; "
                                                   "'*' any); other cross-origin requests get 403")
      ->delimiter(',')
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  c->add_option("--allowed-roots", o->allowed_roots, "folders outside the models root that its symlinks may lead to "
                                                     "(e.g. checkpoints -> /mnt/big/models: --allowed-roots /mnt/big/models)")
      ->delimiter(',')
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  c->callback([o, &state] {
    std::signal(SIGTERM, on_stop_signal);
    std::signal(SIGINT, on_stop_signal);
    std::signal(SIGPIPE, SIG_IGN);  // a client that hangs up must not end the server
    state.exit_code = server::run_server(*o, g_stop_serving);
  });
}

}  // namespace sigma::app
