"""mbv3::q8_classifier_head against PyTorch's quantized modules, bit for bit (float32 logits):
adaptive_avg_pool2d on the quint8 tensor, quantized Linear, Hardswish (own qparams), Linear,
torch.dequantize; engines x86 (per-channel weights) and qnnpack (per-tensor), every int8 path;
the onednn engine (its Linear on oneDNN) with the Onednn requantization mode."""
import pytest
import torch
import torch.nn.functional as F
import torch.ao.nn.quantized as nnq

import mbv3_fast  # noqa: F401 (registers the ops)
import q8_reference
from layers import BEST_ISA
from mbv3_fast.ops.q8_classifier_head import head_args, q8_classifier_head
from mbv3_fast.testing import head_layers
from test_q8_se import ENGINES, converted_model, engine, layout, make_x, pool_scale, qweight  # noqa: F401 (engine: fixture)

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def make_modules(c, hd, k, engine):
    l1 = nnq.Linear(c, hd)
    l1.set_weight_bias(qweight(torch.randn(hd, c) / c ** 0.5, engine), torch.randn(hd) * 0.2)
    l1.scale, l1.zero_point = 8.0 / 255, int(torch.randint(90, 160, ()))
    hs = nnq.Hardswish(5.0 / 255, int(torch.randint(0, 30, ())))
    l2 = nnq.Linear(hd, k)
    l2.set_weight_bias(qweight(torch.randn(k, hd) / hd ** 0.5, engine), torch.randn(k) * 0.2)
    l2.scale, l2.zero_point = 6.0 / 255, int(torch.randint(90, 160, ()))
    return l1, hs, l2


def reference(xq, l1, hs, l2):
    return torch.dequantize(l2(hs(l1(F.adaptive_avg_pool2d(xq, 1).flatten(1)))))


def check(n, c, h, w, hd, k, engine, how="nchw", modules=None):
    if not q8_reference.torch_int8_exact(engine):
        pytest.skip(q8_reference.SATURATES)
    x_scale, x_zp = pool_scale(engine), int(torch.randint(0, 256, ()))
    xi = layout(make_x(n, c, h, w), how)
    l1, hs, l2 = modules or make_modules(c, hd, k, engine)
    xq = torch._make_per_tensor_quantized_tensor(xi, x_scale, x_zp)
    ref = reference(xq, l1, hs, l2)
    ours = torch.ops.mbv3.q8_classifier_head(xi, *head_args(l1, hs, l2, x_scale, x_zp, engine, engine == "onednn"))
    assert ours.dtype == torch.float32 and ours.shape == (n, k)
    assert torch.equal(ours, ref), f"{(n, c, h, w, hd, k, engine, how)}: {(ours != ref).sum()} of {ref.numel()} differ"
    return ref


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
@pytest.mark.parametrize("variant", ["large", "small"])
def test_network_shapes(cpu_isa, engine, variant):
    (c, h, w, hd, k, act), = head_layers(variant)
    assert act == "hardswish"
    if cpu_isa != BEST_ISA:
        hd, k = hd // 4, k // 4
    mods = make_modules(c, hd, k, engine)
    for n, how in [(1, "channels_last"), (3, "nchw")]:
        ref = check(n, c, h, w, hd, k, engine, how, mods)
    assert ref.unique().numel() > 20  # logits spread, not clamped


@pytest.mark.parametrize("engine", ["onednn"], indirect=True)
@pytest.mark.parametrize("variant", ["large", "small"])
def test_onednn_engine(cpu_isa, engine, variant):
    """The onednn engine's Linear (oneDNN's rounding: the Onednn mode), Large/Small's real shapes
    and odd ones (the rule's ties: tests/test_quantization.py, the onednn-engine model)."""
    shape = head_layers(variant)[0][:5]
    for n, (c, h, w, hd, k), how in [(4, shape, "channels_last"), (3, (7, 2, 3, 17, 10), "nchw"),
                                     (2, (130, 4, 4, 129, 33), "nchw")]:
        check(n, c, h, w, hd, k, engine, how)


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
@pytest.mark.parametrize("c,hd,k", [(1, 1, 1), (7, 17, 10), (33, 63, 1), (17, 65, 33), (130, 129, 10)])
def test_odd_shapes(cpu_isa, engine, c, hd, k):
    for n, (h, w), how in [(1, (1, 1), "nchw"), (3, (3, 5), "channels_last"), (2, (4, 6), "sliced"),
                           (1, (2, 8), "sliced_cl"), (2, (7, 7), "nchw")]:
        check(n, c, h, w, hd, k, engine, how)


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
def test_batch0(engine):
    l1, hs, l2 = make_modules(8, 16, 10, engine)
    out = torch.ops.mbv3.q8_classifier_head(torch.zeros(0, 8, 7, 7, dtype=torch.uint8),
                                            *head_args(l1, hs, l2, 0.05, 3, engine))
    assert out.shape == (0, 10) and out.dtype == torch.float32


def test_threads():
    l1, hs, l2 = make_modules(96, 320, 200, "x86")
    xi = make_x(3, 96, 7, 7).contiguous(memory_format=torch.channels_last)
    args = head_args(l1, hs, l2, 0.05, 10, "x86")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = torch.ops.mbv3.q8_classifier_head(xi, *args)
        torch.set_num_threads(2)
        two = torch.ops.mbv3.q8_classifier_head(xi, *args)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)


def test_opcheck():
    l1, hs, l2 = make_modules(24, 40, 10, "x86")
    torch.library.opcheck(torch.ops.mbv3.q8_classifier_head.default,
                          (make_x(2, 24, 4, 4),) + head_args(l1, hs, l2, 0.05, 10, "x86"))
    torch.library.opcheck(torch.ops.mbv3.q8_classifier_head.default,
                          (make_x(2, 24, 4, 4),) + head_args(l1, hs, l2, 0.05, 10, "x86", True))


def test_bad_inputs():
    l1, hs, l2 = make_modules(16, 24, 10, "x86")
    a = list(head_args(l1, hs, l2, 0.05, 10, "x86"))
    x = make_x(1, 16, 4, 4)
    names = ["zp", "w1", "bi1", "bf1", "m1", "oq1", "lut1", "hzp", "w2", "bi2", "bf2", "m2", "oq2", "scale"]

    def bad(match, x=x, **kw):
        b = list(a)
        for key, v in kw.items():
            b[names.index(key)] = v
        with pytest.raises((ValueError, RuntimeError), match=match):
            torch.ops.mbv3.q8_classifier_head(x, *b)

    bad("uint8", x=x.to(torch.int8))
    bad("4-D", x=x.flatten(2))
    bad("x_zero_point", zp=300)
    bad("hidden_zero_point", hzp=-1)
    bad("w1", w1=a[1][:, :3])
    bad("int8", w2=a[8].to(torch.uint8))
    bad("w2", w2=a[8][:, :5])
    bad("lut", lut1=a[6][:10])
    bad("bias_float", bf2=a[10][:3])
    bad("out_qparams", oq2=[300, 0, 255])
    bad("out_scale", scale=0.0)
    bad("out_scale", scale=float("nan"))


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
def test_torchvision_model(cpu_isa, engine):
    """The classifier of a converted torchvision model (test_q8_se.converted_model) on the
    feature map it saw: the model's own float logits, bit for bit."""
    m, _, x, logits = converted_model(engine)
    l1, act, _, l2 = m.classifier
    assert torch.equal(q8_classifier_head(x, l1, act, l2, engine), logits)
