"""mbv3::mobilenet_v3 (a whole network in one op call): bit-equal to the per-op walk of the same
spec, close to torchvision in float64, opcheck, bad specs and inputs, and the model using it."""
import dataclasses

import pytest
import torch
from torch import nn
from torchvision.models import mobilenetv3 as tvm

import mbv3_fast
from mbv3_fast import MobileNetV3Large, MobileNetV3Small
from mbv3_fast import plan as _records
from mbv3_fast.isa import cpu_head_panel_rows, cpu_pw_panel_cols
from mbv3_fast.model import _Fold
from mbv3_fast.ops import mobilenet_v3 as net_op
from mbv3_fast.testing import realistic

pytestmark = pytest.mark.usefixtures("one_thread")

ARCHS = {"large": (MobileNetV3Large, tvm.mobilenet_v3_large),
         "small": (MobileNetV3Small, tvm.mobilenet_v3_small)}
CONFIGS = {"default": {}, "dilated_reduced": {"dilated": True, "reduced_tail": True},
           "w075_cls10": {"width_mult": 0.75, "num_classes": 10}}


def _model(arch="small", cfg="default"):
    return realistic(ARCHS[arch][0](**CONFIGS[cfg]), seed=int(torch.randint(1000, ())))


def _layouts(x):
    """The same values as NCHW, channels_last and a non-contiguous view."""
    wide = torch.empty(x.shape[0], x.shape[1], x.shape[2], x.shape[3] * 2)
    wide[..., ::2] = x
    return {"nchw": x, "cl": x.contiguous(memory_format=torch.channels_last), "strided": wide[..., ::2]}


@pytest.mark.parametrize("arch,cfg", [(a, c) for a in ARCHS for c in CONFIGS])
@pytest.mark.parametrize("shape", [(1, 3, 32, 32), (3, 3, 45, 61), (0, 3, 32, 32), (1, 3, 7, 9)],
                         ids=["1x32", "3x45x61", "batch0", "1x7x9"])
def test_equals_per_op_walk(arch, cfg, shape):
    model = _model(arch, cfg)
    plan = model._fused_plan()
    assert plan.ok, plan.reason
    x = torch.randn(shape) * 1.5 + 0.3
    for name, xi in _layouts(x).items():
        out = torch.ops.mbv3.mobilenet_v3(xi, plan.net_weights, plan.net_spec)
        ref = net_op.run_spec(xi, plan.net_weights, plan.net_spec)
        assert out.shape == (shape[0], model.classifier[-1].out_features)
        assert torch.equal(out, ref), f"{name}: max|d| {(out - ref).abs().max()}"
        assert shape[0] == 0 or out.abs().max() > 0


def test_every_isa_against_torchvision_float64(cpu_isa):
    model = _model("large")
    tv = ARCHS["large"][1]()
    tv.load_state_dict(model.state_dict())
    tv = tv.double().eval()
    x = torch.randn(2, 3, 48, 40) * 1.5 + 0.3
    plan = model._fused_plan()
    out = torch.ops.mbv3.mobilenet_v3(x, plan.net_weights, plan.net_spec)
    with torch.no_grad():
        ref = tv(x.double())
    err = (out.double() - ref).abs().max().item()
    assert err <= 1e-4 * ref.abs().max().item(), err
    assert torch.equal(out.argmax(1), ref.argmax(1))


def test_panel_layout_is_the_paths_and_matches_k_major(cpu_isa):
    """A float32 plan keeps its 1x1 weights in the panels the path in force wants (AVX2: 24
    columns; K-major where it wants none), and gives the bits of the same network with K-major
    weights; switching to a path that wants another layout refolds."""
    model = _model("large")
    plan = model._fused_plan()
    cols = cpu_pw_panel_cols()
    assert plan.panel_cols == cols
    pws = [b.project for b in plan.net.blocks] + [b.expand for b in plan.net.blocks if b.expand] + [plan.net.last]
    assert all(p.weight.shape[2] == cols if cols else p.weight.dim() == 4 for p in pws)
    k_major = _Fold(torch.float32, head_panel_rows=plan.head_panel_rows).net(model)  # no 1x1 panels
    assert all(b.project.weight.dim() == 4 for b in k_major.blocks)
    x = torch.randn(2, 3, 48, 40) * 1.5 + 0.3
    out = torch.ops.mbv3.mobilenet_v3(x, plan.net_weights, plan.net_spec)
    assert torch.equal(out, torch.ops.mbv3.mobilenet_v3(x, *_records.encode(k_major)))
    # Another path: the plan follows it (scalar wants none; the best path may want panels).
    mbv3_fast.set_cpu_isa("scalar")
    try:
        assert model._fused_plan().panel_cols == 0
    finally:
        mbv3_fast.set_cpu_isa(cpu_isa)
    assert model._fused_plan().panel_cols == cols


def test_layouts_each_path_asks_for():
    """The packed layouts the model folds in, per path: the 1x1 panels AVX2's tile (3 vectors of 8)
    wide and the head's panels AVX2's block of 64 outputs high; none (K-major, rows) on the paths
    where packing was not measured to pay."""
    before = mbv3_fast.get_cpu_isa()
    try:
        for isa in mbv3_fast.available_cpu_isas():
            mbv3_fast.set_cpu_isa(isa)
            assert cpu_pw_panel_cols() == (24 if isa == "avx2" else 0), isa
            assert cpu_head_panel_rows() == (64 if isa == "avx2" else 0), isa
    finally:
        mbv3_fast.set_cpu_isa(before)


def test_head_panels_are_the_paths_and_match_by_output(cpu_isa):
    """A float32 plan keeps the head's FC weights in the panels the path in force wants (AVX2:
    64 outputs; [out, in] rows where it wants none).  Panels sum each output in the order the
    transposed ([in, out]) layout does, so the network gives those bits; switching to a path
    that wants rows refolds."""
    model = _model("large")
    plan = model._fused_plan()
    rows = cpu_head_panel_rows()
    assert plan.head_panel_rows == rows
    h = plan.net.head
    for w, b in ((h.w1, h.b1), (h.w2, h.b2)):
        assert (w.shape == ((b.shape[0] + rows - 1) // rows, w.shape[1], rows)) if rows else w.dim() == 2
    x = torch.randn(2, 3, 48, 40) * 1.5 + 0.3
    out = torch.ops.mbv3.mobilenet_v3(x, plan.net_weights, plan.net_spec)
    c = model.classifier
    by_output = dataclasses.replace(h, w1=c[0].weight.detach().t().contiguous().t(),
                                    w2=c[3].weight.detach().t().contiguous().t())
    if rows:
        assert torch.equal(out, torch.ops.mbv3.mobilenet_v3(x, *_records.encode(
            dataclasses.replace(plan.net, head=by_output))))
    mbv3_fast.set_cpu_isa("scalar")
    try:
        assert model._fused_plan().head_panel_rows == 0 and model._fused_plan().net.head.w1.dim() == 2
    finally:
        mbv3_fast.set_cpu_isa(cpu_isa)
    assert model._fused_plan().head_panel_rows == rows


def test_without_folded_head_returns_features():
    model = _model("small")
    model.classifier = nn.Sequential(nn.Linear(576, 10))  # not torchvision's head: called as a module
    model.invalidate_fused_cache()  # (replacing a submodule is not detected)
    plan = model._fused_plan()
    assert plan.ok and plan.net.head is None and plan.net_spec[-5] == -1
    x = torch.randn(2, 3, 40, 40)
    feats = torch.ops.mbv3.mobilenet_v3(x, plan.net_weights, plan.net_spec)
    assert feats.shape == (2, 576, 2, 2) and feats.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(feats, net_op.run_spec(x, plan.net_weights, plan.net_spec))
    tv = ARCHS["small"][1]()
    tv.classifier = nn.Sequential(nn.Linear(576, 10))
    tv.load_state_dict(model.state_dict())
    with torch.no_grad():
        ref, out = tv.eval()(x), model(x)
    assert (out - ref).abs().max() <= 1e-4 * ref.abs().max()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_intermediates_reuse_kept_buffers(dtype):
    """The one-call forward takes its large intermediates from buffers kept between calls
    (csrc/common/workspace.h): after a call the cache holds them; calls at other batch sizes in
    between, a second model and a kept earlier result change nothing (each result equals the
    per-op walk, which allocates afresh, and an earlier result is not overwritten); the tensor
    returned (logits, or features without a folded head) is a plain allocation, resizable."""
    model, other = _model("large").to(dtype), _model("small").to(dtype)
    plans = model._fused_plan(), other._fused_plan()
    # 224 x 224: the stem's output is >= 1 MB at batch 2 (fp32) and 3 (both), so the cache is used.
    xs = [(torch.randn(n, 3, 224, 224) * 1.5 + 0.3).to(dtype) for n in (2, 1, 3, 2)]
    kept = []
    for i, x in enumerate(xs):
        for plan in plans:
            out = torch.ops.mbv3.mobilenet_v3(x, plan.net_weights, plan.net_spec)
            assert torch.equal(out, net_op.run_spec(x, plan.net_weights, plan.net_spec)), f"call {i}"
            kept.append((out, out.clone()))
    assert torch.ops.mbv3._workspace_cached_bytes() > 0
    for i, (out, copy) in enumerate(kept):
        assert torch.equal(out, copy), f"result {i} changed by a later call"
    out = kept[-1][0]
    out.detach().resize_(out.numel() + 7)  # a buffer of the cache would refuse: its storage is not resizable
    model.classifier = nn.Sequential(nn.Linear(960, 10)).to(dtype)
    model.invalidate_fused_cache()
    plan = model._fused_plan()
    assert plan.net.head is None
    feats = torch.ops.mbv3.mobilenet_v3(xs[0], plan.net_weights, plan.net_spec)
    assert torch.equal(feats, net_op.run_spec(xs[0], plan.net_weights, plan.net_spec))
    feats.detach().resize_(feats.numel() + 7)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("threads", [1, 2])
def test_blocks_without_se_end_band_by_band(cpu_isa_bf16, dtype, threads):
    """Where a block without SE runs expand + depthwise as one op, the one-call forward also runs
    its project 1x1 conv on each band of depthwise rows (expand_dwconv_project_cpu) instead of
    on the whole depthwise output: the same bits as the per-op walk, on every path, at 1 and 2
    threads, for a block with a residual (B02, stride 1) and one without (B01, stride 2)."""
    model = _model("large").to(dtype)
    plan = model._fused_plan()
    x = (torch.randn(3, 3, 160, 176) * 1.5 + 0.3).to(dtype)
    # The input pixels of B01 (80 x 88 after the stem) and B02 (40 x 44): both blocks take the
    # banded path at this size, in either dtype.
    for i, pixels in ((1, 3 * 80 * 88), (2, 3 * 40 * 44)):
        b = plan.net.blocks[i]
        assert b.se is None and b.expand is not None and 0 <= b.fuse_min_pixels <= pixels, i
    assert plan.net.blocks[2].residual and not plan.net.blocks[1].residual
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for name, xi in {"nchw": x, "cl": x.contiguous(memory_format=torch.channels_last)}.items():
            out = torch.ops.mbv3.mobilenet_v3(xi, plan.net_weights, plan.net_spec)
            ref = net_op.run_spec(xi, plan.net_weights, plan.net_spec)
            assert torch.equal(out, ref), f"{name}: max|d| {(out.float() - ref.float()).abs().max()}"
    finally:
        torch.set_num_threads(before)


def test_banded_block_checks_its_project_weight():
    """A project weight that does not fit the depthwise output, in a block that takes the banded
    path: a ValueError naming it, before anything runs."""
    model = _model("large")
    plan = model._fused_plan()
    w = list(plan.net_weights)
    project = plan.net.blocks[1].project.weight
    at = next(i for i, t in enumerate(w) if t is project)
    w[at] = torch.randn(project.shape[0], project.shape[1] + 1, 1, 1)
    with pytest.raises(ValueError, match="expand_dwconv_project: project weight must be"):
        torch.ops.mbv3.mobilenet_v3(torch.randn(3, 3, 160, 176), w, plan.net_spec)


def test_opcheck():
    plan = _model("small", "w075_cls10")._fused_plan()
    for x in (torch.randn(2, 3, 32, 32), torch.randn(1, 3, 33, 29).contiguous(memory_format=torch.channels_last)):
        torch.library.opcheck(torch.ops.mbv3.mobilenet_v3.default, (x, list(plan.net_weights), plan.net_spec))


def test_model_forward_is_one_op_call():
    model = _model("large")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad(), torch.profiler.profile() as prof:
        out = model(x)
    names = [e.name for e in prof.events() if e.name.startswith("mbv3::")]
    assert names == ["mbv3::mobilenet_v3"], names
    plan = model._fused_plan()
    assert torch.equal(out, net_op.run_spec(x, plan.net_weights, plan.net_spec))


# --------------------------------------------------------------------------------------------
# bad specs and inputs: a clear ValueError from the CPU op and from the fake (meta) kernel
# --------------------------------------------------------------------------------------------

def _broken_specs(spec, n):
    head_at = len(spec) - 5
    yield "version", [99] + spec[1:], "spec version 99"
    yield "truncated", spec[:-3], "spec ends early"
    yield "trailing", spec + [0], "past its end"
    yield "index", spec[:3] + [n] + spec[4:], f"weights\\[{n}\\]"
    yield "negative index", spec[:3] + [-1] + spec[4:], "weights\\[-1\\]"
    yield "activation", spec[:7] + [7] + spec[8:], "activation code"
    yield "block count", spec[:2] + [-1] + spec[3:], "block count"
    yield "head b1 missing", spec[:head_at + 1] + [-1] + spec[head_at + 2:], "only some of the head fields"
    yield "head w1 only missing", spec[:head_at] + [-1] + spec[head_at + 1:], "only some of the head fields"


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_bad_spec(device):
    plan = _model("small")._fused_plan()
    w = [t.to(device) for t in plan.net_weights]
    x = torch.randn(1, 3, 32, 32, device=device)
    spec = list(plan.net_spec)
    for what, bad, msg in _broken_specs(spec, len(w)):
        with pytest.raises(ValueError, match=msg):
            torch.ops.mbv3.mobilenet_v3(x, w, bad)


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_bad_input(device):
    plan = _model("small")._fused_plan()
    w = [t.to(device) for t in plan.net_weights]
    spec = plan.net_spec
    cases = [(torch.randn(1, 3, 32, 32, dtype=torch.float64), "float32"),
             (torch.randn(3, 32, 32), "4-D"),
             (torch.randn(1, 4, 32, 32), "Cin = 4")]
    for x, msg in cases:
        with pytest.raises(ValueError, match=msg):
            torch.ops.mbv3.mobilenet_v3(x.to(device), w, spec)
    swapped = list(w)
    swapped[0], swapped[1] = swapped[1], swapped[0]  # stem bias where its weight belongs
    with pytest.raises(ValueError, match="weight"):
        torch.ops.mbv3.mobilenet_v3(torch.randn(1, 3, 32, 32, device=device), swapped, spec)
