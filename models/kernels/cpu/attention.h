// softmax(q·kᵀ·scale)·v on the CPU in one kernel (models/kernels/cpu/attention.cpp): the heads are
// read where the projections left them (any strides with d contiguous, so [B, L, H, D] views
// need no transposed copies) and the output is written straight into its [B, L, H·D] place.
// K (and V for small heads) is first transposed into float32 workspace per (batch, head);
// then each task takes 32 query rows: their scores against every key in 8 x 32 register
// blocks, the softmax in float32, and the weighted sum of V. LibTorch 1.13's alternative was
// three operators with copies between them, where its bmm ran a 4-wide head (the bundled
// model's) at a fraction of its speed and the softmax dominated SD's 4096-token attention.
// Float32 arithmetic whatever the storage; exp() as in kernels.h.
#pragma once

#include <cstddef>
#include <cstdint>

#include "models/kernels/cpu/kernels.h"

namespace sigma::models::cpu {

struct AttentionArgs {
  DType dtype = DType::f32;
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* out = nullptr;
  int64_t B = 0, H = 0, Lq = 0, Lk = 0, D = 0;
  // Element strides of batch, head and position; the head dimension d is contiguous.
  int64_t q_strides[3] = {}, k_strides[3] = {}, v_strides[3] = {}, out_strides[3] = {};
  float scale = 1;
  bool causal = false;  // query i sees keys 0..i (CLIP's text encoder)
};

// The head sizes the kernel takes (larger heads, such as the VAE's 512, stay with LibTorch:
// their transposed K would no longer stay in cache across a task's rows).
constexpr int64_t kAttentionMaxHead = 256;
bool attention_supported(const AttentionArgs& a);

// float32 workspace the two phases share, and the number of row tasks.
size_t attention_workspace_floats(const AttentionArgs& a);
int64_t attention_tasks(const AttentionArgs& a);

// Phase 1 for the (batch, head) pairs [bh_begin, bh_end): K (and V) transposed into ws.
void attention_prepare(const AttentionArgs& a, float* ws, int64_t bh_begin, int64_t bh_end);
// Phase 2 for the tasks [task_begin, task_end), after phase 1 has finished for all pairs.
void attention_run(const AttentionArgs& a, const float* ws, int64_t task_begin, int64_t task_end);

}  // namespace sigma::models::cpu
