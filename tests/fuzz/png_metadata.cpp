// The PNG metadata reader (app/image_io.h png_text_chunks, app/parameters.h): text chunks
// (tEXt, zTXt, iTXt) into `parameters` (A1111 text) or `sigma-request` (our JSON), then into
// a validated request, as `--from-png` and the GUI's drop do.
// Input, by the first byte: 'P' and the rest is a whole PNG file; 'A' the rest is an
// A1111 `parameters` text; 'J' a `sigma-request` JSON; anything else: the whole input is a PNG.
#include "app/image_io.h"
#include "app/parameters.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sigma::app;
  if (size > (1u << 20)) return -1;
  std::map<std::string, std::string> text;
  const std::string input = sigma::fuzz::as_string(data, size);
  try {
    if (size && data[0] == 'A') text["parameters"] = input.substr(1);
    else if (size && data[0] == 'J') text["sigma-request"] = input.substr(1);
    else text = png_text_chunks(size && data[0] == 'P' ? input.substr(1) : input, "fuzz.png");
  } catch (const ImageError&) {
    return 0;
  }
  try {
    std::vector<std::string> not_taken;
    const Request r = request_from_png_text(text, "fuzz.png", &not_taken);
    validate(r);
    // A request that validates survives its own JSON and A1111 text.
    const Request again = request_from_json(to_json(r));
    validate(again);
    ImageRecord rec;
    (void)parse_parameters(format_parameters(r, rec));
  } catch (const std::exception&) {
  }
  return 0;
}
