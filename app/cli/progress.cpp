#include "app/cli/progress.h"

#include <unistd.h>

namespace sigma::app {

ProgressBar::ProgressBar(FILE* out, bool enabled) : out_(out), enabled_(enabled), tty_(::isatty(::fileno(out)) != 0) {}

std::string ProgressBar::format(int step, int total, double its, const std::string& label, int width) {
  const int filled = total > 0 ? step * width / total : 0;
  std::string bar;
  for (int i = 0; i < width; ++i) bar += i < filled ? "\xe2\x96\x88" : "\xc2\xb7";  // █ and ·
  char buf[160];
  const double eta = its > 0 ? (total - step) / its : 0;
  if (its >= 1 || its == 0) std::snprintf(buf, sizeof buf, " %d/%d  %.2f it/s  ETA %.1fs", step, total, its, eta);
  else std::snprintf(buf, sizeof buf, " %d/%d  %.2f s/it  ETA %.1fs", step, total, 1.0 / its, eta);
  return label + " " + bar + buf;
}

void ProgressBar::update(int step, int total, const std::string& label) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (!open_ || label != label_) {
    if (open_) finish();
    start_ = now;
    label_ = label;
    open_ = true;
    last_quarter_ = -1;
  }
  const double secs = std::chrono::duration<double>(now - start_).count();
  const double its = secs > 0 ? step / secs : 0;
  if (tty_) {
    std::fprintf(out_, "\r\033[K%s", format(step, total, its, label).c_str());
    std::fflush(out_);
  } else {
    const int quarter = total > 0 ? step * 4 / total : 4;
    if (quarter != last_quarter_ && (quarter > last_quarter_)) {
      std::fprintf(out_, "%s\n", format(step, total, its, label).c_str());
      last_quarter_ = quarter;
    }
  }
}

void ProgressBar::finish() {
  if (enabled_ && open_ && tty_) std::fprintf(out_, "\n");
  open_ = false;
}

}  // namespace sigma::app
