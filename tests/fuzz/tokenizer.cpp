// The CLIP BPE tokenizer (models/text/clip_tokenizer.h) on arbitrary bytes, valid UTF-8 or not:
// encode, encode_padded, decode of what was encoded, and decode of arbitrary ids.
#include "models/text/clip_tokenizer.h"
#include "tests/fuzz/fuzz_common.h"
#include "tests/fuzz/fuzz_tokenizer.h"


extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)sigma::fuzz::bundled_tokenizer();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 4096) return -1;
  const auto& tok = sigma::fuzz::bundled_tokenizer();
  const std::string text = sigma::fuzz::as_string(data, size);
  const auto ids = tok.encode(text);
  for (int id : ids)
    if (id < 0 || static_cast<size_t>(id) >= tok.vocab_size()) __builtin_trap();
  const auto padded = tok.encode_padded(text, 77);
  if (padded.size() != 77 || padded.front() != tok.bos()) __builtin_trap();
  (void)tok.decode(ids);
  // Ids straight from the bytes: in range they decode, out of range they must throw.
  std::vector<int> raw;
  for (size_t i = 0; i + 3 < size && raw.size() < 64; i += 4) {
    int v = 0;
    for (int k = 0; k < 4; ++k) v = (v << 8) | data[i + k];
    raw.push_back(v % static_cast<int>(tok.vocab_size() + 16));
  }
  try {
    (void)tok.decode(raw);
  } catch (const std::exception&) {
  }
  return 0;
}
