// The fuzz targets that tokenize (prompt, tokenizer): the bundled CLIP vocabulary
// (assets/clip-bpe), loaded once per fuzzing process.
#pragma once

#include <string>

#include "models/text/clip_tokenizer.h"

namespace sigma::fuzz {

inline const models::ClipTokenizer& bundled_tokenizer() {
  static const auto tok = models::ClipTokenizer::from_files(std::string(SIGMA_SOURCE_DIR) + "/assets/clip-bpe/vocab.json",
                                                            std::string(SIGMA_SOURCE_DIR) + "/assets/clip-bpe/merges.txt");
  return tok;
}

}  // namespace sigma::fuzz
