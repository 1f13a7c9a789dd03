"""Output layout rule shared by every op's fake kernel (the C++ kernels follow the same rule)."""
import torch


def output_memory_format(x: torch.Tensor) -> torch.memory_format:
    """channels_last when x is channels_last-dense and not also NCHW-dense, else NCHW."""
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format
