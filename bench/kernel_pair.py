"""One block pair through the dense kernel, as the scoring job's tasks run it: 1 thread each, one process alone and
two at once (the job runs one task per core), fp32 against bf16-screen, the matmul alone and the whole kernel.

Why: the job's fp32 / bf16-screen ratio is bounded by the kernel's, and the kernel's by the matmul's *with two
tasks at once*; a 2-thread matmul in one process (bench/score.py's peaks) is not the same number.

    .venv/bin/python bench/kernel_pair.py [--movies 12500] [--books 14286] [--dim 384] [--k 10]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.score import unit_vectors  # noqa: E402  (the random unit rows bench/score.py scores)

PRECISIONS = ("fp32", "bf16-screen")


def _task(args: tuple, out) -> None:
    """Best of 3 seconds for one pair: the screen's chunk products only (``matmul``) or ``block_topk``."""
    from lfr.score import kernel as K

    what, prec, seed, m, n, d, k = args
    q, b = unit_vectors(m, d, 2 * seed), unit_vectors(n, d, 2 * seed + 1)
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        if what == "kernel":
            K.block_topk(q, b, k, threads=1, precision=prec)
        else:
            with K.compute_settings(1) as torch:
                chunk = max(1, min(m, K.CHUNK_ELEMS // n))
                screen = K.dense_screen(torch, q, b, chunk, prec)
                for r0 in range(0, m, chunk):
                    screen.scores(r0, min(m, r0 + chunk))
        best = min(best, time.perf_counter() - t)
    out.put(best)


def _at_once(ctx, n_procs: int, args: tuple) -> float:
    """The slowest of ``n_procs`` processes running ``_task`` at the same time."""
    q = ctx.Queue()
    procs = [ctx.Process(target=_task, args=((*args[:2], i, *args[3:]), q)) for i in range(n_procs)]
    for p in procs:
        p.start()
    times = [q.get() for _ in procs]
    for p in procs:
        p.join()
    return max(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--movies", type=int, default=12500)
    p.add_argument("--books", type=int, default=14286)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--k", type=int, default=10)
    a = p.parse_args(argv)
    import torch

    from lfr.score.kernel import resolve_score_precision

    print(f"# cpu capability {torch.backends.cpu.get_cpu_capability()}; bf16-screen here: "
          f"{resolve_score_precision('auto', 'cpu')[1]}")
    print(f"# one {a.movies} x {a.books} pair, d={a.dim}, k={a.k}, 1 thread per process, best of 3")
    ctx = mp.get_context("spawn")
    flops = 2.0 * a.movies * a.books * a.dim
    got = {}
    for what in ("matmul", "kernel"):
        for prec in PRECISIONS:
            for n_procs in (1, 2):
                t = _at_once(ctx, n_procs, (what, prec, 0, a.movies, a.books, a.dim, a.k))
                got[what, prec, n_procs] = t
                print(f"{what:6s} {prec:12s} {n_procs} at once: {t:.3f} s per pair "
                      f"({flops / t / 1e9:.1f} GFLOP/s per process)", flush=True)
    for what in ("matmul", "kernel"):
        for n_procs in (1, 2):
            print(f"{what} fp32 / bf16-screen, {n_procs} at once: "
                  f"{got[what, 'fp32', n_procs] / got[what, 'bf16-screen', n_procs]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
