// T5's SentencePiece tokenizer (models/text/t5_tokenizer.h): the first byte picks what the rest
// is. Even: text for the bundled vocabulary (encode, encode_padded: ids in range, </s> last).
// Odd: a model file (--t5-tokenizer takes any file a user names): it loads or throws
// std::runtime_error, and a model that loads encodes a short text within its own ids.
#include <stdexcept>

#include "models/text/t5_tokenizer.h"
#include "tests/fuzz/fuzz_common.h"

namespace {
const sigma::models::T5Tokenizer& bundled() {
  static const auto t = sigma::models::T5Tokenizer::from_file(SIGMA_SOURCE_DIR "/assets/t5-tokenizer/spiece.model");
  return t;
}
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)bundled();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > 8192) return -1;
  const std::string rest = sigma::fuzz::as_string(data + 1, size - 1);
  if (data[0] % 2 == 0) {
    const auto& tok = bundled();
    const auto ids = tok.encode(rest);
    if (ids.empty() || ids.back() != sigma::models::T5Tokenizer::kEos) __builtin_trap();
    for (int id : ids)
      if (id < 0 || id >= tok.vocab_size()) __builtin_trap();
    const auto padded = tok.encode_padded(rest, 16);
    if (padded.size() != 16) __builtin_trap();
    return 0;
  }
  try {
    const auto tok = sigma::models::T5Tokenizer::from_bytes(rest, "fuzz.model");
    for (int id : tok.encode("a photograph of an astronaut, 4k <extra_id_3> </s>"))
      if (id < 0 || id >= tok.vocab_size()) __builtin_trap();
  } catch (const std::runtime_error&) {
  }
  return 0;
}
