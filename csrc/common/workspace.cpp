// common/workspace.h: the cache of the one-call forwards' activation buffers.
#include "workspace.h"

#include <c10/util/accumulate.h>
#include <torch/library.h>

#include <cstdlib>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace mbv3 {
namespace {

thread_local bool t_in_scope = false;

class Cache {
 public:
  void* get(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = free_.find(bytes);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();  // the last one freed: the likeliest still in cache
        it->second.pop_back();
        held_ -= bytes;
        return p;
      }
    }
    void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    TORCH_CHECK(p != nullptr, "mbv3: out of memory allocating ", bytes, " bytes");
    return p;
  }
  void put(void* p, size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (held_ + bytes <= kWorkspaceMaxBytes) {
        free_[bytes].push_back(p);
        held_ += bytes;
        return;
      }
    }
    std::free(p);
  }
  size_t held() {
    std::lock_guard<std::mutex> lock(mu_);
    return held_;
  }

 private:
  std::mutex mu_;
  std::unordered_map<size_t, std::vector<void*>> free_;  // by byte size, last freed at the back
  size_t held_ = 0;
};

// Never destroyed: a tensor freed during interpreter exit still returns its buffer here.
Cache& cache() {
  static Cache* c = new Cache;
  return *c;
}

}  // namespace

WorkspaceScope::WorkspaceScope() : outer_(t_in_scope) { t_in_scope = true; }
WorkspaceScope::~WorkspaceScope() { t_in_scope = outer_; }

at::Tensor op_empty(at::IntArrayRef shape, const at::TensorOptions& options) {
  const size_t bytes = size_t(c10::multiply_integers(shape)) * options.dtype().itemsize();
  // The forwards' activations are channels_last 4-D; anything else is left to ATen.
  if (!t_in_scope || bytes < kWorkspaceMinBytes || options.device().type() != at::kCPU || shape.size() != 4 ||
      options.memory_format_opt() != at::MemoryFormat::ChannelsLast)
    return at::empty(shape, options);
  void* p = cache().get(bytes);
  return at::from_blob(p, shape, c10::get_channels_last_strides_2d(shape), [bytes](void* q) { cache().put(q, bytes); },
                       options.memory_format(std::nullopt));
}

int64_t workspace_cached_bytes() { return int64_t(cache().held()); }

}  // namespace mbv3

TORCH_LIBRARY_FRAGMENT(mbv3, m) {
  m.def("_workspace_cached_bytes() -> int", [] { return mbv3::workspace_cached_bytes(); });
}
