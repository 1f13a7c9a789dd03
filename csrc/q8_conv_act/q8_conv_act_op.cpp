// torch bindings of mbv3::q8_conv_act (the int8 stem conv) and mbv3::q8_quantize: schemas,
// checks, weight packing, threading, ISA choice.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "q8_conv_act.h"
#include "common/op_utils.h"
#include "common/q8_args.h"

namespace mbv3 {
namespace {

using Q8ConvFn = void(const Q8ConvArgs&, int64_t, int64_t);
using Q8QuantizeFn = void(const float*, uint8_t*, int64_t, float, int32_t);

template <class Fn>
Fn* select(Fn* s, Fn* a2, Fn* a512) {
  switch (q8_isa(current_isa())) {
#if MBV3_BUILD_X86 && !defined(MBV3_NO_AVX512)
    case Q8Isa::Avx512Vnni: return a512;
#endif
#if MBV3_BUILD_X86
    case Q8Isa::Avx2: return a2;
#endif
    default: (void)a2; (void)a512; return s;  // also NEON: no NEON unit yet
  }
}
#if MBV3_BUILD_X86 && !defined(MBV3_NO_AVX512)
#define MBV3_Q8_CONV_PICK(fn) select(&scalar::fn, &avx2::fn, &avx512_vnni::fn)
#elif MBV3_BUILD_X86
#define MBV3_Q8_CONV_PICK(fn) select(&scalar::fn, &avx2::fn, &avx2::fn)
#else
#define MBV3_Q8_CONV_PICK(fn) select(&scalar::fn, &scalar::fn, &scalar::fn)
#endif

float checked_inv_scale(double scale, const char* op) {
  const float s = static_cast<float>(scale);
  TORCH_CHECK_VALUE(std::isfinite(s) && s > 0.f, op, ": scale must be a positive finite float32, got ", scale);
  return 1.f / s;
}

// y (same shape, uint8, contiguous in `fmt`) = quantize(x), x float32 dense in `fmt`.
void quantize_into(const at::Tensor& x, const at::Tensor& y, float inv, int32_t zp) {
  Q8QuantizeFn* fn = MBV3_Q8_CONV_PICK(q8_quantize);
  const float* px = x.data_ptr<float>();
  uint8_t* py = y.data_ptr<uint8_t>();
  at::parallel_for(0, x.numel(), 1 << 16, [&](int64_t b, int64_t e) { fn(px + b, py + b, e - b, inv, zp); });
}

}  // namespace

at::Tensor q8_quantize_cpu(const at::Tensor& x, double scale, int64_t zero_point) {
  constexpr const char* op = "q8_quantize";
  TORCH_CHECK_VALUE(x.scalar_type() == at::kFloat, op, ": x must be float32, got ", x.scalar_type());
  TORCH_CHECK_VALUE(x.dim() == 4, op, ": x must be 4-D [N, C, H, W], got ", x.dim(), "-D");
  TORCH_CHECK(x.device().is_cpu(), op, ": x must be on the CPU, got ", x.device());
  check_q8_zero_point(zero_point, op, "zero_point");
  const float inv = checked_inv_scale(scale, op);
  const auto fmt = wants_channels_last(x) ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  const at::Tensor xn = x.contiguous(fmt);
  at::Tensor y = at::empty(x.sizes(), x.options().dtype(at::kByte).memory_format(fmt));
  quantize_into(xn, y, inv, static_cast<int32_t>(zero_point));
  return y;
}

at::Tensor q8_conv_act_cpu(const at::Tensor& x, double x_scale, int64_t x_zero_point, const at::Tensor& weight,
                           const at::Tensor& bias_int, const at::Tensor& bias_float, const at::Tensor& multiplier,
                           c10::IntArrayRef out_qparams, const std::optional<at::Tensor>& lut, int64_t stride,
                           int64_t padding) {
  constexpr const char* op = "q8_conv_act";
  TORCH_CHECK_VALUE(x.scalar_type() == at::kByte || x.scalar_type() == at::kFloat, op,
                    ": x must be float32 (quantized here) or uint8 (already quantized), got ", x.scalar_type());
  TORCH_CHECK_VALUE(x.dim() == 4, op, ": x must be 4-D [N, C, H, W], got ", x.dim(), "-D");
  TORCH_CHECK(x.device().is_cpu(), op, ": the int8 ops run on the CPU, got x on ", x.device());
  check_q8_zero_point(x_zero_point, op, "x_zero_point");
  const int64_t N = x.size(0), Cin = x.size(1), H = x.size(2), W = x.size(3);
  TORCH_CHECK_VALUE(weight.scalar_type() == at::kChar, op, ": weight must be int8 (qweight.int_repr()), got ",
                    weight.scalar_type());
  TORCH_CHECK(weight.device().is_cpu(), op, ": weight must be on the CPU, got ", weight.device());
  TORCH_CHECK_VALUE(weight.dim() == 4 && weight.size(1) == Cin && weight.size(2) == weight.size(3) &&
                        weight.size(0) >= 1,
                    op, ": weight must be [Cout, Cin, k, k] with Cin = ", Cin, " (x's channels), got ",
                    weight.sizes());
  const int64_t Cout = weight.size(0), k = weight.size(2);
  TORCH_CHECK_VALUE(k % 2 == 1 && k <= 7, op, ": kernel size must be odd and <= 7, got ", k);
  check_int_arg(op, "stride", stride, 1);
  check_int_arg(op, "padding", padding, 0);
  TORCH_CHECK_VALUE(H >= 1 && W >= 1, op, ": H and W must be >= 1, got ", H, "x", W);
  TORCH_CHECK_VALUE(H + 2 * padding >= k && W + 2 * padding >= k, op, ": input ", H, "x", W, " with padding ",
                    padding, " is smaller than the kernel ", k);
  float inv = 0.f;
  if (x.scalar_type() == at::kFloat) inv = checked_inv_scale(x_scale, op);
  at::Tensor storage[4];
  Q8Requant r = q8_requant_args(bias_int, bias_float, multiplier, out_qparams, lut, Cout, op, storage);
  const int64_t OH = conv_out_size(H, padding, k, stride), OW = conv_out_size(W, padding, k, stride);
  at::Tensor y = at::empty({N, Cout, OH, OW}, x.options().dtype(at::kByte).memory_format(at::MemoryFormat::ChannelsLast));
  if (y.numel() == 0) return y;

  // x quantized (QuantStub) or taken as is, in its own dense layout; the kernel reads it by strides.
  const auto fmt = wants_channels_last(x) ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  at::Tensor xq;
  if (x.scalar_type() == at::kFloat) {
    const at::Tensor xf = x.contiguous(fmt);
    xq = at::empty(x.sizes(), x.options().dtype(at::kByte).memory_format(fmt));
    quantize_into(xf, xq, inv, static_cast<int32_t>(x_zero_point));
  } else {
    xq = x.contiguous(fmt);
  }
  // NHWC with the channels padded to a multiple of 4 (pad values 0, their weights 0): one int32
  // per pixel and group of 4 channels, what vpdpbusd takes.  NCHW planes are interleaved here.
  const int64_t Cin4 = (Cin + 3) / 4 * 4;
  at::Tensor x4 = at::empty({N, H, W, Cin4}, xq.options().memory_format(at::MemoryFormat::Contiguous));
  if (Cin4 == 4 && xq.is_contiguous()) {
    const uint8_t* src = xq.data_ptr<uint8_t>();
    uint32_t* dst = reinterpret_cast<uint32_t*>(x4.data_ptr<uint8_t>());
    const int64_t hw = H * W;
    at::parallel_for(0, N, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const uint8_t* plane = src + b * Cin * hw;
        uint32_t* out = dst + b * hw;
        for (int64_t i = 0; i < hw; ++i) out[i] = plane[i];
        for (int64_t ci = 1; ci < Cin; ++ci)
          for (int64_t i = 0; i < hw; ++i) out[i] |= static_cast<uint32_t>(plane[ci * hw + i]) << (8 * ci);
      }
    });
  } else {
    x4.narrow(3, Cin, Cin4 - Cin).zero_();
    x4.narrow(3, 0, Cin).copy_(xq.permute({0, 2, 3, 1}));
  }
  // [kh][kw][ci][co] int32 weights, co padded to the block; the zero-point term folded into the bias.
  const int64_t CoutPad = (Cout + kQ8ConvCoutBlock - 1) / kQ8ConvCoutBlock * kQ8ConvCoutBlock;
  std::vector<int32_t> wp(static_cast<size_t>(k * k * Cin4 * CoutPad), 0);
  std::vector<int32_t> bias_eff(static_cast<size_t>(Cout));
  {
    const auto wa = weight.accessor<int8_t, 4>();
    for (int64_t co = 0; co < Cout; ++co) {
      int32_t sum = 0;
      for (int64_t kh = 0; kh < k; ++kh)
        for (int64_t kw = 0; kw < k; ++kw)
          for (int64_t ci = 0; ci < Cin; ++ci) {
            const int8_t v = wa[co][ci][kh][kw];
            wp[((kh * k + kw) * Cin4 + ci) * CoutPad + co] = v;
            sum += v;
          }
      bias_eff[co] = r.bias_int[co] - sum * static_cast<int32_t>(x_zero_point);
    }
  }
  r.bias_int = bias_eff.data();
  const Q8ConvArgs p{x4.data_ptr<uint8_t>(), wp.data(), y.data_ptr<uint8_t>(), N, Cin4, H, W, Cout, CoutPad, OH, OW,
                     x4.stride(0), 1, x4.stride(1), x4.stride(2),
                     int(k), int(stride), int(padding), static_cast<int32_t>(x_zero_point), r};
  Q8ConvFn* kernel = MBV3_Q8_CONV_PICK(q8_conv_act);
  const int64_t grain = parallel_grain(OW * Cout * Cin * k * k, 16384);
  at::parallel_for(0, N * OH, grain, [&](int64_t b, int64_t e) { kernel(p, b, e); });
  return y;
}

}  // namespace mbv3

TORCH_LIBRARY_FRAGMENT(mbv3, m) {
  m.def("q8_conv_act(Tensor x, float x_scale, int x_zero_point, Tensor weight, Tensor bias_int, "
        "Tensor bias_float, Tensor multiplier, int[] out_qparams, Tensor? lut, int stride, int padding) -> Tensor");
  m.def("q8_quantize(Tensor x, float scale, int zero_point) -> Tensor");
}

TORCH_LIBRARY_IMPL(mbv3, CPU, m) {
  m.impl("q8_conv_act", &mbv3::q8_conv_act_cpu);
  m.impl("q8_quantize", &mbv3::q8_quantize_cpu);
}
