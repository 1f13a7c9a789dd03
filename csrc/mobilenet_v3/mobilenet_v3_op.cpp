// torch binding of mbv3::mobilenet_v3: a whole MobileNetV3 eval forward (stem, inverted
// residual blocks, last 1x1 conv, classifier head) as one op call.
//
// Why: a Large forward is ~50 op calls, each with Python, dispatcher and argument handling
// when called from Python.  Here the same CPU entry points (cpu_ops.h) are called directly, so
// every value is computed exactly as by the per-op path (the tests check bit equality).  The
// saving is small: 0.04-0.15 ms of a 3-5 ms batch-1 forward (bench_model.py, fused vs
// fused_per_op; profiler gaps had suggested ~0.4 ms, mostly the profiler's own cost).
//
// No kernel of its own.  The network is `weights` (the folded tensors) plus `spec`, a flat list
// of ints naming them by index; mbv3_fast/ops/mobilenet_v3.py builds it, documents the layout
// and walks it for the fake and CUDA kernels.  Every index is bounds-checked here and every
// layer's shapes by the op it calls, so a bad spec raises, never reads out of bounds.
#include <torch/library.h>

#include <optional>
#include <vector>

#include "common/cpu_ops.h"

namespace mbv3 {
namespace {

constexpr int64_t kSpecVersion = 1;

const char* act_name(int64_t code) {
  static const char* const kNames[] = {"none", "relu", "hardswish"};  // mbv3::Act codes
  TORCH_CHECK_VALUE(code >= 0 && code <= 2, "mobilenet_v3: activation code must be 0 (none), 1 (relu) or "
                    "2 (hardswish), got ", code);
  return kNames[code];
}

// Reads `spec` front to back, checking that it does not end early and that tensor indices are
// in range.
class SpecReader {
 public:
  SpecReader(at::IntArrayRef spec, at::TensorList weights) : spec_(spec), weights_(weights) {}

  int64_t next(const char* what) {
    TORCH_CHECK_VALUE(pos_ < spec_.size(), "mobilenet_v3: spec ends early (", spec_.size(),
                      " ints) where it should give ", what);
    return spec_[pos_++];
  }
  // An index into weights; -1 (only where `optional`) means absent.
  int64_t index(const char* what, bool optional = false) {
    const int64_t i = next(what);
    if (optional && i == -1) return -1;
    TORCH_CHECK_VALUE(i >= 0 && i < int64_t(weights_.size()), "mobilenet_v3: spec gives weights[", i,
                      "] as ", what, ", but weights holds ", weights_.size(), " tensors");
    return i;
  }
  int64_t act(const char* what) {
    const int64_t code = next(what);
    act_name(code);  // checks the code
    return code;
  }
  void expect_end() const {
    TORCH_CHECK_VALUE(pos_ == spec_.size(), "mobilenet_v3: spec has ", spec_.size() - pos_,
                      " ints past its end");
  }

 private:
  at::IntArrayRef spec_;
  at::TensorList weights_;
  size_t pos_ = 0;
};

// One entry of the spec's block list; tensor indices, -1 where absent.
struct Block {
  int64_t ew, eb, eact, dw, db, stride, pad, dil, dact, se_w1, se_b1, se_w2, se_b2, pw, pb, residual;
};

struct Net {
  int64_t fuse_min_bytes;
  int64_t stem_w, stem_b, stem_stride, stem_pad, stem_act;
  std::vector<Block> blocks;
  int64_t last_w, last_b, last_act;
  int64_t head_w1, head_b1, head_w2, head_b2, head_act;  // head_w1 = -1: no folded head
};

// The whole spec, checked before any layer runs.
Net parse(at::IntArrayRef spec, at::TensorList weights) {
  SpecReader s(spec, weights);
  const int64_t version = s.next("the version");
  TORCH_CHECK_VALUE(version == kSpecVersion, "mobilenet_v3: spec version ", version, ", this build reads ",
                    kSpecVersion);
  Net n{};
  n.fuse_min_bytes = s.next("the expand fusion threshold");
  const int64_t n_blocks = s.next("the block count");
  TORCH_CHECK_VALUE(n_blocks >= 0 && n_blocks <= int64_t(spec.size()), "mobilenet_v3: bad block count ", n_blocks);
  n.stem_w = s.index("stem weight");
  n.stem_b = s.index("stem bias");
  n.stem_stride = s.next("stem stride");
  n.stem_pad = s.next("stem padding");
  n.stem_act = s.act("stem activation");
  for (int64_t i = 0; i < n_blocks; ++i) {
    Block b{};
    b.ew = s.index("expand weight", true);
    b.eb = s.index("expand bias", b.ew < 0);
    b.eact = s.act("expand activation");
    b.dw = s.index("depthwise weight");
    b.db = s.index("depthwise bias");
    b.stride = s.next("depthwise stride");
    b.pad = s.next("depthwise padding");
    b.dil = s.next("depthwise dilation");
    b.dact = s.act("depthwise activation");
    b.se_w1 = s.index("SE w1", true);
    b.se_b1 = s.index("SE b1", b.se_w1 < 0);
    b.se_w2 = s.index("SE w2", b.se_w1 < 0);
    b.se_b2 = s.index("SE b2", b.se_w1 < 0);
    b.pw = s.index("project weight");
    b.pb = s.index("project bias");
    b.residual = s.next("residual flag");
    TORCH_CHECK_VALUE((b.ew < 0) == (b.eb < 0), "mobilenet_v3: block ", i, " gives only one of expand weight/bias");
    TORCH_CHECK_VALUE((b.se_w1 < 0) == (b.se_b1 < 0) && (b.se_w1 < 0) == (b.se_w2 < 0) &&
                          (b.se_w1 < 0) == (b.se_b2 < 0),
                      "mobilenet_v3: block ", i, " gives only some of the SE tensors");
    n.blocks.push_back(b);
  }
  n.last_w = s.index("last conv weight");
  n.last_b = s.index("last conv bias");
  n.last_act = s.act("last conv activation");
  n.head_w1 = s.index("head w1", true);
  n.head_b1 = s.index("head b1", n.head_w1 < 0);
  n.head_w2 = s.index("head w2", n.head_w1 < 0);
  n.head_b2 = s.index("head b2", n.head_w1 < 0);
  n.head_act = s.act("head activation");
  TORCH_CHECK_VALUE((n.head_w1 < 0) == (n.head_b1 < 0) && (n.head_w1 < 0) == (n.head_w2 < 0) &&
                        (n.head_w1 < 0) == (n.head_b2 < 0),
                    "mobilenet_v3: spec gives only some of the head tensors");
  s.expect_end();
  return n;
}

at::Tensor mobilenet_v3_cpu(const at::Tensor& x, at::TensorList w, at::IntArrayRef spec) {
  const Net n = parse(spec, w);
  at::Tensor y = conv_bn_act_cpu(x, w[n.stem_w], w[n.stem_b], n.stem_stride, n.stem_pad, act_name(n.stem_act));
  for (const Block& b : n.blocks) {
    const at::Tensor in = y;
    const char* dact = act_name(b.dact);
    at::Tensor h;
    if (b.ew < 0) {
      h = dwconv_bn_act_cpu(in, w[b.dw], w[b.db], b.stride, b.pad, b.dil, dact);
    } else {
      const at::Tensor& e = w[b.ew];
      const int64_t ce = e.dim() >= 1 ? e.size(0) : 0;
      // The rule of mbv3_fast.model._fuse_expand: large expanded maps never leave L2.
      if (in.size(2) * in.size(3) * ce * int64_t(sizeof(float)) >= n.fuse_min_bytes) {
        h = expand_dwconv_bn_act_cpu(in, e, w[b.eb], act_name(b.eact), w[b.dw], w[b.db], b.stride, b.pad, b.dil,
                                     dact);
      } else {
        h = dwconv_bn_act_cpu(pwconv_bn_act_cpu(in, e, w[b.eb], act_name(b.eact), std::nullopt, std::nullopt),
                              w[b.dw], w[b.db], b.stride, b.pad, b.dil, dact);
      }
    }
    std::optional<at::Tensor> scale;
    if (b.se_w1 >= 0) scale = se_scale_cpu(h, w[b.se_w1], w[b.se_b1], w[b.se_w2], w[b.se_b2]);
    y = pwconv_bn_act_cpu(h, w[b.pw], w[b.pb], "none", b.residual ? std::optional<at::Tensor>(in) : std::nullopt,
                          scale);
  }
  y = pwconv_bn_act_cpu(y, w[n.last_w], w[n.last_b], act_name(n.last_act), std::nullopt, std::nullopt);
  if (n.head_w1 < 0) return y;  // no folded head: the caller runs its classifier on these features
  return classifier_head_cpu(y, w[n.head_w1], w[n.head_b1], w[n.head_w2], w[n.head_b2], act_name(n.head_act));
}

}  // namespace
}  // namespace mbv3

TORCH_LIBRARY_FRAGMENT(mbv3, m) {
  m.def("mobilenet_v3(Tensor x, Tensor[] weights, int[] spec) -> Tensor");
}

TORCH_LIBRARY_IMPL(mbv3, CPU, m) { m.impl("mobilenet_v3", &mbv3::mobilenet_v3_cpu); }
