#include "models/io/safetensors.h"

#include "models/runtime/fp8.h"

#include <fcntl.h>
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

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw SafetensorsError(path + ": " + what);
}

int64_t mtime_ns(const struct stat& st) { return int64_t(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec; }

}  // namespace

std::shared_ptr<const SafeTensors> SafeTensors::open(const std::string& path) {
  std::shared_ptr<SafeTensors> f(new SafeTensors());
  f->path_ = path;
  f->fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f->fd_ < 0) fail(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  if (::fstat(f->fd_, &st) != 0 || !S_ISREG(st.st_mode)) fail(path, "not a regular file");
  f->file_size_ = static_cast<uint64_t>(st.st_size);
  f->mtime_ns_ = mtime_ns(st);
  uint8_t len[8] = {};
  if (f->file_size_ >= 8) f->read_at(len, 8, 0, "");
  const uint64_t n = safetensors_header_length(path, len, f->file_size_);
  std::string header(n, '\0');
  f->read_at(header.data(), n, 8, "");
  f->data_offset_ = 8 + n;
  f->tensors_ = parse_safetensors_header(path, header, f->file_size_ - 8 - n, &f->metadata_);
  for (size_t i = 0; i < f->tensors_.size(); ++i) f->index_[f->tensors_[i].name] = i;
  return f;
}

SafeTensors::~SafeTensors() {
  if (fd_ >= 0) ::close(fd_);
}

void SafeTensors::read_at(void* dst, uint64_t n, uint64_t offset, const std::string& tensor) const {
  const std::string what = tensor.empty() ? std::string("header") : "tensor '" + tensor + "'";
  struct stat st {};
  if (::fstat(fd_, &st) != 0) fail(path_, "cannot stat while reading " + what + ": " + std::strerror(errno));
  if (static_cast<uint64_t>(st.st_size) != file_size_ || mtime_ns(st) != mtime_ns_)
    fail(path_, "the file changed while it was being read (" + std::to_string(file_size_) + " bytes when opened, " +
                    std::to_string(st.st_size) + " now, reading " + what +
                    "): is it still downloading or being written? Load it again once it is complete");
  auto* p = static_cast<char*>(dst);
  while (n > 0) {
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, 1u << 30));
    const ssize_t got = ::pread(fd_, p, chunk, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) fail(path_, "read error in " + what + ": " + std::strerror(errno));
    if (got == 0)
      fail(path_, "the file ended at byte " + std::to_string(offset) + " while reading " + what + " (it was " +
                      std::to_string(file_size_) + " bytes when opened): it shrank while being read; is it still "
                      "downloading or being written?");
    p += got;
    offset += static_cast<uint64_t>(got);
    n -= static_cast<uint64_t>(got);
  }
}

const TensorInfo* SafeTensors::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

torch::Tensor SafeTensors::load(const std::string& name, std::optional<torch::ScalarType> dtype) const {
  const TensorInfo* t = find(name);
  if (!t) fail(path_, "tensor '" + name + "' is not in the file");
  const DTypeSpec* spec = find_dtype(t->dtype);
  const uint64_t bytes = t->end - t->begin;
  torch::Tensor out;
  if (spec->torch_type) {
    out = torch::empty(t->shape, torch::TensorOptions().dtype(*spec->torch_type));
    if (bytes) read_at(out.data_ptr(), bytes, data_offset_ + t->begin, name);
  } else {
    const bool e4m3 = t->dtype == "F8_E4M3";
    std::vector<uint8_t> raw(bytes);
    if (bytes) read_at(raw.data(), bytes, data_offset_ + t->begin, name);
    out = torch::empty(t->shape, torch::TensorOptions().dtype(torch::kFloat32));
    float* dst = out.data_ptr<float>();
    for (size_t i = 0; i < raw.size(); ++i) dst[i] = decode_f8(raw[i], e4m3);
  }
  return (dtype && out.scalar_type() != *dtype) ? out.to(*dtype) : out;
}

void SafeTensors::read_bytes(const TensorInfo& t, uint64_t from, uint64_t n, void* dst) const {
  if (from > t.end - t.begin || n > t.end - t.begin - from)
    fail(path_, "bytes " + std::to_string(from) + "+" + std::to_string(n) + " are outside tensor '" + t.name + "'");
  if (n) read_at(dst, n, data_offset_ + t.begin + from, t.name);
}

std::optional<torch::ScalarType> safetensors_torch_dtype(const std::string& name) {
  const DTypeSpec* spec = find_dtype(name);
  return spec ? spec->torch_type : std::nullopt;
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
