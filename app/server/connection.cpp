#include "app/server/connection.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace sigma::server {

namespace {

using Clock = std::chrono::steady_clock;

void address_of(socket_t fd, bool peer, std::string& ip, int& port) {
  sockaddr_storage a{};
  socklen_t n = sizeof a;
  if ((peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&a), &n) : ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n)) != 0)
    return;
  char text[INET6_ADDRSTRLEN] = {};
  if (a.ss_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&a);
    ::inet_ntop(AF_INET, &v4->sin_addr, text, sizeof text);
    port = ntohs(v4->sin_port);
  } else if (a.ss_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&a);
    ::inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text);
    port = ntohs(v6->sin6_port);
  }
  ip = text;
}

// poll() for `events` until `until`; false on timeout or error.
bool wait_for(socket_t fd, short events, Clock::time_point until) {
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 1000)));
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) return false;
  }
}

// A connection's bytes, buffered across its requests (pipelined requests stay in the buffer),
// with one deadline for all of a request's header reads and another for its body's.
class DeadlineStream : public httplib::Stream {
 public:
  DeadlineStream(socket_t fd, const ConnectionLimits& limits) : fd_(fd), limits_(limits) {}

  // The next request starts: its request line and headers must arrive within the header deadline.
  void begin_request() {
    in_headers_ = true;
    line_length_ = 0;
    lines_ = 0;
    deadline_ = Clock::now() + limits_.header_deadline;
  }
  // Waits up to `idle` for the next request's first byte; false when none comes or the server stops.
  bool wait_for_request(std::chrono::milliseconds idle, const std::atomic<socket_t>& listening) {
    const auto until = Clock::now() + idle;
    while (pos_ == end_) {
      if (listening == INVALID_SOCKET) return false;
      const auto slice = std::min(until, Clock::now() + std::chrono::milliseconds(200));
      if (wait_for(fd_, POLLIN, slice)) return true;
      if (Clock::now() >= until) return false;
    }
    return true;
  }

  bool is_readable() const override { return pos_ < end_ || wait_for(fd_, POLLIN, deadline_); }
  bool is_writable() const override { return wait_for(fd_, POLLOUT, Clock::now() + limits_.write); }

  ssize_t read(char* ptr, size_t size) override {
    if (pos_ == end_) {
      if (!wait_for(fd_, POLLIN, deadline_)) return -1;
      ssize_t got;
      do got = ::recv(fd_, buffer_, sizeof buffer_, 0);
      while (got < 0 && errno == EINTR);
      if (got <= 0) return got;
      pos_ = 0;
      end_ = static_cast<size_t>(got);
    }
    const size_t n = std::min(size, end_ - pos_);
    std::memcpy(ptr, buffer_ + pos_, n);
    if (in_headers_) watch_headers(ptr, n);
    pos_ += n;
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (!is_writable()) return -1;
    ssize_t sent;
    do sent = ::send(fd_, ptr, size, MSG_NOSIGNAL);
    while (sent < 0 && errno == EINTR);
    return sent;
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override { address_of(fd_, true, ip, port); }
  void get_local_ip_and_port(std::string& ip, int& port) const override { address_of(fd_, false, ip, port); }
  socket_t socket() const override { return fd_; }

 private:
  // The empty line that ends the headers starts the body's deadline.
  void watch_headers(const char* p, size_t n) {
    for (size_t i = 0; i < n && in_headers_; ++i) {
      if (p[i] == '\n') {
        if (line_length_ == 0 && lines_ > 0) {
          in_headers_ = false;
          deadline_ = Clock::now() + limits_.body_deadline;
        }
        ++lines_;
        line_length_ = 0;
      } else if (p[i] != '\r') {
        ++line_length_;
      }
    }
  }

  socket_t fd_;
  const ConnectionLimits& limits_;
  char buffer_[16384];
  size_t pos_ = 0, end_ = 0;
  Clock::time_point deadline_ = Clock::now();
  bool in_headers_ = true;
  size_t line_length_ = 0, lines_ = 0;
};

}  // namespace

void HttpServer::widen_backlog() {
  const socket_t fd = svr_sock_;
  if (fd != INVALID_SOCKET) ::listen(fd, SOMAXCONN);  // listen() again only changes the backlog
}

bool HttpServer::process_and_close_socket(socket_t sock) {
  DeadlineStream stream(sock, limits_);
  bool ok = false;
  for (size_t left = limits_.max_requests; left > 0; --left) {
    if (!stream.wait_for_request(limits_.idle, svr_sock_)) break;
    stream.begin_request();
    bool closed = false;
    ok = process_request(stream, /*close_connection=*/left == 1, closed, nullptr);
    if (!ok || closed) break;
  }
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  return ok;
}

}  // namespace sigma::server
