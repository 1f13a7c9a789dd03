// torch bindings of mbv3::q8_conv_act (the int8 stem conv) and mbv3::q8_quantize: schemas,
// checks, weight packing, threading, ISA choice.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "q8_conv_act.h"
#include "common/op_utils.h"
#include "common/q8_args.h"
#include "common/q8_cpu_ops.h"

namespace mbv3 {
namespace {

using Q8ConvFn = void(const Q8ConvArgs&, int64_t, int64_t);
using Q8QuantizeFn = void(const float*, uint8_t*, int64_t, float, int32_t);
using Q8PixelsFn = void(const float*, int64_t, int, uint32_t*, int64_t, float, int32_t);

// Every function of the stem's int8 family in force (q8.h).
#define MBV3_Q8_CONV_PICK(fn) MBV3_Q8_SELECT(fn, q8_isa(current_isa()))

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
  parallel_for(0, x.numel(), 1 << 16, [&](int64_t b, int64_t e) { fn(px + b, py + b, e - b, inv, zp); });
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
                           int64_t padding, std::optional<c10::ArrayRef<double>> onednn) {
  constexpr const char* op = "q8_conv_act";
  TORCH_CHECK_VALUE(x.scalar_type() == at::kByte || x.scalar_type() == at::kFloat, op,
                    ": x must be float32 (quantized here) or uint8 (already quantized), got ", x.scalar_type());
  TORCH_CHECK_VALUE(x.dim() == 4, op, ": x must be 4-D [N, C, H, W], got ", x.dim(), "-D");
  TORCH_CHECK(x.device().is_cpu(), op, ": the int8 ops run on the CPU, got x on ", x.device());
  check_q8_zero_point(x_zero_point, op, "x_zero_point");
  const int64_t N = x.size(0), Cin = x.size(1), H = x.size(2), W = x.size(3);
  // Plain int8 [Cout, Cin, k, k], or pack_weight's int32 [Cout, k, k, L] (see kQ8ConvPackMagic).
  const bool packed = weight.scalar_type() == at::kInt;
  TORCH_CHECK_VALUE(weight.scalar_type() == at::kChar || packed, op,
                    ": weight must be int8 (qweight.int_repr()) or int32 (pack_weight), got ", weight.scalar_type());
  TORCH_CHECK(weight.device().is_cpu(), op, ": weight must be on the CPU, got ", weight.device());
  if (packed) {
    TORCH_CHECK_VALUE(weight.dim() == 4 && weight.size(1) == weight.size(2) && weight.size(0) >= 1, op,
                      ": a packed weight must be [Cout, k, k, L] int32 from pack_weight, got ", weight.sizes());
  } else {
    TORCH_CHECK_VALUE(weight.dim() == 4 && weight.size(1) == Cin && weight.size(2) == weight.size(3) &&
                          weight.size(0) >= 1,
                      op, ": weight must be [Cout, Cin, k, k] with Cin = ", Cin, " (x's channels), got ",
                      weight.sizes());
  }
  const int64_t Cout = weight.size(0), k = packed ? weight.size(1) : weight.size(2);
  TORCH_CHECK_VALUE(k % 2 == 1 && k <= 7, op, ": kernel size must be odd and <= 7, got ", k);
  check_int_arg(op, "stride", stride, 1);
  check_int_arg(op, "padding", padding, 0);
  TORCH_CHECK_VALUE(H >= 1 && W >= 1, op, ": H and W must be >= 1, got ", H, "x", W);
  TORCH_CHECK_VALUE(H + 2 * padding >= k && W + 2 * padding >= k, op, ": input ", H, "x", W, " with padding ",
                    padding, " is smaller than the kernel ", k);
  float inv = 0.f;
  if (x.scalar_type() == at::kFloat) inv = checked_inv_scale(x_scale, op);
  at::Tensor storage[4];
  Q8Requant r = q8_requant_args(bias_int, bias_float, multiplier, out_qparams, lut, Cout, op, storage, onednn);
  const int64_t OH = conv_out_size(H, padding, k, stride), OW = conv_out_size(W, padding, k, stride);
  at::Tensor y = at::empty({N, Cout, OH, OW}, x.options().dtype(at::kByte).memory_format(at::MemoryFormat::ChannelsLast));
  if (y.numel() == 0) return y;

  const int64_t Cin4 = (Cin + 3) / 4 * 4, groups = Cin4 / 4;
  const int64_t CoutPad = (Cout + kQ8ConvCoutBlock - 1) / kQ8ConvCoutBlock * kQ8ConvCoutBlock;
  const int64_t nw = CoutPad * k * k * groups;  // int32 words of w (4 int8 each)
  const int32_t xzp = static_cast<int32_t>(x_zero_point);
  std::vector<int32_t> bias_eff(static_cast<size_t>(Cout)), wbuf;
  const int8_t* w4;
  if (packed) {
    TORCH_CHECK_VALUE(weight.is_contiguous() && weight.numel() >= kQ8ConvPackHeader + CoutPad + nw, op,
                      ": packed weight is not from pack_weight (size ", weight.sizes(), ")");
    const int32_t* h = weight.data_ptr<int32_t>();
    TORCH_CHECK_VALUE(h[0] == kQ8ConvPackMagic && h[1] == Cout && h[2] == Cin && h[3] == k, op,
                      ": packed weight is not pack_weight's for Cout = ", Cout, ", Cin = ", Cin, ", k = ", k);
    const int32_t* sums = h + kQ8ConvPackHeader;
    for (int64_t co = 0; co < Cout; ++co) bias_eff[co] = r.bias_int[co] - sums[co] * xzp;
    w4 = reinterpret_cast<const int8_t*>(sums + CoutPad);
  } else {
    wbuf.assign(static_cast<size_t>(nw), 0);
    int8_t* wb = reinterpret_cast<int8_t*>(wbuf.data());
    const auto wa = weight.accessor<int8_t, 4>();
    for (int64_t co = 0; co < Cout; ++co) {
      int32_t sum = 0;
      for (int64_t kh = 0; kh < k; ++kh)
        for (int64_t kw = 0; kw < k; ++kw)
          for (int64_t ci = 0; ci < Cin; ++ci) {
            const int8_t v = wa[co][ci][kh][kw];
            wb[(((co / 16) * k * k + kh * k + kw) * groups + ci / 4) * 64 + (co % 16) * 4 + ci % 4] = v;
            sum += v;
          }
      bias_eff[co] = r.bias_int[co] - sum * xzp;
    }
    w4 = wb;
  }
  r.bias_int = bias_eff.data();

  // x quantized (QuantStub) or taken as is, into NHWC with the channels padded to a multiple of 4
  // (one int32 per pixel and group, what vpdpbusd takes) and the border padded with x_zp, so the
  // kernels read every tap without checks.  A per-thread buffer: no allocation per call.
  const int64_t Hp = H + 2 * padding, Wp = W + 2 * padding;
  const size_t bytes = static_cast<size_t>(N * Hp * Wp * Cin4);
  thread_local std::vector<uint32_t> keep;
  std::vector<uint32_t> once;
  std::vector<uint32_t>& buf = bytes <= (size_t(8) << 20) ? keep : once;
  if (buf.size() < bytes / 4) buf.resize(bytes / 4);
  uint8_t* x4 = reinterpret_cast<uint8_t*>(buf.data());
  const uint32_t zp4 = 0x01010101u * static_cast<uint32_t>(xzp);
  const int64_t rowb = Wp * Cin4;  // bytes per padded row
  const bool fast = x.scalar_type() == at::kFloat && Cin4 == 4 && x.is_contiguous();
  at::Tensor xq;
  if (!fast) {  // general layouts and uint8 input: ATen, then the padded copy below
    const auto fmt = wants_channels_last(x) ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
    if (x.scalar_type() == at::kFloat) {
      const at::Tensor xf = x.contiguous(fmt);
      xq = at::empty(x.sizes(), x.options().dtype(at::kByte).memory_format(fmt));
      quantize_into(xf, xq, inv, xzp);
    } else {
      xq = x.contiguous(fmt);
    }
  }
  Q8PixelsFn* pixels = MBV3_Q8_CONV_PICK(q8_quantize_pixels);
  parallel_for(0, N * Hp, parallel_grain(Wp * Cin4 * 4, 16384), [&](int64_t r0, int64_t r1) {
    for (int64_t rr = r0; rr < r1; ++rr) {
      const int64_t b = rr / Hp, ih = rr % Hp - padding;
      uint8_t* out = x4 + rr * rowb;
      if (ih < 0 || ih >= H) {
        std::fill_n(reinterpret_cast<uint32_t*>(out), rowb / 4, zp4);
        continue;
      }
      std::fill_n(reinterpret_cast<uint32_t*>(out), padding * groups, zp4);
      std::fill_n(reinterpret_cast<uint32_t*>(out + (padding + W) * Cin4), padding * groups, zp4);
      uint8_t* o = out + padding * Cin4;
      if (fast) {
        pixels(x.data_ptr<float>() + (b * Cin * H + ih) * W, H * W, int(Cin), reinterpret_cast<uint32_t*>(o), W,
               inv, xzp);
        continue;
      }
      const uint8_t* src = xq.data_ptr<uint8_t>() + b * xq.stride(0) + ih * xq.stride(2);
      const int64_t sc = xq.stride(1), sw = xq.stride(3);
      for (int64_t iw = 0; iw < W; ++iw)
        for (int64_t ci = 0; ci < Cin4; ++ci) o[iw * Cin4 + ci] = ci < Cin ? src[iw * sw + ci * sc] : 0;
    }
  });
  const Q8ConvArgs p{x4, w4, y.data_ptr<uint8_t>(), N, Cin4, Hp, Wp, Cout, CoutPad, OH, OW,
                     Hp * rowb, 1, rowb, Cin4, int(k), int(stride), 0, xzp, r};
  Q8ConvFn* kernel = MBV3_Q8_CONV_PICK(q8_conv_act);
  const int64_t grain = parallel_grain(OW * Cout * Cin * k * k, 16384);
  parallel_for(0, N * OH, grain, [&](int64_t b, int64_t e) { kernel(p, b, e); });
  return y;
}

}  // namespace mbv3

TORCH_LIBRARY_FRAGMENT(mbv3, m) {
  m.def("q8_conv_act(Tensor x, float x_scale, int x_zero_point, Tensor weight, Tensor bias_int, "
        "Tensor bias_float, Tensor multiplier, int[] out_qparams, Tensor? lut, int stride, int padding, "
        "float[]? onednn=None) -> Tensor");
  m.def("q8_quantize(Tensor x, float scale, int zero_point) -> Tensor");
  // For mbv3_fast.quantization's choice of the x86 engine's rounding (common/cpu_isa.h).
  m.def("q8_cpu_has_avx512_vnni() -> bool", [] { return mbv3::cpu_has_avx512_vnni(); });
}

TORCH_LIBRARY_IMPL(mbv3, CPU, m) {
  m.impl("q8_conv_act", &mbv3::q8_conv_act_cpu);
  m.impl("q8_quantize", &mbv3::q8_quantize_cpu);
}
