#include "app/server/catalog.h"

#include <algorithm>
#include <filesystem>
#include <regex>

#include "app/model_files.h"

namespace fs = std::filesystem;

namespace sigma::server {

namespace {

std::string canonical_or_empty(const fs::path& p) {
  std::error_code ec;
  auto c = fs::canonical(p, ec);
  return ec ? std::string() : c.string();
}

bool inside(const std::string& path, const std::string& dir) {
  if (dir.empty() || path.empty()) return false;
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/');
}

const char* kind_word(ModelCatalog::Kind k) {
  switch (k) {
    case ModelCatalog::Kind::checkpoint: return "model";
    case ModelCatalog::Kind::controlnet: return "ControlNet";
    case ModelCatalog::Kind::lora: return "LoRA";
  }
  return "file";
}

bool is_model_dir(const fs::path& p) {
  std::error_code ec;
  return fs::exists(p / "model_index.json", ec) || fs::exists(p / "diffusion_pytorch_model.safetensors", ec);
}

}  // namespace

ModelCatalog::ModelCatalog(std::string models_root, std::string bundled_dir, std::vector<std::string> allowed_roots)
    : root_(std::move(models_root)), bundled_(std::move(bundled_dir)) {
  root_canonical_ = canonical_or_empty(root_);
  if (!root_canonical_.empty()) scrubs_.push_back({root_canonical_, "<models>"});
  for (const auto& r : allowed_roots) {
    const auto c = canonical_or_empty(r);
    if (c.empty()) throw std::invalid_argument("--allowed-roots " + r + ": no such folder");
    extra_roots_.push_back(c);
    scrubs_.push_back({c, "<models>"});
  }
  scrubs_.push_back({fs::absolute(root_).lexically_normal().string(), "<models>"});
  const auto b = canonical_or_empty(bundled_);
  if (!b.empty()) {
    bundled_ = b;
    scrubs_.push_back({b, "<bundled>"});
  }
}

std::string ModelCatalog::folder(Kind kind) const {
  switch (kind) {
    case Kind::checkpoint: return (fs::path(root_) / "checkpoints").string();
    case Kind::controlnet: return (fs::path(root_) / "controlnet").string();
    case Kind::lora: return (fs::path(root_) / "loras").string();
  }
  return root_;
}

std::vector<CatalogEntry> ModelCatalog::bundled_entries(Kind kind) const {
  // The bundled files: the shapes model (the default), its flow-matching sibling, its ControlNet.
  std::vector<std::string> names;
  if (kind == Kind::checkpoint) names = {"sigma-shapes", "sigma-shapes-flow"};
  if (kind == Kind::controlnet) names = {"sigma-shapes-canny"};
  std::vector<CatalogEntry> out;
  for (const auto& n : names) {
    const auto p = fs::path(bundled_) / (n + ".safetensors");
    std::error_code ec;
    if (fs::exists(p, ec)) out.push_back({n, "bundled/" + n + ".safetensors", p.string(), true});
  }
  return out;
}

std::vector<CatalogEntry> ModelCatalog::list(Kind kind) const {
  auto out = bundled_entries(kind);
  if (root_canonical_.empty()) return out;
  std::vector<CatalogEntry> found;
  const app::Confinement confine{confinement()};
  // A model folder and what its entries are named after: checkpoints/ by their own path; a
  // transformer file alone (Flux) in ComfyUI's diffusion_models/ or unet/ by "diffusion_models/NAME",
  // its text encoders and VAE found by name in the root's text_encoders/ and vae/.
  std::vector<std::pair<fs::path, fs::path>> dirs = {{folder(kind), folder(kind)}};
  if (kind == Kind::checkpoint)
    for (const char* sub : {"diffusion_models", "unet"}) dirs.emplace_back(fs::path(root_) / sub, root_);
  std::error_code ec;
  for (const auto& [dir, base] : dirs) {
    if (!fs::is_directory(dir, ec)) continue;
    // The walk every part shares (app/model_files.h): folder symlinks followed once each, loops
    // and files outside the allowed folders left out.
    for (const auto& p : app::scan_folder(dir.string(), {".safetensors"}, confine).files) {
      const auto rel = fs::relative(p, base, ec);
      if (ec) continue;
      found.push_back({(rel.parent_path() / rel.stem()).string(), fs::relative(p, root_, ec).string(), p.string(), false});
    }
    if (kind == Kind::lora) continue;
    // diffusers folders: model_index.json (a pipeline) or a component's weights
    for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::skip_permission_denied, ec);
         !ec && it != fs::recursive_directory_iterator() && found.size() < app::kMaxScanEntries; it.increment(ec)) {
      if (it.depth() > 4) it.disable_recursion_pending();
      if (!it->is_directory(ec) || !is_model_dir(it->path())) continue;
      it.disable_recursion_pending();
      if (!allowed(it->path().string())) continue;  // a symlink out of the root is not offered
      found.erase(std::remove_if(found.begin(), found.end(), [&](const auto& e) { return inside(e.path, it->path().string()); }),
                  found.end());  // the folder's weights files are parts of it
      found.push_back({fs::relative(it->path(), base, ec).string(), fs::relative(it->path(), root_, ec).string(), it->path().string(), false});
    }
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  out.insert(out.end(), found.begin(), found.end());
  return out;
}

bool ModelCatalog::allowed(const std::string& path) const {
  const auto c = canonical_or_empty(path);
  if (c.empty()) return false;
  if (inside(c, root_canonical_) || (!bundled_.empty() && inside(c, bundled_))) return true;
  for (const auto& r : extra_roots_)
    if (inside(c, r)) return true;
  return false;
}

std::vector<std::string> ModelCatalog::confinement() const {
  std::vector<std::string> roots = extra_roots_;
  if (!root_canonical_.empty()) roots.insert(roots.begin(), root_canonical_);
  return roots;
}

std::string ModelCatalog::outside_hint() const {
  return "; to serve models kept elsewhere through symlinks, start the server with --allowed-roots FOLDER";
}

std::string ModelCatalog::resolve(Kind kind, std::string const& name_in, const std::string& field) const {
  // A1111 titles carry the short hash: "v1-5-pruned-emaonly.safetensors [6ce0161689]".
  static const std::regex hash_suffix(R"(\s*\[[0-9a-fA-F]{6,64}\]\s*$)");
  std::string name = std::regex_replace(name_in, hash_suffix, "");
  if (name.empty()) {
    if (kind == Kind::checkpoint) return "";
    throw BadRequest(field, std::string("no ") + kind_word(kind) + " named");
  }
  if (name.size() > 1024 || name.find('\0') != std::string::npos) throw BadRequest(field, "name too long or not text");
  const fs::path p(name);
  for (const auto& b : bundled_entries(kind))
    if (name == b.name || name == b.name + ".safetensors" || name == b.file) return kind == Kind::checkpoint && b.name == "sigma-shapes" ? "" : b.path;
  if (p.is_absolute()) {
    // Only our own PNGs' absolute records of files inside the root (or bundled) are taken.
    if (allowed(name)) {
      if (kind == Kind::checkpoint && canonical_or_empty(name) == canonical_or_empty(fs::path(bundled_) / "sigma-shapes.safetensors")) return "";
      return canonical_or_empty(name);
    }
    throw BadRequest(field, std::string(kind_word(kind)) + " '" + scrub(name) + "': absolute paths are refused; name a " + kind_word(kind) +
                                " inside the models root (GET /v1/models lists them)");
  }
  for (const auto& part : p)
    if (part == "..") throw BadRequest(field, std::string(kind_word(kind)) + " '" + name + "': '..' is refused; names stay inside the models root");
  if (kind == Kind::lora) {  // the runner's own rule (app/model_files.h), so both find the same file
    try {
      return app::resolve_named_file(name, folder(kind), "LoRA", {confinement()});
    } catch (const std::invalid_argument& e) {
      throw BadRequest(field, scrub(e.what()) + outside_hint());
    }
  }
  // A name relative to the root must stay in the kind's own folder: a LoRA is no checkpoint.
  std::vector<fs::path> candidates;
  for (const fs::path& base : {fs::path(folder(kind)), fs::path(root_)}) {
    candidates.push_back(base / p);
    candidates.push_back(base / (name + ".safetensors"));
  }
  for (const auto& c : candidates) {
    std::error_code ec;
    if (!fs::exists(fs::symlink_status(c, ec)) && !fs::exists(c, ec)) continue;
    if (!allowed(c.string()))
      throw BadRequest(field, std::string(kind_word(kind)) + " '" + name + "' leads outside the models root (a symlink out?); refused" +
                                  outside_hint());
    if (fs::is_directory(c, ec) && !is_model_dir(c)) continue;
    for (const Kind other : {Kind::checkpoint, Kind::controlnet, Kind::lora})
      if (other != kind && inside(fs::absolute(c).lexically_normal().string(), fs::absolute(folder(other)).lexically_normal().string()))
        throw BadRequest(field, std::string(kind_word(kind)) + " '" + name + "' is in the " + fs::path(folder(other)).filename().string() +
                                    "/ folder: that is a " + kind_word(other) + ", not a " + kind_word(kind));
    return canonical_or_empty(c);
  }
  for (const auto& e : list(kind))  // a bare stem found in a subfolder
    if (fs::path(e.name).filename() == p) return e.path;
  std::string known;
  for (const auto& e : list(kind)) known += (known.empty() ? "" : ", ") + e.name;
  throw BadRequest(field, std::string("unknown ") + kind_word(kind) + " '" + name + "' (known: " + (known.empty() ? "none" : known) + ")");
}

std::string ModelCatalog::name_of(Kind kind, const std::string& path) const {
  if (path.empty()) return "sigma-shapes";
  const auto c = canonical_or_empty(path);
  for (const auto& e : list(kind))
    if (canonical_or_empty(e.path) == c) return e.name;
  return fs::path(path).stem().string();
}

std::string ModelCatalog::scrub(std::string message) const {
  auto sorted = scrubs_;  // longest first, so a folder inside another gets its own label
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  for (const auto& [path, label] : sorted) {
    if (path.empty() || path == "/") continue;
    for (size_t at = message.find(path); at != std::string::npos; at = message.find(path, at + label.size()))
      message.replace(at, path.size(), label);
  }
  // Anything else that still looks like an absolute path (two folders deep or more) outside our folders.
  static const std::regex abs_path(R"((^|[\s'"(=])/(?:[^\s'":,)/]+/){2,}([^\s'":,)]*))");
  return std::regex_replace(message, abs_path, "$1<path>/$2");
}

}  // namespace sigma::server
