// What a request may name: checkpoints, ControlNets and LoRAs inside the models root (the
// ComfyUI layout the GUI uses: checkpoints/, controlnet/, loras/, embeddings/) plus the
// bundled models, by name. Everything a client names goes through here, so one place
// decides that nothing outside the root is read: `..` and symlinks that leave the root are
// refused, and absolute paths are taken only when they point inside it (our own PNGs record
// absolute paths). Errors are BadRequest naming the field.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

namespace sigma::server {

// A client error: HTTP 400 with {"error": ..., "field": ...}.
struct BadRequest : std::invalid_argument {
  std::string field;
  BadRequest(std::string f, const std::string& message) : std::invalid_argument(message), field(std::move(f)) {}
};

struct CatalogEntry {
  std::string name;      // what clients pass: the path under the kind's folder without extension
  std::string file;      // shown to clients: relative to the models root, or "bundled/<file>"
  std::string path;      // absolute, server-side only (never in a response)
  bool bundled = false;
};

class ModelCatalog {
 public:
  enum class Kind { checkpoint, controlnet, lora };
  // `allowed_roots`: folders outside the root that symlinks in it may lead to (--allowed-roots).
  ModelCatalog(std::string models_root, std::string bundled_dir, std::vector<std::string> allowed_roots = {});

  // The absolute path a name stands for; "" for the default (bundled) checkpoint.
  std::string resolve(Kind kind, const std::string& name, const std::string& field) const;
  std::vector<CatalogEntry> list(Kind kind) const;
  // The name a client would use for a resolved path ("" -> the bundled model's name).
  std::string name_of(Kind kind, const std::string& path) const;
  // `message` with every server-side folder replaced by a neutral label, so that errors of
  // the engine (which name files by absolute path) reveal nothing outside.
  std::string scrub(std::string message) const;
  // A path is inside the models root or an allowed root (after symlinks), or is a bundled file.
  bool allowed(const std::string& path) const;
  // The folders a request's files must lie in (Request::confine_to): the root, the allowed roots.
  std::vector<std::string> confinement() const;

  const std::string& root() const { return root_; }
  std::string folder(Kind kind) const;
  void add_scrub(const std::string& path, const std::string& label) { scrubs_.push_back({path, label}); }

 private:
  std::string root_, root_canonical_, bundled_;
  std::vector<std::string> extra_roots_;  // canonical
  std::string outside_hint() const;       // how to allow a folder symlinks lead to
  std::vector<std::pair<std::string, std::string>> scrubs_;
  std::vector<CatalogEntry> bundled_entries(Kind kind) const;
};

// The models root the CLI uses: $SIGMA_MODELS, else ~/models.

}  // namespace sigma::server
