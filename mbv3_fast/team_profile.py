"""Where a multi-threaded one-call forward waits: the thread team's loop trace.

    python -m mbv3_fast.team_profile --arch large|small --batch N --threads T [--dtype float32|bfloat16]
        [--iters 20] [--top 10]

At 2+ threads ``mbv3::mobilenet_v3`` runs its ~70 parallel loops on one team
(``csrc/common/parallel.h``): the calling thread (the leader) walks the network and takes the
first chunk of each loop; the other threads spin between loops.  With the trace on
(``torch.ops.mbv3._set_team_trace``), each forward records per loop:

* ``serial``  -- the leader's time since the previous loop ended (argument checks, output
  allocation, the single-threaded parts of an op); the workers idle through it;
* ``leader``  -- the leader's chunk; ``worker`` -- the slowest worker's chunk (0: the loop ran
  on the leader alone, too small to split);
* ``wait``    -- the leader's wait for the workers after its own chunk.

A worker idles ``serial + leader + wait - worker`` per loop.  The summary gives medians over
``--iters`` forwards; the table the loops whose two sides differ most (loop index in the order
the walk runs them; units = the loop's work items).
"""
import argparse
import dataclasses
import statistics
import sys
import time
from typing import Dict, List

import torch

FIELDS = ("units", "threads", "serial", "leader", "worker", "wait")


@dataclasses.dataclass(frozen=True)
class Trace:
    """One forward: ``rows`` [loops + 1, 6] float64 (columns FIELDS, µs; the last row: the serial
    time after the last loop) and the forward's wall time."""
    rows: torch.Tensor
    forward_us: float


def trace(model, x, iters: int = 20) -> List[Trace]:
    """``iters`` traced forwards of ``model`` on ``x``.  Needs a team: more than one torch thread."""
    if torch.get_num_threads() < 2:
        raise ValueError("team_profile: the one-call forward runs a team only at 2+ threads "
                         f"(torch.get_num_threads() is {torch.get_num_threads()})")
    out = []
    with torch.no_grad():
        for _ in range(3):
            model(x)
        torch.ops.mbv3._set_team_trace(True)
        try:
            for _ in range(iters):
                t0 = time.perf_counter()
                model(x)
                dt = (time.perf_counter() - t0) * 1e6
                t = torch.ops.mbv3._team_trace()
                if t.shape[0] == 0:
                    raise RuntimeError("team_profile: the forward ran no team (is the model fused on the CPU?)")
                out.append(Trace(t, dt))
        finally:
            torch.ops.mbv3._set_team_trace(False)
    return out


def summarize(traces: List[Trace]) -> Dict[str, float]:
    """Medians over forwards of the per-forward sums (µs)."""
    def med(f):
        return statistics.median(f(t.rows) for t in traces)
    loops = traces[0].rows[:-1]
    return {
        "forward_us": statistics.median(t.forward_us for t in traces),
        "loops": float(loops.shape[0]),
        "split_loops": float((loops[:, 1] > 1).sum()),
        "serial_us": med(lambda t: float(t[:, 2].sum())),
        "leader_us": med(lambda t: float(t[:, 3].sum())),
        "worker_us": med(lambda t: float(t[:, 4].sum())),
        "leader_wait_us": med(lambda t: float(t[:, 5].sum())),
        "worker_idle_us": med(lambda t: float((t[:, 2] + t[:, 3] + t[:, 5] - t[:, 4]).sum())),
        "leader_alone_us": med(lambda t: float(t[:-1][t[:-1, 1] <= 1][:, 3].sum())),
    }


def top_loops(traces: List[Trace], n: int) -> List[Dict[str, float]]:
    """The n split loops whose median |leader - worker| is largest."""
    stack = torch.stack([t.rows[:-1] for t in traces])  # [iters, loops, 6]
    med = stack.median(dim=0).values
    rows = [dict(zip(FIELDS, map(float, med[i])), loop=i) for i in range(med.shape[0]) if med[i, 1] > 1]
    return sorted(rows, key=lambda r: -abs(r["leader"] - r["worker"]))[:n]


def format_report(s: Dict[str, float], top: List[Dict[str, float]], head: str) -> str:
    lines = [head, "",
             f"forward {s['forward_us']:.0f} µs (wall, incl. the Python call); {s['loops']:.0f} loops, "
             f"{s['split_loops']:.0f} split over the team",
             f"leader: serial {s['serial_us']:.0f}, own chunks {s['leader_us']:.0f} (of which loops run alone "
             f"{s['leader_alone_us']:.0f}), waiting for workers {s['leader_wait_us']:.0f} µs",
             f"slowest worker: chunks {s['worker_us']:.0f}, idle {s['worker_idle_us']:.0f} µs", "",
             "| loop | units | serial µs | leader µs | worker µs | wait µs |", "|---|---|---|---|---|---|"]
    for r in top:
        lines.append(f"| {r['loop']} | {r['units']:.0f} | {r['serial']:.1f} | {r['leader']:.1f} | "
                     f"{r['worker']:.1f} | {r['wait']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    import torchvision
    import mbv3_fast
    from mbv3_fast.testing import realistic
    ap = argparse.ArgumentParser(prog="python -m mbv3_fast.team_profile", description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=["large", "small"], default="large")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--top", type=int, default=10)
    a = ap.parse_args(argv)
    if a.threads < 2:
        ap.error("--threads must be at least 2 (one thread runs no team)")
    torch.set_num_threads(a.threads)
    tv = realistic(getattr(torchvision.models, f"mobilenet_v3_{a.arch}")(), seed=0)
    dtype = getattr(torch, a.dtype)
    model = mbv3_fast.from_torchvision(tv).eval().to(dtype)
    if model.fused_status != "fused":
        ap.error(f"the model does not run fused here: {model.fused_status}")
    x = torch.randn(a.batch, 3, 224, 224, generator=torch.Generator().manual_seed(1)).to(dtype)
    traces = trace(model, x, a.iters)
    head = (f"MobileNetV3-{a.arch} {a.dtype} batch {a.batch}, {a.threads} threads, isa {mbv3_fast.get_cpu_isa()}, "
            f"median of {a.iters} forwards")
    print(format_report(summarize(traces), top_loops(traces, a.top), head))
    return 0


if __name__ == "__main__":
    sys.exit(main())
