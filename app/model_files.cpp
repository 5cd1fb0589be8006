#include "app/model_files.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <set>
#include <stdexcept>
#include <utility>

namespace fs = std::filesystem;

namespace sigma::app {
namespace {

std::string canonical_or_empty(const fs::path& p) {
  std::error_code ec;
  const auto c = fs::canonical(p, ec);
  return ec ? std::string() : c.string();
}

bool inside(const std::string& path, const std::string& dir) {
  if (dir.empty() || path.empty()) return false;
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
                         (path[dir.size()] == '/' || dir.back() == '/'));
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// The walk's state: folders already entered (device, inode), entries seen.
struct Walk {
  const std::vector<std::string>& extensions;
  const Confinement& confine;
  const fs::path& top;
  FolderScan out;
  std::set<std::pair<dev_t, ino_t>> entered;
  size_t entries = 0;
  bool capped = false;

  std::string shown(const fs::path& p) const {
    std::error_code ec;
    const auto rel = fs::relative(p, top, ec);
    return ec || rel.empty() ? p.filename().string() : rel.string();
  }

  void folder(const fs::path& dir, int depth) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0) return;
    if (!entered.insert({st.st_dev, st.st_ino}).second) {
      out.skipped.push_back(shown(dir) + " (a symlink loop: that folder was already searched)");
      return;
    }
    if (depth > kMaxScanDepth) {
      out.skipped.push_back(shown(dir) + " (more than " + std::to_string(kMaxScanDepth) + " folders deep)");
      return;
    }
    std::error_code ec;
    std::vector<fs::path> children;
    for (auto it = fs::directory_iterator(dir, fs::directory_options::skip_permission_denied, ec); !ec && it != fs::directory_iterator();
         it.increment(ec)) {
      if (++entries > kMaxScanEntries) {
        if (!capped) out.skipped.push_back("everything after the first " + std::to_string(kMaxScanEntries) + " entries");
        capped = true;
        return;
      }
      children.push_back(it->path());
    }
    std::sort(children.begin(), children.end());
    for (const auto& p : children) {
      if (capped) return;
      std::error_code e;
      if (fs::is_directory(p, e)) {  // follows symlinks: models on another disk
        folder(p, depth + 1);
      } else if (fs::is_regular_file(p, e)) {
        const std::string ext = ascii_lower(p.extension().string());
        if (std::find(extensions.begin(), extensions.end(), ext) == extensions.end()) continue;
        if (!confine.allows(p.string())) {
          out.skipped.push_back(shown(p) + " (leads outside the allowed folders)");
          continue;
        }
        out.files.push_back(p);
      }
    }
  }
};

}  // namespace

bool Confinement::allows(const std::string& path) const {
  if (roots.empty()) return true;
  const auto c = canonical_or_empty(path);
  if (c.empty()) return false;
  for (const auto& r : roots)
    if (inside(c, canonical_or_empty(r))) return true;
  return false;
}

FolderScan scan_folder(const std::string& folder, const std::vector<std::string>& extensions, const Confinement& confine) {
  const fs::path top(folder);
  Walk w{extensions, confine, top, {}, {}, 0, false};
  std::error_code ec;
  if (!folder.empty() && fs::is_directory(top, ec)) w.folder(top, 0);
  std::sort(w.out.files.begin(), w.out.files.end());
  return std::move(w.out);
}

std::string ascii_lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

const std::vector<std::string>& adapter_extensions() {
  static const std::vector<std::string> e = {".safetensors", ".pt", ".ckpt", ".bin", ".pth"};
  return e;
}

NamedFiles named_files(const std::string& folder, const Confinement& confine) {
  auto scan = scan_folder(folder, adapter_extensions(), confine);
  NamedFiles out;
  out.skipped = std::move(scan.skipped);
  for (const auto& f : scan.files) {
    std::error_code ec;
    const auto rel = fs::relative(f, folder, ec);
    const bool safetensors = ascii_lower(f.extension().string()) == ".safetensors";
    auto put = [&](std::map<std::string, std::string>& m, const std::string& key) {
      auto it = m.find(key);
      if (it == m.end() || (safetensors && ascii_lower(fs::path(it->second).extension().string()) != ".safetensors")) m[key] = f.string();
    };
    if (!ec) put(out.by_relative, (rel.parent_path() / rel.stem()).string());
    put(out.by_stem, f.stem().string());
  }
  return out;
}

std::vector<std::string> closest_names(const std::string& name, const std::vector<std::string>& candidates, size_t n) {
  std::vector<std::pair<size_t, std::string>> scored;
  for (const auto& c : candidates) scored.emplace_back(edit_distance(ascii_lower(name), ascii_lower(c)), c);
  std::stable_sort(scored.begin(), scored.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::string> out;
  for (size_t i = 0; i < scored.size() && i < n; ++i) out.push_back(scored[i].second);
  return out;
}

std::string resolve_named_file(const std::string& name, const std::string& folder, const std::string& what, const Confinement& confine) {
  std::error_code ec;
  const fs::path p(name);
  const bool path_like = name.find('/') != std::string::npos ||
                         std::find(adapter_extensions().begin(), adapter_extensions().end(), ascii_lower(p.extension().string())) !=
                             adapter_extensions().end();
  // A path of an existing file (the CLI's --lora FILE): taken as is where it may be opened.
  if (path_like && fs::is_regular_file(p, ec) && (p.is_absolute() || confine.roots.empty())) {
    if (!confine.allows(name))
      throw std::invalid_argument(what + " " + name + ": leads outside the models folders; refused");
    return name;
  }
  const auto files = named_files(folder, confine);
  std::string note;
  for (const auto& s : files.skipped) note += (note.empty() ? "; skipped: " : ", ") + s;
  if (auto it = files.by_relative.find(name); it != files.by_relative.end()) return it->second;
  if (auto it = files.by_stem.find(name); it != files.by_stem.end()) return it->second;
  // A1111 matches names case-insensitively on Windows; a unique such match is taken.
  std::string found;
  int matches = 0;
  for (const auto& [stem, path] : files.by_stem)
    if (ascii_lower(stem) == ascii_lower(name)) found = path, ++matches;
  if (matches == 1) return found;
  if (path_like && p.is_absolute()) throw std::invalid_argument(what + " " + name + ": no such file" + note);
  std::vector<std::string> stems;
  for (const auto& [stem, path] : files.by_stem) stems.push_back(stem);
  std::string msg = "unknown " + what + " '" + name + "': no " + name + ".safetensors in " + folder + " (or its subfolders)";
  if (stems.empty()) {
    msg += ", which has no " + what + " files";
  } else {
    std::string near;
    for (const auto& c : closest_names(name, stems)) near += (near.empty() ? "" : ", ") + c;
    msg += "; closest names: " + near;
  }
  throw std::invalid_argument(msg + note);
}

}  // namespace sigma::app
