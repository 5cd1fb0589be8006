#include "models/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace sigma::models {
namespace {

// The limit the reference implementation enforces, so a hostile header cannot make
// us allocate gigabytes before the first check.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct DTypeSpec {
  const char* name;
  size_t bytes;
  std::optional<torch::ScalarType> torch_type;  // nullopt: decoded by hand (F8)
};

const std::vector<DTypeSpec>& dtype_table() {
  static const std::vector<DTypeSpec> table = {
      {"F64", 8, torch::kFloat64}, {"F32", 4, torch::kFloat32}, {"F16", 2, torch::kFloat16},
      {"BF16", 2, torch::kBFloat16}, {"I64", 8, torch::kInt64}, {"I32", 4, torch::kInt32},
      {"I16", 2, torch::kInt16}, {"I8", 1, torch::kInt8}, {"U8", 1, torch::kUInt8},
      {"BOOL", 1, torch::kBool}, {"F8_E4M3", 1, std::nullopt}, {"F8_E5M2", 1, std::nullopt},
  };
  return table;
}

const DTypeSpec* find_dtype(const std::string& name) {
  for (const auto& d : dtype_table())
    if (name == d.name) return &d;
  return nullptr;
}

std::string known_dtypes() {
  std::string s;
  for (const auto& d : dtype_table()) s += (s.empty() ? "" : ", ") + std::string(d.name);
  return s;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw SafetensorsError(path + ": " + what);
}

// OCP 8-bit floats (E4M3FN: bias 7, no infinities, S.1111.111 is NaN;
// E5M2: the top byte of an IEEE half) decoded to float32.
float decode_f8(uint8_t b, bool e4m3) {
  const int sign = (b & 0x80) ? -1 : 1;
  if (e4m3) {
    const int e = (b >> 3) & 0xF, m = b & 0x7;
    if (e == 0xF && m == 0x7) return std::nanf("");
    if (e == 0) return static_cast<float>(sign * std::ldexp(m / 8.0, -6));
    return static_cast<float>(sign * std::ldexp(1.0 + m / 8.0, e - 7));
  }
  const int e = (b >> 2) & 0x1F, m = b & 0x3;
  if (e == 0x1F) return m ? std::nanf("") : sign * INFINITY;
  if (e == 0) return static_cast<float>(sign * std::ldexp(m / 4.0, -14));
  return static_cast<float>(sign * std::ldexp(1.0 + m / 4.0, e - 15));
}

}  // namespace

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

std::vector<TensorInfo> parse_safetensors_header(const std::string& path, const std::string& text,
                                                 uint64_t data_size,
                                                 std::map<std::string, std::string>* metadata) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    fail(path, std::string("header is not valid JSON (") + e.what() + "); the file is damaged or not safetensors");
  }
  if (!j.is_object()) fail(path, "header is not a JSON object; the file is damaged or not safetensors");

  std::vector<TensorInfo> out;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) fail(path, "__metadata__ is not an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) fail(path, "__metadata__ entry '" + m.key() + "' is not a string");
        if (metadata) (*metadata)[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "': ";
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      fail(path, where + "entry needs dtype, shape and data_offsets");
    TensorInfo t;
    t.name = name;
    if (!v["dtype"].is_string()) fail(path, where + "dtype is not a string");
    t.dtype = v["dtype"].get<std::string>();
    const DTypeSpec* spec = find_dtype(t.dtype);
    if (!spec) fail(path, where + "unknown dtype '" + t.dtype + "' (known: " + known_dtypes() + ")");
    const auto& shape = v["shape"];
    if (!shape.is_array()) fail(path, where + "shape is not a list");
    for (const auto& d : shape) {
      if (!d.is_number_unsigned()) fail(path, where + "shape " + shape.dump() + " has a non-integer or negative dimension");
      t.shape.push_back(d.get<int64_t>());
    }
    const auto& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      fail(path, where + "data_offsets must be two non-negative integers");
    t.begin = off[0].get<uint64_t>();
    t.end = off[1].get<uint64_t>();
    if (t.end < t.begin) fail(path, where + "data_offsets end before they begin");
    // Guard the product against overflow before comparing sizes.
    long double expect = spec->bytes;
    for (auto d : t.shape) expect *= static_cast<long double>(d);
    if (expect != static_cast<long double>(t.end - t.begin))
      fail(path, where + "byte size " + std::to_string(t.end - t.begin) + " does not match shape " +
                     shape_str(t.shape) + " x " + t.dtype + " (" +
                     std::to_string(static_cast<unsigned long long>(expect)) + " bytes)");
    if (t.end > data_size)
      fail(path, where + "data ends at byte " + std::to_string(t.end) + " but the data buffer has only " +
                     std::to_string(data_size) + " bytes: the file is truncated");
    out.push_back(std::move(t));
  }

  // The buffer must be covered exactly: sorted by offset, no overlap, no gap, nothing left over.
  std::vector<const TensorInfo*> by_offset;
  for (const auto& t : out) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t pos = 0;
  const TensorInfo* prev = nullptr;
  for (const auto* t : by_offset) {
    if (t->begin < pos)
      fail(path, "tensor '" + t->name + "': data [" + std::to_string(t->begin) + "," + std::to_string(t->end) +
                     ") overlaps tensor '" + prev->name + "'");
    if (t->begin > pos)
      fail(path, "tensor '" + t->name + "': gap of " + std::to_string(t->begin - pos) + " bytes before its data" +
                     (prev ? " (after tensor '" + prev->name + "')" : " (at the start of the buffer)"));
    pos = t->end;
    prev = t;
  }
  if (pos != data_size)
    fail(path, std::to_string(data_size - pos) + " bytes at the end of the data buffer belong to no tensor" +
                   (prev ? " (last tensor '" + prev->name + "')" : ""));

  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

std::shared_ptr<const SafeTensors> SafeTensors::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path, "not a regular file");
  }
  const auto size = static_cast<uint64_t>(st.st_size);
  std::shared_ptr<SafeTensors> f(new SafeTensors());
  f->path_ = path;
  if (size < 8) {
    ::close(fd);
    fail(path, "file is " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
  }
  void* m = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) fail(path, std::string("cannot map: ") + std::strerror(errno));
  f->map_ = static_cast<const uint8_t*>(m);
  f->map_size_ = size;

  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | f->map_[i];  // little-endian on every host
  if (n > kMaxHeaderBytes)
    fail(path, "header length " + std::to_string(n) + " exceeds the 100000000-byte limit: the file is damaged or not safetensors");
  if (8 + n > size)
    fail(path, "header length " + std::to_string(n) + " runs past the end of the " + std::to_string(size) +
                   "-byte file: the file is truncated or not safetensors");
  const std::string header(reinterpret_cast<const char*>(f->map_ + 8), n);
  f->data_ = f->map_ + 8 + n;
  f->tensors_ = parse_safetensors_header(path, header, size - 8 - n, &f->metadata_);
  for (size_t i = 0; i < f->tensors_.size(); ++i) f->index_[f->tensors_[i].name] = i;
  return f;
}

SafeTensors::~SafeTensors() {
  if (map_) ::munmap(const_cast<uint8_t*>(map_), map_size_);
}

const TensorInfo* SafeTensors::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

torch::Tensor SafeTensors::load(const std::string& name, std::optional<torch::ScalarType> dtype) const {
  const TensorInfo* t = find(name);
  if (!t) fail(path_, "tensor '" + name + "' is not in the file");
  const DTypeSpec* spec = find_dtype(t->dtype);
  const uint8_t* src = data_ + t->begin;
  torch::Tensor out;
  if (spec->torch_type) {
    // Copy out of the mapping: offsets need not be aligned, and the result must outlive it.
    out = torch::empty(t->shape, torch::TensorOptions().dtype(*spec->torch_type));
    if (t->end > t->begin) std::memcpy(out.data_ptr(), src, t->end - t->begin);
  } else {
    const bool e4m3 = t->dtype == "F8_E4M3";
    out = torch::empty(t->shape, torch::TensorOptions().dtype(torch::kFloat32));
    float* dst = out.data_ptr<float>();
    for (int64_t i = 0, n = t->numel(); i < n; ++i) dst[i] = decode_f8(src[i], e4m3);
  }
  return (dtype && out.scalar_type() != *dtype) ? out.to(*dtype) : out;
}

std::string safetensors_dtype_name(torch::ScalarType t) {
  for (const auto& d : dtype_table())
    if (d.torch_type && *d.torch_type == t) return d.name;
  throw SafetensorsError(std::string("dtype ") + c10::toString(t) + " cannot be stored in safetensors");
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<torch::Tensor> data;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (name == "__metadata__") fail(path, "'__metadata__' is reserved and cannot name a tensor");
    if (header.contains(name)) fail(path, "tensor '" + name + "' is given twice");
    auto t = tensor.detach().to(torch::kCPU).contiguous();
    const uint64_t bytes = static_cast<uint64_t>(t.numel()) * t.element_size();
    header[name] = {{"dtype", safetensors_dtype_name(t.scalar_type())},
                    {"shape", t.sizes().vec()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    data.push_back(t);
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // data starts 8-byte aligned, as the reference writer does

  const std::filesystem::path target(path);
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail(path, "cannot write (is the folder there and writable?)");
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>((static_cast<uint64_t>(text.size()) >> (8 * i)) & 0xFF);
    out.write(reinterpret_cast<const char*>(len), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const auto& t : data)
      out.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.numel() * t.element_size()));
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      fail(path, "write failed (disk full?)");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, target, ec);
  if (ec) {
    std::remove(tmp.c_str());
    fail(path, "cannot move the finished file into place: " + ec.message());
  }
}

}  // namespace sigma::models
