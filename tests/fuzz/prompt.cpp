// The A1111 prompt parser (app/prompt.h): attention weights ( ) [ ] (x:1.2), BREAK,
// backslash escapes, <lora:...> and other extra-network tags, embedding:NAME, then the
// tokenizer and 75-token chunking with emphasis on and off.
#include <cmath>

#include "app/prompt.h"
#include "app/request.h"
#include "tests/fuzz/fuzz_common.h"
#include "tests/fuzz/fuzz_tokenizer.h"


extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)sigma::fuzz::bundled_tokenizer();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sigma::app;
  if (size > 8192) return -1;
  const std::string prompt = sigma::fuzz::as_string(data, size);
  try {
    for (const auto& w : parse_prompt_attention(prompt))
      if (std::isnan(w.weight)) __builtin_trap();  // parsed weights are numbers (validation refuses the rest)
  } catch (const std::exception&) {
  }
  std::vector<ExtraNetworkTag> tags;
  try {
    const std::string stripped = strip_extra_networks(prompt, &tags);
    if (stripped.size() > prompt.size()) __builtin_trap();
    for (const auto& t : tags) {
      if (t.type == "lora" && !t.items.empty()) {
        std::string ref = t.items[0];
        if (t.items.size() > 1) ref += ":" + t.items[1];
        try {
          (void)parse_lora_ref(ref);
        } catch (const std::invalid_argument&) {
        }
      }
    }
  } catch (const std::exception&) {
  }
  try {  // the request's one read: every tag's recorded place holds that tag's text
    Request r;
    r.prompt = prompt;
    const auto p = read_prompts(r);
    for (const auto& t : p.positive.tags)
      if (t.begin + t.length > prompt.size() || prompt[t.begin] != '<' || prompt[t.begin + t.length - 1] != '>') __builtin_trap();
  } catch (const std::invalid_argument&) {  // a tag strength that is not a number
  }
  try {
    const std::string text = prompt_text(prompt);
    for (bool emphasis : {true, false}) {
      auto chunks = tokenize_prompt(sigma::fuzz::bundled_tokenizer(), text, emphasis);
      if (chunks.ids.empty() || chunks.ids.size() != chunks.weights.size()) __builtin_trap();
      pad_to_chunks(chunks, chunks.ids.size() + 1, sigma::fuzz::bundled_tokenizer());
      for (int n : chunk_token_counts(chunks))
        if (n < 0 || n > kChunkTokens) __builtin_trap();
      (void)target_token_count(chunks.token_count);
    }
  } catch (const std::exception&) {
  }
  return 0;
}
