#include "app/adapters.h"


#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace fs = std::filesystem;

namespace sigma::app {
namespace {


// A name given as a file path is recorded by its stem (A1111's mentioned name is the stem too).
bool looks_like_path(const std::string& name) {
  const auto ext = fs::path(name).extension().string();
  const auto& known = adapter_extensions();
  return name.find('/') != std::string::npos || std::find(known.begin(), known.end(), ascii_lower(ext)) != known.end();
}

}  // namespace

std::string lora_folder(const Request& r) { return r.lora_dir.empty() ? (fs::path(models_root()) / "loras").string() : r.lora_dir; }
std::string embeddings_folder(const Request& r) {
  return r.embeddings_dir.empty() ? (fs::path(models_root()) / "embeddings").string() : r.embeddings_dir;
}


std::string resolve_lora(const std::string& name, const std::string& folder, const std::vector<std::string>& confine_to) {
  try {
    return resolve_named_file(name, folder, "LoRA", {confine_to});
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    if (msg.find("which has no LoRA files") == std::string::npos) throw;
    throw std::invalid_argument(msg + "; set the folder with --lora-dir DIR (default <models root>/loras, $SIGMA_MODELS or ~/models)");
  }
}

std::vector<LoraUse> request_loras(const Request& r, const RequestPrompts& prompts) {
  const std::string folder = lora_folder(r);
  std::vector<LoraUse> out;
  for (const auto& ref : prompts.loras) {
    for (double w : {ref.unet, ref.text})
      if (!std::isfinite(w) || w < -10 || w > 10)
        throw std::invalid_argument("LoRA " + ref.name + ": strength " + std::to_string(w) + " must be between -10 and 10");
    LoraUse u;
    u.path = resolve_lora(ref.name, folder, r.confine_to);
    u.name = looks_like_path(ref.name) ? fs::path(ref.name).stem().string() : ref.name;
    u.unet = ref.unet;
    u.text = ref.text;
    out.push_back(u);
  }
  return out;
}

std::string addnet_hash(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  unsigned char len[8] = {};
  if (!in.read(reinterpret_cast<char*>(len), 8)) throw std::runtime_error(path + ": cannot read to hash");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len[i];
  in.seekg(static_cast<std::streamoff>(8 + n));
  return sha256_hex(in);
}

std::string lora_short_hash(const models::Adapter& adapter) {
  if (auto it = adapter.metadata.find("sshs_model_hash"); it != adapter.metadata.end() && !it->second.empty())
    return it->second.substr(0, 12);
  return addnet_hash(adapter.path).substr(0, 12);
}

std::string embedding_short_hash(const std::string& path) { return file_sha256(path).substr(0, 12); }

EngineAdapters& engine_adapters(Engine& engine) {
  std::lock_guard<std::mutex> lock(engine.mutex_);
  if (!engine.adapters_) {
    auto a = std::make_shared<EngineAdapters>();
    const auto& ck = engine.checkpoint();
    a->model.family = models::to_string(ck.family);
    a->model.components[models::kUnet] = models::adapter_target(engine.diffusion_model().module());
    a->patcher.add_component(models::kUnet, engine.diffusion_module());
    for (size_t i = 0; i < engine.text_encoder_count(); ++i) {  // SDXL's second: kohya's te2, PEFT's second encoder
      if (engine.family().text_encoders[i].network != models::TextNetwork::Clip) continue;  // (LoRAs on T5: none in use)
      const auto& component = models::text_encoder_component(i);
      a->model.components[component] = models::adapter_target(*engine.text_encoder(i));
      a->patcher.add_component(component, engine.text_encoder(i).ptr());
    }
    a->model.components[models::kTextEncoder].skipped = {ck.text_encoder_ignored.begin(), ck.text_encoder_ignored.end()};
    engine.adapters_ = std::move(a);
  }
  return *engine.adapters_;
}

RequestAdapters prepare_adapters(Engine& engine, const Request& r, const RequestPrompts& prompts) {
  RequestAdapters out;
  out.loras = request_loras(r, prompts);
  auto& state = engine_adapters(engine);
  models::PatchSet set;
  for (const auto& u : out.loras) {
    const std::string key = fs::absolute(u.path).lexically_normal().string();
    auto it = state.loras.find(key);
    if (it == state.loras.end()) it = state.loras.emplace(key, models::load_adapter(u.path, state.model)).first;
    auto part = models::adapter_patches(it->second, u.unet, u.text);
    set.insert(set.end(), part.begin(), part.end());
    const std::string name = [&] {
      std::string n = u.name;  // A1111: mentioned_name with ':' and ',' removed
      n.erase(std::remove_if(n.begin(), n.end(), [](char c) { return c == ':' || c == ','; }), n.end());
      return n;
    }();
    const bool listed = std::any_of(out.lora_hashes.begin(), out.lora_hashes.end(), [&](const auto& p) { return p.first == name; });
    if (!listed) out.lora_hashes.emplace_back(name, lora_short_hash(*it->second));
  }
  const bool had_on_the_fly = state.patcher.patched_on_the_fly() > 0;
  out.merged = state.patcher.apply(set);
  if (out.merged && (had_on_the_fly || state.patcher.patched_on_the_fly() > 0)) engine.forget_network_graphs();
  if (out.merged) ++state.merges;
  out.embeddings = prompt_embeddings(engine, r, prompts);
  return out;
}

PromptEmbeddings prompt_embeddings(Engine& engine, const Request& r, const RequestPrompts& prompts) {
  PromptEmbeddings pe;
  // Textual inversion is an SD habit: Flux's CLIP-L gives only the pooled vector, and T5 reads text.
  if (!engine.family().is_unet()) return pe;
  const std::string text = ascii_lower(prompts.positive.text + "\n" + prompts.negative.text);
  const auto files = named_files(embeddings_folder(r), {r.confine_to}).by_stem;
  if (files.empty()) return pe;
  const auto& tok = engine.tokenizer();
  // A name is used where its ids stand whole in an attention run of either prompt's tokens
  // (tokenize_prompt replaces it within a run), so a word is told from a part of a longer one.
  auto in_tokens = [&](const std::vector<int>& word) {
    for (const auto* tokens : {&prompts.positive_tokens, &prompts.negative_tokens})
      for (const auto& run : tokens->runs)
        if (std::search(run.ids.begin(), run.ids.end(), word.begin(), word.end()) != run.ids.end()) return true;
    return false;
  };
  auto& state = engine_adapters(engine);
  const int64_t vocab_size = engine.text_encoder(0)->config.vocab_size;  // later encoders share its ids
  std::vector<int64_t> widths;  // SDXL: clip_l and clip_g vectors
  for (size_t i = 0; i < engine.text_encoder_count(); ++i) widths.push_back(engine.text_encoder(i)->config.width);
  struct Found {
    std::shared_ptr<const models::TextualInversion> ti;
    std::vector<int> word;
  };
  std::vector<Found> found;
  for (const auto& [stem, path] : files) {
    if (text.find(ascii_lower(stem)) == std::string::npos) continue;
    auto word = tok.encode(stem);
    if (word.empty() || !in_tokens(word)) continue;
    const std::string key = fs::absolute(path).lexically_normal().string();
    auto it = state.embeddings.find(key);
    if (it == state.embeddings.end()) {
      auto ti = models::load_embedding(path, {models::to_string(engine.checkpoint().family), widths});
      ti.name = stem;
      it = state.embeddings.emplace(key, std::make_shared<const models::TextualInversion>(std::move(ti))).first;
    }
    found.push_back({it->second, word});
  }
  // Longest words first, so "name-v2" is not read as "name" followed by "-v2" (A1111 sorts
  // its candidates by token length as well).
  std::stable_sort(found.begin(), found.end(), [](const Found& a, const Found& b) { return a.word.size() > b.word.size(); });
  std::vector<std::vector<torch::Tensor>> rows(widths.size());  // per text encoder
  int offset = 0;
  for (const auto& f : found) {
    pe.tokens.push_back({f.word, static_cast<int>(vocab_size) + offset, static_cast<int>(f.ti->count())});
    for (size_t i = 0; i < rows.size(); ++i) rows[i].push_back(f.ti->vectors[i].to(torch::kFloat32));
    offset += static_cast<int>(f.ti->count());
    std::string name = f.ti->name;
    name.erase(std::remove_if(name.begin(), name.end(), [](char c) { return c == ':' || c == ','; }), name.end());
    pe.hashes.emplace_back(name, embedding_short_hash(f.ti->path));
  }
  for (const auto& r : rows)
    if (!r.empty()) pe.extra.push_back(torch::cat(r));
  return pe;
}

}  // namespace sigma::app
