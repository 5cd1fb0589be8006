// A real `sigma serve` for the server suites: started on a free port (--port 0; the port is
// read from its first stdout line), talked to with cpp-httplib's client, stopped with
// SIGTERM at the end (the exit status is checked where it matters).
#pragma once

#include <httplib.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "app/image_io.h"
#include "app/server/base64.h"
#include "tests/support.h"

namespace sigma::test {

struct ServeProcess {
  pid_t pid = -1;
  int port = 0;
  std::filesystem::path dir, out, models, log;

  // `extra`: more flags. `dir` gets models/ (the root), out/ (outputs) and serve.log.
  explicit ServeProcess(const std::filesystem::path& scratch_dir, const std::string& extra = "") : dir(scratch_dir) {
    out = dir / "out";
    models = dir / "models";
    log = dir / "serve.log";
    std::filesystem::create_directories(models / "checkpoints");
    start("--port 0 --models-root " + models.string() + " -o " + out.string() + " " + extra);
  }
  ServeProcess(const ServeProcess&) = delete;
  ~ServeProcess() {
    if (pid > 0) stop();
  }

  void start(const std::string& args) {
    int fd[2];
    REQUIRE(pipe(fd) == 0);
    pid = fork();
    if (pid == 0) {
      dup2(fd[1], 1);
      close(fd[0]);
      const std::string cmd = "exec " + std::string(SIGMA_CLI_PATH) + " serve " + args + " 2>" + log.string();
      execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    close(fd[1]);
    std::string line;
    char c;
    while (read(fd[0], &c, 1) == 1 && c != '\n') line += c;
    close(fd[0]);
    const auto at = line.rfind(':');
    INFO("sigma serve said: " << line << " / log: " << log_text());
    REQUIRE(line.find("listening on http://127.0.0.1:") != std::string::npos);
    port = std::stoi(line.substr(at + 1));
  }

  // SIGTERM and wait (up to 120 s); the exit status, or -1.
  int stop() {
    if (pid <= 0) return -1;
    kill(pid, SIGTERM);
    int status = 0;
    for (int i = 0; i < 1200; ++i) {
      if (waitpid(pid, &status, WNOHANG) == pid) {
        pid = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    pid = -1;
    return -1;
  }

  std::string log_text() const {
    std::ifstream in(log);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  httplib::Client client(const std::string& key = "") const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(300, 0);
    c.set_connection_timeout(10, 0);
    if (!key.empty()) c.set_bearer_token_auth(key.c_str());
    return c;
  }
  bool healthy() const {
    auto c = client();
    auto r = c.Get("/healthz");
    return r && r->status == 200;
  }
};

inline nlohmann::json body_json(const httplib::Result& r) {
  REQUIRE(r);
  try {
    return nlohmann::json::parse(r->body);
  } catch (const std::exception&) {
    FAIL("not JSON: " << r->body.substr(0, 300));
  }
  return {};
}

inline std::string post_json(httplib::Client& c, const std::string& path, const nlohmann::json& j, int* status = nullptr) {
  auto r = c.Post(path.c_str(), j.dump(), "application/json");
  REQUIRE(r);
  if (status) *status = r->status;
  return r->body;
}

// A base64 PNG -> Image (through a file, as every other test reads images).
inline Image decode_b64_png(const std::string& b64, const std::filesystem::path& scratch_file) {
  const auto bytes = server::base64_decode(b64);
  REQUIRE(bytes);
  std::ofstream(scratch_file, std::ios::binary) << *bytes;
  return app::load_image(scratch_file.string(), 3);
}

inline size_t count_files(const std::filesystem::path& dir) {
  size_t n = 0;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec); !ec && it != std::filesystem::recursive_directory_iterator(); ++it)
    if (it->is_regular_file()) ++n;
  return n;
}

}  // namespace sigma::test
