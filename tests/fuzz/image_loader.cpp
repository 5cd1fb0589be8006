// The image loader (app/image_io.h decode_image: PNG, JPEG, BMP and the rest stb_image
// reads), with the size caps checked before decoding. Channels 1, 3 or 4 by the input's length.
#include "app/image_io.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace sigma::app;
  if (size > (1u << 20)) return -1;
  static const int kChannels[] = {1, 3, 4, 3};
  const int channels = kChannels[size % 4];
  try {
    const sigma::Image img = decode_image(sigma::fuzz::as_string(data, size), "fuzz", channels);
    if (img.width <= 0 || img.height <= 0 || img.width > kMaxImageSide || img.height > kMaxImageSide) __builtin_trap();
    if (img.pixels.size() != size_t(img.width) * img.height * channels) __builtin_trap();
  } catch (const ImageError&) {
  }
  return 0;
}
