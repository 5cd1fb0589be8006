#include "app/png_write.h"

#include <zlib.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace sigma::app {
namespace {

void put_u32(std::string& s, uint32_t v) {
  for (int i = 3; i >= 0; --i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

uint8_t paeth(int a, int b, int c) {
  const int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
  return static_cast<uint8_t>(pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
}

// The five filtered versions of `row` (the one above: `up`, zeros for the first), and the
// index of the one the heuristic keeps.
int filter_row(const uint8_t* row, const uint8_t* up, size_t n, size_t bpp, std::array<std::vector<uint8_t>, 5>& out) {
  uint8_t *none = out[0].data(), *sub = out[1].data(), *upf = out[2].data(), *avg = out[3].data(), *pae = out[4].data();
  for (size_t i = 0; i < n; ++i) {
    const int a = i >= bpp ? row[i - bpp] : 0, b = up[i], c = i >= bpp ? up[i - bpp] : 0, x = row[i];
    none[i] = static_cast<uint8_t>(x);
    sub[i] = static_cast<uint8_t>(x - a);
    upf[i] = static_cast<uint8_t>(x - b);
    avg[i] = static_cast<uint8_t>(x - ((a + b) >> 1));
    pae[i] = static_cast<uint8_t>(x - paeth(a, b, c));
  }
  int best = 0;
  long best_sum = -1;
  for (int f = 0; f < 5; ++f) {
    long sum = 0;
    for (size_t i = 0; i < n; ++i) sum += std::abs(static_cast<int>(static_cast<int8_t>(out[f][i])));
    if (best_sum < 0 || sum < best_sum) best_sum = sum, best = f;
  }
  return best;
}

}  // namespace

void append_png_chunk(std::string& png, const char* type, const void* data, size_t size) {
  put_u32(png, static_cast<uint32_t>(size));
  const size_t body = png.size();
  png.append(type, 4);
  if (size > 0) png.append(static_cast<const char*>(data), size);
  const auto* b = reinterpret_cast<const Bytef*>(png.data() + body);
  put_u32(png, static_cast<uint32_t>(crc32(0, b, static_cast<uInt>(size + 4))));
}

std::string png_bytes(const Image& image) {
  if (!image.valid()) throw std::invalid_argument("PNG encoding: the image's pixel buffer does not match its size");
  const size_t bpp = static_cast<size_t>(image.channels), n = image.row_bytes(), rows = static_cast<size_t>(image.height);
  std::vector<uint8_t> filtered((n + 1) * rows);
  std::array<std::vector<uint8_t>, 5> candidates;
  for (auto& c : candidates) c.resize(n);
  const std::vector<uint8_t> zeros(n, 0);
  for (size_t y = 0; y < rows; ++y) {
    const uint8_t* row = image.pixels.data() + y * n;
    const int f = filter_row(row, y ? row - n : zeros.data(), n, bpp, candidates);
    filtered[y * (n + 1)] = static_cast<uint8_t>(f);
    std::memcpy(&filtered[y * (n + 1) + 1], candidates[static_cast<size_t>(f)].data(), n);
  }
  z_stream z{};
  if (deflateInit2(&z, Z_BEST_SPEED, Z_DEFLATED, 15, 8, Z_RLE) != Z_OK) throw std::runtime_error("PNG encoding: zlib failed to start");
  std::vector<uint8_t> idat(deflateBound(&z, filtered.size()));
  z.next_in = filtered.data();
  z.avail_in = static_cast<uInt>(filtered.size());
  z.next_out = idat.data();
  z.avail_out = static_cast<uInt>(idat.size());
  const int rc = deflate(&z, Z_FINISH);
  const size_t idat_size = z.total_out;
  deflateEnd(&z);
  if (rc != Z_STREAM_END) throw std::runtime_error("PNG encoding: zlib could not compress the image");

  std::string png("\x89PNG\r\n\x1a\n", 8);
  std::array<uint8_t, 13> ihdr{};
  for (int i = 0; i < 4; ++i) {
    ihdr[static_cast<size_t>(i)] = static_cast<uint8_t>(static_cast<uint32_t>(image.width) >> (24 - 8 * i));
    ihdr[static_cast<size_t>(4 + i)] = static_cast<uint8_t>(static_cast<uint32_t>(image.height) >> (24 - 8 * i));
  }
  static constexpr uint8_t kColourType[5] = {0, 0, 4, 2, 6};  // by channels: gray, gray+alpha, RGB, RGBA
  ihdr[8] = 8;  // bits per channel; compression, filter method and interlace stay 0
  ihdr[9] = kColourType[image.channels];
  append_png_chunk(png, "IHDR", ihdr.data(), ihdr.size());
  append_png_chunk(png, "IDAT", idat.data(), idat_size);
  append_png_chunk(png, "IEND", nullptr, 0);
  return png;
}

}  // namespace sigma::app
