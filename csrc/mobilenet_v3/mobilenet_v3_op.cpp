// torch binding of mbv3::mobilenet_v3: a whole MobileNetV3 eval forward (stem, inverted
// residual blocks, last 1x1 conv, classifier head) as one op call.
//
// Why: a Large forward is ~50 op calls, each with Python, dispatcher and argument handling
// when called from Python.  Here the same CPU entry points (common/cpu_ops.h) are called
// directly, so every value is computed exactly as by the per-op path (the tests check bit
// equality).
//
// No kernel of its own.  The network is `weights` (the folded tensors) plus `spec`, the
// mechanical encoding of mbv3_fast/plan.py's records: the structs below mirror those classes
// field for field, in declaration order (tensors as indices into weights; an absent record has
// -1 in every field).  Every index is bounds-checked here and every layer's shapes by the op it
// calls, so a bad spec raises, never reads out of bounds.
#include <torch/library.h>

#include <optional>
#include <ostream>
#include <vector>

#include "common/cpu_ops.h"
#include "common/op_utils.h"
#include "common/workspace.h"

namespace mbv3 {
namespace {

constexpr int64_t kSpecVersion = 2;   // mbv3_fast.plan.SPEC_VERSION
constexpr int64_t kFloat32Code = 0;   // mbv3_fast.plan.DTYPE_CODES[torch.float32]
constexpr int64_t kBFloat16Code = 2;  // mbv3_fast.plan.DTYPE_CODES[torch.bfloat16]

// An activation code the parser has range-checked, as the enum the entry points take.
Act act_of(int64_t code) { return static_cast<Act>(code); }

// plan.Conv, plan.Pointwise, plan.Depthwise, plan.SE, plan.Block, plan.Head.
struct ConvSpec { int64_t weight, bias, stride, padding, act; };
struct PointwiseSpec { int64_t weight, bias, act; };
struct DepthwiseSpec { int64_t weight, bias, stride, padding, dilation, act; };
struct SESpec { int64_t w1, b1, w2, b2; };
struct BlockSpec {
  std::optional<PointwiseSpec> expand;
  DepthwiseSpec depthwise;
  std::optional<SESpec> se;
  PointwiseSpec project;
  int64_t residual, fuse_min_pixels;
};
struct HeadSpec { int64_t w1, b1, w2, b2, act; };
struct NetSpec {
  at::ScalarType dtype;
  ConvSpec stem;
  std::vector<BlockSpec> blocks;
  PointwiseSpec last;
  std::optional<HeadSpec> head;
};

// Field kinds, as plan._layout reads them from the record classes.
enum class Kind { Tensor, Act, Int };

// A spec field's name for messages ("block 3 expand weight"), put together only when a check
// fails: no string work per call.
struct Name {
  int64_t block;  // -1: not in a block
  const char* record;
  const char* field = "";
};
std::ostream& operator<<(std::ostream& o, const Name& n) {
  if (n.block >= 0) o << "block " << n.block << " ";
  o << n.record << (*n.field ? " " : "") << n.field;
  return o;
}

// Reads one record after another, with the checks (and messages) of mbv3_fast.plan.decode.
class SpecReader {
 public:
  SpecReader(at::IntArrayRef spec, at::TensorList weights) : spec_(spec), weights_(weights) {}

  int64_t next(const Name& what) {
    TORCH_CHECK_VALUE(pos_ < spec_.size(), "mobilenet_v3: spec ends early (", spec_.size(),
                      " ints) where it should give ", what);
    return spec_[pos_++];
  }
  // The fields of one record named `what` (kinds in `kinds`), or nothing for an absent optional
  // record (every field -1).
  std::optional<std::vector<int64_t>> record(const Name& what,
                                             std::initializer_list<std::pair<const char*, Kind>> kinds,
                                             bool optional = false) {
    const size_t start = pos_;
    std::vector<int64_t> out;
    int absent = 0, n = 0;
    for (const auto& [name, kind] : kinds) {
      const Name sub{what.block, what.record, name};
      const int64_t v = next(sub);
      absent += v == -1;
      ++n;
      if (kind == Kind::Tensor && !(optional && v == -1)) {
        TORCH_CHECK_VALUE(v >= 0 && v < int64_t(weights_.size()), "mobilenet_v3: spec gives weights[", v, "] as ",
                          sub, ", but weights holds ", weights_.size(), " tensors");
      } else if (kind == Kind::Act && !(optional && v == -1)) {
        TORCH_CHECK_VALUE(v >= 0 && v <= 2, "mobilenet_v3: activation code must be 0 (none), 1 (relu) or "
                          "2 (hardswish), got ", v, " for ", sub);
      }
      out.push_back(v);
    }
    if (optional && absent > 0) {
      TORCH_CHECK_VALUE(absent == n, "mobilenet_v3: spec gives only some of the ", what, " fields (ints ", start,
                        "..", pos_ - 1, ")");
      return std::nullopt;
    }
    return out;
  }
  size_t pos() const { return pos_; }
  size_t size() const { return spec_.size(); }

 private:
  at::IntArrayRef spec_;
  at::TensorList weights_;
  size_t pos_ = 0;
};

constexpr auto T = Kind::Tensor;
constexpr auto A = Kind::Act;
constexpr auto I = Kind::Int;

std::optional<PointwiseSpec> read_pointwise(SpecReader& r, const Name& what, bool optional = false) {
  const auto v = r.record(what, {{"weight", T}, {"bias", T}, {"act", A}}, optional);
  if (!v) return std::nullopt;
  return PointwiseSpec{(*v)[0], (*v)[1], (*v)[2]};
}

// The whole spec, checked before any layer runs.
NetSpec parse(at::IntArrayRef spec, at::TensorList weights) {
  SpecReader r(spec, weights);
  const int64_t version = r.next({-1, "the version"});
  TORCH_CHECK_VALUE(version == kSpecVersion, "mobilenet_v3: spec version ", version, ", this build reads ",
                    kSpecVersion);
  const int64_t dtype = r.next({-1, "the dtype code"});
  TORCH_CHECK_VALUE(dtype == kFloat32Code || dtype == kBFloat16Code, "mobilenet_v3: the CPU op runs float32 "
                    "(dtype code 0) and bfloat16 (code 2) networks, got dtype code ", dtype);
  const int64_t n_blocks = r.next({-1, "the block count"});
  TORCH_CHECK_VALUE(n_blocks >= 0 && n_blocks <= int64_t(spec.size()), "mobilenet_v3: bad block count ", n_blocks);
  NetSpec n{};
  n.dtype = dtype == kBFloat16Code ? at::kBFloat16 : at::kFloat;
  const auto s = *r.record({-1, "stem"}, {{"weight", T}, {"bias", T}, {"stride", I}, {"padding", I}, {"act", A}});
  n.stem = ConvSpec{s[0], s[1], s[2], s[3], s[4]};
  for (int64_t i = 0; i < n_blocks; ++i) {
    BlockSpec blk{};
    blk.expand = read_pointwise(r, {i, "expand"}, true);
    const auto d = *r.record({i, "depthwise"}, {{"weight", T}, {"bias", T}, {"stride", I}, {"padding", I},
                                                {"dilation", I}, {"act", A}});
    blk.depthwise = DepthwiseSpec{d[0], d[1], d[2], d[3], d[4], d[5]};
    if (const auto e = r.record({i, "se"}, {{"w1", T}, {"b1", T}, {"w2", T}, {"b2", T}}, true))
      blk.se = SESpec{(*e)[0], (*e)[1], (*e)[2], (*e)[3]};
    blk.project = *read_pointwise(r, {i, "project"});
    blk.residual = r.next({i, "residual"});
    blk.fuse_min_pixels = r.next({i, "fuse_min_pixels"});
    n.blocks.push_back(blk);
  }
  n.last = *read_pointwise(r, {-1, "last conv"});
  if (const auto h = r.record({-1, "head"}, {{"w1", T}, {"b1", T}, {"w2", T}, {"b2", T}, {"act", A}}, true))
    n.head = HeadSpec{(*h)[0], (*h)[1], (*h)[2], (*h)[3], (*h)[4]};
  TORCH_CHECK_VALUE(r.pos() == r.size(), "mobilenet_v3: spec has ", r.size() - r.pos(), " ints past its end");
  return n;
}

at::Tensor pointwise(const at::Tensor& x, at::TensorList w, const PointwiseSpec& p,
                     const std::optional<at::Tensor>& residual = std::nullopt,
                     const std::optional<at::Tensor>& scale = std::nullopt) {
  return pwconv_bn_act_cpu(x, w[p.weight], w[p.bias], act_of(p.act), residual, scale);
}

// The inverted residual blocks, from the stem's output y.
at::Tensor blocks(at::Tensor y, at::TensorList w, const NetSpec& n) {
  for (const BlockSpec& b : n.blocks) {
    const at::Tensor in = y;
    const DepthwiseSpec& d = b.depthwise;
    const Act dact = act_of(d.act);
    at::Tensor h;
    const bool fuse = b.expand && b.fuse_min_pixels >= 0 && in.size(0) * in.size(2) * in.size(3) >= b.fuse_min_pixels;
    if (fuse && !b.se) {  // the whole block, band by band: the project reads the depthwise rows from L2
      const PointwiseSpec &e = *b.expand, &p = b.project;
      y = expand_dwconv_project_cpu(in, w[e.weight], w[e.bias], act_of(e.act), w[d.weight], w[d.bias], d.stride,
                                    d.padding, d.dilation, dact, w[p.weight], w[p.bias], act_of(p.act),
                                    b.residual != 0);
      continue;
    }
    if (fuse) {
      const PointwiseSpec& e = *b.expand;
      h = expand_dwconv_bn_act_cpu(in, w[e.weight], w[e.bias], act_of(e.act), w[d.weight], w[d.bias], d.stride,
                                   d.padding, d.dilation, dact);
    } else {
      h = b.expand ? pointwise(in, w, *b.expand) : in;
      h = dwconv_bn_act_cpu(h, w[d.weight], w[d.bias], d.stride, d.padding, d.dilation, dact);
    }
    std::optional<at::Tensor> scale;
    if (b.se) scale = se_scale_float_cpu(h, w[b.se->w1], w[b.se->b1], w[b.se->w2], w[b.se->b2]);
    y = pointwise(h, w, b.project, b.residual ? std::optional<at::Tensor>(in) : std::nullopt, scale);
  }
  return y;
}

// The walk of mbv3_fast.plan.run, in C++.
at::Tensor walk(const at::Tensor& x, at::TensorList w, at::IntArrayRef spec) {
  const NetSpec n = parse(spec, w);
  TORCH_CHECK_VALUE(x.scalar_type() == n.dtype, "mobilenet_v3: x is ", dtype_name(x.scalar_type()),
                    " but the network is ", dtype_name(n.dtype));
  const ConvSpec& s = n.stem;
  at::Tensor y;
  {
    // The intermediates come from buffers kept between forwards (common/workspace.h); the
    // tensor returned (the head's logits, or the last conv's features) does not.
    WorkspaceScope cached;
    y = blocks(conv_bn_act_cpu(x, w[s.weight], w[s.bias], s.stride, s.padding, act_of(s.act)), w, n);
    if (n.head) y = pointwise(y, w, n.last);
  }
  if (!n.head) return pointwise(y, w, n.last);  // no folded head: the caller runs its classifier on these
  const HeadSpec& hd = *n.head;
  return classifier_head_cpu(y, w[hd.w1], w[hd.b1], w[hd.w2], w[hd.b2], act_of(hd.act));
}

// The op: the walk inside one team (common/parallel.h), so that its ~70 parallel loops share
// threads started once.
at::Tensor mobilenet_v3_cpu(const at::Tensor& x, at::TensorList w, at::IntArrayRef spec) {
  at::Tensor out;
  with_team([&] { out = walk(x, w, spec); });
  return out;
}

}  // namespace
}  // namespace mbv3

TORCH_LIBRARY_FRAGMENT(mbv3, m) {
  m.def("mobilenet_v3(Tensor x, Tensor[] weights, int[] spec) -> Tensor");
}

TORCH_LIBRARY_IMPL(mbv3, CPU, m) { m.impl("mobilenet_v3", &mbv3::mobilenet_v3_cpu); }
