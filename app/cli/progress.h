// The CLI's progress line on stderr: step/total, it/s, ETA. On a terminal it redraws
// one line; in a log (not a TTY) it prints a line at each quarter so logs stay short.
#pragma once

#include <chrono>
#include <cstdio>
#include <string>

namespace sigma::app {

class ProgressBar {
 public:
  explicit ProgressBar(FILE* out = stderr, bool enabled = true);
  // step of total done (1-based) for `label` (e.g. "image 2/4").
  void update(int step, int total, const std::string& label);
  void finish();  // ends the line
  static std::string format(int step, int total, double its, const std::string& label, int width = 24);

 private:
  FILE* out_;
  bool enabled_, tty_, open_ = false;
  std::string label_;
  int last_quarter_ = -1;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace sigma::app
