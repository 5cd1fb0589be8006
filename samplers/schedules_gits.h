// The GITS schedule's σ tables (schedules_gits.cpp).
#pragma once

#include <vector>

namespace sigma::samplers {

// The 19 rows (step counts 2..20) for a coefficient 0.80, 0.85, ..., 1.50; others throw.
const std::vector<std::vector<double>>& gits_rows(double coeff);

}  // namespace sigma::samplers
