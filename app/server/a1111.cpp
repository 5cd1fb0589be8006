// AUTOMATIC1111's /sdapi/v1/txt2img and /img2img bodies (modules/api/models.py builds them
// from StableDiffusionProcessingTxt2Img/Img2Img) -> a Request. Three kinds of field:
// honoured (mapped below), accepted without effect here (listed in `info` as not honoured
// when their value differs from A1111's default), and unknown to A1111 (400 naming it).
#include <cstdint>
#include <map>

#include "app/server/admit.h"
#include "models/io/json_text.h"

using json = nlohmann::json;

namespace sigma::server {

namespace {

// A1111 fields we accept but cannot honour, with the value that means "off" (their default):
// a request that leaves them at it loses nothing.
const std::map<std::string, json>& ignorable(bool img2img) {
  static const std::map<std::string, json> common = {
      {"subseed", -1},          {"subseed_strength", 0},       {"seed_resize_from_h", -1},
      {"seed_resize_from_w", -1}, {"restore_faces", false},    {"tiling", false},
      {"do_not_save_samples", false}, {"do_not_save_grid", false}, {"s_min_uncond", 0},
      {"s_churn", 0},           {"s_tmax", 0},                 {"s_tmin", 0},
      {"s_noise", 1},           {"refiner_checkpoint", ""},    {"refiner_switch_at", 0},
      {"disable_extra_networks", false}, {"comments", json::object()}, {"script_name", ""},
      {"script_args", json::array()}, {"styles", json::array()}, {"infotext", ""},
      {"force_task_id", ""},    {"save_images", false},        {"override_settings_restore_afterwards", true},
      {"firstpass_image", ""},
  };
  static const std::map<std::string, json> txt2img = [] {
    auto m = common;
    for (auto& [k, v] : std::map<std::string, json>{
             {"enable_hr", false}, {"firstphase_width", 0}, {"firstphase_height", 0}, {"hr_scale", 2.0},
             {"hr_upscaler", ""}, {"hr_second_pass_steps", 0}, {"hr_resize_x", 0}, {"hr_resize_y", 0},
             {"hr_checkpoint_name", ""}, {"hr_sampler_name", ""}, {"hr_scheduler", ""}, {"hr_prompt", ""},
             {"hr_negative_prompt", ""}, {"hr_additional_modules", json::array()}, {"denoising_strength", 0}})
      m[k] = v;
    return m;
  }();
  static const std::map<std::string, json> i2i = [] {
    auto m = common;
    for (auto& [k, v] : std::map<std::string, json>{
             {"resize_mode", 0}, {"image_cfg_scale", 0}, {"mask_blur_x", 4}, {"mask_blur_y", 4}, {"mask_round", true},
             {"inpainting_fill", 1}, {"inpaint_full_res", false}, {"inpaint_full_res_padding", 0},
             {"inpainting_mask_invert", 0}, {"initial_noise_multiplier", 1.0}, {"latent_mask", ""},
             {"include_init_images", false}})
      m[k] = v;
    return m;
  }();
  return img2img ? i2i : txt2img;
}

bool is_default(const json& v, const json& def) {
  if (v.is_null()) return true;
  if (v.is_number() && def.is_number()) return v.get<double>() == def.get<double>();
  if (v.is_string() && v.get<std::string>().empty()) return true;
  return v == def;
}

template <class T>
T get(const json& body, const std::string& key, T fallback) {
  if (!body.contains(key) || body[key].is_null()) return fallback;
  const auto& v = body[key];
  try {
    if constexpr (std::is_same_v<T, std::string>) {
      if (!v.is_string()) throw std::invalid_argument("");
    } else if constexpr (std::is_same_v<T, bool>) {
      if (!v.is_boolean()) throw std::invalid_argument("");
    } else if constexpr (std::is_integral_v<T>) {
      if (!v.is_number_integer() && !(v.is_number_float() && v.get<double>() == static_cast<double>(static_cast<int64_t>(v.get<double>()))))
        throw std::invalid_argument("");
    } else {
      if (!v.is_number()) throw std::invalid_argument("");
    }
    return v.get<T>();
  } catch (const std::exception&) {
    const char* want = std::is_same_v<T, std::string> ? "a string" : std::is_same_v<T, bool> ? "true or false"
                       : std::is_integral_v<T>        ? "an integer" : "a number";
    throw BadRequest(key, key + ": expected " + std::string(want) + ", got " + models::json_excerpt(v, 80));
  }
}

std::string a1111_field(const std::string& flag) {
  static const std::map<std::string, std::string> m = {
      {"--steps", "steps"}, {"--cfg", "cfg_scale"}, {"--guidance", "distilled_cfg_scale"}, {"--width", "width"}, {"--height", "height"},
      {"--batch-size", "batch_size"}, {"--batch-count", "n_iter"}, {"--strength", "denoising_strength"},
      {"--eta", "eta"}, {"--seed", "seed"}, {"--clip-skip", "override_settings.CLIP_stop_at_last_layers"},
      {"--mask-blur", "mask_blur"}, {"--prompt", "prompt"}, {"--negative", "negative_prompt"},
      {"--model", "override_settings.sd_model_checkpoint"}, {"--sampler", "sampler_name"}, {"--scheduler", "scheduler"},
      {"--mask", "mask"}, {"--init-img", "init_images"}, {"--lora", "prompt"},
  };
  if (auto it = m.find(flag); it != m.end()) return it->second;
  if (flag.rfind("--control", 0) == 0) return "alwayson_scripts.controlnet.args";
  return flag.substr(2);
}

// sd-webui-controlnet's unit (scripts/controlnet_ui/... ControlNetUnit, its API form).
void controlnet_units(const json& args, app::Request& r, std::vector<std::string>& not_honoured, AdmitContext& ctx) {
  const std::string base = "alwayson_scripts.controlnet.args";
  if (!args.is_array()) throw BadRequest(base, base + ": expected a list of ControlNet units");
  static const std::map<std::string, std::string> modules = {
      {"none", "none"}, {"canny", "canny"}, {"scribble", "scribble"}, {"scribble_pidinet", "scribble"},
      {"scribble_hed", "scribble"}, {"scribble_xdog", "scribble"}, {"threshold", "threshold"},
      {"lineart", "lineart"}, {"lineart_standard", "lineart"}, {"lineart_realistic", "lineart"},
      {"softedge", "softedge"}, {"softedge_hed", "softedge"}, {"softedge_pidinet", "softedge"},
      {"grayscale", "grayscale"}, {"invert", "none"}};
  for (size_t i = 0; i < args.size(); ++i) {
    const auto& u = args[i];
    const std::string at = base + "[" + std::to_string(i) + "]";
    if (!u.is_object()) throw BadRequest(at, at + ": expected an object (a ControlNet unit)");
    app::ControlUnit unit;
    unit.preprocessor = "none";
    unit.resize = "crop";  // "Crop and Resize", the extension's default
    std::string image;
    bool enabled = true;
    for (auto it = u.begin(); it != u.end(); ++it) {
      const std::string k = it.key(), f = at + "." + k;
      const json& v = it.value();
      auto num = [&] {
        if (!v.is_number()) throw BadRequest(f, f + ": expected a number");
        return v.get<double>();
      };
      if (k == "enabled" || k == "enable") {
        if (!v.is_boolean()) throw BadRequest(f, f + ": expected true or false");
        enabled = v.get<bool>();
      } else if (k == "module") {
        if (!v.is_string()) throw BadRequest(f, f + ": expected a string");
        const auto m = modules.find(v.get<std::string>());
        if (m == modules.end()) throw BadRequest(f, f + " '" + v.get<std::string>() + "': no such preprocessor here (none, canny, scribble, threshold, lineart, softedge, grayscale)");
        unit.preprocessor = m->second;
        if (v.get<std::string>() == "invert") not_honoured.push_back(f + "=invert");
      } else if (k == "model") {
        if (!v.is_string()) throw BadRequest(f, f + ": expected a string");
        unit.model = v.get<std::string>();
        if (unit.model == "None" || unit.model == "none") enabled = false;
      } else if (k == "weight") unit.strength = num();
      else if (k == "guidance_start") unit.start = num();
      else if (k == "guidance_end") unit.end = num();
      else if (k == "image" || k == "input_image") {
        if (v.is_string()) image = v.get<std::string>();
        else if (v.is_object() && v.contains("image") && v["image"].is_string()) image = v["image"].get<std::string>();
        else if (!v.is_null()) throw BadRequest(f, f + ": expected a base64 image or {\"image\": base64}");
      } else if (k == "resize_mode") {
        const std::string m = v.is_number() ? std::to_string(v.get<int>()) : v.is_string() ? v.get<std::string>() : "?";
        if (m == "0" || m == "Just Resize") unit.resize = "stretch";
        else if (m == "1" || m == "Crop and Resize" || m == "Inner Fit (Scale to Fit)") unit.resize = "crop";
        else if (m == "2" || m == "Resize and Fill" || m == "Outer Fit (Shrink to Fit)") unit.resize = "fit";
        else throw BadRequest(f, f + ": expected \"Just Resize\", \"Crop and Resize\", \"Resize and Fill\" or 0..2");
      } else if (k == "threshold_a" || k == "threshold_b") {
        const double x = num();
        if (x >= 0) unit.params[k] = x;  // mapped to the preprocessor's own names below
      } else if (k == "low_vram" || k == "lowvram" || k == "processor_res" || k == "pixel_perfect" || k == "control_mode" ||
                 k == "guess_mode" || k == "hr_option" || k == "save_detected_map" || k == "mask" || k == "effective_region_mask" ||
                 k == "ipadapter_input" || k == "inpaint_crop_input_image" || k == "union_control_type") {
        const bool harmless = k == "low_vram" || k == "lowvram" || k == "save_detected_map" || k == "processor_res" ||
                              (v.is_boolean() && !v.get<bool>()) || v.is_null() ||
                              (k == "control_mode" && (v == 0 || v == "Balanced")) || (k == "hr_option" && v == "Both");
        if (!harmless) not_honoured.push_back(f + "=" + models::json_excerpt(v, 40));
      } else {
        throw BadRequest(f, f + ": not a field of sd-webui-controlnet's unit");
      }
    }
    if (!enabled) continue;
    // threshold_a/b are the preprocessor's first and second parameter.
    std::map<std::string, double> params;
    for (const auto& [k, x] : unit.params) {
      const bool a = k == "threshold_a";
      if (unit.preprocessor == "canny") params[a ? "low" : "high"] = x;
      else if ((unit.preprocessor == "threshold" || unit.preprocessor == "scribble") && a) params["threshold"] = x;
    }
    unit.params = params;
    if (image.empty()) throw BadRequest(at + ".image", at + ".image: a unit needs its condition image (base64)");
    unit.image = save_upload(ctx, image, at + ".image");
    r.controlnets.push_back(unit);
  }
}

}  // namespace

A1111Request a1111_request(const json& body, bool img2img, AdmitContext& ctx) {
  if (!body.is_object()) throw BadRequest("body", "the body must be a JSON object");
  A1111Request out;
  app::Request& r = out.request;
  static const std::vector<std::string> honoured = {
      "prompt", "negative_prompt", "seed", "sampler_name", "sampler_index", "scheduler", "batch_size", "n_iter", "steps",
      "cfg_scale", "distilled_cfg_scale", "width", "height", "eta", "override_settings", "send_images", "alwayson_scripts"};
  static const std::vector<std::string> honoured_i2i = {"init_images", "mask", "mask_blur", "denoising_strength"};
  const auto& ign = ignorable(img2img);
  for (auto it = body.begin(); it != body.end(); ++it) {
    const std::string& k = it.key();
    const bool ours = std::find(honoured.begin(), honoured.end(), k) != honoured.end() ||
                      (img2img && std::find(honoured_i2i.begin(), honoured_i2i.end(), k) != honoured_i2i.end());
    if (ours) continue;
    if (auto d = ign.find(k); d != ign.end()) {
      const bool hires_only = !img2img && k == "denoising_strength" && !(body.contains("enable_hr") && body["enable_hr"] == true);
      if (!hires_only && !is_default(it.value(), d->second)) out.not_honoured.push_back(k + "=" + models::json_excerpt(it.value(), 60));
      continue;
    }
    throw BadRequest(models::utf8_prefix(k, 60), "unknown field '" + models::utf8_prefix(k, 60) + "': AUTOMATIC1111's " + (img2img ? "img2img" : "txt2img") + " API has no such field");
  }
  // A1111's API defaults (modules/processing.py StableDiffusionProcessing).
  r.prompt = get<std::string>(body, "prompt", "");
  r.negative = get<std::string>(body, "negative_prompt", "");
  r.seed = get<int64_t>(body, "seed", -1);
  r.steps = get<int64_t>(body, "steps", 50);
  r.cfg = get<double>(body, "cfg_scale", 7.0);
  r.guidance = get<double>(body, "distilled_cfg_scale", 3.5);  // Forge's field for Flux dev's guidance
  r.width = get<int64_t>(body, "width", 512);
  r.height = get<int64_t>(body, "height", 512);
  r.batch_size = get<int64_t>(body, "batch_size", 1);
  r.batch_count = get<int64_t>(body, "n_iter", 1);
  r.eta = get<double>(body, "eta", -1);
  r.seed_mode = "per-image";  // A1111: image i of a batch has seed + i
  r.clip_skip = ctx.default_clip_skip;
  out.send_images = get<bool>(body, "send_images", true);
  std::string sampler = get<std::string>(body, "sampler_name", "");
  if (sampler.empty()) sampler = get<std::string>(body, "sampler_index", "DPM++ 2M");
  const std::string scheduler = get<std::string>(body, "scheduler", "Automatic");
  a1111_sampler(r, sampler, scheduler);
  if (body.contains("override_settings") && !body["override_settings"].is_null()) {
    const auto& o = body["override_settings"];
    if (!o.is_object()) throw BadRequest("override_settings", "override_settings: expected an object");
    for (auto it = o.begin(); it != o.end(); ++it) {
      const std::string f = "override_settings." + it.key();
      if (it.key() == "sd_model_checkpoint") {
        if (!it.value().is_string()) throw BadRequest(f, f + ": expected a string");
        r.model = it.value().get<std::string>();
        if (r.model.empty()) r.model = ctx.default_model;
      } else if (it.key() == "CLIP_stop_at_last_layers") {
        if (!it.value().is_number_integer()) throw BadRequest(f, f + ": expected an integer");
        r.clip_skip = it.value().get<int64_t>();
      } else {
        out.not_honoured.push_back(f + "=" + models::json_excerpt(it.value(), 60));
      }
    }
  }
  if (img2img) {
    r.strength = get<double>(body, "denoising_strength", 0.75);
    r.mask_blur = get<int64_t>(body, "mask_blur", 4);
    if (!body.contains("init_images") || !body["init_images"].is_array() || body["init_images"].empty())
      throw BadRequest("init_images", "init_images: img2img needs a list with one base64 image");
    const auto& imgs = body["init_images"];
    if (!imgs[0].is_string()) throw BadRequest("init_images[0]", "init_images[0]: expected a base64 image string");
    if (imgs.size() > 1) out.not_honoured.push_back("init_images[1:] (only the first image is used)");
    r.init_image = save_upload(ctx, imgs[0].get<std::string>(), "init_images[0]");
    const std::string mask = get<std::string>(body, "mask", "");
    if (!mask.empty()) r.mask = save_upload(ctx, mask, "mask");
  }
  if (body.contains("alwayson_scripts") && !body["alwayson_scripts"].is_null()) {
    const auto& s = body["alwayson_scripts"];
    if (!s.is_object()) throw BadRequest("alwayson_scripts", "alwayson_scripts: expected an object");
    for (auto it = s.begin(); it != s.end(); ++it) {
      const std::string k = it.key();
      if (k == "controlnet" || k == "ControlNet") {
        if (!it.value().is_object() || !it.value().contains("args"))
          throw BadRequest("alwayson_scripts.controlnet", "alwayson_scripts.controlnet: expected {\"args\": [units]}");
        controlnet_units(it.value()["args"], r, out.not_honoured, ctx);
      } else {
        out.not_honoured.push_back("alwayson_scripts." + k);
      }
    }
  }
  ctx.field_of = a1111_field;
  admit(r, ctx);
  out.echo = body;
  for (const auto& [k, v] : std::map<std::string, json>{{"prompt", r.prompt}, {"negative_prompt", r.negative}, {"seed", r.seed},
                                                         {"steps", r.steps}, {"cfg_scale", r.cfg}, {"width", r.width},
                                                         {"height", r.height}, {"batch_size", r.batch_size}, {"n_iter", r.batch_count},
                                                         {"sampler_name", sampler}, {"scheduler", scheduler}})
    if (!out.echo.contains(k)) out.echo[k] = v;
  if (out.echo.contains("init_images")) out.echo["init_images"] = nullptr;  // A1111 echoes null, not megabytes
  if (out.echo.contains("mask")) out.echo["mask"] = nullptr;
  if (out.echo.contains("alwayson_scripts")) out.echo["alwayson_scripts"] = json::object();
  return out;
}

}  // namespace sigma::server
