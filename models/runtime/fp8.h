// The OCP 8-bit floats that fp8 checkpoints store (safetensors F8_E4M3 = float8_e4m3fn: bias 7,
// no infinities, S.1111.111 is NaN; F8_E5M2 = float8_e5m2: the top byte of an IEEE half), and
// weights kept in that form in memory, dequantized per layer (models/nn/layers.h's Linear):
// LibTorch 2.x converts its own fp8 types (torch_compat.h); 1.13 (Debian) has none and reads
// a 256-entry table.
#pragma once

#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <mutex>
#include <tuple>

#include "models/runtime/torch_compat.h"

namespace sigma::models {

inline float decode_f8(uint8_t b, bool e4m3) {
  const int sign = (b & 0x80) ? -1 : 1;
  if (e4m3) {
    const int e = (b >> 3) & 0xF, m = b & 0x7;
    if (e == 0xF && m == 0x7) return std::nanf("");
    if (e == 0) return static_cast<float>(sign * std::ldexp(m / 8.0, -6));
    return static_cast<float>(sign * std::ldexp(1.0 + m / 8.0, e - 7));
  }
  const int e = (b >> 2) & 0x1F, m = b & 0x3;
  if (e == 0x1F) return m ? std::nanf("") : sign * INFINITY;
  if (e == 0) return static_cast<float>(sign * std::ldexp(m / 4.0, -14));
  return static_cast<float>(sign * std::ldexp(1.0 + m / 4.0, e - 15));
}

// Stored fp8 bytes (kByte, any device) -> `dtype` on the same device, exactly (every fp8 value
// is a bfloat16, float16 and float32 value).
inline torch::Tensor decode_fp8(const torch::Tensor& bytes, bool e4m3, torch::ScalarType dtype) {
  if (auto native = compat::fp8_bytes_to(bytes, e4m3, dtype); native.defined()) return native;
  static std::mutex m;
  static std::map<std::tuple<bool, std::string, int>, torch::Tensor> tables;
  torch::Tensor table;
  {
    std::lock_guard<std::mutex> lock(m);
    auto& t = tables[{e4m3, bytes.device().str(), static_cast<int>(dtype)}];
    if (!t.defined()) {
      std::vector<float> values(256);
      for (int i = 0; i < 256; ++i) values[static_cast<size_t>(i)] = decode_f8(static_cast<uint8_t>(i), e4m3);
      t = torch::tensor(values).to(bytes.device(), dtype);
    }
    table = t;
  }
  return table.index_select(0, bytes.flatten().to(torch::kInt32)).view(bytes.sizes());
}

}  // namespace sigma::models
