"""Shared pieces of the pytest-benchmark suite: thread control and the extra_info every
result carries (so a saved JSON says what machine, path and versions produced it)."""
import os
import platform
import sys

import pytest
import torch

import mbv3_fast  # noqa: E402


def machine_info():
    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"isa": mbv3_fast.get_cpu_isa(), "torch": torch.__version__, "triton": triton_version,
            "cpu": cpu, "cores": os.cpu_count()}


@pytest.fixture
def threads(request):
    """Parametrise with indirect=True: sets torch's intra-op threads for the test."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


@pytest.fixture
def record(benchmark):
    """record(suite=..., config=..., provider=..., layer=...): tags a result for summarize.py."""
    def _record(**tags):
        benchmark.extra_info.update(machine_info())
        benchmark.extra_info["threads"] = torch.get_num_threads()
        benchmark.extra_info.update(tags)
    return _record
