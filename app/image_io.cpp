#include "app/image_io.h"

#include "app/png_write.h"

#include <fcntl.h>
#include <signal.h>
#include <stb_image.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

namespace fs = std::filesystem;

namespace sigma::app {
namespace {

uint32_t get_u32(const std::string& s, size_t at) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(s[at + i]);
  return v;
}

bool is_latin1_ascii(const std::string& s) {
  for (unsigned char c : s)
    if (c >= 0x80) return false;  // keep tEXt to ASCII; anything else is UTF-8 and goes to iTXt
  return true;
}

std::string latin1_to_utf8(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c < 0x80) out.push_back(static_cast<char>(c));
    else {
      out.push_back(static_cast<char>(0xC0 | (c >> 6)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    }
  }
  return out;
}

std::string inflate_all(const std::string& in, const std::string& what) {
  z_stream z{};
  if (inflateInit(&z) != Z_OK) throw ImageError(what + ": zlib failed to start");
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  std::string out;
  char buf[16384];
  int rc = Z_OK;
  while (rc == Z_OK) {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof buf;
    rc = inflate(&z, Z_NO_FLUSH);
    out.append(buf, sizeof buf - z.avail_out);
    if (out.size() > (64u << 20)) rc = Z_MEM_ERROR;  // a text chunk has no business being this big
  }
  inflateEnd(&z);
  if (rc != Z_STREAM_END) throw ImageError(what + ": damaged compressed text chunk");
  return out;
}

// PNG dimensions straight from the IHDR chunk: stb refuses very large images before it
// reports their size, and the user should hear "too large", not "unreadable".
bool png_size(const std::string& bytes, int64_t& w, int64_t& h) {
  if (bytes.size() < 24 || bytes.compare(0, 8, std::string("\x89PNG\r\n\x1a\n", 8)) != 0) return false;
  w = get_u32(bytes, 16);
  h = get_u32(bytes, 20);
  return true;
}

// Debian's stb_image 2.27 trusts a JPEG's Huffman tables in two ways that 2.28 fixed, both
// found by tests/fuzz/image_loader (UBSan):
//  - a DHT segment whose 16 code-length counts add up to more than 256 symbols is built
//    anyway, writing past stbi__huffman's arrays ("index 257 out of bounds for 'stbi_uc[257]'");
//  - a scan that uses a table no DHT defined decodes with the uninitialized (malloc'd)
//    table and indexes its 256 values out of bounds ("index 2883 out of bounds").
// This walks the file's segments the way stb reads them (DHT may also come between the
// scans of a progressive file) and refuses either case before stb sees the data.
bool jpeg_huffman_tables_ok(const std::string& b) {
  auto at = [&](size_t i) -> unsigned { return i < b.size() ? static_cast<uint8_t>(b[i]) : 0u; };
  bool defined[2][4] = {};  // [DC, AC][table id]
  bool progressive = false;
  size_t i = 2;  // after SOI
  while (i + 1 < b.size()) {
    if (at(i) != 0xFF) {  // entropy-coded data, or garbage stb skips byte by byte
      ++i;
      continue;
    }
    const unsigned m = at(i + 1);
    if (m == 0xFF) {  // fill byte
      ++i;
      continue;
    }
    if (m == 0x00 || (m >= 0xD0 && m <= 0xD7) || m == 0x01) {  // stuffed 0xFF, RSTn, TEM
      i += 2;
      continue;
    }
    if (m == 0xD9) return true;  // EOI
    const size_t len = (at(i + 2) << 8) | at(i + 3);
    if (m == 0xC2) progressive = true;
    if (m == 0xC4) {
      int64_t left = static_cast<int64_t>(len) - 2;
      size_t p = i + 4;
      while (left > 0 && p < b.size()) {
        const unsigned q = at(p), tc = q >> 4, th = q & 15;
        unsigned n = 0;
        for (size_t k = 1; k <= 16; ++k) n += at(p + k);
        if (n > 256) return false;
        if (tc <= 1 && th <= 3) defined[tc][th] = true;
        p += 17 + n;
        left -= 17 + static_cast<int64_t>(n);
      }
    }
    if (m == 0xDA) {  // SOS: Ns, Ns x (component, Td<<4 | Ta), Ss, Se, Ah<<4 | Al
      const unsigned ns = at(i + 4);
      const size_t tail = i + 5 + 2 * ns;
      const unsigned ss = at(tail), ah = at(tail + 2) >> 4;
      for (unsigned c = 0; c < ns; ++c) {
        const unsigned tables = at(i + 6 + 2 * c), td = tables >> 4, ta = tables & 15;
        const bool uses_dc = !progressive || (ss == 0 && ah == 0);
        const bool uses_ac = !progressive || ss > 0;
        if (uses_dc && (td > 3 || !defined[0][td])) return false;
        if (uses_ac && (ta > 3 || !defined[1][ta])) return false;
      }
    }
    i += 2 + len;
  }
  return true;
}

// stb_image grows its IDAT buffer to whatever length a chunk declares before reading it:
// a 100-byte PNG declaring a 760 MB chunk made it allocate (and, under ASan, clear) that
// much (found by tests/fuzz/image_loader as a timeout). A chunk that runs past the end of
// the file is refused here; stb would fail on it anyway, after the allocation.
bool png_chunks_ok(const std::string& b) {
  size_t at = 8;
  while (at + 8 <= b.size()) {
    const uint64_t len = get_u32(b, at);
    if (len > 0x7FFFFFFFu || at + 12 + len > b.size()) return false;
    if (b.compare(at + 4, 4, "IEND") == 0) return true;
    at += 12 + len;
  }
  return true;  // ends without IEND: stb decides
}

// What decode_image reads: stb_image also decodes GIF, PSD, PIC, PNM, HDR and TGA, formats
// with a history of decoder bugs (stb's CVEs) that nobody feeds a diffusion model; the
// magic bytes decide before stb sees the data.
const char* image_format(const std::string& b) {
  if (b.size() >= 8 && b.compare(0, 8, std::string("\x89PNG\r\n\x1a\n", 8)) == 0) return "PNG";
  if (b.size() >= 3 && static_cast<uint8_t>(b[0]) == 0xFF && static_cast<uint8_t>(b[1]) == 0xD8 &&
      static_cast<uint8_t>(b[2]) == 0xFF)
    return "JPEG";
  if (b.size() >= 2 && b[0] == 'B' && b[1] == 'M') return "BMP";
  return nullptr;
}

}  // namespace

namespace {

// An image file's bytes. Only regular files are read, and their size is checked before a byte
// is: `-i /dev/zero` or a FIFO would otherwise be read until memory runs out.
std::string read_image_file(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw ImageError(path + ": no such image file");
  if (!fs::is_regular_file(path, ec)) throw ImageError(path + ": not a regular file (a device, folder or pipe); give an image file");
  // decode_image's size limit.
  if (fs::file_size(path, ec) > size_t(INT_MAX) && !ec)
    throw ImageError(path + ": the file is larger than 2 GB; not an image we read");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ImageError(path + ": cannot read");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

Image load_image(const std::string& path, int channels) { return decode_image(read_image_file(path), path, channels); }

Image decode_image(const std::string& bytes, const std::string& what, int channels) {
  if (channels != 1 && channels != 3 && channels != 4)
    throw ImageError(what + ": " + std::to_string(channels) + " channels asked; images are read as 1, 3 or 4");
  auto too_large = [&](int64_t w, int64_t h) {
    return ImageError(what + ": " + std::to_string(w) + "x" + std::to_string(h) + " is larger than the " +
                      std::to_string(kMaxImageSide) + "x" + std::to_string(kMaxImageSide) + " limit; scale it down first");
  };
  if (bytes.size() > size_t(INT_MAX)) throw ImageError(what + ": the file is larger than 2 GB; not an image we read");
  const char* format = image_format(bytes);
  if (!format) throw ImageError(what + ": not a readable image (not a PNG, JPEG or BMP file); convert it to PNG first");
  if (std::string(format) == "JPEG" && !jpeg_huffman_tables_ok(bytes))
    throw ImageError(what + ": damaged JPEG (a Huffman table with more than 256 codes, or a scan that uses an undefined one)");
  int64_t pw = 0, ph = 0;
  if (png_size(bytes, pw, ph) && (pw > kMaxImageSide || ph > kMaxImageSide)) throw too_large(pw, ph);
  if (std::string(format) == "PNG" && !png_chunks_ok(bytes))
    throw ImageError(what + ": damaged PNG (a chunk runs past the end of the file: truncated?)");
  const auto* data_in = reinterpret_cast<const stbi_uc*>(bytes.data());
  const int len = static_cast<int>(bytes.size());
  int w = 0, h = 0, n = 0;
  if (!stbi_info_from_memory(data_in, len, &w, &h, &n))
    throw ImageError(what + ": not a readable image (" + std::string(stbi_failure_reason()) + "); use PNG, JPEG or BMP");
  // A BMP stored top-down has a negative height, which stb reports as it is and then decodes
  // as |h| rows: the caps apply to |h| (a 70-byte BMP claiming -458704 rows made stb allocate
  // 86 MB and decode for seconds before the check after decoding refused it; fuzz finding).
  const int64_t W = w, H = h < 0 ? -int64_t(h) : int64_t(h);
  if (W <= 0 || H <= 0) throw ImageError(what + ": damaged image header (" + std::to_string(W) + "x" + std::to_string(H) + ")");
  if (W > kMaxImageSide || H > kMaxImageSide || W * H > kMaxImagePixels) throw too_large(W, H);
  unsigned char* data = stbi_load_from_memory(data_in, len, &w, &h, &n, channels);
  if (!data) {
    const char* why = stbi_failure_reason();
    throw ImageError(what + ": cannot decode (" + std::string(why && *why ? why : "damaged file") + ")");
  }
  // stb decodes what the header says; a second check keeps a header that lied out of the copy.
  if (w <= 0 || h <= 0 || w > kMaxImageSide || h > kMaxImageSide) {
    stbi_image_free(data);
    throw too_large(w, h);
  }
  Image img(w, h, channels);
  std::memcpy(img.pixels.data(), data, img.pixels.size());
  stbi_image_free(data);
  return img;
}

std::string encode_png(const Image& image, const std::map<std::string, std::string>& text) {
  std::string png = png_bytes(image);
  std::string extra;
  for (const auto& [key, value] : text) {
    const bool latin1 = is_latin1_ascii(value);
    // iTXt: keyword, then compression flag and method, language tag and translated keyword (all empty/0).
    const std::string data = key + std::string(latin1 ? 1 : 5, '\0') + value;
    append_png_chunk(extra, latin1 ? "tEXt" : "iTXt", data.data(), data.size());
  }
  // Text chunks go right before IEND (the last 12 bytes).
  png.insert(png.size() - 12, extra);
  return png;
}

std::map<std::string, std::string> png_text_chunks(const std::string& png, const std::string& what) {
  static const std::string sig("\x89PNG\r\n\x1a\n", 8);
  if (png.compare(0, 8, sig) != 0) throw ImageError(what + ": not a PNG file");
  std::map<std::string, std::string> out;
  size_t at = 8;
  while (at + 12 <= png.size()) {
    const uint32_t len = get_u32(png, at);
    if (at + 12 + len > png.size()) throw ImageError(what + ": truncated PNG chunk");
    const std::string type = png.substr(at + 4, 4);
    const std::string data = png.substr(at + 8, len);
    at += 12 + len;
    const size_t z = data.find('\0');
    if (z == std::string::npos) continue;
    const std::string key = data.substr(0, z);
    if (type == "tEXt") {
      out[key] = latin1_to_utf8(data.substr(z + 1));
    } else if (type == "zTXt" && z + 2 <= data.size()) {
      out[key] = latin1_to_utf8(inflate_all(data.substr(z + 2), what));
    } else if (type == "iTXt" && z + 3 <= data.size()) {
      const bool compressed = data[z + 1] != 0;
      size_t p = data.find('\0', z + 3);              // end of language tag
      if (p == std::string::npos) continue;
      p = data.find('\0', p + 1);                      // end of translated keyword
      if (p == std::string::npos) continue;
      const std::string text = data.substr(p + 1);
      out[key] = compressed ? inflate_all(text, what) : text;
    } else if (type == "IEND") {
      break;
    }
  }
  return out;
}

std::map<std::string, std::string> read_png_text(const std::string& path) { return png_text_chunks(read_image_file(path), path); }

void write_file_atomic(const std::string& path, const std::string& bytes, bool overwrite) {
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  if (!fs::is_directory(dir)) throw ImageError(path + ": the folder " + dir.string() + " does not exist");
  if (!overwrite && fs::exists(target))
    throw ImageError(path + ": the file exists; choose another name, give a folder, or pass --overwrite");
  const std::string tmp = (dir / ("." + target.filename().string() + ".tmp-" + std::to_string(::getpid()))).string();
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      throw ImageError(path + ": write failed (disk full or no permission?)");
    }
  }
  if (overwrite) {
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
      const int err = errno;
      std::remove(tmp.c_str());
      throw ImageError(path + ": cannot move into place: " + std::strerror(err));
    }
    return;
  }
  // link() refuses an existing name atomically, unlike rename().
  const int rc = ::link(tmp.c_str(), path.c_str());
  const int err = errno;
  std::remove(tmp.c_str());
  if (rc != 0) {
    if (err == EEXIST) throw ImageError(path + ": the file exists; choose another name, give a folder, or pass --overwrite");
    throw ImageError(path + ": cannot create: " + std::strerror(err));
  }
}

int remove_stale_temporaries(const std::string& path) {
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  const std::string prefix = "." + target.filename().string() + ".tmp-";
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return 0;
  int removed = 0;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string pid_text = name.substr(prefix.size());
    if (pid_text.empty() || pid_text.find_first_not_of("0123456789") != std::string::npos || pid_text.size() > 9) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(pid_text));
    if (pid == ::getpid() || (::kill(pid, 0) == 0 || errno == EPERM)) continue;  // a live writer's
    if (fs::remove(e.path(), ec)) ++removed;
  }
  return removed;
}

std::string write_numbered_png(const std::string& dir, int64_t seed, const std::string& png_bytes) {
  fs::create_directories(dir);
  static const std::regex numbered(R"((\d{5,})-.*)");
  int64_t next = 1;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::smatch m;
    const std::string name = e.path().filename().string();
    if (std::regex_match(name, m, numbered)) next = std::max<int64_t>(next, std::stoll(m[1]) + 1);
  }
  for (int attempt = 0; attempt < 1000; ++attempt, ++next) {
    char name[64];
    std::snprintf(name, sizeof name, "%05lld-%lld.png", static_cast<long long>(next), static_cast<long long>(seed));
    const std::string path = (fs::path(dir) / name).string();
    try {
      write_file_atomic(path, png_bytes, false);
      return path;
    } catch (const ImageError&) {
      if (!fs::exists(path)) throw;  // a real failure, not a name taken by a concurrent writer
    }
  }
  throw ImageError(dir + ": could not find a free output name");
}

}  // namespace sigma::app
