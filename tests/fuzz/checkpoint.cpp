// Checkpoint layout + family detection (models/families/checkpoint.h) from a header alone.
// Input: a safetensors JSON header. The harness writes a file with that header and a
// zero-filled data buffer as long as the header's largest end offset (up to 4 MB), then
// opens it as a model: reader, kind checks (ControlNet, LoRA, VAE, ...), family detection,
// key maps and every network's configuration from the shapes.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "models/families/checkpoint.h"
#include "tests/fuzz/fuzz_common.h"

namespace {

std::string file_path() {
  const char* dir = std::getenv("TMPDIR");
  static const std::string p = std::string(dir && *dir ? dir : "/tmp") + "/sigma-fuzz-checkpoint-" +
                               std::to_string(::getpid()) + ".safetensors";
  return p;
}

uint64_t data_size_of(const std::string& header) {
  uint64_t end = 0;
  const auto j = nlohmann::json::parse(header, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return 0;
  for (const auto& [k, v] : j.items()) {
    if (!v.is_object() || !v.contains("data_offsets")) continue;
    const auto& off = v["data_offsets"];
    if (off.is_array() && off.size() == 2 && off[1].is_number_unsigned()) end = std::max(end, off[1].get<uint64_t>());
  }
  return end;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  torch::set_num_threads(1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > (256u << 10)) return -1;
  const std::string header = sigma::fuzz::as_string(data, size);
  const uint64_t data_size = data_size_of(header);
  if (data_size > (4u << 20)) return -1;
  {
    std::ofstream out(file_path(), std::ios::binary | std::ios::trunc);
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>((uint64_t(size) >> (8 * i)) & 0xFF);
    out.write(reinterpret_cast<const char*>(len), 8);
    out.write(header.data(), static_cast<std::streamsize>(header.size()));
    const std::string zeros(data_size, '\0');
    out.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
  }
  try {
    const auto ck = sigma::models::open_checkpoint(file_path());
    (void)ck.description.describe();
  } catch (const std::exception&) {
  }
  try {
    (void)sigma::models::open_vae_file(file_path());
  } catch (const std::exception&) {
  }
  return 0;
}
