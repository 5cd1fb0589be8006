#include "app/request.h"

#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <sstream>
#include <stdexcept>

#include "models/io/json_text.h"

namespace sigma::app {
namespace {

using json = nlohmann::json;

// One table drives reading, writing and alias handling, so a new field is one line.
struct Field {
  const char* key;
  std::vector<const char*> aliases;
  std::function<json(const Request&)> get;
  std::function<void(Request&, const json&)> set;
};

template <class T>
T as(const json& v, const std::string& key) {
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    // nlohmann converts a float or a too-large unsigned with a plain cast: 5e25 into an
    // int64 is undefined behaviour (found by tests/fuzz/job_line), 2^64-1 turns into -1.
    const bool float_ok = !v.is_number_float() || [&] {
      const double d = v.get<double>();
      return std::isfinite(d) && d == std::floor(d) && d >= -9.2e18 && d <= 9.2e18;
    }();
    const bool unsigned_ok = !v.is_number_unsigned() || v.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<T>::max());
    if (!float_ok || !unsigned_ok)
      throw std::invalid_argument("job field '" + key + "': expected a whole number in range, got " + models::json_excerpt(v));
  }
  try {
    return v.get<T>();
  } catch (const std::exception&) {
    throw std::invalid_argument("job field '" + key + "': expected " +
                                (std::is_same_v<T, std::string> ? std::string("a string")
                                 : std::is_same_v<T, bool>      ? std::string("true or false")
                                                                : std::string("a number")) +
                                ", got " + models::json_excerpt(v));
  }
}

#define SIGMA_FIELD(KEY, MEMBER, TYPE, ...)                                       \
  Field {                                                                          \
    KEY, {__VA_ARGS__}, [](const Request& r) { return json(r.MEMBER); },          \
        [](Request& r, const json& v) { r.MEMBER = as<TYPE>(v, KEY); }             \
  }

ControlUnit unit_from_json(const json& j) {
  if (!j.is_object()) throw std::invalid_argument("job field 'control-net': each entry must be an object");
  ControlUnit u;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string k = it.key();
    const auto& v = it.value();
    if (k == "model" || k == "control-net") u.model = as<std::string>(v, "control-net.model");
    else if (k == "image" || k == "control-image") u.image = as<std::string>(v, "control-net.image");
    else if (k == "preprocessor") u.preprocessor = as<std::string>(v, "control-net.preprocessor");
    else if (k == "strength" || k == "control-strength") u.strength = as<double>(v, "control-net.strength");
    else if (k == "start" || k == "control-start") u.start = as<double>(v, "control-net.start");
    else if (k == "end" || k == "control-end") u.end = as<double>(v, "control-net.end");
    else if (k == "resize" || k == "control-resize") u.resize = as<std::string>(v, "control-net.resize");
    else if (k == "params" || k == "control-param") {
      if (!v.is_object()) throw std::invalid_argument("job field 'control-net.params': expected an object of numbers");
      for (auto p = v.begin(); p != v.end(); ++p) u.params[p.key()] = as<double>(p.value(), "control-net.params." + p.key());
    } else throw std::invalid_argument("job field 'control-net': unknown key '" + k + "' (known: model, image, preprocessor, strength, start, end, resize, params)");
  }
  return u;
}

json unit_to_json(const ControlUnit& u) {
  return {{"model", u.model}, {"image", u.image}, {"preprocessor", u.preprocessor}, {"strength", u.strength},
          {"start", u.start}, {"end", u.end},     {"resize", u.resize},             {"params", u.params}};
}

// "name", "name:0.8", or {"name": .., "strength": w, "unet": w, "text": w}.
LoraRef lora_from_json(const json& j) {
  LoraRef l;
  if (j.is_string()) return parse_lora_ref(j.get<std::string>());
  if (!j.is_object()) throw std::invalid_argument("job field 'lora': each entry must be \"name[:strength]\" or an object, got " + models::json_excerpt(j));
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string k = it.key();
    if (k == "name" || k == "path") l.name = as<std::string>(it.value(), "lora.name");
    else if (k == "strength" || k == "weight") l.unet = l.text = as<double>(it.value(), "lora.strength");
    else if (k == "unet") l.unet = as<double>(it.value(), "lora.unet");
    else if (k == "text" || k == "te") l.text = as<double>(it.value(), "lora.text");
    else throw std::invalid_argument("job field 'lora': unknown key '" + models::utf8_prefix(k, 60) + "' (known: name, strength, unet, text)");
  }
  if (l.name.empty()) throw std::invalid_argument("job field 'lora': an entry has no name");
  return l;
}

json lora_to_json(const LoraRef& l) {
  if (l.unet == l.text) return {{"name", l.name}, {"strength", l.unet}};
  return {{"name", l.name}, {"unet", l.unet}, {"text", l.text}};
}

const std::vector<Field>& fields() {
  static const std::vector<Field> f = {
      SIGMA_FIELD("model", model, std::string),
      SIGMA_FIELD("diffusion-model", diffusion_model, std::string),
      SIGMA_FIELD("clip-l", clip_l, std::string),
      SIGMA_FIELD("t5xxl", t5xxl, std::string),
      SIGMA_FIELD("tokenizer", tokenizer, std::string),
      SIGMA_FIELD("t5-tokenizer", t5_tokenizer, std::string),
      SIGMA_FIELD("vae", vae, std::string),
      SIGMA_FIELD("prediction", prediction, std::string),
      SIGMA_FIELD("prompt", prompt, std::string),
      SIGMA_FIELD("negative", negative, std::string, "negative-prompt"),
      SIGMA_FIELD("emphasis", emphasis, std::string),
      SIGMA_FIELD("clip-skip", clip_skip, int64_t),
      SIGMA_FIELD("width", width, int64_t),
      SIGMA_FIELD("height", height, int64_t),
      SIGMA_FIELD("original-width", original_width, int64_t),
      SIGMA_FIELD("original-height", original_height, int64_t),
      SIGMA_FIELD("crop-top", crop_top, int64_t),
      SIGMA_FIELD("crop-left", crop_left, int64_t),
      SIGMA_FIELD("target-width", target_width, int64_t),
      SIGMA_FIELD("target-height", target_height, int64_t),
      SIGMA_FIELD("steps", steps, int64_t),
      SIGMA_FIELD("cfg", cfg, double, "cfg-scale"),
      SIGMA_FIELD("guidance", guidance, double, "distilled-cfg-scale"),
      SIGMA_FIELD("cfg-rescale", cfg_rescale, double),
      SIGMA_FIELD("cfg-sigma-low", cfg_sigma_low, double),
      SIGMA_FIELD("cfg-sigma-high", cfg_sigma_high, double),
      SIGMA_FIELD("sampler", sampler, std::string, "sampling-method"),
      SIGMA_FIELD("scheduler", scheduler, std::string, "schedule"),
      SIGMA_FIELD("sigmas", sigmas, std::vector<double>),
      SIGMA_FIELD("eta", eta, double),
      SIGMA_FIELD("seed", seed, int64_t),
      SIGMA_FIELD("seed-mode", seed_mode, std::string),
      SIGMA_FIELD("batch-size", batch_size, int64_t),
      SIGMA_FIELD("batch-count", batch_count, int64_t),
      SIGMA_FIELD("init-img", init_image, std::string, "init-image"),
      SIGMA_FIELD("strength", strength, double),
      SIGMA_FIELD("mask", mask, std::string),
      SIGMA_FIELD("mask-blur", mask_blur, int64_t),
      SIGMA_FIELD("output", output, std::string),
      SIGMA_FIELD("device", device, std::string),
      SIGMA_FIELD("dtype", dtype, std::string),
      SIGMA_FIELD("vae-tiling", vae_tiling, bool),
      SIGMA_FIELD("lowvram", lowvram, bool),
      SIGMA_FIELD("lora-dir", lora_dir, std::string),
      SIGMA_FIELD("embeddings-dir", embeddings_dir, std::string),
      Field{"lora",
            {},
            [](const Request& r) {
              json a = json::array();
              for (const auto& l : r.lora) a.push_back(lora_to_json(l));
              return a;
            },
            [](Request& r, const json& v) {
              r.lora.clear();
              if (!v.is_array()) throw std::invalid_argument("job field 'lora': expected a list of \"name[:strength]\" or objects");
              for (const auto& l : v) r.lora.push_back(lora_from_json(l));
            }},
      Field{"control-net",
            {},
            [](const Request& r) {
              json a = json::array();
              for (const auto& u : r.controlnets) a.push_back(unit_to_json(u));
              return a;
            },
            [](Request& r, const json& v) {
              r.controlnets.clear();
              if (!v.is_array()) throw std::invalid_argument("job field 'control-net': expected a list of objects");
              for (const auto& u : v) r.controlnets.push_back(unit_from_json(u));
            }},
  };
  return f;
}

// "batch_size", "cfg_scale" -> "batch-size", "cfg-scale"
std::string dashed(std::string k) {
  for (auto& c : k)
    if (c == '_') c = '-';
  return k;
}

const Field* find_field(const std::string& key) {
  const std::string k = dashed(key);
  for (const auto& f : fields()) {
    if (k == f.key) return &f;
    for (const char* a : f.aliases)
      if (k == a) return &f;
  }
  return nullptr;
}

}  // namespace

std::optional<double> parse_number(const std::string& text) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (used == 0 || used != text.size()) return std::nullopt;
  return v;
}

LoraRef parse_lora_ref(const std::string& text) {
  LoraRef l;
  l.name = text;
  const auto colon = text.rfind(':');
  if (colon != std::string::npos && colon > 0) {
    const auto v = parse_number(text.substr(colon + 1));
    if (!v)
      throw std::invalid_argument("--lora " + text + ": the strength after ':' must be a number, e.g. " + text.substr(0, colon) + ":0.8");
    l.name = text.substr(0, colon);
    l.unet = l.text = *v;
  }
  if (l.name.empty()) throw std::invalid_argument("--lora '" + text + "': no name or file");
  return l;
}

nlohmann::json to_json(const Request& r) {
  json j = json::object();
  for (const auto& f : fields()) j[f.key] = f.get(r);
  return j;
}

void merge_json(Request& r, const nlohmann::json& j) {
  if (!j.is_object()) throw std::invalid_argument("a job must be a JSON object, got " + models::json_excerpt(j));
  for (auto it = j.begin(); it != j.end(); ++it) {
    const Field* f = find_field(it.key());
    if (!f) {
      std::string known;
      for (const auto& field : fields()) known += (known.empty() ? "" : ", ") + std::string(field.key);
      throw std::invalid_argument("unknown job field '" + models::utf8_prefix(it.key(), 60) + "' (known: " + known + ")");
    }
    f->set(r, it.value());
  }
}

Request request_from_json(const nlohmann::json& j) {
  Request r;
  merge_json(r, j);
  return r;
}

namespace {

// "nan", "inf", "-inf" or the number as the user wrote it (shortest round trip).
std::string number_text(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  std::ostringstream ss;
  ss << v;
  return ss.str();
}

}  // namespace

void validate(const Request& r) {
  auto fail = [](const std::string& msg) { throw std::invalid_argument(msg); };
  // Every real-valued field must be a finite number in its range: a NaN or an infinity
  // passes every `<` test and would reach the sampler, which then writes a black image.
  auto in_range = [&](const std::string& flag, double v, double lo, double hi, const std::string& meaning = "") {
    if (!std::isfinite(v)) fail(flag + " must be a finite number, got " + number_text(v));
    if (v < lo || v > hi)
      fail(flag + " must be between " + number_text(lo) + " and " + number_text(hi) + (meaning.empty() ? "" : " (" + meaning + ")") +
           ", got " + number_text(v));
  };
  // Size: the range first (a size above the limit is wrong whatever its multiple), then
  // the VAE's 8-pixel blocks.
  for (auto [flag, v] : {std::pair{"--width", r.width}, std::pair{"--height", r.height}}) {
    if (v < 0 || v > 4096)
      fail(std::string(flag) + " " + std::to_string(v) + " is outside 8..4096 pixels (0 = the model's native size)");
    if (v % 8 != 0)
      fail(std::string(flag) + " " + std::to_string(v) + " is not a multiple of 8 (the VAE works on 8x8 pixel blocks); try " +
           std::to_string(std::min<int64_t>(4096, std::max<int64_t>(8, (v + 4) / 8 * 8))));
  }
  if (!std::isfinite(r.cfg) || r.cfg >= 0) in_range("--cfg", r.cfg, 0, 100, "classifier-free guidance scale; 1 = no guidance; negative = the model's default");
  in_range("--guidance", r.guidance, 0, 100, "Flux dev's distilled guidance");
  if (!r.model.empty() && !r.diffusion_model.empty())
    fail("--model and --diffusion-model both name the model; give one (--diffusion-model for a transformer file with separate encoders)");
  in_range("--cfg-rescale", r.cfg_rescale, 0, 1);
  in_range("--cfg-sigma-low", r.cfg_sigma_low, 0, 1e4, "sigma below which guidance is off");
  in_range("--cfg-sigma-high", r.cfg_sigma_high, 0, 1e4, "sigma above which guidance is off; 0 = no upper bound");
  if (r.cfg_sigma_high > 0 && r.cfg_sigma_low >= r.cfg_sigma_high)
    fail("--cfg-sigma-low " + number_text(r.cfg_sigma_low) + " must be below --cfg-sigma-high " + number_text(r.cfg_sigma_high));
  if (!std::isfinite(r.eta) || r.eta >= 0) in_range("--eta", r.eta, 0, 10, "noise of ancestral/SDE steps; negative = the sampler's default");
  if (!std::isfinite(r.strength) || r.strength <= 0 || r.strength > 1)
    fail("--strength must be in (0, 1] (img2img denoising strength), got " + number_text(r.strength));
  for (double s : r.sigmas) in_range("--sigmas", s, 0, 1e4);
  for (auto [flag, v] : {std::pair{"--original-width", r.original_width}, std::pair{"--original-height", r.original_height},
                         std::pair{"--target-width", r.target_width}, std::pair{"--target-height", r.target_height},
                         std::pair{"--crop-top", r.crop_top}, std::pair{"--crop-left", r.crop_left}})
    if (v < 0 || v > 16384)
      fail(std::string(flag) + " " + std::to_string(v) + " must be between 0 and 16384 (SDXL micro-conditioning; 0 for the sizes: the canvas)");
  if (r.scheduler != "custom" && (r.steps < 0 || r.steps > 1000))
    fail("--steps must be between 1 and 1000 (0 = the model's default), got " + std::to_string(r.steps));
  if (r.batch_size < 1 || r.batch_size > 64) fail("--batch-size must be between 1 and 64");
  // 1000 batches of up to 64: 64,000 images a request (A1111's UI stops at 100 batches); more
  // is a typo, and each image's name and seed is computed up front.
  if (r.batch_count < 1 || r.batch_count > 1000) fail("--batch-count must be between 1 and 1000");
  // 32: the deepest text encoder of any family (OpenCLIP-bigG); the engine checks its own depth.
  if (r.clip_skip < 1 || r.clip_skip > 32)
    fail("--clip-skip must be between 1 (the last layer) and 32, got " + std::to_string(r.clip_skip));
  // AUTOMATIC1111's slider stops at 64 pixels; a radius of millions held a worker for minutes.
  if (r.mask_blur < 0 || r.mask_blur > 64)
    fail("--mask-blur must be between 0 and 64 pixels, got " + std::to_string(r.mask_blur));
  // Text reaches JSON (metadata, the server's answers), which holds only UTF-8.
  for (auto [flag, text] : {std::pair{"--prompt", &r.prompt}, std::pair{"--negative", &r.negative}})
    if (!models::valid_utf8(*text))
      fail(std::string(flag) + " is not valid UTF-8 text; save or send it as UTF-8");
  if (r.seed < -1) fail("--seed must be -1 (random) or a non-negative number");
  // Image i of batch k has seed + k·batch-size + i: it must stay a 64-bit number.
  if (r.seed > std::numeric_limits<int64_t>::max() - r.batch_count * r.batch_size)
    fail("--seed " + std::to_string(r.seed) + " is too large: the seeds of the request's images must stay below 2^63");
  if (r.seed_mode != "comfy" && r.seed_mode != "batch" && r.seed_mode != "per-image")
    fail("--seed-mode must be 'comfy', 'batch' or 'per-image', got '" + r.seed_mode + "'");
  if (r.emphasis != "original" && r.emphasis != "no-norm" && r.emphasis != "none")
    fail("--emphasis must be original, no-norm or none, got '" + r.emphasis + "'");
  if (!r.prediction.empty() && r.prediction != "eps" && r.prediction != "v" && r.prediction != "flow")
    fail("--prediction must be eps, v or flow, got '" + r.prediction + "'");
  if (r.device != "auto" && r.device != "cpu" && r.device != "cuda") fail("--device must be auto, cpu or cuda, got '" + r.device + "'");
  if (r.dtype != "auto" && r.dtype != "fp32" && r.dtype != "fp16" && r.dtype != "bf16")
    fail("--dtype must be auto, fp32, fp16 or bf16, got '" + r.dtype + "'");
  if (!r.mask.empty() && r.init_image.empty()) fail("--mask needs --init-img (the image to inpaint)");
  if (r.scheduler == "custom" || (r.scheduler.empty() && !r.sigmas.empty())) {  // empty: resolved to custom
    if (r.sigmas.size() < 2) fail("--scheduler custom needs --sigmas with at least two values, e.g. --sigmas 14.6,5,1.5,0.3,0");
    for (size_t i = 0; i + 1 < r.sigmas.size(); ++i)
      if (!(r.sigmas[i] > r.sigmas[i + 1]) || r.sigmas[i + 1] < 0) fail("--sigmas must be strictly decreasing and not negative");
  } else if (!r.sigmas.empty()) {
    fail("--sigmas is the list of --scheduler custom; drop --scheduler " + r.scheduler + " or --sigmas");
  }
  for (const auto& l : r.lora)
    for (double w : {l.unet, l.text})
      if (!std::isfinite(w) || w < -10 || w > 10)
        fail("--lora " + l.name + ": strength " + std::to_string(w) + " must be a finite number between -10 and 10");
  for (size_t i = 0; i < r.controlnets.size(); ++i) {
    const auto& u = r.controlnets[i];
    const std::string which = "ControlNet " + std::to_string(i + 1) + ": ";
    if (u.model.empty()) fail(which + "--control-net PATH is missing");
    if (u.image.empty()) fail(which + "--control-image PATH is missing");
    in_range(which + "--control-strength", u.strength, 0, 10, "residual multiplier; 1 = as trained");
    in_range(which + "--control-start", u.start, 0, 1);
    in_range(which + "--control-end", u.end, 0, 1);
    if (u.start >= u.end) fail(which + "--control-start/--control-end must satisfy 0 <= start < end <= 1");
    for (const auto& [name, v] : u.params)
      if (!std::isfinite(v)) fail(which + "--control-param " + name + " must be a finite number, got " + number_text(v));
    if (u.resize != "crop" && u.resize != "fit" && u.resize != "stretch")
      fail(which + "--control-resize must be crop, fit or stretch");
  }
}

}  // namespace sigma::app
