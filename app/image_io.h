// Image files: PNG/JPEG/BMP in (dimensions checked before decoding), PNG out with
// text chunks (AUTOMATIC1111's `parameters` and our request JSON), written atomically
// and never over an existing file unless asked.
#pragma once

#include <map>
#include <stdexcept>
#include <string>

#include "imaging/image.h"

namespace sigma::app {

struct ImageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Larger images are refused before decoding (a 16k x 16k PNG would take 768 MB).
inline constexpr int kMaxImageSide = 8192;
inline constexpr int64_t kMaxImagePixels = int64_t(8192) * 8192;

// Decodes to `channels` (1, 3 or 4) interleaved 8-bit channels; throws ImageError naming the file.
Image load_image(const std::string& path, int channels = 3);
// The same from the file's bytes (the fuzz target tests/fuzz/image_loader): the size in the
// header is checked against the limits before any pixel is decoded; `what` names the source.
Image decode_image(const std::string& bytes, const std::string& what, int channels = 3);

// PNG bytes with tEXt (Latin-1 text) or iTXt (UTF-8) chunks, as PIL writes them.
std::string encode_png(const Image& image, const std::map<std::string, std::string>& text = {});
std::map<std::string, std::string> png_text_chunks(const std::string& png_bytes, const std::string& what);
std::map<std::string, std::string> read_png_text(const std::string& path);

// Writes through a temporary file in the same folder; the final name appears only when
// complete. overwrite=false: fails with ImageError if `path` exists (checked atomically).
void write_file_atomic(const std::string& path, const std::string& bytes, bool overwrite);
// The temporary files write_file_atomic left for `path` ("." + name + ".tmp-PID" beside it)
// when its process died (SIGKILL, power loss) before moving them into place: the ones whose
// PID is no longer running are removed. Returns how many. `sigma batch` calls it for each of
// its jobs' outputs before running them, so a killed and restarted shard leaves none behind.
int remove_stale_temporaries(const std::string& path);

// The next free "NNNNN-SEED.png" in `dir` (numbering continues after the highest present),
// written atomically without overwriting; returns the path used.
std::string write_numbered_png(const std::string& dir, int64_t seed, const std::string& png_bytes);

}  // namespace sigma::app
