// Shared by the fuzz targets: the input as a string, and what may be thrown. A parser may
// refuse any input with an exception derived from std::exception (that is its error path:
// a message for the user); anything else (a crash, a sanitizer report, a leak, a hang)
// is a finding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace sigma::fuzz {

inline std::string as_string(const uint8_t* data, size_t size) { return std::string(reinterpret_cast<const char*>(data), size); }

}  // namespace sigma::fuzz
