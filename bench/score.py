"""Benchmark of the scoring job (not a test: the speed targets live here, never in tests).

    .venv/bin/python bench/score.py                  # defaults: 50000x100000,100000x200000, naive at 2000x5000
    .venv/bin/python bench/score.py --quick          # 300x700, naive 100x200: checks the script (numbers mean little)
    .venv/bin/python bench/score.py --master local[16] --sizes 100000x200000,200000x400000

Random unit vectors of the real dimension (384) are written as embedding Delta tables (cached
under --work-dir between runs), then measured in one run, on the same cores:

(a) this job vs the naive Spark approach (crossJoin of rows, cosine with SQL higher-order
    functions, row_number() window, Delta write), at --naive-size; the job with score.hubness none, the
    naive approach's plain cosine, so their rankings must agree.            target >= 50x
(b) this job vs a single-process blocked top-k on all cores (same cores, data already in memory:
    the job's time includes reading Delta, blocking, the merge and the Delta write): float32
    matmul per block with the library lfr.score.kernel.fp32_matmul finds faster for a process on all cores
    (numpy's BLAS or torch's; ``--baseline numpy|torch`` to choose), torch.topk, a running merge.
    target: baseline time / job time >= 0.9
(c) achieved GFLOP/s of the job (2 M N d / wall time) vs the machine's measured float32 matmul
    peak (best of a few big torch/numpy matmuls on all cores, timed in the same run). target >= 0.6
(d) per task (one block pair of the configured size, 1 thread, in this process): kernel seconds and
    peak memory (tracemalloc: the buffers the kernel allocates + the two blocks); it depends on the
    block sizes only, not on the catalog size.
Plus how the job's time grows with M x N, and the agreement of its top-k with the baseline.
Cold vs warm: every timed job runs after a warm-up job in the same session (Python workers
started, torch imported, JIT warm); Spark start-up is excluded. The machine's load average is
printed at the start and the end: on a shared machine other processes distort the timings.

``--precision fp32,bf16-screen`` measures the dense screens (``score.precision``) side by side in the same run,
on the same tables (default: the configured ``score.precision`` only): per screen the job's time, GFLOP/s and
share of the measured float32 peak, the ratio of the fp32 job's time to each screen's (target for bf16-screen
>= 1.6 where bf16 is native), the per-task time, and the agreement of the screen's table with the first
screen's (same movie, rank, book and float32 score; must be 1.0: the top-k is exact either way). The header
prints the CPU capability and what ``auto`` resolves to; the peak lines add torch's bf16 matmul rate.

    flock /tmp/lfr-cpu.lock .venv/bin/python bench/score.py --sizes 50000x100000 --method dense \
        --naive-size none --precision fp32,bf16-screen

``--no-op-kernel`` (dense) adds (e): each round also runs the job with a kernel that does no arithmetic
(:func:`noop_kernel`: the first k books, score 0), so the blocks still travel from the JVM to the Python
workers and the merge, the write and the checks run as usual. Its time is the job's floor on these cores
whatever the kernel; each screen's time beyond it is the kernels' part, printed with its GFLOP/s, its share of
the fp32 peak and the fp32 / bf16-screen ratio of that part alone.

    flock /tmp/lfr-cpu.lock .venv/bin/python bench/score.py --sizes 50000x100000 --method dense \
        --precision fp32,bf16-screen --conf score.hubness=none --naive-size none --no-op-kernel --rounds 3

``--method dense,lexical,hybrid`` measures the scoring methods side by side in the same run, on
the same tables (synthetic lexical rows: ``--terms`` mean terms per movie/book over ``--vocab``
terms, skewed so that frequent terms are shared by many rows, as in real descriptions): per
method the job's wall time and its ratio to dense, and per task (one block pair of the
configured size, in this process) the kernel's time and its peak memory (tracemalloc: the
numpy/scipy buffers the kernel allocates, plus the two blocks it reads). The hybrid's per-task
time adds its statistics pass (lexical moments) to the kernel. ``--rounds N`` runs the methods (or, dense alone,
the ``--precision`` screens) N times, alternating, and reports median job times and each round's ratio: the
machine's speed drifts between jobs by several percent, and a session's first large job runs seconds slower
than the next, which a single pair of jobs reads as a change of their ratio.

    .venv/bin/python bench/score.py --method dense,lexical,hybrid --sizes 50000x100000 --naive-size none --no-torch
    .venv/bin/python bench/score.py --method dense,lexical,hybrid --sizes 500x1000 --naive-size none --no-torch \
        --movie-block-rows 256 --book-block-rows 512        # smoke run
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

log = logging.getLogger("bench.score")


class RssPeak:
    """Peak resident memory of the local executor while a job runs: this process's Spark JVM and its Python
    workers (psutil, sampled every 0.25 s). ``jvm`` and ``worker`` (the largest Python worker) in MiB, and
    ``total`` (JVM + all workers at one sample)."""

    def __init__(self):
        import threading

        self.jvm = self.worker = self.total = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        import psutil

        jvm, workers = 0.0, []
        for p in psutil.Process().children(recursive=True):
            try:
                rss = p.memory_info().rss / 2 ** 20
                name = p.name()
            except psutil.Error:
                continue
            if name.startswith("java"):
                jvm += rss
            elif name.startswith("python"):
                workers.append(rss)
        self.jvm, self.worker = max(self.jvm, jvm), max([self.worker, *workers])
        self.total = max(self.total, jvm + sum(workers))

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            self._sample()

    def __enter__(self) -> "RssPeak":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def line(self) -> str:
        return (f"executor peak RSS {self.total:.0f} MiB (JVM {self.jvm:.0f} MiB, largest Python worker "
                f"{self.worker:.0f} MiB)")


def noop_kernel(q, b, k: int, **_):
    """A stand-in for the dense kernel (``--no-op-kernel``): the first ``k`` books of the block for every movie,
    score 0, no arithmetic; the job around it (blocks shipped to the Python workers, merge, write, checks) is
    unchanged, so its time is the job's time outside the kernels."""
    kk = min(k, len(b))
    return (np.repeat(np.arange(len(q), dtype=np.int32), kk), np.tile(np.arange(kk, dtype=np.int32), len(q)),
            np.zeros(len(q) * kk, np.float32))


def parse_size(s: str) -> tuple[int, int]:
    m, n = s.lower().split("x")
    return int(float(m)), int(float(n))


def unit_vectors(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i:08d}" for i in range(n)]


def write_embeddings(spark, path: Path, prefix: str, vecs: np.ndarray) -> None:
    """Embedding table (contract schema) at ``path``; reused when it already holds ``len(vecs)`` rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lfr.spark.delta import is_delta_table, write_table

    if is_delta_table(spark, str(path)) and spark.read.format("delta").load(str(path)).count() == len(vecs):
        return
    n, d = vecs.shape
    staging = path.with_name(path.name + "_parquet")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    emb = pa.ListArray.from_arrays(pa.array(np.arange(0, n * d + 1, d, dtype=np.int32)), pa.array(vecs.reshape(-1)))
    id_arr = pa.array(ids(prefix, n))
    for i, s in enumerate(range(0, n, 50_000)):         # several files -> several input partitions
        e = min(n, s + 50_000)
        pq.write_table(pa.table({"id": id_arr[s:e], "title": id_arr[s:e], "embedding": emb[s:e]}),
                       staging / f"part-{i:05d}.parquet")
    from pyspark.sql import functions as F
    df = (spark.read.parquet(str(staging))
          .withColumn("model_version", F.lit("bench"))
          .withColumn("content_hash", F.lit(""))
          .withColumn("embedded_at", F.current_timestamp())
          .select("id", "title", F.col("embedding").cast("array<float>"), "model_version", "content_hash",
                  "embedded_at"))
    write_table(df, str(path), mode="overwrite")
    shutil.rmtree(staging, ignore_errors=True)


def lexical_rows(n: int, vocab: int, mean_terms: float, seed: int):
    """Random CSR rows (offsets, term indices, L2-normalised weights): Poisson(mean_terms) terms per row,
    term index ~ vocab * u**3 (frequent low indices shared by many rows), strictly increasing per row."""
    rng = np.random.default_rng(seed)
    counts = np.maximum(1, rng.poisson(mean_terms, n))
    row = np.repeat(np.arange(n), counts)
    term = (vocab * rng.random(len(row)) ** 3).astype(np.int64)
    order = np.lexsort((term, row))
    row, term = row[order], term[order]
    keep = np.r_[True, (term[1:] != term[:-1]) | (row[1:] != row[:-1])]
    row, term = row[keep], term[keep]
    w = rng.random(len(term)) + 0.1
    w /= np.sqrt(np.bincount(row, weights=w * w, minlength=n))[row]
    offsets = np.r_[0, np.cumsum(np.bincount(row, minlength=n))].astype(np.int32)
    return offsets, term.astype(np.int32), w.astype(np.float32)


def write_lexical(spark, path: Path, prefix: str, rows, vocab: int) -> None:
    """Lexical table (LEXICAL_CONTRACT schema) at ``path``; reused when it already holds as many rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyspark.sql import functions as F

    from lfr.spark.delta import is_delta_table, write_table

    offsets, terms, weights = rows
    n = len(offsets) - 1
    if is_delta_table(spark, str(path)) and spark.read.format("delta").load(str(path)).count() == n:
        return
    staging = path.with_name(path.name + "_parquet")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    ti = pa.ListArray.from_arrays(pa.array(offsets), pa.array(terms))
    tw = pa.ListArray.from_arrays(pa.array(offsets), pa.array(weights))
    id_arr = pa.array(ids(prefix, n))
    for i, s in enumerate(range(0, n, 50_000)):
        e = min(n, s + 50_000)
        pq.write_table(pa.table({"id": id_arr[s:e], "title": id_arr[s:e], "term_indices": ti[s:e],
                                 "term_weights": tw[s:e]}), staging / f"part-{i:05d}.parquet")
    df = (spark.read.parquet(str(staging))
          .withColumn("lexical_version", F.lit("bench")).withColumn("vocab_size", F.lit(vocab))
          .withColumn("content_hash", F.lit("")).withColumn("computed_at", F.current_timestamp()))
    write_table(df, str(path), mode="overwrite")
    shutil.rmtree(staging, ignore_errors=True)


def _csr(rows, vocab: int, lo: int, hi: int):
    import scipy.sparse as sp

    offsets, terms, weights = rows
    o = offsets[lo:hi + 1]
    return sp.csr_matrix((weights[o[0]:o[-1]], terms[o[0]:o[-1]], o - o[0]), shape=(hi - lo, vocab))


def task_profile(method: str, mv, bv, m_rows, b_rows, vocab: int, mbr: int, nbr: int, k: int, threads: int,
                 alpha: float, precision: str) -> dict:
    """One block pair of the configured size, in this process: kernel seconds and peak MiB (tracemalloc);
    ``alpha``: the hybrid's ``score.alpha``; ``precision``: ``score.precision``."""
    import tracemalloc

    from lfr.score.hybrid import convex_coefficients, dense_book_moments, dense_movie_stats, hybrid_topk
    from lfr.score.kernel import block_topk
    from lfr.score.sparse import sparse_moments, sparse_topk

    m, n = min(mbr, len(mv)), min(nbr, len(bv))
    q, b = mv[:m], bv[:n]
    qa, ba = (_csr(m_rows, vocab, 0, m), _csr(b_rows, vocab, 0, n)) if method != "dense" else (None, None)
    block_bytes = {"dense": q.nbytes + b.nbytes, "lexical": 0, "hybrid": q.nbytes + b.nbytes}[method]
    if method != "dense":
        block_bytes += sum(x.data.nbytes + x.indices.nbytes + x.indptr.nbytes for x in (qa, ba))
    coef = None
    if method == "hybrid":
        bsum, gram = dense_book_moments(b)
        s1, s2 = sparse_moments(qa, ba)
        coef = convex_coefficients(alpha, *dense_movie_stats(q, n, bsum, gram), s1 / n, s2 / n - (s1 / n) ** 2)

    def kernel(rows: slice, cols: slice):
        return {"dense": lambda: block_topk(q[rows], b[cols], k, threads=threads, precision=precision),
                "lexical": lambda: sparse_topk(qa[rows], ba[cols], k, threads=threads),
                "hybrid": lambda: hybrid_topk(q[rows], b[cols], qa[rows], ba[cols],
                                              None if coef is None else coef[rows], k, threads=threads,
                                              precision=precision)}[method]
    kernel(slice(0, 16), slice(0, 256))()      # once-per-process costs out of the timing: numba's compilations, the
    run = kernel(slice(None), slice(None))     # fp32 library's probe (a Spark worker pays them once for many pairs)
    t = _timed(run)
    t_pre = _timed(lambda: sparse_moments(qa, ba)) if method == "hybrid" else 0.0
    tracemalloc.start()
    run()
    if method == "hybrid":
        sparse_moments(qa, ba)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"seconds": t + t_pre, "stats_seconds": t_pre, "peak_mib": (peak + block_bytes) / 2 ** 20,
            "pair": f"{m}x{n}"}


def baseline_library(choice: str, threads: int) -> str:
    """``--baseline``: ``auto`` -> the library the score kernel would pick for a process of ``threads`` threads."""
    if choice != "auto":
        return choice
    from lfr.score.kernel import compute_settings, fp32_matmul

    with compute_settings(threads) as torch:
        return fp32_matmul(torch.get_num_threads())


def blocked_baseline(q: np.ndarray, b: np.ndarray, k: int, threads: int, mbr: int, nbr: int, lib: str = "numpy",
                     hub: Optional[tuple[int, float]] = None):
    """Single process: blocked float32 matmul (``lib``: numpy's BLAS or torch's, :func:`baseline_library`) + torch.topk
    per block, running merge; returns (ids, scores, seconds). ``hub``: ``(hub_k, hub_weight)`` of a hub-aware
    job (``score.hubness: csls``): first each book's ``hub_k`` best films (the same loop, roles swapped), then
    the films' top-k of ``cos - hub_weight * r(book)`` as dot products of augmented rows, as the job scores."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    torch.set_float32_matmul_precision("highest")
    t0 = time.perf_counter()
    limits = threadpool_limits(limits=threads, user_api="blas")
    if hub:
        from lfr.score.hubs import augment, book_column, film_column

        _, near = _blocked_topk(b, q, hub[0], mbr, nbr, lib)
        r = np.sort(near.astype(np.float64), axis=1).sum(axis=1) / near.shape[1]   # as hub_means: sorted, float64
        q, b = augment(q, film_column(q)), augment(b, book_column(r, hub[1]))
    ids, scores = _blocked_topk(q, b, k, mbr, nbr, lib)
    limits.restore_original_limits()
    return ids, scores, time.perf_counter() - t0


def _blocked_topk(q: np.ndarray, b: np.ndarray, k: int, mbr: int, nbr: int, lib: str):
    import torch

    qt, bt = torch.from_numpy(q), torch.from_numpy(b)
    bT = [np.ascontiguousarray(b[n0:n0 + nbr].T) for n0 in range(0, len(b), nbr)] if lib == "numpy" else None
    out_i, out_s = [], []
    for m0 in range(0, len(q), mbr):
        best_s = best_i = None
        for j, n0 in enumerate(range(0, len(b), nbr)):
            s = torch.from_numpy(q[m0:m0 + mbr] @ bT[j]) if lib == "numpy" else qt[m0:m0 + mbr] @ bt[n0:n0 + nbr].T
            v, i = torch.topk(s, min(k, s.shape[1]), dim=1)
            i += n0
            if best_s is None:
                best_s, best_i = v, i
            else:
                cs, ci = torch.cat([best_s, v], 1), torch.cat([best_i, i], 1)
                best_s, j = torch.topk(cs, k, dim=1)
                best_i = torch.gather(ci, 1, j)
        out_i.append(best_i)
        out_s.append(best_s)
    return torch.cat(out_i).numpy(), torch.cat(out_s).numpy()


def matmul_peak(threads: int, d: int, side: int = 4096) -> dict:
    """Best-of-3 float32 GFLOP/s of a block-shaped and a square matmul, torch and numpy, all cores; and
    torch's bf16 rate on the block shape (what the bf16 screen runs; not part of the fp32 peak)."""
    import torch

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    out = {}
    for name, (m, kk, n) in {f"block {side}x{d}x{4 * side}": (side, d, 4 * side),
                             f"square {side}^3": (side, side, side)}.items():
        a = rng.standard_normal((m, kk), dtype=np.float32)
        b = rng.standard_normal((kk, n), dtype=np.float32)
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        fns = [("torch", lambda: ta @ tb), ("numpy", lambda: a @ b)]
        if name.startswith("block"):
            ha, hb = ta.bfloat16(), tb.bfloat16()
            fns.append(("torch bf16", lambda: ha @ hb))
        for lib, f in fns:
            f()
            best = min(_timed(f) for _ in range(3))
            out[f"{lib} {name}"] = 2 * m * kk * n / best / 1e9
    return out


def fp32_peak(peak: dict) -> float:
    """The machine's measured float32 peak: the best float32 rate of :func:`matmul_peak`."""
    return max((v for name, v in peak.items() if "bf16" not in name), default=float("nan"))


def bf16_ceiling(peak: dict) -> float:
    """torch's bf16 rate / numpy's float32 rate on the block shape (:func:`matmul_peak`): what the bf16 screen's
    matmul gains over the fp32 screen's (numpy) on this CPU, so the most a bf16-screen job can gain over the fp32
    job when both spend all their time in the matmul (nan without the two rates)."""
    bf16 = next((v for name, v in peak.items() if name.startswith("torch bf16 block")), float("nan"))
    fp32 = next((v for name, v in peak.items() if name.startswith("numpy block")), float("nan"))
    return bf16 / fp32


def cpu_line() -> str:
    """The CPU capability torch dispatches to, its native bf16 units and what ``score.precision: auto`` picks."""
    import torch

    from lfr.model.text import cpu_bf16_capability
    from lfr.score.kernel import resolve_score_precision

    cap = cpu_bf16_capability()
    native = "+".join(x for x in ("avx512_bf16", "amx_bf16") if cap.get(x)) or "none"
    resolved, why = resolve_score_precision("auto", "cpu")
    return (f"cpu capability {torch.backends.cpu.get_cpu_capability()}, native bf16: {native}; "
            f"score.precision auto -> {resolved} ({why})")


def same_rows(spark, path_a: str, path_b: str) -> float:
    """Share of the rows of two recommendation tables that are identical (movie, rank, book, float32 score)."""
    cols = ("movie_id", "rank", "book_id", "score")
    a = spark.read.format("delta").load(path_a).select(*cols)
    b = spark.read.format("delta").load(path_b).select(*cols)
    total = max(a.count(), b.count())
    return a.intersect(b).count() / total if total else 1.0


def _timed(f) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def naive_spark(spark, movies_path: str, books_path: str, out_path: str, k: int) -> float:
    """Row-level crossJoin + cosine via higher-order functions + window rank -> Delta. Returns seconds."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from lfr.spark.delta import write_table

    t0 = time.perf_counter()
    # spread the rows over every core (the small Delta tables are one file each), as the job does
    cores = spark.sparkContext.defaultParallelism
    m = (spark.read.format("delta").load(movies_path).repartition(2 * cores)
         .select(F.col("id").alias("movie_id"), F.col("embedding").alias("me")))
    b = spark.read.format("delta").load(books_path).select(F.col("id").alias("book_id"), F.col("embedding").alias("be"))
    norm = lambda c: F.sqrt(F.aggregate(c, F.lit(0.0).cast("double"), lambda acc, x: acc + x * x))  # noqa: E731
    m = m.withColumn("mn", norm(F.col("me")))
    b = b.withColumn("bn", norm(F.col("be")))
    dot = F.aggregate(F.zip_with("me", "be", lambda x, y: x * y), F.lit(0.0).cast("double"), lambda acc, v: acc + v)
    pairs = m.crossJoin(b).select("movie_id", "book_id",
                                  (dot / (F.col("mn") * F.col("bn"))).cast("float").alias("score"))
    w = Window.partitionBy("movie_id").orderBy(F.col("score").desc(), F.col("book_id"))
    out = pairs.withColumn("rank", F.row_number().over(w)).filter(F.col("rank") <= k)
    write_table(out, out_path, mode="overwrite")
    return time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="50000x100000,100000x200000", help="MOVIESxBOOKS,... (default %(default)s)")
    p.add_argument("--naive-size", default="2000x5000", help="size for (a); 'none' to skip (default %(default)s)")
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--k", type=int, default=None, help="default: score.k")
    p.add_argument("--movie-block-rows", type=int, default=None, help="default: score.movie_block_rows")
    p.add_argument("--book-block-rows", type=int, default=None, help="default: score.book_block_rows")
    p.add_argument("--master", default=None, help="Spark master (default: the config's, local[*])")
    p.add_argument("--work-dir", default=str(ROOT / "work" / "bench"), help="tables are kept here between runs")
    p.add_argument("--no-torch", "--no-baseline", dest="no_torch", action="store_true",
                   help="skip (b), the single-process blocked baseline")
    p.add_argument("--baseline", choices=("auto", "numpy", "torch"), default="auto",
                   help="matmul library of the baseline (auto: the faster on all cores, as the job's kernel picks)")
    p.add_argument("--quick", action="store_true", help="--sizes 300x700 --naive-size 100x200: checks the script")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--conf", action="append", default=[], help="extra config overrides (spark.* or score.*)")
    p.add_argument("--method", default="dense",
                   help="comma list of dense|lexical|hybrid measured side by side per size (default %(default)s)")
    p.add_argument("--vocab", type=int, default=262144, help="lexical vocabulary size (default %(default)s)")
    p.add_argument("--terms", default="80,40", help="mean lexical terms per movie,book (default %(default)s)")
    p.add_argument("--rounds", type=int, default=1,
                   help="run the --method x --precision jobs this many times, alternating, and report the medians "
                        "and each round's ratio (to dense; fp32 / each screen): the machine's speed drifts between "
                        "jobs and a session's first large job runs slower (default 1)")
    p.add_argument("--no-op-kernel", action="store_true",
                   help="dense: also run the job with a kernel that does no arithmetic (each round, after the "
                        "screens) and split each screen's time into the kernels' part and the rest (e)")
    p.add_argument("--precision", default=None,
                   help="comma list of score.precision values (fp32|bf16-screen|auto) measured side by side "
                        "(default: score.precision)")
    a = p.parse_args(argv)
    if a.quick:
        a.sizes, a.naive_size = "300x700", "100x200"
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("py4j", "lfr.data.pairs"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


    from lfr.score import score_recommendations
    from lfr.settings import load_settings, with_values
    from lfr.spark import build_session
    from lfr.spark.guards import Guards

    overrides = list(a.conf) + ([f"spark.master={a.master}"] if a.master else [])
    settings = load_settings(overrides=overrides)
    spark = build_session(settings)
    spark.sparkContext.setLogLevel("ERROR")
    cores = spark.sparkContext.defaultParallelism
    mbr = a.movie_block_rows or settings.score.movie_block_rows
    nbr = a.book_block_rows or settings.score.book_block_rows
    work = Path(a.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    d, k = a.dim, a.k or settings.score.k
    print(f"# bench/score.py  master={spark.sparkContext.master} cores={cores} (os.cpu_count={os.cpu_count()}) "
          f"d={d} k={k} blocks={mbr}x{nbr} load avg at start={os.getloadavg()[0]:.1f}", flush=True)
    print(f"# {cpu_line()}", flush=True)
    precisions = [x.strip() for x in (a.precision or settings.score.precision).split(",") if x.strip()]
    peaks: dict = {}                                        # result path -> RssPeak of its job

    def tables(m: int, n: int) -> tuple[str, str, np.ndarray, np.ndarray]:
        mv = unit_vectors(m, d, a.seed)
        bv = unit_vectors(n, d, a.seed + 1)
        mp, bp = work / f"movies_{m}_{d}_{a.seed}", work / f"books_{n}_{d}_{a.seed}"
        write_embeddings(spark, mp, "m", mv)
        write_embeddings(spark, bp, "b", bv)
        return str(mp), str(bp), mv, bv

    methods = [x.strip() for x in a.method.split(",") if x.strip()]
    terms_m, terms_b = (float(x) for x in a.terms.split(","))

    def lexical_tables(m: int, n: int):
        mr = lexical_rows(m, a.vocab, terms_m, a.seed + 2)
        br = lexical_rows(n, a.vocab, terms_b, a.seed + 3)
        mp = work / f"movies_lex_{m}_{a.vocab}_{terms_m:g}_{a.seed}"
        bp = work / f"books_lex_{n}_{a.vocab}_{terms_b:g}_{a.seed}"
        write_lexical(spark, mp, "m", mr, a.vocab)
        write_lexical(spark, bp, "b", br, a.vocab)
        return str(mp), str(bp), mr, br

    def run_job(m: int, n: int, mp: str, bp: str, method: str = "dense", lex=(None, None),
                precision: str = precisions[0], kernel=None, **score_values):
        load = lambda path: spark.read.format("delta").load(path) if path else None  # noqa: E731
        t0 = time.perf_counter()
        score = with_values(settings.score, {"k": k, "method": method, "movie_block_rows": mbr,
                                             "book_block_rows": nbr, "precision": precision, **score_values})
        with RssPeak() as rss:
            res = score_recommendations(spark, load(mp) if method != "lexical" else None,
                                        load(bp) if method != "lexical" else None,
                                        str(work / f"recs_{m}x{n}_{method}_{'no-op' if kernel else precision}"),
                                        settings=score, guards=Guards.from_settings(settings.guards),
                                        movie_lexical=load(lex[0]), book_lexical=load(lex[1]), kernel=kernel)
        peaks[res.path] = rss
        return res, time.perf_counter() - t0

    def compare_methods(m: int, n: int, mp: str, bp: str, mv, bv) -> str:
        """Every --method x --precision on the same tables, one after the other (--rounds times, alternating:
        the job times are the medians, each round's times are listed): job time, per-task time and memory; per
        method, each screen's table against the first screen's."""
        lmp, lbp, mr, br = lexical_tables(m, n)
        rows, times = {}, {}
        for rnd in range(a.rounds):
            for meth in methods:
                for prec in (precisions if meth != "lexical" else precisions[:1]):
                    res, t_job = run_job(m, n, mp, bp, meth, (lmp, lbp), prec)
                    times.setdefault((meth, prec), []).append(t_job)
                    if rnd == 0:
                        rows[meth, prec] = (t_job, res, task_profile(meth, mv, bv, mr, br, a.vocab, mbr, nbr, k, 1,
                                                                     settings.score.alpha, prec))
        rows = {key: (float(np.median(times[key])), *rest) for key, (_, *rest) in rows.items()}
        out = [f"size {m}x{n} (vocab {a.vocab}, mean terms {terms_m:g}/{terms_b:g}, blocks {mbr}x{nbr}):",
               f"    {'method':8s} {'precision':12s} {'job s':>8s} {'x dense':>8s} {'fp32/this':>9s} {'pairs':>6s} "
               f"{'task s':>8s} {'(stats s)':>9s} {'task peak MiB':>13s} {'exec MiB':>8s} {'same rows':>9s}  (one "
               f"{next(iter(rows.values()))[2]['pair']} block pair, 1 thread)"]
        for (meth, prec), (t_job, res, prof) in rows.items():
            dense = rows.get(("dense", prec), rows.get(("dense", precisions[0]), (t_job,)))[0]
            fp32 = rows.get((meth, "fp32"), (float("nan"),))[0]
            first = rows[meth, (precisions if meth != "lexical" else precisions[:1])[0]][1]
            out.append(f"    {meth:8s} {prec:12s} {t_job:8.1f} {t_job / dense:8.2f} {fp32 / t_job:9.2f} "
                       f"{res.pairs:6d} {prof['seconds']:8.2f} {prof['stats_seconds']:9.2f} {prof['peak_mib']:13.1f} "
                       f"{peaks[res.path].total:8.0f} "
                       f"{same_rows(spark, first.path, res.path):9.4f}")
        if a.rounds > 1:
            out.append(f"    per round ({a.rounds}, alternating; job s above = median): " + "; ".join(
                f"{meth} {prec} " + "/".join(f"{t:.1f}" for t in ts) for (meth, prec), ts in times.items()))
            for (meth, prec), ts in times.items():
                dense = times.get(("dense", prec))
                if meth != "dense" and dense:
                    ratios = [t / d for t, d in zip(ts, dense)]
                    out.append(f"    {meth} {prec} / dense per round: " + ", ".join(f"{x:.2f}" for x in ratios)
                               + f" (median {np.median(ratios):.2f})")
        return "\n".join(out)

    lines = []
    # (c) only: the dense job's efficiency
    peak = matmul_peak(cores, d, 1024 if a.quick else 4096) if methods == ["dense"] else {}
    peak_best = fp32_peak(peak)
    for name, g in peak.items():
        print(f"peak  {name:28s} {g:8.1f} GFLOP/s", flush=True)

    # (a) naive Spark vs this job
    if a.naive_size.lower() != "none":
        m, n = parse_size(a.naive_size)
        mp, bp, _, _ = tables(m, n)
        run_job(m, n, mp, bp, hubness="none")             # warm-up: Python workers, torch import
        res, t_job = run_job(m, n, mp, bp, hubness="none")  # the naive job ranks by the plain cosine
        t_naive = naive_spark(spark, mp, bp, str(work / f"naive_{m}x{n}"), k)
        same = (spark.read.format("delta").load(str(work / f"naive_{m}x{n}")).select("movie_id", "rank", "book_id")
                .subtract(spark.read.format("delta").load(res.path).select("movie_id", "rank", "book_id")).count())
        lines.append(f"(a) naive/job at {m}x{n}: naive {t_naive:.1f}s, job {t_job:.1f}s "
                     f"-> ratio {t_naive / t_job:.1f}x (target >= 50x); "
                     f"rows differing from the naive ranking: {same}")
        print(lines[-1], flush=True)

    # (b), (c), (d) per screen, and growth
    growth = []
    for size in a.sizes.split(","):
        m, n = parse_size(size)
        mp, bp, mv, bv = tables(m, n)
        if not growth and a.naive_size.lower() == "none":
            for prec in precisions:                         # warm-up: Python workers, torch import, each screen
                run_job(min(m, 2000), min(n, 5000), *tables(min(m, 2000), min(n, 5000))[:2], precision=prec)
        if methods != ["dense"]:
            lines.append(compare_methods(m, n, mp, bp, mv, bv))
            growth.append((m, n, float("nan")))
            print(lines[-1], flush=True)
            continue
        env = {"spark": spark, "cores": cores, "k": k, "d": d, "mbr": mbr, "nbr": nbr, "peak": peak_best, "rss": peaks,
               "bf16_ceiling": bf16_ceiling(peak),
               "alpha": settings.score.alpha, "vocab": a.vocab,
               "baseline": None if a.no_torch else baseline_library(a.baseline, cores),
               "hub": ((int(settings.score.hub_k), float(settings.score.hub_weight))
                       if settings.score.hubness == "csls" else None),
               "noop": (lambda: run_job(m, n, mp, bp, kernel=noop_kernel)) if a.no_op_kernel else None}
        msg, t_job = dense_size(env, m, n, mv, bv, precisions, lambda prec: run_job(m, n, mp, bp, precision=prec),
                                a.rounds)
        growth.append((m, n, t_job))
        lines.append(msg)
        print(msg, flush=True)
    if len(growth) > 1 and methods == ["dense"]:
        (m0, n0, t0), *rest = growth
        for m, n, t in rest:
            lines.append(f"growth {m0}x{n0} -> {m}x{n}: pairs x{m * n / (m0 * n0):.1f}, time x{t / t0:.2f}")
    print("\n# summary (one run, load avg now %.1f)" % os.getloadavg()[0])
    print(f"# {cpu_line()}")
    for line in lines:
        print(line)
    spark.stop()
    return 0


def dense_size(env: dict, m: int, n: int, mv, bv, precisions: list, run, rounds: int = 1) -> tuple[str, float]:
    """(b), (c), (d) of one size, one block per ``precisions`` entry (``run(precision) -> (result, seconds)``):
    the job's time and phases, GFLOP/s, share of the fp32 peak, fp32 job / this job; the baseline once, and
    each screen's agreement with it (ids) and with the first screen's table (rows, scores included).
    ``rounds`` > 1: the screens that many times, alternating, each reported by its median round (the first
    large job of a session runs seconds slower than the next, whichever screen it is). ``env["noop"]`` (a
    callable, ``--no-op-kernel``): the no-op job after the screens in every round, and (e). Returns the report
    and the first screen's job time (growth)."""
    flops, msgs = 2.0 * m * n * env["d"], []
    base = None
    if env["baseline"]:
        ti, _, t_base = blocked_baseline(mv, bv, env["k"], env["cores"], min(env["mbr"], 4096), env["nbr"],
                                         env["baseline"], env["hub"])   # 4096-row chunks
        base = (ti, t_base)
    runs: dict = {}
    for _ in range(rounds):
        for prec in precisions:
            runs.setdefault(prec, []).append(run(prec))
        if env["noop"]:
            runs.setdefault("no-op", []).append(env["noop"]())
    median = {prec: sorted(rs, key=lambda r: r[1])[(len(rs) - 1) // 2] for prec, rs in runs.items()}
    times = {prec: t for prec, (_, t) in median.items()}
    first = median[precisions[0]][0]
    for prec in precisions:
        res, t_job = median[prec]
        g_job = flops / t_job / 1e9
        phases = ", ".join(f"{kk} {v:.1f}s" for kk, v in (res.phases or {}).items())
        msg = (f"size {m}x{n} precision {prec}: job {t_job:.1f}s ({phases}; {res.movie_blocks}x{res.book_blocks} "
               f"block pairs) = {g_job:.1f} GFLOP/s; {env['rss'][res.path].line()}")
        if base:
            what = f"hub-aware: hub pass + augmented rows, hub_k {env['hub'][0]}, " if env["hub"] else ""
            msg += (f"\n    (b) single process ({what}{env['baseline']} matmul + torch.topk, {env['cores']} threads) "
                    f"{base[1]:.1f}s ({flops / base[1] / 1e9:.1f} GFLOP/s) -> baseline/job = {base[1] / t_job:.2f} "
                    f"(target >= 0.9); top-k agreement {baseline_agreement(env['spark'], res.path, base[0], m):.4f}")
        msg += (f"\n    (c) job {g_job:.1f} GFLOP/s / measured fp32 peak {env['peak']:.1f} = {g_job / env['peak']:.2f} "
                f"(target >= 0.6 for fp32)")
        if rounds > 1:
            msg += f"\n    rounds ({rounds}, alternating; the median above): " + " / ".join(
                f"{t:.1f}s" for _, t in runs[prec])
        if "fp32" in times and prec != "fp32":
            msg += (f"\n    fp32 job / {prec} job = {times['fp32'] / t_job:.2f} (target >= 1.6 where bf16 is native; "
                    f"ceiling here: bf16 / fp32 matmul on the block shape {env['bf16_ceiling']:.2f}); "
                    f"rows identical to the {precisions[0]} table: {same_rows(env['spark'], first.path, res.path):.4f}")
            if rounds > 1:
                msg += "\n    per round: " + ", ".join(
                    f"{f[1] / p[1]:.2f}" for f, p in zip(runs["fp32"], runs[prec]))
        prof = task_profile("dense", mv, bv, None, None, env["vocab"], env["mbr"], env["nbr"], env["k"], 1,
                            env["alpha"], prec)
        msg += (f"\n    (d) per task: one {prof['pair']} block pair, 1 thread: {prof['seconds']:.2f}s, "
                f"peak {prof['peak_mib']:.0f} MiB (depends on the block sizes, not on the catalog)")
        msgs.append(msg)
    if env["noop"]:
        msgs.append(kernel_split(median["no-op"], [t for _, t in runs["no-op"]], times, flops, env["peak"]))
    return "\n".join(msgs), times[precisions[0]]


def kernel_split(noop: tuple, rounds: list, times: dict, flops: float, peak: float) -> str:
    """(e): the no-op job's median round (``noop``: its result and seconds; everything but the kernels'
    arithmetic: checks, block build, shipping the blocks to the Python workers, merge, write) and each screen's
    median time beyond it, with the rates and the fp32 / bf16 ratio of that part alone."""
    res, t_noop = noop
    sw = (res.phases or {}).get("score+write", float("nan"))
    msg = (f"    (e) the same job with a no-op kernel (no arithmetic; blocks shipped, merged, written): "
           f"{t_noop:.1f}s (score+write {sw:.1f}s; rounds " + " / ".join(f"{t:.1f}s" for t in rounds) + ")")
    part = {prec: t - t_noop for prec, t in times.items() if prec != "no-op"}
    for prec, t in part.items():
        msg += (f"\n        {prec}: job - no-op = {t:.1f}s" + (
            f" = {flops / t / 1e9:.1f} GFLOP/s = {flops / t / 1e9 / peak:.2f} of the fp32 peak" if t > 0 else
            " (no kernel time to measure at this size)"))
    if "fp32" in part and min(part.values()) > 0:
        msg += "".join(f"\n        fp32 / {prec} on that part: {part['fp32'] / t:.2f}" for prec, t in part.items()
                       if prec != "fp32")
    return msg


def baseline_agreement(spark, path: str, top_ids: np.ndarray, m: int) -> float:
    """Mean share of the baseline's top-k ids in the job's list, over ~2000 sampled movies (differences only
    where scores tie within float32 error)."""
    from pyspark.sql import functions as F

    k = top_ids.shape[1]
    sample = list(range(0, m, max(1, m // 2000)))
    got: dict = {}
    for r in (spark.read.format("delta").load(path).select("movie_id", "book_id")
              .filter(F.col("movie_id").isin([f"m{i:08d}" for i in sample])).collect()):
        got.setdefault(r.movie_id, set()).add(int(r.book_id[1:]))
    return float(np.mean([len(got.get(f"m{i:08d}", set()) & set(top_ids[i].tolist())) / k for i in sample]))


if __name__ == "__main__":
    raise SystemExit(main())
