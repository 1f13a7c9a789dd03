"""mbv3::q8_se against PyTorch's quantized ops, bit for bit: adaptive_avg_pool2d on the quint8
tensor, a quantized ConvReLU2d (fc1), Conv2d (fc2) and the functional hardsigmoid, for the x86
engine (per-channel weights, float bias) and qnnpack (per-tensor weights, int32 bias), on every
int8 path (cpu_isa fixture).  x has channels whose mean is exactly k + 0.5 (even H * W), so the
pool's tie rounding, which PyTorch picks by engine and layout, is pinned.  Under x86 on a CPU with
AVX512-VNNI the two convs run on oneDNN: se_args(onednn=True), the Onednn requantization mode."""
import functools
import itertools

import pytest
import torch
import torch.nn.functional as F
import torch.ao.nn.quantized as nnq
import torch.ao.nn.intrinsic.quantized as nniq

import mbv3_fast  # noqa: F401 (registers the ops)
import neon_harness
import q8_reference
from layers import BEST_ISA
from mbv3_fast.ops.q8_se import q8_se, se_args as _se_args
from mbv3_fast.quantization.model import x86_uses_onednn
from mbv3_fast.testing import se_layers

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]

ENGINES = ["x86", "qnnpack"]
ONEDNN = x86_uses_onednn()


def se_args(fc1, fc2, x_scale, x_zp, engine):
    """The op's arguments, in the Onednn mode where PyTorch's x86 engine runs oneDNN."""
    return _se_args(fc1, fc2, x_scale, x_zp, engine, onednn=engine == "x86" and ONEDNN)
EXPECTED_Q8 = {"scalar": "scalar", "avx2": "avx2", "avx512": "avx512_vnni", "neon": "neon"}


@pytest.fixture
def engine(request):
    before = torch.backends.quantized.engine
    torch.backends.quantized.engine = request.param
    yield request.param
    torch.backends.quantized.engine = before


def pool_scale(engine):
    """x's scale, passed to the op (x_scale): QNNPACK's pool multiplier is s / (s * H * W) in
    float32, whose ties depend on s; the other engines' pool is scale-free."""
    return 0.03 + float(torch.rand(())) * 0.05


def make_x(n, c, h, w):
    """uint8 [n, c, h, w] with per-channel offsets; with even h * w, 2 of 3 channels average
    exactly k + 0.5."""
    x = (torch.randint(0, 120, (n, c, h, w)) + torch.randint(0, 136, (n, c, 1, 1))).to(torch.uint8)
    hw = h * w
    if hw % 2 == 0:
        for i, j in itertools.product(range(n), range(c)):
            if (i + j) % 3:
                k = int(torch.randint(0, 255, ()))
                v = torch.full((hw,), k, dtype=torch.uint8)
                v[: hw // 2] = k + 1
                x[i, j] = v[torch.randperm(hw)].view(h, w)
    return x


def qweight(w, engine):
    if engine == "qnnpack":
        return torch.quantize_per_tensor(w, float(w.abs().max()) / 127, 0, torch.qint8)
    scales = (w.abs().amax(1).flatten() / 127).double().clamp_min(1e-6)
    return torch.quantize_per_channel(w, scales, torch.zeros(w.shape[0], dtype=torch.long), 0, torch.qint8)


def make_modules(c, s, x_scale, x_zp, engine):
    """fc1 (ConvReLU2d), fc2 (Conv2d) with output scales that spread their outputs over the
    uint8 range, and fc2's range over hardsigmoid's saturations and linear part."""
    w1 = torch.randn(s, c, 1, 1) / c ** 0.5
    w2 = torch.randn(c, s, 1, 1) / s ** 0.5
    b1, b2 = torch.randn(s) * 0.3, torch.randn(c) * 2
    fc1 = nniq.ConvReLU2d(c, s, 1)
    fc1.set_weight_bias(qweight(w1, engine), b1)
    fc1.scale, fc1.zero_point = 2.0 * x_scale * 30 / 255 + 1e-3, int(torch.randint(0, 20, ()))
    fc2 = nnq.Conv2d(s, c, 1)
    fc2.set_weight_bias(qweight(w2, engine), b2)
    fc2.scale, fc2.zero_point = 12.0 / 255, int(torch.randint(100, 156, ()))
    return fc1, fc2


def reference(xq, fc1, fc2):
    return F.hardsigmoid(fc2(fc1(F.adaptive_avg_pool2d(xq, 1)))).int_repr().flatten(1)


def layout(x, how):
    if how == "channels_last":
        return x.contiguous(memory_format=torch.channels_last)
    if how == "sliced":  # every other channel of a wider tensor
        return torch.stack([x, x], 2).flatten(1, 2)[:, ::2]
    if how == "sliced_cl":
        return torch.stack([x, x], 2).flatten(1, 2).contiguous(memory_format=torch.channels_last)[:, ::2]
    return x


def check(n, c, s, h, w, engine, how="nchw"):
    if not q8_reference.torch_int8_exact(engine):
        pytest.skip(q8_reference.SATURATES)
    x_scale, x_zp = pool_scale(engine), int(torch.randint(0, 256, ()))
    xi = layout(make_x(n, c, h, w), how)
    fc1, fc2 = make_modules(c, s, x_scale, x_zp, engine)
    xq = torch._make_per_tensor_quantized_tensor(xi, x_scale, x_zp)
    ref = reference(xq, fc1, fc2)
    ours = torch.ops.mbv3.q8_se(xi, *se_args(fc1, fc2, x_scale, x_zp, engine))
    assert ours.dtype == torch.uint8 and ours.shape == (n, c)
    assert torch.equal(ours, ref), f"{(n, c, s, h, w, engine, how)}: {(ours != ref).sum()} of {ref.numel()} differ"
    return ref


def test_q8_isa(cpu_isa):
    assert torch.ops.mbv3.q8_cpu_isa() == EXPECTED_Q8[cpu_isa]


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
@pytest.mark.parametrize("variant", ["large", "small"])
def test_network_shapes(cpu_isa, engine, variant):
    for c, s, h, w in se_layers(variant):
        if cpu_isa != BEST_ISA:
            h, w = min(h, 14), min(w, 14)
        for how in ("channels_last", "nchw"):
            ref = check(1, c, s, h, w, engine, how)
        # the case exercises hardsigmoid's saturations and its linear part
        assert (ref == 0).any() and (ref == 256 - 1).any() or ref.unique().numel() > 3


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
@pytest.mark.parametrize("c,s", [(1, 1), (7, 8), (17, 8), (33, 16), (64, 16), (65, 24), (129, 40)])
def test_odd_channels(cpu_isa, engine, c, s):
    for n, (h, w), how in [(1, (1, 1), "nchw"), (3, (3, 5), "channels_last"), (2, (4, 6), "sliced"),
                           (1, (2, 8), "sliced_cl"), (2, (7, 7), "nchw"), (1, (14, 14), "channels_last"),
                           (1, (16, 17), "channels_last")]:  # > 257 pixels: more than one 16-bit run
        check(n, c, s, h, w, engine, how)


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
def test_batch0(engine):
    fc1, fc2 = make_modules(8, 8, 0.05, 3, engine)
    out = torch.ops.mbv3.q8_se(torch.zeros(0, 8, 4, 4, dtype=torch.uint8), *se_args(fc1, fc2, 0.05, 3, engine))
    assert out.shape == (0, 8) and out.dtype == torch.uint8


def test_threads():
    fc1, fc2 = make_modules(96, 24, 0.05, 10, "x86")
    xi = make_x(5, 96, 14, 14).contiguous(memory_format=torch.channels_last)
    args = se_args(fc1, fc2, 0.05, 10, "x86")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = torch.ops.mbv3.q8_se(xi, *args)
        torch.set_num_threads(2)
        two = torch.ops.mbv3.q8_se(xi, *args)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)


def test_opcheck():
    fc1, fc2 = make_modules(24, 8, 0.05, 10, "x86")
    xi = make_x(2, 24, 6, 6)
    torch.library.opcheck(torch.ops.mbv3.q8_se.default, (xi,) + se_args(fc1, fc2, 0.05, 10, "x86"))


def test_bad_inputs():
    fc1, fc2 = make_modules(16, 8, 0.05, 10, "x86")
    a = list(se_args(fc1, fc2, 0.05, 10, "x86"))
    x = make_x(1, 16, 4, 4)
    op = torch.ops.mbv3.q8_se

    def bad(match, x=x, **kw):
        b = list(a)
        names = ["zp", "w1", "bi1", "bf1", "m1", "oq1", "w2", "bi2", "bf2", "m2", "oq2", "lut"]
        for k, v in kw.items():
            b[names.index(k)] = v
        with pytest.raises((ValueError, RuntimeError), match=match):
            op(x, *b)

    bad("uint8", x=x.float())
    bad("4-D", x=x[0])
    bad("x_zero_point", zp=256)
    bad("x_zero_point", zp=-1)
    bad("int8", w1=a[1].float())
    bad("w1", w1=a[1][:, :15])
    bad("w2", w2=a[6][:15])
    bad("w2", w2=a[6][:, :7])
    bad("bias_int", bi1=a[2][:7])
    bad("multiplier", m2=a[9].double())
    bad("out_qparams", oq1=[3, 4, 255])
    bad("out_qparams", oq2=[3, 0])
    bad("lut", lut=a[11][:255])
    bad("C, H, W", x=x[:, :, :0])


@functools.lru_cache(maxsize=None)
def converted_model(engine):
    """torchvision's quantizable MobileNetV3-Large (random weights), fused, calibrated on random
    images and converted for `engine`, with the inputs its SE blocks and its avgpool saw on one
    batch: (model, [(se module, quint8 input)], quint8 classifier feature map, float logits)."""
    from torchvision.models.quantization import mobilenet_v3_large
    from torchvision.models.quantization.mobilenetv3 import QuantizableSqueezeExcitation
    before = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        g = torch.Generator().manual_seed(3)
        m = mobilenet_v3_large().eval()
        m.fuse_model(is_qat=False)
        m.qconfig = torch.ao.quantization.get_default_qconfig(engine)
        torch.ao.quantization.prepare(m, inplace=True)
        with torch.no_grad():
            m(torch.randn(2, 3, 128, 128, generator=g))
        torch.ao.quantization.convert(m, inplace=True)
        seen, feats = [], {}
        for mod in m.modules():
            if isinstance(mod, QuantizableSqueezeExcitation):
                mod.register_forward_hook(lambda mod, inp, out: seen.append((mod, inp[0])))
        m.avgpool.register_forward_hook(lambda mod, inp, out: feats.__setitem__("x", inp[0]))
        with torch.no_grad():
            logits = m(torch.randn(2, 3, 128, 128, generator=g))
        return m, seen, feats["x"], logits
    finally:
        torch.backends.quantized.engine = before


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
def test_torchvision_model(cpu_isa, engine):
    """Every SE block of a converted torchvision model, on the activations it really saw."""
    _, seen, _, _ = converted_model(engine)
    assert len(seen) == 8
    for mod, xq in seen:
        for x in (xq, xq.contiguous(memory_format=torch.channels_last)):
            ref = mod._scale(x).int_repr().flatten(1)
            ours = q8_se(x, mod.fc1, mod.fc2, engine, onednn=engine == "x86" and ONEDNN).int_repr()
            assert torch.equal(ours, ref)


# -- NEON, for real, under qemu ----------------------------------------------------------------
# The GEMV (q8_se's and q8_classifier_head's FC layers): N samples around the sample pairs, K
# around the 16-byte steps, Cout around the 4-row groups and the 16-output split the harness makes
# as threads do; the head's two layers full size.  Pool sums: both layouts, the 16/64-channel
# blocks and the 257-pixel runs.
NEON_FC = [(n, k, cout) for n, k, cout in itertools.product((1, 2, 3), (1, 15, 16, 17, 40), (1, 4, 5, 17, 33))
           ] + [(1, 960, 1280), (1, 1280, 1000), (2, 576, 144)]
NEON_POOL = [(hw, c, nhwc) for hw, c, nhwc in itertools.product((1, 49, 257, 300), (1, 16, 17, 65), (True, False))]


def _neon_fc_case(f, n, k, cout, i):
    x = torch.randint(0, 256, (n, k), dtype=torch.uint8)
    w = torch.randint(-128, 128, (cout, k), dtype=torch.int8)
    x_zp = int(torch.randint(0, 256, ()))
    bias_int = torch.randint(-2000, 2000, (cout,), dtype=torch.int32) * (i % 2)  # qnnpack-like or fbgemm-like
    bias_float = torch.randn(cout) * 300 * ((i + 1) % 2)
    mult = (torch.rand(cout) + 0.5) * 60 / (128 * 128 * max(k, 1) ** 0.5)
    zp = int(torch.randint(0, 256, ()))
    lo, hi = (zp, 255) if i % 3 == 1 else (0, 255)
    lut = torch.randperm(256).to(torch.uint8) if i % 4 == 2 else None
    dequant, yf_zp, yf_scale = i % 5 == 3, int(torch.randint(0, 256, ())), float(torch.rand(()) * 0.1 + 0.01)
    f.i64(0, n, k, cout, x_zp, zp, lo, hi, lut is not None, dequant, yf_zp)
    f.floats(torch.tensor([yf_scale]))
    f.i64(*x.flatten().tolist())
    f.i64(*w.flatten().tolist())
    f.i64(*bias_int.tolist())
    f.floats(bias_float)
    f.floats(mult)
    if lut is not None:
        f.i64(*lut.tolist())
    f.count += 1
    q = q8_reference.linear(x, x_zp, w, bias_int, bias_float, mult, (zp, lo, hi), lut)
    return (q.float() - yf_zp) * torch.tensor(yf_scale) if dequant else q.float()


# The byte extremes (x 0/255 against x_zp 0/255, w -128/127, and the SDOT path's 127/128 shift
# edge) at K tails and row tails.  Multiplier 1 and bias_int = 100 + r - acc[0] make sample 0's
# outputs 100 + r exactly, so any error in an int32 sum shows; sample 1 repeats sample 0.
NEON_FC_EDGES = [(n, k, cout, x_zp, xv, wv)
                 for n, k, cout in ((1, 1, 1), (2, 15, 4), (1, 16, 3), (2, 17, 2), (1, 40, 5), (1, 1280, 4))
                 for x_zp in (0, 255)
                 for xv, wv in (((0,), (-128,)), ((255,), (127,)), ((0,), (127,)), ((255,), (-128,)),
                                ((0, 1, 127, 128, 254, 255), (-128, -127, -1, 0, 1, 126, 127)))]


def _neon_fc_edge_case(f, n, k, cout, x_zp, xv, wv):
    pick = lambda vals, shape: torch.tensor(vals)[torch.randint(0, len(vals), shape)]  # noqa: E731
    x = pick(xv, (1, k)).to(torch.uint8).expand(n, k).contiguous()
    w = pick(wv, (cout, k)).to(torch.int8)
    acc0 = (x[0].long() - x_zp) @ w.long().t()
    bias_int = (100 + torch.arange(cout) - acc0).to(torch.int32)
    bias_float, mult = torch.zeros(cout), torch.ones(cout)
    f.i64(0, n, k, cout, x_zp, 0, 0, 255, 0, 0, 0)
    f.floats(torch.tensor([1.0]))
    f.i64(*x.flatten().tolist())
    f.i64(*w.flatten().tolist())
    f.i64(*bias_int.tolist())
    f.floats(bias_float)
    f.floats(mult)
    f.count += 1
    q = q8_reference.linear(x, x_zp, w, bias_int, bias_float, mult, (0, 0, 255))
    assert torch.equal(q, (100 + torch.arange(cout)).expand(n, cout))  # the case's own premise
    return q.float()


@neon_harness.requires_toolchain
@pytest.mark.parametrize("cpu", neon_harness.QEMU_CPUS)
def test_neon_under_qemu(cpu):
    """The NEON GEMV and pool sums under qemu, bit for bit against q8_reference's formulas (the
    ones the x86 paths above match PyTorch with)."""
    f, expected = neon_harness.CaseFile(), []
    for i, (n, k, cout) in enumerate(NEON_FC):
        expected.append((_neon_fc_case(f, n, k, cout, i), f"fc {(n, k, cout)} case {i}"))
    for n, k, cout, x_zp, xv, wv in NEON_FC_EDGES:
        expected.append((_neon_fc_edge_case(f, n, k, cout, x_zp, xv, wv), f"fc edge {(n, k, cout, x_zp, xv, wv)}"))
    for hw, c, nhwc in NEON_POOL:
        x = torch.randint(0, 256, (hw, c) if nhwc else (c, hw), dtype=torch.uint8)
        f.i64(1, hw, c, nhwc, *x.flatten().tolist())
        f.count += 1
        expected.append((x.long().sum(0 if nhwc else 1).float(), f"pool {(hw, c, nhwc)}"))
    neon_harness.expect_exact(neon_harness.run("q8_se", f, cpu), expected, f"neon {cpu}")
