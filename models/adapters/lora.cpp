#include "models/adapters/lora.h"

#include <algorithm>
#include <filesystem>
#include <optional>
#include <sstream>

#include "models/io/keymaps.h"
#include "models/io/safetensors.h"

namespace sigma::models {
namespace {

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }
bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}
std::string underscores(std::string s) {
  std::replace(s.begin(), s.end(), '.', '_');
  return s;
}
std::string file_name(const std::string& path) { return std::filesystem::path(path).filename().string(); }

int64_t product(const std::vector<int64_t>& v) {
  int64_t n = 1;
  for (auto d : v) n *= d;
  return n;
}

// ---- File keys -> modules ---------------------------------------------------------

// The suffixes a module's tensors carry, and the role each plays in the formulas.
const std::vector<std::pair<std::string, std::string>>& suffix_roles() {
  static const std::vector<std::pair<std::string, std::string>> roles = {
      {".lora_down.weight", "down"}, {".lora_up.weight", "up"},     {".lora_mid.weight", "mid"},
      {".lora_A.weight", "down"},    {".lora_B.weight", "up"},      {".lora.down.weight", "down"},
      {".lora.up.weight", "up"},     {".alpha", "alpha"},           {".hada_w1_a", "hada.w1_a"},
      {".hada_w1_b", "hada.w1_b"},   {".hada_w2_a", "hada.w2_a"},   {".hada_w2_b", "hada.w2_b"},
      {".hada_t1", "hada.t1"},       {".hada_t2", "hada.t2"},       {".lokr_w1", "lokr.w1"},
      {".lokr_w1_a", "lokr.w1_a"},   {".lokr_w1_b", "lokr.w1_b"},   {".lokr_w2", "lokr.w2"},
      {".lokr_w2_a", "lokr.w2_a"},   {".lokr_w2_b", "lokr.w2_b"},   {".lokr_t2", "lokr.t2"},
      {".diff", "diff"}};
  return roles;
}

struct FileModule {
  std::map<std::string, std::string> roles;  // role -> tensor name in the file
};

std::string join(const std::vector<std::string>& v, size_t max = 8) {
  std::string s;
  for (size_t i = 0; i < v.size() && i < max; ++i) s += (i ? ", " : "") + v[i];
  if (v.size() > max) s += ", ... (" + std::to_string(v.size() - max) + " more)";
  return s;
}

// ---- Families -----------------------------------------------------------------------

// A family name reduced to what can be compared: {"xl"}, {"1"}, {"2"}, {"1", "2"}, {} (unknown).
std::set<std::string> family_tags(const std::string& f) {
  if (f.find("XL") != std::string::npos || f.find("xl") != std::string::npos) return {"xl"};
  std::set<std::string> t;
  if (f.find("1.") != std::string::npos) t.insert("1");
  if (f.find("2.") != std::string::npos) t.insert("2");
  return t;
}
bool same_family(const std::string& a, const std::string& b) {
  const auto ta = family_tags(a), tb = family_tags(b);
  if (ta.empty() || tb.empty()) return true;  // cannot tell: not a family error
  return std::any_of(ta.begin(), ta.end(), [&](const std::string& t) { return tb.count(t) > 0; });
}

// The family an adapter file was made for, from its metadata, its key spelling and the
// widths its factors have ("" when nothing tells).
std::string guess_family(const SafeTensors& f, const std::map<std::string, FileModule>& modules) {
  for (const char* key : {"ss_base_model_version", "modelspec.architecture"}) {
    auto it = f.metadata().find(key);
    if (it == f.metadata().end()) continue;
    const auto& v = it->second;
    if (v.find("xl") != std::string::npos) return "SDXL";
    if (v.find("v1") != std::string::npos) return "Stable Diffusion 1.x";
    if (v.find("v2") != std::string::npos) return "Stable Diffusion 2.x";
  }
  bool sgm_unet = false, diffusers_unet = false, te = false;
  int64_t context = 0, text_width = 0;
  for (const auto& [name, m] : modules) {
    if (starts_with(name, "lora_te1_") || starts_with(name, "lora_te2_") || starts_with(name, "text_encoder_2."))
      return "SDXL";
    if (starts_with(name, "lora_unet_input_blocks_") || starts_with(name, "lora_unet_output_blocks_") ||
        starts_with(name, "lora_unet_middle_block_") || starts_with(name, "lora_unet_label_emb"))
      sgm_unet = true;
    if (starts_with(name, "lora_unet_down_blocks_") || starts_with(name, "lora_unet_up_blocks_") ||
        starts_with(name, "unet.down_blocks."))
      diffusers_unet = true;
    te = te || starts_with(name, "lora_te_") || starts_with(name, "text_encoder.");
    auto down = m.roles.find("down");
    if (down == m.roles.end()) continue;
    const auto& shape = f.find(down->second)->shape;
    if (shape.size() < 2) continue;
    if (ends_with(name, "attn2_to_k") || ends_with(name, "attn2.to_k")) context = shape[1];
    if (ends_with(name, "q_proj")) text_width = shape[1];
  }
  if (context == 2048) return "SDXL";
  if (context == 1024 || text_width == 1024) return "Stable Diffusion 2.x";
  if (context == 768 || text_width == 768) return "Stable Diffusion 1.x";
  if (sgm_unet && !diffusers_unet) return "SDXL";
  if (diffusers_unet || te) return "Stable Diffusion 1.x/2.x";
  return "";
}

// ---- Formulas -----------------------------------------------------------------------

std::vector<int64_t> dims(const torch::Tensor& t) { return t.sizes().vec(); }

// What the formula of a module yields; checks that its factors fit each other.
std::vector<int64_t> formula_shape(const AdapterModule& m, const std::string& where) {
  auto has = [&](const char* r) { return m.factors.count(r) > 0; };
  auto f = [&](const char* r) { return dims(m.factors.at(r)); };
  auto bad = [&](const std::string& why) { throw AdapterError(where + ": malformed " + to_string(m.kind) + " module: " + why); };
  switch (m.kind) {
    case AdapterKind::LoRA: {
      const auto up = f("up"), down = f("down");
      if (up.size() < 2 || down.size() < 2 || up[1] != down[0])
        bad("up " + shape_string(up) + " and down " + shape_string(down) + " do not share a rank");
      std::vector<int64_t> s = {up[0], down[1]};
      if (has("mid")) {
        const auto mid = f("mid");
        if (mid.size() != 4 || mid[0] != down[0]) bad("mid " + shape_string(mid) + " does not fit down " + shape_string(down));
        s.push_back(mid[2]);
        s.push_back(mid[3]);
      } else {
        s.insert(s.end(), down.begin() + 2, down.end());
      }
      return s;
    }
    case AdapterKind::LoHa: {
      const auto a1 = f("w1_a"), b1 = f("w1_b"), a2 = f("w2_a"), b2 = f("w2_b");
      std::vector<int64_t> s1, s2;
      if (has("t1") != has("t2")) bad("hada_t1 and hada_t2 come together");
      if (has("t1")) {  // Tucker: a and b are [rank, dim], t [rank, rank, kh, kw]
        const auto t1 = f("t1"), t2 = f("t2");
        if (t1.size() != 4 || t2.size() != 4) bad("hada_t1/t2 must be 4-d");
        s1 = {a1[1], b1[1], t1[2], t1[3]};
        s2 = {a2[1], b2[1], t2[2], t2[3]};
      } else {
        if (a1.size() != 2 || b1.size() != 2 || a1[1] != b1[0] || a2.size() != 2 || b2.size() != 2 || a2[1] != b2[0])
          bad("w1_a " + shape_string(a1) + " @ w1_b " + shape_string(b1) + ", w2_a " + shape_string(a2) + " @ w2_b " +
              shape_string(b2) + " do not multiply");
        s1 = {a1[0], b1[1]};
        s2 = {a2[0], b2[1]};
      }
      if (s1 != s2) bad("the two Hadamard factors are " + shape_string(s1) + " and " + shape_string(s2));
      return s1;
    }
    case AdapterKind::LoKr: {
      std::vector<int64_t> w1, w2;
      if (has("w1")) w1 = f("w1");
      else if (has("w1_a") && has("w1_b")) w1 = {f("w1_a")[0], f("w1_b")[1]};
      else bad("needs lokr_w1 or lokr_w1_a + lokr_w1_b");
      if (has("w2")) w2 = f("w2");
      else if (has("w2_a") && has("w2_b") && has("t2")) w2 = {f("w2_a")[1], f("w2_b")[1], f("t2")[2], f("t2")[3]};
      else if (has("w2_a") && has("w2_b")) w2 = {f("w2_a")[0], f("w2_b")[1]};
      else bad("needs lokr_w2 or lokr_w2_a + lokr_w2_b");
      if (w1.size() != 2 || w2.size() < 2) bad("w1 " + shape_string(w1) + ", w2 " + shape_string(w2));
      std::vector<int64_t> s = {w1[0] * w2[0], w1[1] * w2[1]};
      s.insert(s.end(), w2.begin() + 2, w2.end());
      return s;
    }
    case AdapterKind::Diff:
      return f("diff");
  }
  return {};
}

// ComfyUI's Tucker rebuild: einsum('i j k l, j r, i p -> p r k l', t, b, a).
torch::Tensor tucker(const torch::Tensor& t, const torch::Tensor& b, const torch::Tensor& a) {
  return torch::einsum("ijkl,jr,ip->prkl", {t, b, a});
}

}  // namespace

std::string to_string(AdapterKind kind) {
  switch (kind) {
    case AdapterKind::LoRA: return "LoRA";
    case AdapterKind::LoHa: return "LoHa";
    case AdapterKind::LoKr: return "LoKr";
    case AdapterKind::Diff: return "full diff";
  }
  return "?";
}

AdapterTarget adapter_target(const torch::nn::Module& module) {
  AdapterTarget t;
  for (const auto& p : module.named_parameters(true)) t.weights[p.key()] = p.value().sizes().vec();
  for (const auto& m : module.named_modules("", /*include_self=*/false))  // fp8 weights: their stored shape
    if (const auto* w = dynamic_cast<const PatchedOnTheFly*>(m.value().get()); w && !w->on_the_fly_shape().empty())
      t.weights[m.key() + ".weight"] = w->on_the_fly_shape();
  return t;
}

AdapterTarget adapter_target(const TensorIndex& index) {
  AdapterTarget t;
  for (const auto& [name, ref] : index) t.weights[name] = ref.shape;
  return t;
}

std::map<std::string, std::pair<std::string, std::string>> adapter_key_map(const AdapterModel& model) {
  std::map<std::string, std::pair<std::string, std::string>> map;
  auto add = [&](const std::string& key, const std::string& component, const std::string& name) {
    map.emplace(key, std::make_pair(component, name));  // first spelling wins on a (never seen) clash
  };
  for (const auto& [component, target] : model.components) {
    std::vector<std::string> names;
    for (const auto& [name, shape] : target.weights) names.push_back(name);
    for (const auto& name : target.skipped) names.push_back(name);
    // The UNet's diffusers spellings: keymaps.cpp's table, read from our LDM names back.
    const auto unet_names = component == kUnet ? std::optional<UnetKeyMap>(UnetKeyMap::from_ldm(names)) : std::nullopt;
    for (const auto& name : names) {
      if (!ends_with(name, ".weight")) continue;  // adapters change weights, not biases or norms' shifts
      const std::string module = name.substr(0, name.size() - 7);
      if (component == kUnet) {
        add("lora_unet_" + underscores(module), component, name);  // SGM/LDM spelling (SDXL kohya; Flux's BFL names)
        add("diffusion_model." + module, component, name);        // ComfyUI's own (its LoraSave; BFL's Flux LoRAs)
        const auto d = unet_names->to_diffusers(name);
        if (!d.empty()) {
          const std::string dm = d.substr(0, d.size() - 7);
          add("lora_unet_" + underscores(dm), component, name);  // SD 1.x/2.x kohya
          add("unet." + dm, component, name);                     // PEFT / diffusers
        }
      } else if (component == kTextEncoder) {
        add("lora_te_" + underscores(module), component, name);
        add("lora_te1_" + underscores(module), component, name);
        add("text_encoder." + module, component, name);
      } else if (component == kTextEncoder2) {
        add("lora_te2_" + underscores(module), component, name);
        add("text_encoder_2." + module, component, name);
      }
    }
  }
  return map;
}

std::map<std::string, SliceTarget> flux_diffusers_key_map(const AdapterModel& model) {
  std::map<std::string, SliceTarget> map;
  const auto it = model.components.find(kUnet);
  if (it == model.components.end() || !it->second.weights.count("double_blocks.0.img_attn.qkv.weight")) return map;
  const auto& weights = it->second.weights;
  auto count = [&](const std::string& prefix, const std::string& suffix) {
    int64_t n = 0;
    while (weights.count(prefix + std::to_string(n) + suffix)) ++n;
    return n;
  };
  for (const auto& row : flux_module_map(count("double_blocks.", ".img_attn.qkv.weight"), count("single_blocks.", ".linear1.weight"))) {
    const auto w = weights.find(row.bfl + ".weight");
    if (row.norm || w == weights.end() || w->second.size() != 2) continue;  // norm scales take no LoRA
    if (row.swap_halves) {
      map["transformer." + row.diffusers[0]] = {kUnet, row.bfl + ".weight", 0, 0, true};
      continue;
    }
    const int64_t out = w->second[0], in = w->second[1];
    // Fused rows: q, k, v of the attention width (the input width here), then the MLP's rest.
    int64_t offset = 0;
    for (size_t i = 0; i < row.diffusers.size(); ++i) {
      const bool last = i + 1 == row.diffusers.size();
      const int64_t rows = row.diffusers.size() == 1 ? 0 : row.diffusers.size() == 3 ? out / 3 : last ? out - offset : in;
      map["transformer." + row.diffusers[i]] = {kUnet, row.bfl + ".weight", offset, rows};
      offset += rows;
    }
  }
  return map;
}

torch::Tensor AdapterModule::delta(const std::vector<int64_t>& weight_shape, torch::Device device) const {
  auto g = [&](const char* role) { return factors.at(role).to(device, torch::kFloat32); };
  auto has = [&](const char* role) { return factors.count(role) > 0; };
  torch::Tensor d;
  switch (kind) {
    case AdapterKind::LoRA: {
      auto down = g("down");
      if (has("mid")) {  // Tucker LoCon: fold the mid [r, r, kh, kw] into down [r, in, 1, 1]
        auto mid = g("mid");
        down = torch::mm(down.transpose(0, 1).flatten(1), mid.transpose(0, 1).flatten(1))
                   .reshape({down.size(1), down.size(0), mid.size(2), mid.size(3)})
                   .transpose(0, 1);
      }
      d = torch::mm(g("up").flatten(1), down.flatten(1));
      break;
    }
    case AdapterKind::LoHa: {
      torch::Tensor m1, m2;
      if (has("t1")) {
        m1 = tucker(g("t1"), g("w1_b"), g("w1_a"));
        m2 = tucker(g("t2"), g("w2_b"), g("w2_a"));
      } else {
        m1 = torch::mm(g("w1_a"), g("w1_b"));
        m2 = torch::mm(g("w2_a"), g("w2_b"));
      }
      d = m1 * m2;
      break;
    }
    case AdapterKind::LoKr: {
      auto w1 = has("w1") ? g("w1") : torch::mm(g("w1_a"), g("w1_b"));
      auto w2 = has("w2") ? g("w2") : has("t2") ? tucker(g("t2"), g("w2_b"), g("w2_a")) : torch::mm(g("w2_a"), g("w2_b"));
      if (w2.dim() == 4) w1 = w1.unsqueeze(2).unsqueeze(2);
      d = torch::kron(w1, w2);
      break;
    }
    case AdapterKind::Diff:
      d = g("diff");
      break;
  }
  d = d.reshape(weight_shape);
  return scale == 1.0 ? d : d.mul_(scale);  // the formula's result is a fresh tensor: scale it in place
}

void AdapterModule::add_to(torch::Tensor& whole, double strength) const {
  torch::Tensor weight = rows > 0 ? whole.narrow(0, row_offset, rows) : whole;  // a view: the adds land in `whole`
  if (kind == AdapterKind::LoRA && !factors.count("mid") && weight.is_contiguous()) {
    auto up = factors.at("up").to(weight.device(), torch::kFloat32).flatten(1);
    auto down = factors.at("down").to(weight.device(), torch::kFloat32).flatten(1);
    weight.view({weight.size(0), -1}).addmm_(up, down, /*beta=*/1.0, /*alpha=*/strength * scale);
    return;
  }
  weight.add_(delta(weight.sizes().vec(), weight.device()), strength);
}

namespace {

// The file's keys grouped into modules by their known suffixes; throws for a file that is
// not an adapter, or one with keys of a format we do not read.
std::map<std::string, FileModule> group_modules(const SafeTensors& f, const std::string& path) {
  std::map<std::string, FileModule> modules;
  std::vector<std::string> unknown_suffix;
  for (const auto& t : f.tensors()) {
    bool found = false;
    for (const auto& [suffix, role] : suffix_roles()) {
      if (!ends_with(t.name, suffix)) continue;
      modules[t.name.substr(0, t.name.size() - suffix.size())].roles[role] = t.name;
      found = true;
      break;
    }
    if (!found) unknown_suffix.push_back(t.name);
  }
  if (modules.empty())
    throw AdapterError(path + ": not a LoRA/LyCORIS adapter: no key ends in .lora_down.weight, .lora_A.weight, "
                              ".hada_w1_a, .lokr_w1, ... (first keys: " + join(unknown_suffix, 5) + ")");
  if (!unknown_suffix.empty())
    throw AdapterError(path + ": " + std::to_string(unknown_suffix.size()) +
                       " keys of a format Sigma Studio does not know (DoRA's dora_scale, bias diffs, ...): " +
                       join(unknown_suffix));
  return modules;
}

// One module's factors, kind, delta shape and alpha/rank scale.
AdapterModule read_module(const SafeTensors& f, const std::string& path, const std::string& source, const FileModule& fm) {
  AdapterModule m;
  m.source = source;
  auto role = [&](const std::string& r) { return fm.roles.count(r) > 0; };
  for (const auto& [r, key] : fm.roles) {
    const auto dot = r.find('.');
    m.factors[dot == std::string::npos ? r : r.substr(dot + 1)] = f.load(key);
  }
  m.factors.erase("alpha");
  if (role("up") || role("down")) {
    if (!role("up") || !role("down")) throw AdapterError(path + ": " + source + " has only one of its up/down factors");
    m.kind = AdapterKind::LoRA;
  } else if (role("hada.w1_a")) {
    for (const char* r : {"w1_b", "w2_a", "w2_b"})
      if (!m.factors.count(r)) throw AdapterError(path + ": LoHa module " + source + " lacks hada_" + r);
    m.kind = AdapterKind::LoHa;
  } else if (std::any_of(fm.roles.begin(), fm.roles.end(), [](const auto& kv) { return starts_with(kv.first, "lokr."); })) {
    m.kind = AdapterKind::LoKr;
  } else if (role("diff")) {
    m.kind = AdapterKind::Diff;
  } else {
    throw AdapterError(path + ": " + source + " has an alpha but no factors");
  }
  m.delta_shape = formula_shape(m, path + ": " + source);
  // alpha / rank; LoKr only when a factor is low-rank (the rank of the last one, as ComfyUI).
  if (role("alpha")) {
    const double alpha = f.load(fm.roles.at("alpha"), torch::kFloat64).item<double>();
    int64_t rank = 0;
    if (m.kind == AdapterKind::LoRA) rank = m.factors.at("down").size(0);
    if (m.kind == AdapterKind::LoHa) rank = m.factors.at("w1_b").size(0);
    if (m.kind == AdapterKind::LoKr) {
      if (m.factors.count("w1_b")) rank = m.factors.at("w1_b").size(0);
      if (m.factors.count("w2_b")) rank = m.factors.at("w2_b").size(0);
    }
    if (rank > 0) m.scale = alpha / static_cast<double>(rank);
  }
  return m;
}

// A module written for diffusers' norm_out.linear, whose output rows are (scale, shift), made
// into one for BFL's final_layer.adaLN_modulation.1, (shift, scale): the factors that carry the
// delta's rows have their halves swapped, so ΔW comes out in BFL's order.
void swap_row_halves(AdapterModule& m, const std::string& path) {
  auto swap = [&](const char* role) {
    auto& t = m.factors.at(role);
    if (t.size(0) % 2 != 0)
      throw AdapterError(path + ": " + m.source + ": " + std::to_string(t.size(0)) + " output rows cannot be halves of a modulation");
    t = torch::cat({t.narrow(0, t.size(0) / 2, t.size(0) / 2), t.narrow(0, 0, t.size(0) / 2)});
  };
  switch (m.kind) {
    case AdapterKind::LoRA: swap("up"); return;
    case AdapterKind::Diff: swap("diff"); return;
    case AdapterKind::LoHa:
      if (!m.factors.count("t1")) {
        swap("w1_a");  // ΔW = (w1_a@w1_b)⊙(w2_a@w2_b): rows come from w1_a and w2_a
        swap("w2_a");
        return;
      }
      break;
    case AdapterKind::LoKr: break;
  }
  throw AdapterError(path + ": " + m.source + ": a " + to_string(m.kind) +
                     " on norm_out.linear (whose rows BFL's weight keeps in the other order) is not supported; "
                     "a LoRA there is");
}

// Modules that fit no weight: one error that says why (another family's LoRA, wrong widths,
// unknown names), unless the caller allows unmatched names.
void check_unfitted(const SafeTensors& f, const std::string& path, const AdapterModel& model,
                    const std::map<std::string, FileModule>& modules, const std::vector<std::string>& unmatched,
                    const std::vector<std::string>& mismatched, const AdapterOptions& options) {
  const size_t failed = unmatched.size() + mismatched.size();
  if (failed == 0) return;
  bool missing_component = false;
  for (const auto& [source, fm] : modules)
    missing_component = missing_component ||
                        ((starts_with(source, "lora_te2_") || starts_with(source, "text_encoder_2.")) &&
                         !model.components.count(kTextEncoder2));
  const auto family = guess_family(f, modules);
  if (!family.empty() && !same_family(family, model.family) &&
      (missing_component || 2 * failed >= modules.size() || !mismatched.empty()))
    throw AdapterError(path + ": this LoRA is for " + family + ", the model is " + model.family + " (" +
                       std::to_string(failed) + " of " + std::to_string(modules.size()) +
                       " modules fit no weight of the model)");
  if (!mismatched.empty())
    throw AdapterError(path + ": " + std::to_string(mismatched.size()) +
                       " modules do not fit the shape of their weight: " + join(mismatched, 4));
  if (!unmatched.empty() && !options.allow_unmatched)
    throw AdapterError(path + ": " + std::to_string(unmatched.size()) + " of " + std::to_string(modules.size()) +
                       " modules match no weight of the " + model.family + " model: " + join(unmatched));
}

// A name for the UI and logs: "kohya LoRA + LoCon", "LyCORIS LoHa", "diffusers/PEFT LoRA".
std::string format_name(const std::set<std::string>& kinds, const std::set<std::string>& spellings) {
  std::string kind_list;
  for (const auto& k : kinds) kind_list += (kind_list.empty() ? "" : " + ") + k;
  if (kinds.count("LoCon") && kinds.count("LoRA")) kind_list = "LoRA + LoCon";
  const bool lycoris = kinds.count("LoHa") || kinds.count("LoKr") || kinds.count("full diff");
  return (lycoris ? std::string("LyCORIS") : join(std::vector<std::string>(spellings.begin(), spellings.end()))) + " " +
         kind_list;
}

}  // namespace

std::shared_ptr<const Adapter> load_adapter(const std::string& path, const AdapterModel& model,
                                            const AdapterOptions& options) {
  const auto ext = std::filesystem::path(path).extension().string();
  if (ext == ".pt" || ext == ".ckpt" || ext == ".pth" || ext == ".bin")
    throw AdapterError(path + ": pickle files (" + ext + ") can run code when loaded and are not supported; "
                              "convert it to .safetensors (e.g. with the safetensors package) and pass that");
  auto f = SafeTensors::open(path);
  const auto modules = group_modules(*f, path);
  auto adapter = std::make_shared<Adapter>();
  adapter->path = path;
  adapter->metadata = f->metadata();
  const auto keys = adapter_key_map(model);
  const auto slices = flux_diffusers_key_map(model);
  std::vector<std::string> unmatched, mismatched;
  std::set<std::string> kinds, spellings;
  for (const auto& [source, fm] : modules) {
    auto it = keys.find(source);
    const auto slice = slices.find(source);
    if (it == keys.end() && slice == slices.end()) {
      unmatched.push_back(source);
      continue;
    }
    const auto& component = it != keys.end() ? it->second.first : slice->second.component;
    const auto& target = it != keys.end() ? it->second.second : slice->second.target;
    const auto& comp = model.components.at(component);
    if (comp.skipped.count(target)) {
      adapter->skipped.push_back(source);
      continue;
    }
    AdapterModule m = read_module(*f, path, source, fm);
    if (it == keys.end() && slice->second.swap_halves) swap_row_halves(m, path);
    m.component = component;
    m.target = target;
    auto shape = comp.weights.at(target);
    if (it == keys.end() && slice->second.rows > 0) {
      m.row_offset = slice->second.row_offset;
      m.rows = slice->second.rows;
      if (!shape.empty()) shape[0] = m.rows;  // the delta's rows of the fused weight
    }
    if (shape.empty() || shape[0] != m.delta_shape[0] || product(shape) != product(m.delta_shape)) {
      mismatched.push_back(source + " (" + component + " " + target + "): delta " + shape_string(m.delta_shape) +
                           " vs weight " + shape_string(shape));
      continue;
    }
    kinds.insert(m.kind == AdapterKind::LoRA && m.delta_shape.size() == 4 && m.delta_shape[2] * m.delta_shape[3] > 1
                     ? "LoCon"
                     : to_string(m.kind));
    spellings.insert(starts_with(source, "lora_") ? "kohya" : starts_with(source, "diffusion_model.") ? "ComfyUI/BFL" : "diffusers/PEFT");
    adapter->modules.push_back(std::move(m));
  }
  check_unfitted(*f, path, model, modules, unmatched, mismatched, options);
  adapter->unmatched = unmatched;
  if (adapter->modules.empty() && adapter->skipped.empty())
    throw AdapterError(path + ": no module of " + file_name(path) + " fits the model");
  adapter->format = format_name(kinds, spellings);
  return adapter;
}

// ---- Patching -----------------------------------------------------------------------

PatchSet adapter_patches(const std::shared_ptr<const Adapter>& adapter, double unet_strength, double text_strength) {
  PatchSet set;
  for (const auto& m : adapter->modules) {
    const double s = m.component == kUnet ? unet_strength : text_strength;
    if (s != 0.0) set.push_back(Patch{adapter, &m, s});
  }
  return set;
}

void ModelPatcher::add_component(const std::string& name, std::shared_ptr<torch::nn::Module> module) {
  if (!applied_.empty()) throw std::logic_error("ModelPatcher: add components before applying patches");
  components_[name] = std::move(module);
}

bool ModelPatcher::apply(const PatchSet& patches) {
  if (patches == applied_) return false;  // the identity check: same adapters, modules and strengths
  restore();
  c10::InferenceMode guard;  // in-place on parameters, whether or not they were made in inference mode

  // Plan and check everything before the first weight changes.
  struct Target {
    torch::Tensor live;                 // the parameter merged into
    PatchedOnTheFly* on_the_fly = nullptr;  // or the layer that adds the deltas per call (an fp8 weight)
    std::shared_ptr<torch::nn::Module> owner;
    std::vector<const Patch*> patches;  // deltas of one weight add up
  };
  std::map<std::pair<std::string, std::string>, Target> targets;
  std::map<std::string, torch::OrderedDict<std::string, torch::Tensor>> params;
  std::map<std::string, torch::OrderedDict<std::string, std::shared_ptr<torch::nn::Module>>> modules;
  for (const auto& p : patches) {
    const auto& m = *p.module;
    auto c = components_.find(m.component);
    if (c == components_.end())
      throw AdapterError(p.adapter->path + ": patches the " + m.component + ", which the model does not have");
    if (!params.count(m.component)) {
      params[m.component] = c->second->named_parameters(true);
      modules[m.component] = c->second->named_modules("", /*include_self=*/false);
    }
    const auto* w = params[m.component].find(m.target);
    if (!w) throw AdapterError(p.adapter->path + ": " + m.source + " patches " + m.target + ", which the " + m.component + " does not have");
    auto& t = targets[{m.component, m.target}];
    t.live = *w;
    auto shape = w->sizes().vec();
    if (const auto* owner = ends_with(m.target, ".weight") ? modules[m.component].find(m.target.substr(0, m.target.size() - 7)) : nullptr) {
      auto* lazy = dynamic_cast<PatchedOnTheFly*>(owner->get());
      if (lazy && !lazy->on_the_fly_shape().empty()) {
        t.on_the_fly = lazy;
        t.owner = *owner;
        shape = lazy->on_the_fly_shape();
      }
    }
    const int64_t rows = m.rows > 0 ? m.rows : shape.at(0);  // a fused weight's slice, or all of it
    if (m.row_offset + rows > shape.at(0) || rows != m.delta_shape[0] ||
        product(shape) / std::max<int64_t>(shape.at(0), 1) * rows != product(m.delta_shape))
      throw AdapterError(p.adapter->path + ": " + m.source + ": delta " + shape_string(m.delta_shape) + " vs weight " +
                         shape_string(shape));
    t.patches.push_back(&p);
  }

  try {
    for (auto& [key, t] : targets) {
      if (t.on_the_fly) {
        // Each delta with its factors in float32 on the weight's device, ready for every call
        // (and for a CUDA graph capture, which cannot copy from the host).
        std::vector<PatchedOnTheFly::WeightPatch> list;
        for (const Patch* p : t.patches) {
          auto ready = std::make_shared<AdapterModule>(*p->module);
          for (auto& [role, factor] : ready->factors) factor = factor.to(t.on_the_fly->on_the_fly_device(), torch::kFloat32);
          list.push_back([ready, strength = p->strength](torch::Tensor& w) { ready->add_to(w, strength); });
        }
        t.on_the_fly->set_weight_patches(std::move(list));
        on_the_fly_.push_back(OnTheFly{t.owner, t.on_the_fly});
        continue;
      }
      auto& w = t.live;
      backups_.push_back(Backup{w, w.clone()});
      // float32 weights merge in place; others through a float32 copy, cast back once.
      const bool fp32 = w.scalar_type() == torch::kFloat32;
      auto merged = fp32 ? w : w.to(torch::kFloat32);
      for (const Patch* p : t.patches) p->module->add_to(merged, p->strength);
      if (!fp32) w.copy_(merged);  // back to the weight's dtype, in place: the module sees it
    }
  } catch (...) {
    restore();
    throw;
  }
  applied_ = patches;
  return true;
}

void ModelPatcher::restore() {
  c10::InferenceMode guard;
  for (auto& b : backups_) b.live.copy_(b.base);
  for (auto& o : on_the_fly_) o.weight->set_weight_patches({});
  backups_.clear();
  on_the_fly_.clear();
  applied_.clear();
}

}  // namespace sigma::models
