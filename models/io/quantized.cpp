#include "models/io/quantized.h"

#include <set>

#include "models/io/json_text.h"

namespace sigma::models {
namespace {

bool ends_with(const std::string& s, const std::string& e) {
  return s.size() >= e.size() && s.compare(s.size() - e.size(), e.size(), e) == 0;
}

void check_format(const std::string& format, const std::string& layer, const std::string& what) {
  if (format.rfind("float8_e4m3fn", 0) == 0 || format.rfind("float8_e5m2", 0) == 0) return;
  throw ModelLoadError(what + ": layer '" + layer + "' is quantized as '" + format +
                       "'; Sigma Studio reads fp8 weights (float8_e4m3fn, float8_e5m2) and plain fp16/bf16/fp32 files: "
                       "use an fp8 or fp16 version of this model");
}

}  // namespace

void apply_weight_scales(TensorIndex& index, std::vector<std::string>& ignored, const std::string& what) {
  // The header's per-layer formats (ComfyUI's newer files may carry them there instead).
  std::set<const SafeTensors*> seen;
  for (const auto& [name, ref] : index) {
    if (!ref.file || !seen.insert(ref.file.get()).second) continue;
    const auto& meta = ref.file->metadata();
    auto it = meta.find("_quantization_metadata");
    if (it == meta.end()) continue;
    nlohmann::json j;
    try {
      j = parse_json(it->second, "_quantization_metadata");
    } catch (const std::exception& e) {
      throw ModelLoadError(what + ": " + e.what());
    }
    const auto layers = j.is_object() && j.contains("layers") ? j["layers"] : j;
    if (!layers.is_object()) continue;
    for (auto l = layers.begin(); l != layers.end(); ++l)
      if (l->is_object() && l->contains("format") && (*l)["format"].is_string())
        check_format((*l)["format"].get<std::string>(), l.key(), what);
  }
  std::vector<std::string> markers;
  for (auto& [name, ref] : index) {
    if (name == "scaled_fp8" || ends_with(name, ".input_scale")) {
      markers.push_back(name);
      continue;
    }
    if (ends_with(name, ".comfy_quant")) {
      const std::string layer = name.substr(0, name.size() - 12);
      const auto bytes = ref.load(torch::kUInt8).contiguous();
      const std::string text(reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>()), static_cast<size_t>(bytes.numel()));
      nlohmann::json j;
      try {
        j = parse_json(text, name);
      } catch (const std::exception& e) {
        throw ModelLoadError(what + ": " + e.what());
      }
      if (j.is_object() && j.contains("format") && j["format"].is_string())
        check_format(j["format"].get<std::string>(), layer, what);
      markers.push_back(name);
      continue;
    }
    for (const char* suffix : {".scale_weight", ".weight_scale"}) {
      if (!ends_with(name, suffix)) continue;
      const std::string layer = name.substr(0, name.size() - std::string(suffix).size());
      auto weight = index.find(layer + ".weight");
      if (weight == index.end())
        throw ModelLoadError(what + ": '" + name + "' scales a weight that is not in the file ('" + layer + ".weight')");
      const auto scale = ref.load(torch::kFloat32);
      if (scale.numel() != 1)
        throw ModelLoadError(what + ": '" + name + "' holds " + std::to_string(scale.numel()) +
                             " numbers; only per-tensor fp8 scales (one number) are supported");
      weight->second.scale = scale.reshape({});
      markers.push_back(name);
    }
  }
  for (const auto& m : markers) {
    ignored.push_back(m);
    index.erase(m);
  }
}

}  // namespace sigma::models
