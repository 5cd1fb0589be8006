// The app side of adapters (docs/adapters.md): which LoRAs and textual-inversion embeddings a
// request uses, found by name in the models folders, merged into the Engine's live weights
// through its models::ModelPatcher and passed to the text encoder as extra token vectors.
//
//   LoRA   AUTOMATIC1111's `<lora:NAME:W>` / `<lora:NAME:W_TE:W_UNET>` prompt tags (te=, unet= named
//          items too) plus Request::lora (CLI --lora FILE[:W], job "lora": [...]). NAME is a file
//          stem under the LoRA folder (subfolders searched) or a path.
//   TI     an embedding file's stem used as a word of the prompt (A1111) or as `embedding:NAME`
//          (ComfyUI), positive and negative prompt; its vectors replace the word before chunking.
//
// Threading: an Engine's patcher changes that engine's weights, so everything here runs on the
// thread that generates with the engine (JobRunner: one worker thread per engine; the CLI: the
// main thread). Two threads must not generate with one Engine at the same time.
#pragma once

#include <torch/torch.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "app/conditioning.h"
#include "app/engine.h"
#include "app/model_files.h"
#include "app/process.h"
#include "app/prompt.h"
#include "app/request.h"
#include "models/adapters/embedding.h"
#include "models/adapters/lora.h"

namespace sigma::app {

std::string lora_folder(const Request& r);        // r.lora_dir, else <models root>/loras
std::string embeddings_folder(const Request& r);  // r.embeddings_dir, else <models root>/embeddings

// One LoRA of a request, resolved to its file.
struct LoraUse {
  std::string name;  // as mentioned (tag or --lora), for `Lora hashes`
  std::string path;  // the file
  double unet = 1.0, text = 1.0;
  bool operator==(const LoraUse&) const = default;
};

// The request's LoRAs (RequestPrompts::loras: the positive prompt's tags, then r.lora), names
// resolved in lora_folder(r). Throws std::invalid_argument: an unknown name (listing the
// closest names in the folder), a strength outside -10..10.
std::vector<LoraUse> request_loras(const Request& r, const RequestPrompts& prompts);

// NAME -> a file: an existing path as is, else the .safetensors (or pickle, to be refused by
// load_adapter) file named NAME under `folder`, subfolders included (app/model_files.h: the
// same rule the server admits requests by). `confine_to`: Request::confine_to.
std::string resolve_lora(const std::string& name, const std::string& folder, const std::vector<std::string>& confine_to = {});

// AUTOMATIC1111's short hashes, as its infotext writes them:
//   Lora hashes: extensions-builtin/Lora/network.py NetworkOnDisk: metadata "sshs_model_hash" or
//     modules/hashes.py addnet_hash_safetensors (SHA-256 of the file after the 8-byte length and
//     the JSON header), first 12 hex digits;
//   TI hashes:   modules/textual_inversion Embedding.set_hash(hashes.sha256(file)): SHA-256 of
//     the whole file, first 12 hex digits.
std::string addnet_hash(const std::string& path);  // full hex digest
std::string lora_short_hash(const models::Adapter& adapter);
std::string embedding_short_hash(const std::string& path);

// What an Engine keeps for adapters (one per engine, created on first use).
struct EngineAdapters {
  models::AdapterModel model;  // what the loaded networks offer
  models::ModelPatcher patcher;
  std::map<std::string, std::shared_ptr<const models::Adapter>> loras;          // by file: a Patch identifies by pointer
  std::map<std::string, std::shared_ptr<const models::TextualInversion>> embeddings;  // by file
  int64_t merges = 0;  // patcher.apply() calls that changed weights (tests: the same set twice merges once)
};
EngineAdapters& engine_adapters(Engine& engine);

// The embeddings a request's prompts use, as the tokenizer and the text encoder need them.
// tokens: for tokenize_prompt; extra: per text encoder, [n, width] float32 CPU rows for the ids
// from vocab_size on (SDXL: clip_l's, then clip_g's); empty: none.
struct PromptEmbeddings : TokenEmbeddings {
  std::vector<std::pair<std::string, std::string>> hashes;  // (name, short hash) of those used
};

// What a request's adapters did: for the image's metadata.
struct RequestAdapters {
  std::vector<LoraUse> loras;
  std::vector<std::pair<std::string, std::string>> lora_hashes;  // (name, short hash)
  PromptEmbeddings embeddings;
  bool merged = false;  // this request merged weights (false: none, or the set was already applied)
};

// Makes the request's LoRA set the applied one on the engine (none: the base model, restored
// bit for bit), loading each file once per engine, and finds its embeddings. Throws
// models::AdapterError / EmbeddingError (naming the file) and std::invalid_argument.
// `prompts`: read_prompts(r), tokenized (app/prompt.h).
RequestAdapters prepare_adapters(Engine& engine, const Request& r, const RequestPrompts& prompts);

// The embeddings under embeddings_folder(r) whose names occur in the prompt or the negative
// prompt (`prompts` tokenized).
PromptEmbeddings prompt_embeddings(Engine& engine, const Request& r, const RequestPrompts& prompts);

}  // namespace sigma::app
