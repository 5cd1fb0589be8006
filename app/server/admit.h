// Turning what a client sent into a Request the runner may run: the A1111 translation
// (a1111.cpp), our job-file JSON (jobs_api.cpp), and the checks both share (admit.cpp):
// names resolved inside the models root, uploaded images decoded and checked, the CLI's
// validate(), sampler and schedule names, and the prompt-length cap. Every refusal is a
// BadRequest that names the client's field. No LibTorch: this is plain JSON and strings.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>

#include <functional>
#include <string>
#include <vector>

#include "app/request.h"
#include "app/server/catalog.h"
#include "models/text/clip_tokenizer.h"

namespace sigma::server {

struct AdmitContext {
  const ModelCatalog* catalog = nullptr;
  std::string output_dir;        // every image goes here (names chosen by the runner)
  std::string upload_dir;        // this request's decoded input images (created on demand)
  int max_prompt_chunks = 8;     // 75-token chunks per prompt
  const models::ClipTokenizer* tokenizer = nullptr;  // CLIP's BPE, to count prompt tokens
  std::string default_model;     // POST /sdapi/v1/options sd_model_checkpoint ("" = bundled)
  int64_t default_clip_skip = 1;
  int64_t max_batch_count = 16;
  // Client field for a CLI flag in validate()'s messages ("--steps" -> "steps").
  std::function<std::string(const std::string& flag)> field_of;
};

// A base64 image of field `field` -> a file in ctx.upload_dir (checked: it decodes, and its
// dimensions are within limits before any pixel is decoded). Returns the file's path.
std::string save_upload(AdmitContext& ctx, const std::string& base64, const std::string& field);

// The shared checks; fills server-side folders into r (output, lora/embeddings folders).
void admit(app::Request& r, const AdmitContext& ctx);

// A1111 sampler/scheduler names (display or API form, any case) -> ours; BadRequest if unknown.
void a1111_sampler(app::Request& r, const std::string& sampler, const std::string& scheduler);

struct A1111Request {
  app::Request request;
  std::vector<std::string> not_honoured;  // "field=value" accepted from A1111 but without effect here
  bool send_images = true;
  nlohmann::json echo;                    // the request with A1111's defaults, for "parameters"
};
// POST /sdapi/v1/txt2img and /img2img bodies.
A1111Request a1111_request(const nlohmann::json& body, bool img2img, AdmitContext& ctx);

// POST /v1/jobs: a job-file line (or a PNG's sigma-request); images as base64 in init-img,
// mask and control-net[].image. `warnings` gets fields that were accepted but not used.
app::Request job_request(const nlohmann::json& body, AdmitContext& ctx, std::vector<std::string>& warnings);

// The request as a client may see it: paths replaced by names (model, ControlNets, LoRAs),
// uploaded images and server folders left out.
nlohmann::json public_request(const app::Request& r, const ModelCatalog& catalog);

}  // namespace sigma::server
