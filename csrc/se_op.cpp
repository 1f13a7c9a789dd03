// torch binding of mbv3::se / mbv3::se_scale: schemas, input checks, layout, threading, ISA.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <memory>

#include "isa_dispatch.h"
#include "op_utils.h"
#include "se.h"

namespace mbv3 {
namespace {

// Work split.  A thread's task is at least kMinTaskElems elements of x (or kMinTaskMacs FC
// multiply-adds), so the small SE layers of MobileNetV3 at batch 1 run on the calling thread
// (waking a pool thread costs µs) and the larger ones split evenly.  The NHWC pool reads x in
// pixel chunks of about kChunkElems elements, each chunk writing one row of partial sums: the
// chunking depends on the shape only, so the result is the same for every thread count.
constexpr int64_t kMinTaskElems = 32768;
constexpr int64_t kMinTaskMacs = 32768;
constexpr int64_t kChunkElems = 16384;
constexpr int64_t kFcBlock = 16;  // FC outputs per work unit at batch 1 (one AVX-512 vector)

int64_t grain(int64_t min_task, int64_t per_unit) {
  return std::max<int64_t>(1, min_task / std::max<int64_t>(1, per_unit));
}

// A 2-D [rows, cols] view of a [rows, cols] or [rows, cols, 1, 1] weight, by sizes and
// strides only (no ATen view on the hot path).
struct MatView {
  int64_t rows, cols, s_row, s_col;
};

bool as_matrix(const at::Tensor& w, MatView& m) {
  if (w.dim() != 2 && !(w.dim() == 4 && w.size(2) == 1 && w.size(3) == 1)) return false;
  m = {w.size(0), w.size(1), w.stride(0), w.stride(1)};
  return true;
}

// Reads the weight in place when one of its two dims is unit-stride; otherwise packs it
// row-major into `holder` (a strided slice of a bigger buffer, say).
SeMatrix se_matrix(const at::Tensor& w, const MatView& m, at::Tensor& holder) {
  const float* base = w.data_ptr<float>();
  if (m.s_col == 1 || m.cols == 1) return {base, m.s_row, false};
  if (m.s_row == 1 || m.rows == 1) return {base, m.s_col, true};
  holder = w.reshape({m.rows, m.cols}).contiguous();
  return {holder.data_ptr<float>(), m.cols, false};
}

struct Checked {
  int64_t N, C, H, W, S;
  MatView w1, w2;
};

Checked check_inputs(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1,
                     const at::Tensor& w2, const at::Tensor& b2, const char* op) {
  check_float_cpu(x, "x");
  TORCH_CHECK_VALUE(x.dim() == 4, op, ": x must be 4-D [N, C, H, W], got ", x.dim(), "-D");
  Checked k{x.size(0), x.size(1), x.size(2), x.size(3), 0, {}, {}};
  TORCH_CHECK_VALUE(k.C >= 1 && k.H >= 1 && k.W >= 1, op, ": x must have C, H, W >= 1, got ",
                    x.sizes());
  check_float_cpu(w1, "w1");
  check_float_cpu(b1, "b1");
  check_float_cpu(w2, "w2");
  check_float_cpu(b2, "b2");
  TORCH_CHECK_VALUE(as_matrix(w1, k.w1) && k.w1.cols == k.C && k.w1.rows >= 1, op,
                    ": w1 must be [S, C] or [S, C, 1, 1] with C = ", k.C,
                    " (x's channels) and S >= 1, got ", w1.sizes());
  k.S = k.w1.rows;
  TORCH_CHECK_VALUE(b1.dim() == 1 && b1.size(0) == k.S, op, ": b1 must be [S] with S = ", k.S,
                    " (w1's rows), got ", b1.sizes());
  TORCH_CHECK_VALUE(as_matrix(w2, k.w2) && k.w2.rows == k.C && k.w2.cols == k.S, op,
                    ": w2 must be [C, S] or [C, S, 1, 1] with C = ", k.C, ", S = ", k.S,
                    ", got ", w2.sizes());
  TORCH_CHECK_VALUE(b2.dim() == 1 && b2.size(0) == k.C, op, ": b2 must be [C] with C = ", k.C,
                    ", got ", b2.sizes());
  return k;
}

// Pool -> FC1 -> FC2 into scale [N][C]; then (when p.y) y = x * scale.
void run_se(SeParams& p, float* scale) {
  const Isa isa = current_isa();
  auto* pool = MBV3_ISA_SELECT(se_pool, isa);
  auto* mean_fn = MBV3_ISA_SELECT(se_mean, isa);
  auto* fc1 = MBV3_ISA_SELECT(se_fc1, isa);
  auto* fc2 = MBV3_ISA_SELECT(se_fc2, isa);
  const int64_t N = p.N, C = p.C, S = p.S, HW = p.HW;
  p.chunk = p.nhwc ? std::min(HW, std::max<int64_t>(1, kChunkElems / C)) : HW;
  const int64_t chunks = se_num_chunks(p);  // 1 for NCHW

  // Scratch: partial sums [N][chunks][C] (NCHW: [N][C]), means [N][C], hidden [N][S].
  std::unique_ptr<float[]> scratch(new float[N * (chunks * C + C + S)]);
  float* part = scratch.get();
  float* mean = part + N * chunks * C;
  float* hid = mean + N * C;

  if (p.nhwc) {
    at::parallel_for(0, N * chunks, grain(kMinTaskElems, p.chunk * C), [&](int64_t b, int64_t e) {
      pool(p, b, e, part);
    });
  } else {
    at::parallel_for(0, N * C, grain(kMinTaskElems, HW), [&](int64_t b, int64_t e) {
      pool(p, b, e, part);
    });
  }

  const int64_t macs = C * S;  // per FC, per sample
  if (N == 1 && macs >= 2 * kMinTaskMacs && at::get_num_threads() > 1) {
    // One sample with big weights: split each FC over its outputs.
    mean_fn(p, part, mean);
    at::parallel_for(0, (S + kFcBlock - 1) / kFcBlock, grain(kMinTaskMacs, kFcBlock * C),
                     [&](int64_t b, int64_t e) {
                       fc1(p, mean, hid, b * kFcBlock, std::min(S, e * kFcBlock));
                     });
    at::parallel_for(0, (C + kFcBlock - 1) / kFcBlock, grain(kMinTaskMacs, kFcBlock * S),
                     [&](int64_t b, int64_t e) {
                       fc2(p, hid, scale, b * kFcBlock, std::min(C, e * kFcBlock));
                     });
  } else {
    at::parallel_for(0, N, grain(kMinTaskMacs, 2 * macs), [&](int64_t b, int64_t e) {
      for (int64_t n = b; n < e; ++n) {
        mean_fn(p, part + n * chunks * C, mean + n * C);
        fc1(p, mean + n * C, hid + n * S, 0, S);
        fc2(p, hid + n * S, scale + n * C, 0, C);
      }
    });
  }

  if (p.y) {
    auto* apply = MBV3_ISA_SELECT(se_apply, isa);
    const int64_t units = p.nhwc ? N * HW : N * C, per_unit = p.nhwc ? C : HW;
    at::parallel_for(0, units, grain(kMinTaskElems, per_unit), [&](int64_t b, int64_t e) {
      apply(p, scale, b, e);
    });
  }
}

at::Tensor se_impl(const at::Tensor& x_in, const at::Tensor& w1, const at::Tensor& b1,
                   const at::Tensor& w2, const at::Tensor& b2, bool scale_only) {
  const char* op = scale_only ? "se_scale" : "se";
  const Checked k = check_inputs(x_in, w1, b1, w2, b2, op);
  // Dense NHWC or NCHW is read in place; anything else becomes NCHW (its output is NCHW).
  const bool nhwc = x_in.is_contiguous(at::MemoryFormat::ChannelsLast) && !x_in.is_contiguous();
  const at::Tensor x = nhwc ? x_in : x_in.contiguous();
  at::Tensor out = scale_only
                       ? at::empty({k.N, k.C}, x.options())
                       : at::empty({k.N, k.C, k.H, k.W},
                                   x.options().memory_format(nhwc ? at::MemoryFormat::ChannelsLast
                                                                  : at::MemoryFormat::Contiguous));
  if (k.N == 0) return out;

  at::Tensor w1_hold, w2_hold;
  const at::Tensor b1c = b1.contiguous(), b2c = b2.contiguous();
  SeParams p{};
  p.x = x.data_ptr<float>();
  p.N = k.N;
  p.C = k.C;
  p.S = k.S;
  p.HW = k.H * k.W;
  p.nhwc = nhwc;
  p.w1 = se_matrix(w1, k.w1, w1_hold);
  p.b1 = b1c.data_ptr<float>();
  p.w2 = se_matrix(w2, k.w2, w2_hold);
  p.b2 = b2c.data_ptr<float>();
  if (scale_only) {
    run_se(p, out.data_ptr<float>());
  } else {
    std::unique_ptr<float[]> scale(new float[k.N * k.C]);
    p.y = out.data_ptr<float>();
    run_se(p, scale.get());
  }
  return out;
}

at::Tensor se_cpu(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1,
                  const at::Tensor& w2, const at::Tensor& b2) {
  return se_impl(x, w1, b1, w2, b2, false);
}

at::Tensor se_scale_cpu(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1,
                        const at::Tensor& w2, const at::Tensor& b2) {
  return se_impl(x, w1, b1, w2, b2, true);
}

}  // namespace
}  // namespace mbv3

TORCH_LIBRARY_FRAGMENT(mbv3, m) {
  m.def("se(Tensor x, Tensor w1, Tensor b1, Tensor w2, Tensor b2) -> Tensor");
  m.def("se_scale(Tensor x, Tensor w1, Tensor b1, Tensor w2, Tensor b2) -> Tensor");
}

TORCH_LIBRARY_IMPL(mbv3, CPU, m) {
  m.impl("se", &mbv3::se_cpu);
  m.impl("se_scale", &mbv3::se_scale_cpu);
}
