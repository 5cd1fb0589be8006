// Shared helpers of the test suite: where the fixtures are, the device/dtype the
// conformance suites run on, relative error, and the per-case report lines.
#pragma once

#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <doctest/doctest.h>

namespace sigma::test {

// ../shared/fixtures beside the checkout, or $SIGMA_FIXTURES.
inline std::string fixtures() {
  if (const char* env = std::getenv("SIGMA_FIXTURES"); env && *env) return env;
  return SIGMA_DEFAULT_FIXTURES;
}
inline std::string sd15() { return fixtures() + "/sd15-tiny"; }
inline std::string source_dir() { return SIGMA_SOURCE_DIR; }

// Conformance suites run on $SIGMA_TEST_DEVICE (cpu|cuda) in $SIGMA_TEST_DTYPE (fp32|fp16|bf16).
inline torch::Device test_device() {
  const char* env = std::getenv("SIGMA_TEST_DEVICE");
  return (env && std::string(env) == "cuda") ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
}
inline torch::ScalarType test_dtype() {
  const char* env = std::getenv("SIGMA_TEST_DTYPE");
  const std::string s = env ? env : "fp32";
  if (s == "fp16") return torch::kFloat16;
  if (s == "bf16") return torch::kBFloat16;
  return torch::kFloat32;
}
// The fixture README's float32 tolerances; half precision carries ~1e-3 rounding per op:
// float16 within 1e-2 (about 20 units of its rounding, 2^-11), bfloat16 within the same 20
// units of its own (2^-8, 8 times float16's: 3 fewer mantissa bits).
inline double tolerance(double fp32_tol) {
  const auto dtype = test_dtype();
  return dtype == torch::kFloat32 ? fp32_tol : std::max(fp32_tol, dtype == torch::kBFloat16 ? 8e-2 : 1e-2);
}

// ‖ours − ref‖ / ‖ref‖, computed in float64 on the CPU.
inline double rel_error(const torch::Tensor& ours, const torch::Tensor& ref) {
  auto a = ours.detach().to(torch::kCPU, torch::kFloat64);
  auto b = ref.detach().to(torch::kCPU, torch::kFloat64);
  if (a.sizes() != b.sizes()) return INFINITY;
  return (a - b).norm().item<double>() / std::max(b.norm().item<double>(), 1e-30);
}

// One line per case and a closing "<name>: N/M cases within tolerance" line.
struct CaseReport {
  std::string name;
  int passed = 0, total = 0;
  explicit CaseReport(std::string n) : name(std::move(n)) {}
  bool add(const std::string& label, double err, double tol) {
    const bool ok = err <= tol;
    ++total;
    passed += ok;
    std::printf("  %-58s rel err %.3e  (tol %.0e)  %s\n", label.c_str(), err, tol, ok ? "ok" : "FAIL");
    return ok;
  }
  bool add_exact(const std::string& label, bool ok, const std::string& detail = "") {
    ++total;
    passed += ok;
    std::printf("  %-58s %s%s\n", label.c_str(), ok ? "exact" : "MISMATCH ", detail.c_str());
    return ok;
  }
  void close() const { std::printf("%s: %d/%d cases within tolerance\n", name.c_str(), passed, total); }
};

// The message of the std::invalid_argument that f throws ("" when it throws none).
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

// `sigma ARGS` run as a user runs it (stdout and stderr together), with its exit status.
struct CliRun {
  int code = -1;
  std::string output;
};
// A shell command (stdout and stderr together) with its exit status.
inline CliRun run_command(const std::string& command) {
  const std::string cmd = command + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) throw std::runtime_error("cannot start " + cmd);
  CliRun run;
  std::array<char, 4096> buf{};
  while (size_t n = fread(buf.data(), 1, buf.size(), p)) run.output.append(buf.data(), n);
  const int status = pclose(p);
  run.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}
inline CliRun sigma_cli(const std::string& args) { return run_command(std::string(SIGMA_CLI_PATH) + " " + args); }

// Checks that two modules hold the same parameters, by name and bit for bit.
inline void check_same_parameters(torch::nn::Module& a, torch::nn::Module& b) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  REQUIRE(pa.size() == pb.size());
  REQUIRE(pa.size() > 0);
  for (const auto& p : pa) {
    INFO(p.key());
    REQUIRE(pb.find(p.key()) != nullptr);
    CHECK(torch::equal(p.value(), pb[p.key()]));
  }
}

// Every parameter of a module, copied (to check later that it came back bit for bit).
inline std::map<std::string, torch::Tensor> snapshot_parameters(const torch::nn::Module& m) {
  std::map<std::string, torch::Tensor> s;
  for (const auto& p : m.named_parameters()) s[p.key()] = p.value().clone();
  return s;
}
// Names of the parameters that differ, bit for bit, from the snapshot.
inline std::vector<std::string> changed_parameters(const torch::nn::Module& m,
                                                   const std::map<std::string, torch::Tensor>& s) {
  std::vector<std::string> out;
  for (const auto& p : m.named_parameters())
    if (!torch::equal(p.value().cpu(), s.at(p.key()).cpu())) out.push_back(p.key());
  return out;
}

// Whether `text` contains `part` (messages and logs checked by their wording).
inline bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// A scratch folder under the build tree, emptied at first use.
inline std::filesystem::path scratch(const std::string& name) {
  auto p = std::filesystem::temp_directory_path() / ("sigma-tests-" + std::to_string(::getpid())) / name;
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p;
}

}  // namespace sigma::test
