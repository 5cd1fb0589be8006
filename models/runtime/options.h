// Process-wide LibTorch settings every Sigma Studio binary applies at start, and what the
// CPU can do fast.
#pragma once

#include <optional>
#include <string>

namespace sigma::models {

// Every environment variable the engine reads, read once (at first use, in
// models/runtime/options.cpp, the one place that reads them; docs/cli.md, "Environment").
// The thread count, SIGMA_TRACE_TIMES and the memory cap are settings; the others turn off a
// fast path (to measure it with `sigma bench`, or to step around it on a machine where it
// misbehaves). The finished A/B experiments' switches are gone (docs/performance.md,
// "Switches removed"). A switch is on unless its value is "0"; unset or empty keeps the default.
struct RuntimeOptions {
  std::optional<int> threads;             // SIGMA_THREADS, else OMP_NUM_THREADS, as given (unset: every core)
  bool threads_from_environment = false;  // either of them set to a positive count
  bool trace_times = false;               // SIGMA_TRACE_TIMES=1
  std::optional<bool> cpu_bf16;           // SIGMA_CPU_BF16=0/1: overrides what the CPU reports
  bool cpu_kernels = true;                // SIGMA_CPU_KERNELS=0: LibTorch's operators instead of ours
  bool cuda_graphs = true;                // SIGMA_CUDA_GRAPHS=0
  bool attention_math = false;            // SIGMA_ATTENTION=math: the written-out attention on LibTorch 2.x too
  bool clean_exit = false;                // SIGMA_CLEAN_EXIT=1: static destructors at the end of a command
  std::string cuda_memory_fraction;       // SIGMA_CUDA_MEMORY_FRACTION, checked where it is applied
};
const RuntimeOptions& runtime_options();

// LibTorch starts with 1 intra-op thread on these VMs (c10's cpuinfo default);
// use every core unless OMP_NUM_THREADS / SIGMA_THREADS say otherwise.
void init_runtime();

// With SIGMA_TRACE_TIMES=1: "sigma: [0.335 s] what" on stderr, the seconds since the process
// started (so LibTorch's own start-up is counted), at each stage of loading and generating.
// For finding where a cold command's time goes; nothing happens without the variable.
void trace_time(const std::string& what);

// Whether SIGMA_THREADS or OMP_NUM_THREADS chose the CPU thread count (then it is kept).
inline bool threads_from_environment() { return runtime_options().threads_from_environment; }

// While it lives, LibTorch's CPU work started from this thread uses `n` threads, then the
// count before. For work too small to split: the bundled model's steps at 128x128 take
// ~35% less wall time on one thread than on two, where handing tiny kernels to a second
// thread costs more than it saves (docs/performance.md, CPU).
class ScopedThreads {
 public:
  explicit ScopedThreads(int n);
  ~ScopedThreads();
  ScopedThreads(const ScopedThreads&) = delete;
  ScopedThreads& operator=(const ScopedThreads&) = delete;

 private:
  int previous_;
};

// Whether this CPU has bfloat16 matrix units that LibTorch's oneDNN kernels use: AMX-BF16
// (Sapphire Rapids and later) or AVX512-BF16 (Cooper Lake, Zen 4), with the OS saving their
// registers. There bf16 convolutions and matmuls run ~5x faster than fp32, so `--dtype auto`
// picks bf16 on the CPU; elsewhere bf16 is emulated and slower than fp32. SIGMA_CPU_BF16=0/1
// overrides the answer (to compare, or on a CPU that reports the units but runs them badly).
bool cpu_has_bf16_units();

// Bytes a new allocation can still get: on CUDA the driver's free memory plus what the caching
// allocator holds unused (within SIGMA_CUDA_MEMORY_FRACTION's cap); on the CPU the kernel's
// MemAvailable (infinity when /proc/meminfo cannot be read). For choices such as tiling the
// VAE before an allocation would fail, not as a guarantee.
double available_memory_bytes(bool cuda);

}  // namespace sigma::models
