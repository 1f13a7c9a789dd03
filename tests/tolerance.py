"""The project's tolerance rule, shared by every op test.

Our result may be off the float64 reference by at most twice what PyTorch's own computation in
the same dtype is off by, plus 1e-6 (absolute, max over elements).  Comparing against PyTorch's
error, not a fixed epsilon, keeps the bound honest for every shape: long reductions get a looser
bound exactly when PyTorch's own float32 result does too.

bfloat16 uses the same rule: ``torch_same_dtype`` is PyTorch's own unfused computation in
bfloat16 (bf16 conv, bf16 BatchNorm, bf16 activation, each rounding its output, with the
parameters rounded to bf16), and ``ref64`` the float64 computation on the same bf16 input
values with the original float32 parameters, so both errors include the rounding of the
parameters.  The absolute term is then bfloat16's resolution, 2**-8 * max|ref64| (at most one
ulp of the largest output), instead of 1e-6: with few outputs PyTorch's own error can happen to
be ~0, and an error below one output ulp means nothing in bfloat16.  A sum whose terms cancel
(a 1x1 conv with few input channels) passes ``magnitude``, the float64 sum of the terms'
absolute values: rounding the weights to bf16, which every bf16 computation does, moves an
output by up to 2**-9 of that, however small the output is (measured: Cin = 3, one output of
0.30 one ulp off because its terms were 4x larger, while PyTorch's rounding of the unfolded
weights happened to cancel).
"""
import torch


def max_abs_err(a: torch.Tensor, ref64: torch.Tensor) -> float:
    if a.numel() == 0:
        return 0.0
    return (a.double().cpu() - ref64.double().cpu()).abs().max().item()


def assert_within_rule(ours: torch.Tensor, torch_same_dtype: torch.Tensor, ref64: torch.Tensor,
                       what: str = "", magnitude: torch.Tensor = None) -> None:
    """ours / torch_same_dtype: results in the working dtype; ref64: float64 reference;
    magnitude (bf16 only): the terms' absolute sum per output, for the floor (default |ref64|)."""
    assert ours.shape == ref64.shape, f"{what}: shape {tuple(ours.shape)} != {tuple(ref64.shape)}"
    assert ours.dtype == torch_same_dtype.dtype, f"{what}: dtype {ours.dtype} != {torch_same_dtype.dtype}"
    assert torch.isfinite(ours).all(), f"{what}: non-finite output"
    ours_err = max_abs_err(ours, ref64)
    torch_err = max_abs_err(torch_same_dtype, ref64)
    scale = ref64.abs() if magnitude is None else magnitude
    floor = 1e-6 if ours.dtype != torch.bfloat16 else 2.0 ** -8 * (scale.max().item() if scale.numel() else 0.0)
    bound = 2.0 * torch_err + floor
    # Shown with -s / on failure: the measured errors the rule compares.
    print(f"[tol] {what}: ours={ours_err:.3e} torch={torch_err:.3e} bound={bound:.3e}")
    assert ours_err <= bound, f"{what}: max|err| {ours_err:.3e} > 2*{torch_err:.3e}+{floor:.1e}"


def bf16_values(t: torch.Tensor) -> torch.Tensor:
    """t rounded to bfloat16 and back to float32: the input values a bf16 op and its float64
    reference both see."""
    return t.to(torch.bfloat16).to(torch.float32)
