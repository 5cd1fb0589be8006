#include "models/adapters/embedding.h"

#include <algorithm>
#include <filesystem>

#include "models/io/safetensors.h"

namespace sigma::models {
namespace {

// The family a vector width belongs to, for the error message.
std::string family_of_width(int64_t w) {
  if (w == 768) return " (Stable Diffusion 1.x)";
  if (w == 1024) return " (Stable Diffusion 2.x)";
  if (w == 1280) return " (SDXL's second text encoder)";
  return "";
}

torch::Tensor as_vectors(torch::Tensor t) {
  t = t.to(torch::kFloat32).contiguous();
  return t.dim() == 1 ? t.unsqueeze(0) : t;
}

}  // namespace

TextualInversion load_embedding(const std::string& path, const EmbeddingModel& model) {
  const std::filesystem::path p(path);
  const auto ext = p.extension().string();
  if (ext == ".pt" || ext == ".ckpt" || ext == ".pth" || ext == ".bin")
    throw EmbeddingError(path + ": pickle embeddings (" + ext + ") can run code when loaded and are not supported; "
                                "convert it to .safetensors (e.g. with the safetensors package) and pass that");
  auto f = SafeTensors::open(path);
  TextualInversion ti;
  ti.name = p.stem().string();
  ti.path = path;
  const auto& tensors = f->tensors();
  if (f->contains("clip_l") || f->contains("clip_g")) {
    if (!f->contains("clip_l") || !f->contains("clip_g"))
      throw EmbeddingError(path + ": an SDXL embedding needs both clip_l and clip_g");
    ti.vectors = {as_vectors(f->load("clip_l")), as_vectors(f->load("clip_g"))};
  } else {
    std::string key;
    if (f->contains("emb_params")) key = "emb_params";
    for (const auto& t : tensors)
      if (key.empty() && t.name.rfind("string_to_param.", 0) == 0) key = t.name;
    if (key.empty() && tensors.size() == 1) key = tensors[0].name;
    if (key.empty())
      throw EmbeddingError(path + ": not a textual-inversion embedding (no emb_params, clip_l/clip_g, string_to_param.* "
                                  "or single tensor; it has " + std::to_string(tensors.size()) + " tensors)");
    ti.vectors = {as_vectors(f->load(key))};
  }
  for (const auto& v : ti.vectors)
    if (v.dim() != 2)
      throw EmbeddingError(path + ": embedding vectors must be [n, width], got " + shape_string(v.sizes().vec()));
  if (ti.vectors.size() == 2 && ti.vectors[1].size(0) != ti.vectors[0].size(0))
    throw EmbeddingError(path + ": clip_l has " + std::to_string(ti.vectors[0].size(0)) + " vectors and clip_g " +
                         std::to_string(ti.vectors[1].size(0)));

  // Fit: the number of encoders first (SDXL files carry two sets), then the widths.
  const int64_t w = ti.vectors[0].size(1);
  if (ti.vectors.size() > model.widths.size())
    throw EmbeddingError(path + ": this embedding is for SDXL (clip_l + clip_g vectors), the model is " + model.family);
  if (ti.vectors.size() < model.widths.size())
    throw EmbeddingError(path + ": this embedding has one set of " + std::to_string(w) + "-wide vectors" +
                         family_of_width(w) + "; the model is " + model.family +
                         " and needs clip_l and clip_g vectors for its two text encoders");
  if (w != model.widths[0])
    throw EmbeddingError(path + ": the embedding's vectors are " + std::to_string(w) + " wide" + family_of_width(w) +
                         ", the text encoder of the " + model.family + " model is " + std::to_string(model.widths[0]) +
                         " wide");
  if (ti.vectors.size() == 2 && ti.vectors[1].size(1) != model.widths[1])
    throw EmbeddingError(path + ": the embedding's clip_g vectors are " + std::to_string(ti.vectors[1].size(1)) +
                         " wide, the model's second text encoder is " + std::to_string(model.widths[1]) + " wide");
  return ti;
}

std::vector<int> expand_embedding(const std::vector<int>& ids, const std::vector<int>& word, int first_id, int64_t count) {
  if (word.empty()) return ids;
  std::vector<int> out;
  for (size_t i = 0; i < ids.size();) {
    if (i + word.size() <= ids.size() && std::equal(word.begin(), word.end(), ids.begin() + static_cast<std::ptrdiff_t>(i))) {
      for (int64_t k = 0; k < count; ++k) out.push_back(first_id + static_cast<int>(k));
      i += word.size();
    } else {
      out.push_back(ids[i++]);
    }
  }
  return out;
}

}  // namespace sigma::models
