"""mbv3::q8_mobilenet_v3: the whole int8 forward as one op call (the layer loop in C++) gives the
per-op forward's logits bit for bit (QuantizedMobileNetV3 with one_call False: one torch.ops.mbv3
call per layer from Python), on every model configuration and engine of test_quantization.py
(whose models and runner these tests share), and rejects a bad spec with a ValueError."""
import dataclasses

import pytest
import torch

from mbv3_fast.quantization import spec as S

from test_quantization import _BUILD, _models, _run

# One thread (conftest): OpenMP regions stall on a busy 2-core machine; test_threads sets its own.
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.usefixtures("one_thread")]

SIZE = 64  # calibration size of the shared models: the structure, not the size, is under test


def _both(model, x, engine):
    """(one call, per op) logits of `model` on `x`."""
    assert model.one_call
    one = _run(model, x, engine)
    model.one_call = False
    try:
        per = _run(model, x, engine)
    finally:
        model.one_call = True
    return one, per


def _check(model, x, engine):
    one, per = _both(model, x, engine)
    assert one.dtype == torch.float32 and one.shape == per.shape == (x.shape[0], per.shape[1])
    assert torch.equal(one, per), f"{(one != per).sum()} logits differ, input {tuple(x.shape)}"
    return one


@pytest.mark.parametrize("engine", ["qnnpack", "fbgemm", "x86", "onednn"])
@pytest.mark.parametrize("arch", list(_BUILD))
def test_one_call_equals_per_op(arch, engine):
    """Every configuration (SE / no SE, residual / none, blocks without expand, dilation, the
    activation tables or none) and every rounding (int32 bias and fixed-point add for qnnpack,
    float bias and float add for fbgemm, x86: the Onednn mode for its groups <= 100 convs where
    the CPU has VNNI, else fbgemm's; onednn: the Onednn mode for every conv and Linear)."""
    _, _, ours = _models(arch, engine, SIZE)
    _check(ours, torch.randn(3, 3, 67, 58), engine)


def test_large_real_size():
    """Large at 224 x 224, batch 1, both layouts (the benchmark's case)."""
    _, _, ours = _models("large", "x86", SIZE)
    x = torch.randn(1, 3, 224, 224)
    a = _check(ours, x, "x86")
    assert torch.equal(a, _check(ours, x.contiguous(memory_format=torch.channels_last), "x86"))


def test_batches_layouts():
    """Batch 0/1/3, NCHW, channels_last and non-contiguous inputs, 1x1-sized late maps."""
    _, _, ours = _models("small", "qnnpack", SIZE)
    for x in [torch.randn(0, 3, 40, 36), torch.randn(1, 3, 40, 36), torch.randn(3, 3, 40, 36),
              torch.randn(3, 3, 40, 36).contiguous(memory_format=torch.channels_last),
              torch.randn(3, 3, 36, 40).transpose(2, 3), torch.randn(2, 3, 17, 9)]:
        _check(ours, x, "qnnpack")


@pytest.mark.parametrize("engine", ["fbgemm", "x86"])
@pytest.mark.parametrize("arch", ["large", "small"])
def test_every_cpu_path(cpu_isa, arch, engine):
    """scalar, avx2 and avx512 (its int8 kernels: avx512_vnni where the CPU has VNNI)."""
    _, _, ours = _models(arch, engine, SIZE)
    _check(ours, torch.randn(2, 3, 48, 40), engine)


@pytest.mark.parametrize("engine", ["qnnpack", "x86"])
def test_threads(engine):
    _, _, ours = _models("large", engine, SIZE)
    x = torch.randn(2, 3, 96, 80)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _check(ours, x, engine)
        torch.set_num_threads(2)
        two = _check(ours, x, engine)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)


@pytest.mark.parametrize("engine", ["qnnpack", "x86"])
def test_spec_round_trip(engine):
    """decode(encode(plan)) is the plan: the same tensors in the same places, the same values."""
    _, _, ours = _models("large", engine, SIZE)
    weights, spec, fspec = ours._spec
    plan = S.decode(weights, spec, fspec)
    weights2, spec2, fspec2 = S.encode(plan)
    assert len(weights2) == len(weights) and all(a is b for a, b in zip(weights2, weights))
    assert (spec2, fspec2) == (spec, fspec)

    def same(a, b):
        if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
            return a is b
        if isinstance(a, (tuple, list)):
            return len(a) == len(b) and all(same(u, v) for u, v in zip(a, b))
        if hasattr(a, "__dataclass_fields__"):
            return type(a) is type(b) and all(same(getattr(a, f), getattr(b, f)) for f in a.__dataclass_fields__)
        return a == b and type(a) is type(b)
    assert same(plan, ours._plan)


@pytest.mark.parametrize("engine", ["qnnpack", "x86"])
def test_opcheck(engine):
    _, _, ours = _models("small-reduced", engine, SIZE)
    x = torch.randn(2, 3, 33, 40)
    torch.library.opcheck(torch.ops.mbv3.q8_mobilenet_v3.default, (x, *ours._spec))


class _Positions(S._Reader):
    """spec.decode's reader, noting where each named int is."""
    last = None

    def __init__(self, *args):
        super().__init__(*args)
        self.at = {}
        _Positions.last = self

    def int(self, what):
        self.at.setdefault(what, self.pos)
        return super().int(what)


def _bad_specs(weights, spec, fspec, monkeypatch):
    """(spec, fspec, message) cases, each of which must raise ValueError."""
    with monkeypatch.context() as m:
        m.setattr(S, "_Reader", _Positions)
        S.decode(weights, spec, fspec)
    at = _Positions.last.at

    def put(what, v):
        return spec[:at[what]] + [v] + spec[at[what] + 1:]
    assert spec[at["block 0 mul length"]] == 4  # Small's first block has SE and no expand
    return [
        (put("the version", S.SPEC_VERSION + 1), fspec, "spec version"),
        (spec[:-1], fspec, "spec ends early"),
        (spec[:len(spec) // 2], fspec, "spec ends early"),
        ([], fspec, "spec ends early"),
        (spec + [0], fspec, "ints past its end"),
        (spec, fspec[:-1], "fspec ends early"),
        (spec, fspec + [1.0], "floats past its end"),
        (spec, [], "fspec ends early"),
        (put("stem weight", len(weights)), fspec, "weights holds"),
        (put("stem weight", -1), fspec, "weights holds"),
        (put("block 3 se w2", len(weights)), fspec, "weights holds"),
        (put("the block count", -1), fspec, "block count"),
        (put("the block count", len(spec) + 1), fspec, "block count"),
        (put("the block count", spec[1] + 1), fspec, ""),  # one block too many: the rest misparses
        (put("block 0 has_expand", 2), fspec, "must be 0 or 1"),
        (put("stem onednn", 2), fspec, "must be 0 or 1"),
        (put("stem onednn", 1), fspec, ""),  # the next floats misread as its scales: a later check fails
        (put("block 0 mul length", -2), fspec, "length must be -1"),
        (put("block 0 mul length", len(fspec) + 1), fspec, "fspec ends early"),
    ]


def test_bad_spec_raises(monkeypatch):
    """The C++ parser and spec.decode reject the same bad specs with the same message."""
    _, _, ours = _models("small", "qnnpack", SIZE)
    weights, spec, fspec = ours._spec
    x = torch.randn(1, 3, 32, 32)
    for bad_spec, bad_fspec, msg in _bad_specs(list(weights), list(spec), list(fspec), monkeypatch):
        with pytest.raises(ValueError, match=msg) as cpp:
            torch.ops.mbv3.q8_mobilenet_v3(x, weights, bad_spec, bad_fspec)
        with pytest.raises(ValueError, match=msg) as py:
            S.decode(weights, bad_spec, bad_fspec)
        assert str(cpp.value) == str(py.value)
    with pytest.raises(ValueError, match="weights holds"):
        torch.ops.mbv3.q8_mobilenet_v3(x, weights[:-1], spec, fspec)
    stem = ours._plan.stem
    bad = dataclasses.replace(ours._plan, stem=dataclasses.replace(stem, requant=(*stem.requant[:3], [0, 0], None)))
    with pytest.raises(ValueError, match="out_qparams"):
        S.encode(bad)


def test_swapped_tensor_is_checked_by_the_layer_op():
    """A valid spec over the wrong tensor: the layer op's own checks raise, nothing is read out
    of bounds."""
    _, _, ours = _models("small", "qnnpack", SIZE)
    weights, spec, fspec = ours._spec
    swapped = list(weights)
    swapped[0], swapped[1] = swapped[1], swapped[0]  # the stem's weight and bias_int
    with pytest.raises(ValueError):
        torch.ops.mbv3.q8_mobilenet_v3(torch.randn(1, 3, 32, 32), swapped, spec, fspec)


def test_bad_inputs():
    _, _, ours = _models("small", "qnnpack", SIZE)
    op = torch.ops.mbv3.q8_mobilenet_v3
    for bad in [torch.randn(1, 3, 32, 32, dtype=torch.float64), torch.randn(1, 4, 32, 32), torch.randn(3, 32, 32)]:
        with pytest.raises(ValueError):
            op(bad, *ours._spec)
        with pytest.raises(ValueError, match="float32 \\[N, 3, H, W\\]"):
            ours(bad)


def test_export_is_one_node():
    """torch.export keeps the forward as one q8_mobilenet_v3 node (through the fake kernel)."""
    _, _, ours = _models("small", "qnnpack", SIZE)
    x = torch.randn(2, 3, 48, 40)
    ep = torch.export.export(ours, (x,))
    calls = [n.target for n in ep.graph.nodes if n.op == "call_function"]
    assert calls == [torch.ops.mbv3.q8_mobilenet_v3.default]
    with torch.no_grad():
        assert torch.equal(ep.module()(x), ours(x))


# -- the fast call: _C._q8_mobilenet_v3_call on the spec kept as C++ vectors ------------------------
@pytest.fixture
def fast_calls(monkeypatch):
    """Counts what the model's fast call returned: logits, or None (the Python op call ran)."""
    import mbv3_fast.quantization.model as M
    real, calls = M._q8_mobilenet_v3_call, {"logits": 0, "none": 0}

    def spy(packed, x):
        y = real(packed, x)
        calls["logits" if y is not None else "none"] += 1
        return y
    monkeypatch.setattr(M, "_q8_mobilenet_v3_call", spy)
    return calls


def test_fast_call_is_the_op_call(fast_calls):
    """model(x) takes the fast call and returns the op's logits bit for bit: batch 0/1/3, both
    layouts, a non-contiguous input, an odd size."""
    _, _, ours = _models("small", "x86", SIZE)
    xs = [torch.randn(0, 3, 40, 36), torch.randn(1, 3, 40, 36), torch.randn(3, 3, 40, 36),
          torch.randn(3, 3, 40, 36).contiguous(memory_format=torch.channels_last),
          torch.randn(3, 3, 36, 40).transpose(2, 3), torch.randn(2, 3, 17, 9)]
    for x in xs:
        y = _run(ours, x, "x86")
        assert torch.equal(y, torch.ops.mbv3.q8_mobilenet_v3(x, *ours._spec)), tuple(x.shape)
    assert fast_calls == {"logits": len(xs), "none": 0}


class _SeenOps(torch.utils._python_dispatch.TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.seen = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.seen.add(str(func))
        return func(*args, **(kwargs or {}))


class _PassFunctions(torch.overrides.TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


class _Sub(torch.Tensor):
    pass


@pytest.mark.parametrize("case", ["dispatch mode", "function mode", "autocast", "subclass"])
def test_fast_call_steps_aside(fast_calls, case):
    """Under a mode, autocast, or with a tensor subclass the fast call returns None and the Python
    op call runs (a dispatch mode sees mbv3.q8_mobilenet_v3), with the same logits."""
    _, _, ours = _models("small", "x86", SIZE)
    x = torch.randn(2, 3, 40, 36)
    ref = torch.ops.mbv3.q8_mobilenet_v3(x, *ours._spec)
    if case == "dispatch mode":
        with _SeenOps() as mode:
            y = _run(ours, x, "x86")
        assert "mbv3.q8_mobilenet_v3.default" in mode.seen, mode.seen
    elif case == "function mode":
        with _PassFunctions():
            y = _run(ours, x, "x86")
    elif case == "autocast":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = _run(ours, x, "x86")
    else:
        y = _run(ours, x.as_subclass(_Sub), "x86")
    assert torch.equal(y.as_subclass(torch.Tensor), ref)
    assert fast_calls == {"logits": 0, "none": 1}


def test_fast_call_declines_autograd_on_x():
    from mbv3_fast._C import _q8_mobilenet_v3_call
    _, _, ours = _models("small", "x86", SIZE)
    x = torch.randn(1, 3, 40, 36)
    _run(ours, x, "x86")  # makes the packed spec
    with torch.enable_grad():
        assert _q8_mobilenet_v3_call(ours._packed, x.requires_grad_()) is None
    with torch.no_grad():
        assert _q8_mobilenet_v3_call(ours._packed, x) is not None


def test_fast_call_bad_arguments():
    from mbv3_fast._C import _q8_mobilenet_v3_call, _q8_mobilenet_v3_pack
    with pytest.raises(TypeError, match="capsule of _q8_mobilenet_v3_pack"):
        _q8_mobilenet_v3_call(object(), torch.randn(1, 3, 8, 8))
    with pytest.raises(TypeError, match="list of tensors"):
        _q8_mobilenet_v3_pack([1], [], [])
    with pytest.raises(TypeError):
        _q8_mobilenet_v3_pack([], ["a"], [])
    # A packed spec the op rejects raises as the op call does.
    with pytest.raises(ValueError):
        _q8_mobilenet_v3_call(_q8_mobilenet_v3_pack([], [], []), torch.randn(1, 3, 8, 8))


def test_pickle_and_deepcopy_remake_the_packed_spec():
    import copy
    import io
    _, _, ours = _models("small", "x86", SIZE)
    x = torch.randn(2, 3, 40, 36)
    y = _run(ours, x, "x86")
    assert ours._packed is not None
    buf = io.BytesIO()
    torch.save(ours, buf)
    buf.seek(0)
    for dup in (copy.deepcopy(ours), torch.load(buf, weights_only=False)):
        assert dup._packed is None
        assert torch.equal(_run(dup, x, "x86"), y)


def test_fast_call_from_threads():
    """Concurrent calls (the GIL is released while the op runs) each give the logits alone."""
    import threading
    _, _, ours = _models("small", "x86", SIZE)
    xs = [torch.randn(2, 3, 40, 36) for _ in range(4)]
    refs = [torch.ops.mbv3.q8_mobilenet_v3(x, *ours._spec) for x in xs]
    got = [None] * len(xs)

    def work(i):
        for _ in range(5):
            got[i] = _run(ours, xs[i], "x86")
    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(torch.equal(g, r) for g, r in zip(got, refs))
