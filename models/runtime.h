// Process-wide LibTorch settings every Sigma Studio binary applies at start.
#pragma once

namespace sigma::models {

// LibTorch starts with 1 intra-op thread on these VMs (c10's cpuinfo default);
// use every core unless OMP_NUM_THREADS / SIGMA_THREADS say otherwise.
void init_runtime();

}  // namespace sigma::models
