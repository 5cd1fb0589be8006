#include "app/image_io.h"

#include <fcntl.h>
#include <stb_image.h>
#include <stb_image_write.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

namespace fs = std::filesystem;

namespace sigma::app {
namespace {

void put_u32(std::string& s, uint32_t v) {
  for (int i = 3; i >= 0; --i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
uint32_t get_u32(const std::string& s, size_t at) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(s[at + i]);
  return v;
}

std::string chunk(const std::string& type, const std::string& data) {
  std::string c;
  put_u32(c, static_cast<uint32_t>(data.size()));
  const std::string body = type + data;
  c += body;
  put_u32(c, static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size()))));
  return c;
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

void write_png_func(void* ctx, void* data, int size) { static_cast<std::string*>(ctx)->append(static_cast<char*>(data), size); }

// PNG dimensions straight from the IHDR chunk: stb refuses very large images before it
// reports their size, and the user should hear "too large", not "unreadable".
bool png_size(const std::string& path, int64_t& w, int64_t& h) {
  std::ifstream in(path, std::ios::binary);
  std::string head(24, '\0');
  if (!in.read(head.data(), 24) || head.compare(0, 8, std::string("\x89PNG\r\n\x1a\n", 8)) != 0) return false;
  w = get_u32(head, 16);
  h = get_u32(head, 20);
  return true;
}

}  // namespace

Image load_image(const std::string& path, int channels) {
  if (!fs::exists(path)) throw ImageError(path + ": no such image file");
  auto too_large = [&](int64_t w, int64_t h) {
    return ImageError(path + ": " + std::to_string(w) + "x" + std::to_string(h) + " is larger than the " +
                      std::to_string(kMaxImageSide) + "x" + std::to_string(kMaxImageSide) + " limit; scale it down first");
  };
  int64_t pw = 0, ph = 0;
  if (png_size(path, pw, ph) && (pw > kMaxImageSide || ph > kMaxImageSide)) throw too_large(pw, ph);
  int w = 0, h = 0, n = 0;
  if (!stbi_info(path.c_str(), &w, &h, &n))
    throw ImageError(path + ": not a readable image (" + std::string(stbi_failure_reason()) + "); use PNG, JPEG or BMP");
  if (w > kMaxImageSide || h > kMaxImageSide || int64_t(w) * h > kMaxImagePixels)
    throw too_large(w, h);
  unsigned char* data = stbi_load(path.c_str(), &w, &h, &n, channels);
  if (!data) throw ImageError(path + ": cannot decode (" + std::string(stbi_failure_reason()) + ")");
  Image img(w, h, channels);
  std::memcpy(img.pixels.data(), data, img.pixels.size());
  stbi_image_free(data);
  return img;
}

std::string encode_png(const Image& image, const std::map<std::string, std::string>& text) {
  std::string png;
  if (!stbi_write_png_to_func(write_png_func, &png, image.width, image.height, image.channels, image.pixels.data(),
                              image.width * image.channels))
    throw ImageError("PNG encoding failed");
  std::string extra;
  for (const auto& [key, value] : text) {
    if (is_latin1_ascii(value)) extra += chunk("tEXt", key + std::string(1, '\0') + value);
    else extra += chunk("iTXt", key + std::string(1, '\0') + std::string(1, '\0') + std::string(1, '\0') +
                                    std::string(1, '\0') + std::string(1, '\0') + value);  // uncompressed, no language
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

std::map<std::string, std::string> read_png_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ImageError(path + ": cannot read");
  std::stringstream ss;
  ss << in.rdbuf();
  return png_text_chunks(ss.str(), path);
}

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
