"""The interleaved comparison every bench_<op>.py test_interleaved uses: each provider runs a
block of calls in turn (the order rotated each round, so none always runs right after another),
and the result is each provider's median over rounds of its per-round median, so load changes on
this shared machine hit all providers alike."""
import statistics
import time


def round_medians(fns, rounds, calls, clock=time.perf_counter):
    """{name: median of round medians, seconds} for the no-argument callables in `fns`.  clock:
    time.perf_counter (wall) or time.thread_time (this thread's CPU time, steadier at 1 thread)."""
    names = list(fns)
    per = {n: [] for n in names}
    for rnd in range(rounds):
        k = rnd % len(names)
        for n in names[k:] + names[:k]:
            fn = fns[n]
            fn()  # warm: the block's first call is not timed
            ts = []
            for _ in range(calls):
                t0 = clock()
                fn()
                ts.append(clock() - t0)
            per[n].append(statistics.median(ts))
    return {n: statistics.median(v) for n, v in per.items()}
