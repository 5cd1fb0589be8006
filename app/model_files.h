// Finding model files by name in a models folder: the one walk and the one name rule that
// every part uses (the runner loading LoRAs and embeddings, the server admitting a request
// and listing its folders, the CLI's precheck). Admission and loading used to resolve a name
// each their own way, so a request admitted for loras/x.safetensors could load an outside
// x.safetensors reached through a folder symlink (issue 25).
//
// The walk follows folder symlinks (models on another disk are common) but never the same
// folder twice, so a symlink loop is reported instead of scanned forever, and it stops after
// a fixed number of entries. A confinement (the server's models root and its --allowed-roots)
// leaves out every file whose real path lies elsewhere. No LibTorch: the server includes it.
#pragma once

#include <cstddef>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace sigma::app {

// Folders a request's files must really be in (after symlinks); empty: anywhere.
struct Confinement {
  std::vector<std::string> roots;
  bool allows(const std::string& path) const;  // false also for a path that does not exist
};

struct FolderScan {
  std::vector<std::filesystem::path> files;  // regular files with a wanted extension, sorted
  std::vector<std::string> skipped;          // what the walk did not follow, and why (for messages)
};

constexpr size_t kMaxScanEntries = 20000;
constexpr int kMaxScanDepth = 16;

// Files under `folder` whose lower-case extension is one of `extensions` (".safetensors"),
// subfolders and folder symlinks included, each folder once; files `confine` does not allow
// are left out (and named in `skipped`).
FolderScan scan_folder(const std::string& folder, const std::vector<std::string>& extensions, const Confinement& confine = {});

// LoRA and embedding files (.safetensors, and the pickle forms load_adapter refuses by name).
const std::vector<std::string>& adapter_extensions();

// s with ASCII letters in lower case: file names and extensions compare case-insensitively
// (a LoRA named "Detail" is found as detail.safetensors, as in AUTOMATIC1111).
std::string ascii_lower(std::string s);

// A file's names in its folder: its path relative to the folder without the extension
// ("zz/decoy"), and its stem ("decoy"). By stem, .safetensors wins over the other extensions
// and the first in sorted order over later ones.
struct NamedFiles {
  std::map<std::string, std::string> by_relative;  // "zz/decoy" -> path
  std::map<std::string, std::string> by_stem;      // "decoy" -> path
  std::vector<std::string> skipped;
};
NamedFiles named_files(const std::string& folder, const Confinement& confine = {});

// NAME -> the file it stands for: an existing file path as is (if `confine` allows it), else
// the file whose relative name or stem is NAME under `folder` (exact, then a unique
// case-insensitive match). Throws std::invalid_argument naming `what` ("LoRA"), the folder,
// the closest names, and anything the walk skipped.
std::string resolve_named_file(const std::string& name, const std::string& folder, const std::string& what,
                               const Confinement& confine = {});

// The up to `n` names of `candidates` nearest to `name` (edit distance, case-insensitive).
std::vector<std::string> closest_names(const std::string& name, const std::vector<std::string>& candidates, size_t n = 3);

}  // namespace sigma::app
