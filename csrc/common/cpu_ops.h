// The CPU entry points of the fused ops (defined in csrc/<op>/<op>_op.cpp, registered there with
// the dispatcher), declared for mobilenet_v3_op.cpp, which calls them directly: a whole
// network in one op call, without a dispatcher round trip per layer.
//
// Each op has two entry points: one taking mbv3::Act (what a C++ caller should use: no string
// parsing per layer) and the schema's string-taking one, which parses the names once and calls it.
#pragma once
#include <ATen/ATen.h>

#include <optional>

#include "activation.h"

namespace mbv3 {

at::Tensor conv_bn_act_cpu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                           int64_t stride, int64_t padding, Act activation);
at::Tensor conv_bn_act_cpu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                           int64_t stride, int64_t padding, c10::string_view activation);

at::Tensor dwconv_bn_act_cpu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                             int64_t stride, int64_t padding, int64_t dilation, Act activation);
at::Tensor dwconv_bn_act_cpu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                             int64_t stride, int64_t padding, int64_t dilation,
                             c10::string_view activation);

at::Tensor expand_dwconv_bn_act_cpu(const at::Tensor& x, const at::Tensor& ew, const at::Tensor& eb,
                                    Act expand_activation, const at::Tensor& dw, const at::Tensor& db,
                                    int64_t stride, int64_t padding, int64_t dilation, Act activation);
at::Tensor expand_dwconv_bn_act_cpu(const at::Tensor& x, const at::Tensor& ew, const at::Tensor& eb,
                                    c10::string_view expand_activation, const at::Tensor& dw,
                                    const at::Tensor& db, int64_t stride, int64_t padding,
                                    int64_t dilation, c10::string_view activation);

// An inverted residual block without SE from its expand on, for mobilenet_v3's walk (no op of
// its own; defined in expand_dwconv_bn_act_op.cpp): expand_dwconv_bn_act, then pwconv_bn_act(pw,
// pb, project_activation, residual = x if `residual`) on each band of depthwise rows while it is
// in L2.  The same values, bit for bit, as the two ops one after the other.
at::Tensor expand_dwconv_project_cpu(const at::Tensor& x, const at::Tensor& ew, const at::Tensor& eb,
                                     Act expand_activation, const at::Tensor& dw, const at::Tensor& db,
                                     int64_t stride, int64_t padding, int64_t dilation, Act activation,
                                     const at::Tensor& pw, const at::Tensor& pb, Act project_activation,
                                     bool residual);

at::Tensor pwconv_bn_act_cpu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                             Act activation, const std::optional<at::Tensor>& residual,
                             const std::optional<at::Tensor>& in_scale);
at::Tensor pwconv_bn_act_cpu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                             c10::string_view activation, const std::optional<at::Tensor>& residual,
                             const std::optional<at::Tensor>& in_scale);

at::Tensor se_cpu(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1,
                  const at::Tensor& w2, const at::Tensor& b2);

at::Tensor se_scale_cpu(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1,
                        const at::Tensor& w2, const at::Tensor& b2);
// se_scale's values as float32 (for bf16 x: rounded to bf16 first, bit for bit what se_scale
// returns), for mobilenet_v3_op.cpp to hand to pwconv_bn_act_cpu as its in_scale, which it reads
// as float32: no conversion there, and none here.
at::Tensor se_scale_float_cpu(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1,
                              const at::Tensor& w2, const at::Tensor& b2);

at::Tensor classifier_head_cpu(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1,
                               const at::Tensor& w2, const at::Tensor& b2, Act activation);
at::Tensor classifier_head_cpu(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1,
                               const at::Tensor& w2, const at::Tensor& b2, c10::string_view activation);

}  // namespace mbv3
