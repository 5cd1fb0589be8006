#include "app/server/admit.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>

#include "app/image_io.h"
#include "app/job_runner.h"
#include "app/parameters.h"
#include "app/prompt.h"
#include "app/server/base64.h"
#include "models/io/json_text.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace sigma::server {

namespace {

std::string lower_key(std::string s) {
  std::string out;
  for (char c : s)
    if (c != ' ' && c != '_' && c != '-') out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool same_dir(const std::string& a, const std::string& b) {
  std::error_code e1, e2;
  const auto ca = fs::weakly_canonical(a, e1), cb = fs::weakly_canonical(b, e2);
  return !e1 && !e2 && ca == cb;
}

// A file the request names besides models (tokenizer folder, VAE): inside the models root only.
std::string inside_root(const ModelCatalog& cat, const std::string& value, const std::string& field) {
  if (value.empty()) return value;
  fs::path p(value);
  for (const auto& part : p)
    if (part == "..") throw BadRequest(field, field + " '" + value + "': '..' is refused; paths stay inside the models root");
  if (p.is_relative()) p = fs::path(cat.root()) / p;
  if (!cat.allowed(p.string()))
    throw BadRequest(field, field + " '" + cat.scrub(value) + "': not found inside the models root (absolute paths and symlinks out are refused)");
  return fs::canonical(p).string();
}

// Preprocessor names and parameter ranges, checked before the job is queued: a threshold of
// 1e308 failed only in the runner, as a 500 after the client had waited.
void check_preprocessors(const app::Request& r, const std::string& field) {
  const auto catalog = app::preprocessor_catalog();
  for (const auto& u : r.controlnets) {
    const auto entry = std::find_if(catalog.begin(), catalog.end(), [&](const auto& e) { return e.name == u.preprocessor; });
    if (entry == catalog.end()) {
      std::string known;
      for (const auto& e : catalog) known += (known.empty() ? "" : ", ") + e.name;
      throw BadRequest(field, "preprocessor '" + models::utf8_prefix(u.preprocessor, 40) + "': no such preprocessor here (known: " + known + ")");
    }
    for (const auto& param : u.params) {
      const std::string& name = param.first;  // not a structured binding: clang 14 cannot capture those
      const double value = param.second;
      const auto p = std::find_if(entry->params.begin(), entry->params.end(), [&](const auto& q) { return q.name == name; });
      if (p == entry->params.end())
        throw BadRequest(field, "preprocessor " + u.preprocessor + " has no parameter '" + models::utf8_prefix(name, 40) + "'");
      if (!(value >= p->min && value <= p->max))
        throw BadRequest(field, "preprocessor " + u.preprocessor + ": " + name + " = " + std::to_string(value) + " is outside " +
                                    std::to_string(p->min) + ".." + std::to_string(p->max));
    }
  }
}

}  // namespace

std::string save_upload(AdmitContext& ctx, const std::string& text, const std::string& field) {
  auto bytes = base64_decode(text);
  if (!bytes || bytes->empty())
    throw BadRequest(field, field + ": not a base64 image (send the file's bytes as base64, optionally as a data: URL; the server reads no paths)");
  std::error_code ec;
  fs::create_directories(ctx.upload_dir, ec);
  if (ec) throw std::runtime_error("cannot create the upload folder: " + ec.message());
  size_t n = 0;
  for (auto it = fs::directory_iterator(ctx.upload_dir, ec); !ec && it != fs::directory_iterator(); ++it) ++n;
  const auto path = (fs::path(ctx.upload_dir) / ("input-" + std::to_string(n) + ".img")).string();
  {
    std::ofstream out(path, std::ios::binary);
    out.write(bytes->data(), static_cast<std::streamsize>(bytes->size()));
    if (!out) throw std::runtime_error("cannot write an uploaded image");
  }
  try {
    // load_image refuses dimensions over kMaxImageSide/kMaxImagePixels from the header,
    // before it decodes a pixel; a full decode here proves the file is a usable image.
    (void)app::load_image(path, 3);
  } catch (const std::exception& e) {
    std::string why = e.what();
    const auto colon = why.find(path);
    if (colon != std::string::npos) why.replace(colon, path.size(), "the image");
    throw BadRequest(field, field + ": not a usable image (" + why + ")");
  }
  return path;
}

void a1111_sampler(app::Request& r, const std::string& sampler, const std::string& scheduler) {
  // The API takes either the display label ("Karras") or the key ("karras", "sgm_uniform").
  std::string label;
  if (scheduler.empty() || lower_key(scheduler) == "automatic") label = "Automatic";
  for (const auto& s : app::schedule_catalog()) {
    const std::string theirs = app::a1111_schedule_name(s.name);
    if (s.name != "custom" && (lower_key(scheduler) == lower_key(theirs) || lower_key(scheduler) == lower_key(s.name))) label = theirs;
  }
  if (label.empty()) {  // sampler_from_a1111 would fall back to the sampler's default; a client typo must not
    std::string known;
    for (const auto& s : app::schedule_catalog())
      if (s.name != "custom") known += ", " + app::a1111_schedule_name(s.name);
    throw BadRequest("scheduler", "scheduler '" + scheduler + "': no such schedule here (known: Automatic" + known + ")");
  }
  auto [name, sched] = app::sampler_from_a1111(sampler.empty() ? "DPM++ 2M" : sampler, label);
  if (name.empty()) {
    // Our own names are fine too ("dpmpp_2m").
    for (const auto& s : app::sampler_catalog())
      if (s.name == sampler) name = s.name;
  }
  if (name.empty()) {
    std::string known;
    for (const auto& s : app::sampler_catalog()) known += (known.empty() ? "" : ", ") + app::a1111_sampler_name(s.name);
    throw BadRequest("sampler_name", "sampler_name '" + sampler + "': no such sampler here (known: " + known + ")");
  }
  if (sched.empty()) {
    std::string known;
    for (const auto& s : app::schedule_catalog()) known += (known.empty() ? "" : ", ") + app::a1111_schedule_name(s.name);
    throw BadRequest("scheduler", "scheduler '" + scheduler + "': no such schedule here (known: Automatic, " + known + ")");
  }
  r.sampler = name;
  r.scheduler = sched;
}

void admit(app::Request& r, const AdmitContext& ctx) {
  const ModelCatalog& cat = *ctx.catalog;
  auto field = [&](const std::string& flag) { return ctx.field_of ? ctx.field_of(flag) : flag.substr(2); };
  r.model = r.model.empty() ? (r.diffusion_model.empty() ? ctx.default_model : "") : cat.resolve(ModelCatalog::Kind::checkpoint, r.model, field("--model"));
  r.tokenizer = inside_root(cat, r.tokenizer, field("--tokenizer"));
  // A Flux transformer and its separate parts: files inside the root, as every other path.
  r.diffusion_model = inside_root(cat, r.diffusion_model, field("--diffusion-model"));
  r.clip_l = inside_root(cat, r.clip_l, field("--clip_l"));
  r.t5xxl = inside_root(cat, r.t5xxl, field("--t5xxl"));
  r.t5_tokenizer = inside_root(cat, r.t5_tokenizer, field("--t5-tokenizer"));
  r.vae = inside_root(cat, r.vae, field("--vae"));
  for (auto& u : r.controlnets) u.model = cat.resolve(ModelCatalog::Kind::controlnet, u.model, field("--control-net"));
  // LoRA and embedding folders are the server's; a request may repeat them (our PNGs record them).
  const auto loras = (fs::path(cat.root()) / "loras").string(), embeddings = (fs::path(cat.root()) / "embeddings").string();
  if (!r.lora_dir.empty() && !same_dir(r.lora_dir, loras))
    throw BadRequest(field("--lora-dir"), "lora-dir: the server uses the models root's loras/ folder; leave it out");
  if (!r.embeddings_dir.empty() && !same_dir(r.embeddings_dir, embeddings))
    throw BadRequest(field("--embeddings-dir"), "embeddings-dir: the server uses the models root's embeddings/ folder; leave it out");
  r.lora_dir = loras;
  r.embeddings_dir = embeddings;
  // Every file the runner opens for this request must lie in the root (or an allowed root),
  // and LoRA names are resolved here by the runner's own rule: what is admitted is what loads.
  r.confine_to = cat.confinement();
  for (auto& l : r.lora) l.name = cat.resolve(ModelCatalog::Kind::lora, l.name, field("--lora"));
  // Each prompt parsed once, for its LoRA tags here and its tokens below.
  const app::ParsedPrompt parsed[] = {app::parse_prompt(r.prompt), app::parse_prompt(r.negative)};
  for (const auto* text : {&r.prompt, &r.negative}) {
    const std::string f = field(text == &r.prompt ? "--prompt" : "--negative");
    for (const auto& t : parsed[text == &r.prompt ? 0 : 1].tags)
      if ((t.type == "lora" || t.type == "lyco") && !t.items.empty()) cat.resolve(ModelCatalog::Kind::lora, t.items[0], f);
  }
  r.output = ctx.output_dir;
  try {
    app::validate(r);
  } catch (const std::invalid_argument& e) {
    static const std::regex flag(R"(--[a-z][a-z0-9-]*)");
    std::smatch m;
    const std::string msg = cat.scrub(e.what());
    throw BadRequest(std::regex_search(msg, m, flag) ? field(m.str()) : "body", msg);
  }
  if (r.batch_count > ctx.max_batch_count)
    throw BadRequest(field("--batch-count"), "batch count " + std::to_string(r.batch_count) + " is over this server's limit of " +
                                                 std::to_string(ctx.max_batch_count));
  check_preprocessors(r, field("--control-preprocessor"));
  bool known_sampler = r.sampler.empty(), known_schedule = r.scheduler.empty();  // empty: the model's defaults
  for (const auto& s : app::sampler_catalog()) known_sampler |= s.name == r.sampler;
  for (const auto& s : app::schedule_catalog()) known_schedule |= s.name == r.scheduler;
  if (!known_sampler) throw BadRequest(field("--sampler"), "unknown sampler '" + r.sampler + "' (GET /sdapi/v1/samplers lists them)");
  if (!known_schedule) throw BadRequest(field("--scheduler"), "unknown schedule '" + r.scheduler + "' (GET /sdapi/v1/schedulers lists them)");
  if (ctx.tokenizer) {
    // Encoding costs grow with the prompt (a 100,000-character prompt: ~30 s and a 51k-token
    // context on a CPU); one request must not hold the worker that long.
    for (const auto* text : {&r.prompt, &r.negative}) {
      const std::string f = field(text == &r.prompt ? "--prompt" : "--negative");
      if (text->size() > size_t(ctx.max_prompt_chunks) * 75 * 16)
        throw BadRequest(f, f + ": " + std::to_string(text->size()) + " characters is over this server's limit of " +
                                std::to_string(ctx.max_prompt_chunks) + " chunks of 75 tokens");
      app::PromptChunks chunks;
      try {
        chunks = app::tokenize_prompt(*ctx.tokenizer, parsed[text == &r.prompt ? 0 : 1].text, r.emphasis != "none");
      } catch (const std::invalid_argument& e) {  // a weight that is not a number or overflows
        throw BadRequest(f, f + ": " + e.what());
      }
      if (chunks.ids.size() > size_t(ctx.max_prompt_chunks))
        throw BadRequest(f, f + ": " + std::to_string(chunks.token_count) + " tokens (" + std::to_string(chunks.ids.size()) +
                                " chunks of 75) is over this server's limit of " + std::to_string(ctx.max_prompt_chunks) + " chunks");
    }
  }
}

app::Request job_request(const json& body, AdmitContext& ctx, std::vector<std::string>& warnings) {
  if (!body.is_object()) throw BadRequest("body", "the body must be a JSON object (a job-file line)");
  json j = body;
  auto image_field = [&](json& holder, const std::string& key, const std::string& field) {
    if (!holder.contains(key)) return;
    if (!holder[key].is_string()) throw BadRequest(field, field + ": expected a base64 image string");
    const std::string v = holder[key];
    if (!v.empty()) holder[key] = save_upload(ctx, v, field);
  };
  for (const char* k : {"init-img", "init_img", "init-image", "init_image"}) image_field(j, k, k);
  image_field(j, "mask", "mask");
  for (const char* key : {"control-net", "control_net"})
    if (j.contains(key) && j[key].is_array())
      for (size_t i = 0; i < j[key].size(); ++i)
        if (j[key][i].is_object())
          for (const char* k : {"image", "control-image", "control_image"})
            image_field(j[key][i], k, std::string(key) + "[" + std::to_string(i) + "]." + k);
  app::Request r;
  try {
    r = app::request_from_json(j);
  } catch (const std::invalid_argument& e) {
    static const std::regex quoted(R"(field '([^']+)')");
    std::smatch m;
    const std::string msg = e.what();
    throw BadRequest(std::regex_search(msg, m, quoted) ? m[1].str() : "body", ctx.catalog->scrub(msg));
  }
  if (!r.output.empty()) warnings.push_back("output (the server chooses where images go)");
  ctx.field_of = [](const std::string& flag) {
    if (flag == "--negative") return std::string("negative");
    if (flag == "--init-img") return std::string("init-img");
    if (flag.rfind("--control", 0) == 0) return std::string("control-net");
    return flag.substr(2);
  };
  admit(r, ctx);
  return r;
}

json public_request(const app::Request& r, const ModelCatalog& catalog) {
  json j = app::to_json(r);
  j["model"] = r.model.empty() ? "" : catalog.name_of(ModelCatalog::Kind::checkpoint, r.model);
  auto rel = [&](const std::string& p) -> std::string {
    if (p.empty() || !catalog.allowed(p)) return "";
    std::error_code ec;
    auto c = fs::relative(fs::canonical(p, ec), fs::canonical(catalog.root(), ec), ec);
    return ec ? "" : c.string();
  };
  j["tokenizer"] = rel(r.tokenizer);
  j["vae"] = rel(r.vae);
  j["init-img"] = "";
  j["mask"] = "";
  j["output"] = "";
  j["lora-dir"] = "";
  j["embeddings-dir"] = "";
  for (auto& u : j["control-net"]) {
    u["model"] = catalog.name_of(ModelCatalog::Kind::controlnet, u["model"].get<std::string>());
    u["image"] = "";
  }
  for (auto& l : j["lora"])
    if (l.contains("name") && fs::path(l["name"].get<std::string>()).is_absolute())
      l["name"] = catalog.name_of(ModelCatalog::Kind::lora, l["name"].get<std::string>());
  return j;
}

}  // namespace sigma::server
