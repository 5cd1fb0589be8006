#include "app/parameters.h"

#include <cstdio>
#include <filesystem>
#include <set>
#include <sstream>
#include <stdexcept>

#include "app/image_io.h"
#include "models/io/json_text.h"

namespace sigma::app {
namespace {

// Our solver names and AUTOMATIC1111's display names (its k-diffusion samplers list).
const std::vector<std::pair<std::string, std::string>>& sampler_names() {
  static const std::vector<std::pair<std::string, std::string>> n = {
      {"euler", "Euler"},           {"euler_ancestral", "Euler a"},     {"heun", "Heun"},
      {"dpm_2", "DPM2"},            {"dpm_2_ancestral", "DPM2 a"},      {"lms", "LMS"},
      {"dpmpp_2s_ancestral", "DPM++ 2S a"}, {"dpmpp_sde", "DPM++ SDE"}, {"dpmpp_2m", "DPM++ 2M"},
      {"dpmpp_2m_sde", "DPM++ 2M SDE"}, {"dpmpp_3m_sde", "DPM++ 3M SDE"}, {"ddim", "DDIM"},
      {"ddpm", "DDPM"},             {"dopri5", "Adaptive ODE (DOPRI5)"}, {"reverse_sde", "Reverse SDE"},
      {"flow_euler", "Euler (flow)"}, {"flow_euler_ancestral", "Euler a (flow)"},
      {"dpmpp_2m_sde_heun", "DPM++ 2M SDE Heun"}, {"lcm", "LCM"}, {"dpm_fast", "DPM fast"},
      {"dpm_adaptive", "DPM adaptive"}};
  return n;
}

const std::vector<std::pair<std::string, std::string>>& schedule_names() {
  static const std::vector<std::pair<std::string, std::string>> n = {
      {"karras", "Karras"}, {"exponential", "Exponential"}, {"polyexponential", "Polyexponential"},
      {"discrete", "Uniform"}, {"normal", "Normal"},        {"simple", "Simple"},
      {"sgm_uniform", "SGM Uniform"}, {"ddim_uniform", "DDIM"}, {"kl_optimal", "KL Optimal"},
      // A1111's Beta and Align Your Steps are its own variants (samplers/schedules.h); ComfyUI's
      // keep their names with the tool's in brackets, so either reads back as what made it.
      {"beta_a1111", "Beta"}, {"beta", "Beta (ComfyUI)"},
      {"align_your_steps_a1111", "Align Your Steps"}, {"align_your_steps", "Align Your Steps (ComfyUI)"},
      {"linear_quadratic", "Linear Quadratic"}, {"gits", "GITS"}};
  return n;
}

// A1111 text values read whole: "1e9" is not a step count of 1, "20abc" is not 20.
int64_t whole_number(const std::string& v) {
  size_t used = 0;
  const long long n = std::stoll(v, &used);
  if (used != v.size()) throw std::invalid_argument("not a whole number");
  return n;
}
double real_number(const std::string& v) {
  size_t used = 0;
  const double d = std::stod(v, &used);
  if (used != v.size()) throw std::invalid_argument("not a number");
  return d;
}

// A ControlNet as A1111's infotext names it: the file's name without folders or extension,
// so no server folder reaches a picture's metadata.
std::string model_name(const std::string& path) {
  std::filesystem::path p(path);
  if (!p.has_filename()) p = p.parent_path();
  return p.extension() == ".safetensors" ? p.stem().string() : p.filename().string();
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// A1111 quotes a value that contains a comma, colon or quote, JSON-style.
std::string quote(const std::string& v) {
  if (v.find_first_of(",:\"\n") == std::string::npos) return v;
  return nlohmann::json(v).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// "k: v, k2: \"v, with comma\", ..." -> ordered pairs
std::vector<std::pair<std::string, std::string>> split_pairs(const std::string& line) {
  std::vector<std::pair<std::string, std::string>> out;
  size_t i = 0;
  while (i < line.size()) {
    const size_t colon = line.find(':', i);
    if (colon == std::string::npos) break;
    std::string key = trim(line.substr(i, colon - i));
    size_t j = colon + 1;
    while (j < line.size() && line[j] == ' ') ++j;
    std::string value;
    if (j < line.size() && line[j] == '"') {
      size_t k = j + 1;
      while (k < line.size() && line[k] != '"') k += line[k] == '\\' ? 2 : 1;
      try {
        value = nlohmann::json::parse(line.substr(j, k - j + 1)).get<std::string>();
      } catch (const std::exception&) {
        value = line.substr(j + 1, k - j - 1);
      }
      j = k + 1;
      const size_t comma = line.find(',', j);
      i = comma == std::string::npos ? line.size() : comma + 1;
    } else {
      const size_t comma = line.find(',', j);
      value = trim(line.substr(j, comma == std::string::npos ? std::string::npos : comma - j));
      i = comma == std::string::npos ? line.size() : comma + 1;
    }
    out.emplace_back(key, value);
  }
  return out;
}

}  // namespace

std::string a1111_sampler_name(const std::string& sampler, const std::string& solver_type) {
  for (const auto& [ours, theirs] : sampler_names())
    if (ours == sampler) return sampler == "dpmpp_2m_sde" && solver_type == "heun" ? theirs + " Heun" : theirs;
  return sampler;
}

std::string a1111_schedule_name(const std::string& scheduler) {
  for (const auto& [ours, theirs] : schedule_names())
    if (ours == scheduler) return theirs;
  return scheduler;
}

std::pair<std::string, std::string> sampler_from_a1111(const std::string& sampler, const std::string& schedule) {
  std::string s = sampler, sched;
  // Before v1.9, A1111 wrote the schedule into the sampler name ("DPM++ 2M Karras").
  for (const auto& [ours, theirs] : schedule_names()) {
    const std::string suffix = " " + theirs;
    if (s.size() > suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0) {
      sched = ours;
      s = s.substr(0, s.size() - suffix.size());
    }
  }
  for (const auto& [ours, theirs] : schedule_names())
    if (theirs == schedule || ours == schedule) sched = ours;
  std::string name;
  for (const auto& [ours, theirs] : sampler_names())
    if (theirs == s || ours == s) name = ours;
  if (sched.empty() || schedule == "Automatic") {
    // A1111's "Automatic" (and names from before it wrote a schedule): each sampler's own default.
    if (name == "dpmpp_2m" || name == "dpmpp_sde" || name == "dpmpp_2s_ancestral" || name == "dpm_2" || name == "dpm_2_ancestral")
      sched = "karras";
    else if (name == "dpmpp_2m_sde" || name == "dpmpp_2m_sde_heun" || name == "dpmpp_3m_sde")
      sched = "exponential";
    else if (!name.empty())
      sched = "discrete";  // k-diffusion's own grid, A1111's "Uniform"
  }
  return {name, sched};
}

std::string format_parameters(const Request& r, const ImageRecord& rec) {
  std::ostringstream s;
  s << r.prompt << "\n";
  if (!r.negative.empty()) s << "Negative prompt: " << r.negative << "\n";
  s << "Steps: " << r.steps << ", Sampler: " << a1111_sampler_name(r.sampler)
    << ", Schedule type: " << a1111_schedule_name(r.scheduler) << ", CFG scale: " << number(r.cfg);
  if (rec.distilled_guidance) s << ", Distilled CFG Scale: " << number(r.guidance);
  s << ", Seed: " << rec.seed << ", Size: " << rec.width << "x" << rec.height << ", Model hash: " << rec.model_hash
    << ", Model: " << quote(rec.model_name);
  for (size_t i = 0; i < rec.modules.size(); ++i) s << ", Module " << i + 1 << ": " << quote(rec.modules[i]);
  // A1111: `Lora hashes: "name: hash, name2: hash2"` (extra_networks_lora.py), `TI hashes: "name: hash"`.
  for (const auto& [key, list] : {std::pair{"Lora hashes", &rec.lora_hashes}, std::pair{"TI hashes", &rec.ti_hashes}}) {
    std::string v;
    for (const auto& [name, hash] : *list) v += (v.empty() ? "" : ", ") + name + ": " + hash;
    if (!v.empty()) s << ", " << key << ": " << quote(v);
  }
  if (rec.batch_size > 1) s << ", Batch size: " << rec.batch_size << ", Batch pos: " << rec.batch_position;
  if (r.clip_skip != 1) s << ", Clip skip: " << r.clip_skip;
  if (!r.init_image.empty()) s << ", Denoising strength: " << number(r.strength);
  if (!r.mask.empty()) s << ", Mask blur: " << r.mask_blur;
  if (r.eta >= 0) s << ", Eta: " << number(r.eta);
  if (r.cfg_rescale > 0) s << ", CFG rescale phi: " << number(r.cfg_rescale);
  for (size_t i = 0; i < r.controlnets.size(); ++i) {
    const auto& u = r.controlnets[i];
    std::ostringstream v;
    v << "Module: " << u.preprocessor << ", Model: " << model_name(u.model) << ", Weight: " << number(u.strength)
      << ", Resize Mode: " << u.resize << ", Guidance Start: " << number(u.start) << ", Guidance End: " << number(u.end);
    s << ", ControlNet " << i << ": " << quote(v.str());
  }
  s << ", Emphasis: " << r.emphasis << ", Sigma sampler: " << r.sampler << ", Sigma schedule: " << r.scheduler;
  std::string grid;
  for (size_t i = 0; i < rec.sigmas.size(); ++i) grid += (i ? " " : "") + number(rec.sigmas[i]);
  s << ", Sigmas: " << quote(grid);
  if (!rec.vae_retry.empty()) s << ", VAE retry: " << quote(rec.vae_retry);
  if (!rec.dtype.empty()) s << ", Sigma device: " << rec.device << ", Sigma dtype: " << rec.dtype;
  s << ", Version: sigma-studio " << SIGMA_VERSION;
  return s.str();
}

namespace {

// Entries that describe an image rather than set a generation: nothing is lost by not
// taking them (the model is chosen by the user; Sigmas/Sigma* are our own record).
bool informational(const std::string& key) {
  static const std::set<std::string> keys = {"Model hash", "Model", "Version", "VAE hash", "VAE", "Sigmas",
                                             "Sigma sampler", "Sigma schedule", "VAE retry",
                                             "Sigma device", "Sigma dtype"};
  // "Module N": the separate files of the model (Forge), chosen with the model, not by the text.
  return keys.count(key) > 0 || key.rfind("ControlNet ", 0) == 0 || key.rfind("Module ", 0) == 0;
}

}  // namespace

Request parse_parameters(const std::string& text, std::map<std::string, std::string>* unparsed,
                         std::vector<std::string>* not_taken) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  Request r;
  size_t last = lines.size();
  while (last > 0 && trim(lines[last - 1]).empty()) --last;
  std::string params;
  if (last > 0 && lines[last - 1].find("Steps: ") != std::string::npos) params = lines[--last];
  std::string prompt, negative;
  bool in_negative = false;
  for (size_t i = 0; i < last; ++i) {
    if (lines[i].rfind("Negative prompt:", 0) == 0) {
      in_negative = true;
      negative = trim(lines[i].substr(16));
      continue;
    }
    std::string& target = in_negative ? negative : prompt;
    target += (target.empty() && !in_negative && i == 0 ? "" : "\n") + lines[i];
  }
  r.prompt = prompt;
  r.negative = negative;
  std::string sampler, schedule;
  for (const auto& [k, v] : split_pairs(params)) {
    try {
      if (k == "Steps") r.steps = whole_number(v);
      else if (k == "Sampler") sampler = v;
      else if (k == "Schedule type") schedule = v;
      else if (k == "Sigma sampler") r.sampler = v;
      else if (k == "Sigma schedule") r.scheduler = v;
      else if (k == "CFG scale") r.cfg = real_number(v);
      else if (k == "Distilled CFG Scale") r.guidance = real_number(v);
      else if (k == "Seed") r.seed = whole_number(v);
      else if (k == "Size") {
        const auto x = v.find('x');
        if (x == std::string::npos) throw std::invalid_argument("no x");
        r.width = whole_number(v.substr(0, x));
        r.height = whole_number(v.substr(x + 1));
      } else if (k == "Clip skip") r.clip_skip = whole_number(v);
      else if (k == "Denoising strength") r.strength = real_number(v);
      else if (k == "Mask blur") r.mask_blur = whole_number(v);
      else if (k == "Eta") r.eta = real_number(v);
      else if (k == "CFG rescale phi") r.cfg_rescale = real_number(v);
      else if (k == "Lora hashes" || k == "TI hashes") {
        // Taken: the prompt's <lora:...> tags and embedding words name them; the files are
        // looked up by name in the LoRA and embeddings folders when the image is re-run.
      } else if (k == "Emphasis") r.emphasis = v == "Original" ? "original" : v == "No norm" ? "no-norm" : v == "None" ? "none" : v;
      else {
        if (unparsed) (*unparsed)[k] = v;
        if (not_taken && !informational(k)) not_taken->push_back(k + ": " + v + " (no such setting here; ignored)");
      }
    } catch (const std::exception&) {
      throw std::invalid_argument("metadata: cannot read '" + models::utf8_prefix(k + ": " + v, 80) +
                                  "' (expected a number written out in full, as AUTOMATIC1111 writes it)");
    }
  }
  if (params.find("Sigma sampler:") == std::string::npos && !sampler.empty()) {
    auto [name, sched] = sampler_from_a1111(sampler, schedule);
    if (!name.empty()) r.sampler = name;
    else if (not_taken) not_taken->push_back("Sampler: " + sampler + " (no equivalent here; using " + (r.sampler.empty() ? std::string("the model's default") : r.sampler) + ")");
    if (!sched.empty()) r.scheduler = sched;
    else if (not_taken && !schedule.empty())
      not_taken->push_back("Schedule type: " + schedule + " (no equivalent here; using " + (r.scheduler.empty() ? std::string("the model's default") : r.scheduler) + ")");
  }
  return r;
}

Request request_from_png(const std::string& path, std::vector<std::string>* not_taken) {
  return request_from_png_text(read_png_text(path), path, not_taken);
}

Request request_from_png_text(const std::map<std::string, std::string>& text, const std::string& path,
                              std::vector<std::string>* not_taken) {
  if (auto it = text.find("sigma-request"); it != text.end()) {
    try {
      return request_from_json(models::parse_json(it->second, "sigma-request"));
    } catch (const std::exception& e) {
      throw std::invalid_argument(path + ": damaged sigma-request metadata (" + models::utf8_prefix(e.what(), 300) + ")");
    }
  }
  if (auto it = text.find("parameters"); it != text.end()) return parse_parameters(it->second, nullptr, not_taken);
  throw std::invalid_argument(path + ": the PNG carries no generation settings (no 'parameters' or 'sigma-request' text)");
}

}  // namespace sigma::app
