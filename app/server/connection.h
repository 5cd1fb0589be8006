// How `sigma serve` reads its connections. cpp-httplib 0.11 (Debian's) gives each read its own
// timeout and nothing more, so a client that drips one header byte every few seconds holds a
// worker thread for as long as it likes: 40 of them took /healthz down for 45 s before any
// authentication ran (issue 25). It also polls the socket, not its own buffer, between
// keep-alive requests, so pipelined requests already read were dropped, and it listens with a
// backlog of 5, so a burst of clients saw resets.
//
// HttpServer is httplib::Server with its own connection loop (httplib's process_request does
// the parsing and routing): one buffered stream per connection, a total deadline for a
// request's request line and headers and another for its body, keep-alive that sees buffered
// bytes, and the kernel's listen backlog.
#pragma once

#include <httplib.h>

#include <chrono>

namespace sigma::server {

struct ConnectionLimits {
  std::chrono::milliseconds header_deadline{5000};  // request line + headers, from the request's first byte
  std::chrono::milliseconds body_deadline{30000};   // the whole body, once the headers are in
  std::chrono::milliseconds idle{5000};             // keep-alive wait for the next request
  std::chrono::milliseconds write{30000};           // each write
  size_t max_requests = 100;                        // per connection
};

class HttpServer : public httplib::Server {
 public:
  explicit HttpServer(ConnectionLimits limits) : limits_(limits) {}
  // After bind_to_port / bind_to_any_port: the kernel's largest listen backlog instead of 5.
  void widen_backlog();

 private:
  // Overrides httplib's private virtual (overriding needs no access to it).
  bool process_and_close_socket(socket_t sock) override;
  ConnectionLimits limits_;
};

}  // namespace sigma::server
