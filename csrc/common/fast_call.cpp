#include "fast_call.h"

#include <ATen/PythonTorchFunctionTLS.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>

namespace mbv3 {

bool plain_dispatch(const at::Tensor& x) {
  const auto tls = c10::impl::tls_local_dispatch_key_set();
  if (!(tls.included_ - c10::default_included_set).empty() || at::impl::torch_function_mode_enabled() ||
      at::autocast::is_autocast_enabled(at::kCPU))
    return false;
  return !(at::GradMode::is_enabled() && x.requires_grad());
}

}  // namespace mbv3
