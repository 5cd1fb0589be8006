// `sigma`: a few-kilobyte launcher for `sigma-core`, the real command line (main.cpp).
// libgomp reads OMP_WAIT_POLICY once, when it is loaded, before any main() runs; its default
// (spin while waiting) makes LibTorch's threads fight every other thread for the cores (on
// 2 cores a generation ran 5-10x slower next to other work). sigma-core used to re-exec
// itself with the passive policy, which loaded LibTorch's ~290 shared libraries twice:
// 0.5-0.9 s of a 2 s first picture. This launcher links no LibTorch, sets the policy
// (unless the user chose one) and execs sigma-core beside it, at the cost of one tiny exec.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

int main(int argc, char** argv) {
  (void)argc;
  char self[4096];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  std::string core = "sigma-core";
  if (n > 0) {
    self[n] = '\0';
    std::string dir(self);
    dir.erase(dir.find_last_of('/') + 1);
    core = dir + "sigma-core";
  }
  setenv("OMP_WAIT_POLICY", "PASSIVE", 0);  // 0: a policy the user set stays
  execv(core.c_str(), argv);
  std::fprintf(stderr, "sigma: error: cannot run %s: %s (it is built and installed beside `sigma`)\n", core.c_str(),
               std::strerror(errno));
  return 1;
}
