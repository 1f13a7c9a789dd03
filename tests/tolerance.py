"""The project's tolerance rule, shared by every op test.

Our result may be off the float64 reference by at most twice what PyTorch's own computation in
the same dtype is off by, plus 1e-6 (absolute, max over elements).  Comparing against PyTorch's
error, not a fixed epsilon, keeps the bound honest for every shape: long reductions get a looser
bound exactly when PyTorch's own float32 result does too.
"""
import torch


def max_abs_err(a: torch.Tensor, ref64: torch.Tensor) -> float:
    if a.numel() == 0:
        return 0.0
    return (a.double().cpu() - ref64.double().cpu()).abs().max().item()


def assert_within_rule(ours: torch.Tensor, torch_same_dtype: torch.Tensor, ref64: torch.Tensor,
                       what: str = "") -> None:
    """ours / torch_same_dtype: results in the working dtype; ref64: float64 reference."""
    assert ours.shape == ref64.shape, f"{what}: shape {tuple(ours.shape)} != {tuple(ref64.shape)}"
    assert ours.dtype == torch_same_dtype.dtype, f"{what}: dtype {ours.dtype} != {torch_same_dtype.dtype}"
    assert torch.isfinite(ours).all(), f"{what}: non-finite output"
    ours_err = max_abs_err(ours, ref64)
    torch_err = max_abs_err(torch_same_dtype, ref64)
    bound = 2.0 * torch_err + 1e-6
    # Shown with -s / on failure: the measured errors the rule compares.
    print(f"[tol] {what}: ours={ours_err:.3e} torch={torch_err:.3e} bound={bound:.3e}")
    assert ours_err <= bound, f"{what}: max|err| {ours_err:.3e} > 2*{torch_err:.3e}+1e-6"
