// Base64 as A1111 clients send images: standard alphabet, padding optional, and an optional
// `data:image/png;base64,` prefix (browsers' data URLs). Decoding is strict otherwise, so a
// corrupt upload is a 400 that names the field rather than a garbled picture.
#pragma once

#include <optional>
#include <string>

namespace sigma::server {

std::string base64_encode(const std::string& bytes);
// nullopt when `text` is not base64 (after stripping a data-URL prefix and whitespace).
std::optional<std::string> base64_decode(const std::string& text);

}  // namespace sigma::server
