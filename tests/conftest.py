import os
import sys
import zlib

import pytest
import torch

# Without a GPU the Triton kernels are tested in Triton's interpreter on CPU tensors; the
# variable must be set before anything imports triton (torch.compile does, for instance).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

sys.path.insert(0, os.path.dirname(__file__))  # tolerance.py, layers.py, neon_harness.py

import mbv3_fast  # noqa: E402

from layers import ALL_CPU_ISAS, CPU_ISAS  # noqa: E402


def _forced(name):
    before = mbv3_fast.get_cpu_isa()
    mbv3_fast.set_cpu_isa(name)
    yield name
    mbv3_fast.set_cpu_isa(before)


@pytest.fixture(params=CPU_ISAS)
def cpu_isa(request):
    """Run the test once per CPU code path this machine has, forcing it, then restore."""
    yield from _forced(request.param)


@pytest.fixture(params=ALL_CPU_ISAS)
def cpu_isa_bf16(request):
    """cpu_isa plus avx512_bf16 / neon_bf16 where the CPU has them: for the bf16 tests (those
    paths differ from avx512 / neon in bf16 only)."""
    yield from _forced(request.param)


@pytest.fixture
def cpu_isa_fc_dots(cpu_isa_bf16):
    """cpu_isa_bf16 where the SE / head FCs sum bf16 rows with dot products
    (mbv3_fast.isa.cpu_fc_dot_products); skipped on the widening paths, whose FC walks promise no
    batch invariance (at batch 1 a row is summed with four accumulators, and 4 samples take
    another horizontal sum than 1-3)."""
    from mbv3_fast.isa import cpu_fc_dot_products
    if not cpu_fc_dot_products():
        pytest.skip(f"{cpu_isa_bf16}: the widening FC walks promise no batch invariance")
    yield cpu_isa_bf16


@pytest.fixture
def one_thread():
    """One torch thread for the test (use with pytestmark = usefixtures("one_thread")): on a
    busy 2-core machine OpenMP regions stall whenever the other core is taken, and the op
    tests pin separately that the thread split does not change results."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _fresh_seed(request):
    # Different random data for every test, the same on every run: seeded from the test id
    # (crc32, not hash(), which Python salts per process).  The tolerance rule compares
    # maximum errors, so a marginal case must fail every time, not one CI run in three.
    torch.manual_seed(zlib.crc32(request.node.nodeid.encode()))


# Property-based fuzzing (tests/test_fuzz.py): a modest default for CI, a deep run on request
# (`pytest tests/test_fuzz.py --hypothesis-profile=long`).  The examples are derived from a
# fixed seed in CI (derandomize), so a failure reproduces on every run.
try:
    from hypothesis import HealthCheck, settings

    _common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                        HealthCheck.function_scoped_fixture])
    settings.register_profile("ci", max_examples=100, derandomize=True, print_blob=True, **_common)
    settings.register_profile("long", max_examples=3000, print_blob=True, **_common)
    settings.load_profile(os.environ.get("MBV3_HYPOTHESIS_PROFILE", "ci"))
except ImportError:  # hypothesis is a test dependency (Makefile); test_fuzz.py skips without it
    pass
