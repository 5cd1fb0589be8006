#include "models/runtime/options.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <string>
#include <thread>

#include <time.h>
#include <unistd.h>

#include "models/runtime/torch_compat.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace sigma::models {

namespace {

std::optional<bool> env_switch(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  return std::string(v) != "0";
}

RuntimeOptions read_environment() {
  RuntimeOptions o;
  if (const char* env = std::getenv("SIGMA_THREADS")) o.threads = std::atoi(env);
  else if (const char* omp = std::getenv("OMP_NUM_THREADS")) o.threads = std::atoi(omp);
  for (const char* name : {"SIGMA_THREADS", "OMP_NUM_THREADS"})
    if (const char* v = std::getenv(name); v && std::atoi(v) > 0) o.threads_from_environment = true;
  o.trace_times = env_switch("SIGMA_TRACE_TIMES").value_or(false);
  o.cpu_bf16 = env_switch("SIGMA_CPU_BF16");
  o.cpu_kernels = env_switch("SIGMA_CPU_KERNELS").value_or(true);
  o.cuda_graphs = env_switch("SIGMA_CUDA_GRAPHS").value_or(true);
  if (const char* env = std::getenv("SIGMA_ATTENTION")) o.attention_math = std::string(env) == "math";
  o.clean_exit = env_switch("SIGMA_CLEAN_EXIT").value_or(false);
  if (const char* env = std::getenv("SIGMA_CUDA_MEMORY_FRACTION")) o.cuda_memory_fraction = env;
  return o;
}

}  // namespace

const RuntimeOptions& runtime_options() {
  static const RuntimeOptions options = read_environment();
  return options;
}

void init_runtime() {
  const int threads = runtime_options().threads.value_or(static_cast<int>(std::thread::hardware_concurrency()));
  if (threads > 0) at::set_num_threads(threads);
}

void trace_time(const std::string& what) {
  if (!runtime_options().trace_times) return;
  // /proc/self/stat's 22nd field: the start time in clock ticks since boot (CLOCK_BOOTTIME).
  std::ifstream stat("/proc/self/stat");
  std::string line;
  std::getline(stat, line);
  const auto after_name = line.rfind(')');
  if (after_name == std::string::npos) return;
  size_t pos = after_name + 2;  // field 3
  for (int field = 3; field < 22 && pos != std::string::npos; ++field) pos = line.find(' ', pos) + 1;
  timespec now{};
  clock_gettime(CLOCK_BOOTTIME, &now);
  const double started = std::atof(line.c_str() + pos) / static_cast<double>(sysconf(_SC_CLK_TCK));
  std::fprintf(stderr, "sigma: [%7.3f s] %s\n", double(now.tv_sec) + double(now.tv_nsec) * 1e-9 - started, what.c_str());
}

ScopedThreads::ScopedThreads(int n) : previous_(at::get_num_threads()) {
  if (n > 0 && n != previous_) at::set_num_threads(n);
}

ScopedThreads::~ScopedThreads() {
  if (at::get_num_threads() != previous_) at::set_num_threads(previous_);
}

namespace {

bool detect_bf16_units() {
#if defined(__x86_64__) || defined(__i386__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE)) return false;
  // XCR0: the OS must save the AVX-512 state (opmask, ZMM0-15 upper halves, ZMM16-31);
  // AMX tiles (bits 17-18) are requested per process by oneDNN itself.
  unsigned xcr0_lo = 0, xcr0_hi = 0;
  __asm__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  const bool os_avx512 = (xcr0_lo & 0xE6) == 0xE6;
  if (__get_cpuid_max(0, nullptr) < 7) return false;
  __cpuid_count(7, 0, a, b, c, d);
  const bool amx_bf16 = (d >> 22) & 1;     // CPUID.(7,0):EDX[22]
  const unsigned max_subleaf = a;
  bool avx512_bf16 = false;
  if (max_subleaf >= 1) {
    __cpuid_count(7, 1, a, b, c, d);
    avx512_bf16 = (a >> 5) & 1;            // CPUID.(7,1):EAX[5]
  }
  return os_avx512 && (amx_bf16 || avx512_bf16);
#else
  return false;  // aarch64 bf16 (BF16/SME) goes through other kernels; fp32 there until measured
#endif
}

}  // namespace

bool cpu_has_bf16_units() {
  static const bool has = runtime_options().cpu_bf16.value_or(detect_bf16_units());
  return has;
}

double available_memory_bytes(bool cuda) {
  if (cuda) {
    const auto [free, total] = compat::cuda_memory_info();
    const auto [reserved, allocated] = compat::cuda_reserved_allocated();
    double available = static_cast<double>(free) + (reserved - allocated);
    const double cap = compat::cuda_memory_fraction();
    if (cap < 1) available = std::min(available, cap * static_cast<double>(total) - allocated);
    return std::max(0.0, available);
  }
  std::ifstream meminfo("/proc/meminfo");
  for (std::string key; meminfo >> key;) {
    double kb = 0;
    if (key == "MemAvailable:" && meminfo >> kb) return kb * 1024;
    meminfo.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  return std::numeric_limits<double>::infinity();
}

}  // namespace sigma::models
