// AUTOMATIC1111's `parameters` text, the metadata format most tools read:
//   <prompt>
//   Negative prompt: <negative>
//   Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 42, Size: 512x512, ...
// Written for every image we save, and parsed so images made by A1111 (or us) can be
// re-run. Our own images also carry the exact request as JSON ("sigma-request" chunk).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "app/request.h"

namespace sigma::app {

// What the parameters line records beyond the request: the resolved values of one image.
struct ImageRecord {
  int64_t seed = 0;                 // this image's seed
  int64_t width = 0, height = 0;    // resolved size
  std::string model_name, model_hash;
  std::vector<double> sigmas;       // the σ grid actually used
  int batch_size = 1, batch_position = 0;
  std::string vae_retry;            // set when the decode was redone in another precision
  std::string device, dtype;        // where and in what precision it ran ("cpu", "bf16"): auto resolves per machine
  bool distilled_guidance = false;  // the model read Request::guidance (Flux dev): Forge's "Distilled CFG Scale"
  std::vector<std::string> modules; // the separate parts it was made with (Flux: ae, clip_l, t5xxl): Forge's "Module N"
  // (name, short hash) of the LoRAs and embeddings used: A1111's `Lora hashes` and `TI hashes`.
  std::vector<std::pair<std::string, std::string>> lora_hashes, ti_hashes;
};

std::string a1111_sampler_name(const std::string& sampler, const std::string& solver_type = "");
std::string a1111_schedule_name(const std::string& scheduler);
// Display name -> ours ("DPM++ 2M Karras" legacy names split into sampler + schedule); "" if unknown.
std::pair<std::string, std::string> sampler_from_a1111(const std::string& sampler, const std::string& schedule);

std::string format_parameters(const Request& r, const ImageRecord& rec);

// Parses a parameters text into a request (fields it does not carry keep their defaults).
// `unparsed` collects "key: value" entries with no request field (Model hash, Version, ...).
// `not_taken` gets one line for each setting that changes a picture but was not taken
// (a sampler or schedule with no equivalent here, an extension's or hires fix's entries),
// so front ends can say that the re-run will differ.
Request parse_parameters(const std::string& text, std::map<std::string, std::string>* unparsed = nullptr,
                         std::vector<std::string>* not_taken = nullptr);

// The request that made an image: our JSON chunk if present, else the A1111 text
// (`not_taken` as above). Throws std::invalid_argument naming the file when it carries neither.
Request request_from_png(const std::string& path, std::vector<std::string>* not_taken = nullptr);
// The same from a PNG's text chunks (png_text_chunks); `what` names the source in errors.
Request request_from_png_text(const std::map<std::string, std::string>& text, const std::string& what,
                              std::vector<std::string>* not_taken = nullptr);

}  // namespace sigma::app
