#include "models/families/checkpoint_info.h"

#include <cstdio>
#include <map>
#include <sstream>

namespace sigma::models {

std::string dtype_summary(const TensorIndex& index) {
  std::map<std::string, int> counts;
  for (const auto& [name, ref] : index) counts[ref.dtype()]++;
  std::string s;
  for (const auto& [dtype, n] : counts) s += (s.empty() ? "" : ", ") + dtype + " x " + std::to_string(n);
  return s;
}

std::string format_count(int64_t n) {
  char buf[32];
  if (n >= 1'000'000'000) std::snprintf(buf, sizeof buf, "%.2f G", n / 1e9);
  else if (n >= 1'000'000) std::snprintf(buf, sizeof buf, "%.2f M", n / 1e6);
  else if (n >= 1'000) std::snprintf(buf, sizeof buf, "%.1f k", n / 1e3);
  else std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(n));
  return buf;
}

std::string describe_checkpoint(const Checkpoint& ck) {
  std::ostringstream s;
  auto list = [&](const char* title, const std::vector<std::string>& keys) {
    s << title << ": ";
    if (keys.empty()) {
      s << "none\n";
      return;
    }
    s << keys.size() << "\n";
    for (size_t i = 0; i < keys.size() && i < 20; ++i) s << "  " << keys[i] << "\n";
    if (keys.size() > 20) s << "  ... and " << keys.size() - 20 << " more\n";
  };
  const auto& roles = ck.description.text_encoders;
  s << "path:          " << ck.path << "\n"
    << "layout:        " << to_string(ck.layout) << "\n"
    << "family:        " << to_string(ck.family) << " (" << (ck.prediction == "v" ? "v-prediction" : ck.prediction == "flow" ? "rectified flow, velocity" : "epsilon-prediction")
    << (ck.zero_terminal_snr ? ", zero-terminal SNR" : "") << ")\n"
    << "conditioning:  " << ck.description.describe() << "\n"
    << (ck.description.is_unet() ? "UNet:          " : "transformer:   ")
    << format_count(count_parameters(ck.description.is_unet() ? ck.unet : ck.transformer)) << " parameters, "
    << dtype_summary(ck.description.is_unet() ? ck.unet : ck.transformer) << "\n"
    << "               " << (ck.description.is_unet() ? ck.unet_config.describe() : ck.flux_config.describe()) << "\n"
    << "VAE:           " << format_count(count_parameters(ck.vae)) << " parameters, " << dtype_summary(ck.vae) << "\n"
    << "               " << ck.vae_config.describe() << "\n";
  for (size_t i = 0; i < roles.size(); ++i) {
    const auto& te = ck.text_encoders[i];
    const auto& config = te.config;
    s << (i ? "text encoder " + std::to_string(i + 1) + ": " : std::string("text encoder:  "))
      << format_count(count_parameters(te.weights)) << " parameters, " << dtype_summary(te.weights)
      << (te.file.empty() ? "" : ", from " + te.file) << "\n";
    if (roles[i].network == TextNetwork::T5) {
      s << "               T5 " << te.t5_config.describe() << " (" << roles[i].kind << ")\n";
      continue;
    }
    s << "               CLIP " << config.describe() << " (" << roles[i].kind << ")"
      << (config.projection_dim > 0 ? ", text_projection " + std::to_string(config.projection_dim) : std::string()) << "\n";
  }
  for (const auto& note : ck.notes) s << "note:          " << note << "\n";
  auto none = [](const std::string& sub) {
    return "none in the file; looked for beside it (NAME." + sub + "/ or " + sub +
           "/), then the bundled CLIP vocabulary (assets/clip-bpe), or give --tokenizer DIR";
  };
  for (size_t i = 0; i < roles.size(); ++i) {
    const auto& dir = ck.text_encoders[i].tokenizer_dir;
    s << (i ? "tokenizer " + std::to_string(i + 1) + ":   " : std::string("tokenizer:     "));
    if (roles[i].network == TextNetwork::T5)
      s << (dir.empty() ? "T5's vocabulary, bundled (assets/t5-tokenizer), or --t5-tokenizer FILE" : dir) << "\n";
    else
      s << (dir.empty() ? none(roles[i].tokenizer) : dir) << "\n";
  }
  s << "schedule:      "
    << (!ck.description.is_unet() ? std::string("flow matching (σ from 1 to 0), shifted by the image's token count where the model takes guidance")
        : ck.alphas_cumprod.empty() ? "not in the file (Stable Diffusion's scaled-linear betas assumed)"
                                  : std::to_string(ck.alphas_cumprod.size()) + "-step alphas_cumprod from the file")
    << "\n";
  std::vector<std::string> ignored = ck.ignored;
  ignored.insert(ignored.end(), ck.text_encoder_ignored.begin(), ck.text_encoder_ignored.end());
  list("unused keys", ck.unused);
  list("ignored keys (known, not needed)", ignored);
  return s.str();
}

}  // namespace sigma::models
