// Weight files stored in fp8 with per-tensor scales, as ComfyUI writes them: the older
// "scaled fp8" (a `scaled_fp8` marker tensor and `<layer>.scale_weight`) and the newer layout
// (`<layer>.weight_scale` with `<layer>.comfy_quant`, a UTF-8 JSON {"format": ...}, or the
// same per-layer formats in the header's `_quantization_metadata`). Plain fp8 files (no scale)
// need nothing: the reader decodes F8_E4M3 / F8_E5M2 itself.
#pragma once

#include <string>
#include <vector>

#include "models/io/weights.h"

namespace sigma::models {

// Attaches each layer's scale to its weight's TensorRef (weight = stored fp8 value · scale)
// and moves the markers out of the index into `ignored`. Throws ModelLoadError naming the
// layer for a quantization format other than fp8 (ComfyUI's int8 / fp4 kinds).
void apply_weight_scales(TensorIndex& index, std::vector<std::string>& ignored, const std::string& what);

}  // namespace sigma::models
