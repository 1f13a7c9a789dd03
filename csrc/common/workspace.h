// The one-call forwards' intermediate activations, from buffers kept between forwards.
//
// Why: a forward frees its activations and the next one allocates the same sizes again.  At
// batch 8 those are MBs each; glibc maps the large ones afresh or trims the top of its heap when
// they are freed, so every forward page-faults them in again (float32 Large, batch 8, 1 thread,
// a plain script: ~4,500 faults and ~9 ms of system time in a ~56 ms forward).  While a
// WorkspaceScope is alive on a thread, the ops' outputs (op_empty) of kWorkspaceMinBytes or more
// come from a process-wide cache instead, keyed by byte size; a freed output goes back to it (up
// to kWorkspaceMaxBytes cached, beyond that to free()).  Smaller ones stay with malloc, which
// hands back recently freed memory of any size (still in cache; batch 1 has no large ones).
// Outside a scope op_empty is at::empty.  The forwards open the scope for their intermediates
// only: the tensor a forward returns is a plain allocation.
#pragma once
#include <ATen/ATen.h>

#include <cstddef>

namespace mbv3 {

constexpr size_t kWorkspaceMinBytes = size_t(1) << 20;
constexpr size_t kWorkspaceMaxBytes = size_t(256) << 20;

class WorkspaceScope {
 public:
  WorkspaceScope();
  ~WorkspaceScope();
  WorkspaceScope(const WorkspaceScope&) = delete;
  WorkspaceScope& operator=(const WorkspaceScope&) = delete;

 private:
  bool outer_;
};

// An uninitialised CPU tensor of `shape` (options: dtype, device, memory format); from the cache
// when in a scope, channels_last 4-D and kWorkspaceMinBytes or more.
at::Tensor op_empty(at::IntArrayRef shape, const at::TensorOptions& options);

// Bytes the cache holds now (torch.ops.mbv3._workspace_cached_bytes, for the tests).
int64_t workspace_cached_bytes();

}  // namespace mbv3
