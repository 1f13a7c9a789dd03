// torch binding of mbv3::q8_dwconv_act: schema, checks, weight packing, threading, ISA choice.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "q8_dwconv_act.h"
#include "common/op_utils.h"
#include "common/q8_args.h"
#include "common/q8_cpu_ops.h"

namespace mbv3 {
namespace {

constexpr const char* kOp = "q8_dwconv_act";

using Q8DwFn = void(const Q8DwArgs&, int64_t, int64_t, int64_t, int64_t);

// C <= 16 on the AVX-512 path takes the AVX2 kernel (its 16-channel tiles are full, the 32-lane
// ones would be half empty) unless the vpdpbusd path applies.  Every kernel but avx512_vnni's
// vpdpbusd path reads the int16 taps-major rows (Q8DwArgs::w).
Q8DwFn* select_kernel(int64_t C, int64_t k, int64_t stride, int64_t dilation) {
  const Q8Isa isa = q8_isa(current_isa());
#if MBV3_BUILD_X86 && !defined(MBV3_NO_AVX512)
  if (isa == Q8Isa::Avx512Vnni && C <= 16 && !q8_dw_dot_geometry(k, stride, dilation)) return &avx2::q8_dwconv_act;
#else
  (void)C, (void)k, (void)stride, (void)dilation;
#endif
  return MBV3_Q8_SELECT(q8_dwconv_act, isa);
}

// The kernel that takes q8_dw_pack_dot's weights (null where it is not built).
Q8DwFn* dot_kernel() {
#if MBV3_BUILD_X86 && !defined(MBV3_NO_AVX512)
  return &avx512_vnni::q8_dwconv_act;
#else
  return nullptr;
#endif
}

}  // namespace

at::Tensor q8_dwconv_act_cpu(const at::Tensor& x, int64_t x_zero_point, const at::Tensor& weight,
                             const at::Tensor& bias_int, const at::Tensor& bias_float, const at::Tensor& multiplier,
                             c10::IntArrayRef out_qparams, const std::optional<at::Tensor>& lut, int64_t stride,
                             int64_t padding, int64_t dilation, std::optional<c10::ArrayRef<double>> onednn) {
  check_q8_x(x, kOp);
  check_q8_zero_point(x_zero_point, kOp, "x_zero_point");
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  // Plain int8 [C, 1, k, k], or pack_weight's int16 [C, k, k, L] (see kQ8DwPackMagic).
  const bool packed = weight.scalar_type() == at::kShort;
  TORCH_CHECK_VALUE(weight.scalar_type() == at::kChar || packed, kOp,
                    ": weight must be int8 (qweight.int_repr()) or int16 (pack_weight), got ", weight.scalar_type());
  TORCH_CHECK(weight.device().is_cpu(), kOp, ": weight must be on the CPU, got ", weight.device());
  if (packed) {
    TORCH_CHECK_VALUE(weight.dim() == 4 && weight.size(0) == C && weight.size(1) == weight.size(2), kOp,
                      ": a packed weight must be [C, k, k, L] int16 from pack_weight with C = ", C, ", got ",
                      weight.sizes());
  } else {
    TORCH_CHECK_VALUE(weight.dim() == 4 && weight.size(0) == C && weight.size(1) == 1 &&
                          weight.size(2) == weight.size(3),
                      kOp, ": weight must be [C, 1, k, k] with C = ", C, " (x's channels), got ", weight.sizes());
  }
  const int64_t k = packed ? weight.size(1) : weight.size(2);
  TORCH_CHECK_VALUE(k % 2 == 1 && k <= kQ8DwMaxK, kOp, ": kernel size must be odd and <= ", kQ8DwMaxK, ", got ", k);
  const DwShape shape = check_depthwise_geometry(kOp, H, W, k, stride, padding, dilation);
  at::Tensor storage[4];
  Q8Requant r = q8_requant_args(bias_int, bias_float, multiplier, out_qparams, lut, C, kOp, storage, onednn);
  const int64_t OH = shape.OH, OW = shape.OW;
  at::Tensor y = at::empty({N, C, OH, OW}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  if (y.numel() == 0) return y;

  // Taps-major int16 weights, rows padded to kQ8DwChannelPad; the zero-point term folded into the
  // bias (per call: it depends on x_zero_point).  Plain loops: a handful of ATen ops here cost
  // more than the 7x7 layers' kernels.
  const int64_t Cpad = (C + kQ8DwChannelPad - 1) / kQ8DwChannelPad * kQ8DwChannelPad, taps = k * k;
  std::vector<int16_t> wp;
  std::vector<int8_t> wp8;
  std::vector<int32_t> bias_eff(static_cast<size_t>(C));
  const int16_t* w16;
  const int8_t* w8 = nullptr;
  Q8DwFn* kernel = select_kernel(C, k, stride, dilation);
  const bool dot = kernel == dot_kernel() && q8_dw_dot_geometry(k, stride, dilation);
  const int32_t xzp = static_cast<int32_t>(x_zero_point);
  if (packed) {
    TORCH_CHECK_VALUE(weight.is_contiguous() &&
                          weight.numel() >= kQ8DwPackHeader + (taps + 1) * Cpad + q8_dw_dot_bytes(Cpad, k) / 2,
                      kOp, ": packed weight is not from pack_weight (size ", weight.sizes(), ")");
    const int16_t* h = weight.data_ptr<int16_t>();
    TORCH_CHECK_VALUE(h[0] == kQ8DwPackMagic && h[1] == C && h[2] == k, kOp,
                      ": packed weight is not pack_weight's for C = ", C, ", k = ", k);
    w16 = h + kQ8DwPackHeader;
    const int16_t* sums = w16 + taps * Cpad;
    for (int64_t c = 0; c < C; ++c) bias_eff[c] = r.bias_int[c] - sums[c] * xzp;
    w8 = reinterpret_cast<const int8_t*>(sums + Cpad);
  } else {
    wp.assign(static_cast<size_t>(taps * Cpad), 0);
    const auto wa = weight.accessor<int8_t, 4>();
    for (int64_t c = 0; c < C; ++c) {
      int32_t sum = 0;
      for (int64_t t = 0; t < taps; ++t) {
        const int8_t v = wa[c][0][t / k][t % k];
        wp[t * Cpad + c] = v;
        sum += v;
      }
      bias_eff[c] = r.bias_int[c] - sum * xzp;
    }
    w16 = wp.data();
    if (dot) {
      wp8.resize(static_cast<size_t>(q8_dw_dot_bytes(Cpad, k)));
      q8_dw_pack_dot(wp8.data(), C, Cpad, k, [&](int64_t c, int64_t kh, int64_t kw) { return wa[c][0][kh][kw]; });
      w8 = wp8.data();
    }
  }
  r.bias_int = bias_eff.data();

  const at::Tensor xn = x.contiguous(at::MemoryFormat::ChannelsLast);
  const Q8DwArgs p{xn.data_ptr<uint8_t>(), w16, dot ? w8 : nullptr, y.data_ptr<uint8_t>(), N, C, H, W, OH, OW,
                   Cpad, int(k), int(stride), int(padding), int(dilation), static_cast<int32_t>(x_zero_point), r};
  // Units: output rows (all channels) when rows alone balance the threads, else an image's rows x
  // a block of 64 channels (the kernels work in bands of output rows).
  const int64_t rows = N * OH;
  const int64_t cblock = rows >= 4 * num_threads() ? C : 64;
  const int64_t cblocks = (C + cblock - 1) / cblock;
  if (cblocks == 1) {
    parallel_for(0, rows, parallel_grain(OW * C * k * k, 16384),
                     [&](int64_t begin, int64_t end) { kernel(p, begin, end, 0, C); });
    return y;
  }
  parallel_for(0, N * cblocks, parallel_grain(OH * OW * cblock * k * k, 16384), [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; ++u) {
      const int64_t n = u / cblocks, c0 = (u % cblocks) * cblock;
      kernel(p, n * OH, (n + 1) * OH, c0, std::min(C, c0 + cblock));
    }
  });
  return y;
}

}  // namespace mbv3

TORCH_LIBRARY_FRAGMENT(mbv3, m) {
  m.def("q8_dwconv_act(Tensor x, int x_zero_point, Tensor weight, Tensor bias_int, Tensor bias_float, "
        "Tensor multiplier, int[] out_qparams, Tensor? lut, int stride, int padding, int dilation=1, "
        "float[]? onednn=None) -> Tensor");
}

TORCH_LIBRARY_IMPL(mbv3, CPU, m) { m.impl("q8_dwconv_act", &mbv3::q8_dwconv_act_cpu); }
