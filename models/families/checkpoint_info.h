// Human-readable description of a checkpoint for `sigma info` and the GUI's model panel.
#pragma once

#include <string>

#include "models/families/checkpoint.h"

namespace sigma::models {

// dtype histogram of a component, e.g. "F16 x 686"
std::string dtype_summary(const TensorIndex& index);
std::string format_count(int64_t n);  // 1234567 -> "1.23 M"
std::string describe_checkpoint(const Checkpoint& ck);

}  // namespace sigma::models
