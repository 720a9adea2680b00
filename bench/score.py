"""Benchmark of the scoring job (not a test: the speed targets live here, never in tests).

    .venv/bin/python bench/score.py                                  # default sizes: 20000x50000,100000x200000
    .venv/bin/python bench/score.py --sizes 2000x5000 --naive-size 1000x2000   # quick, on a busy machine
    .venv/bin/python bench/score.py --master local[16] --sizes 100000x200000,200000x400000

Random unit vectors of the real dimension (384) are written as embedding Delta tables (cached
under --work-dir between runs), then measured in one run, on the same cores:

(a) this job vs the naive Spark approach (crossJoin of rows, cosine with SQL higher-order
    functions, row_number() window, Delta write), at --naive-size.          target >= 50x
(b) this job vs a single-process torch blocked matmul + topk (same cores, data already in memory:
    the job's time includes reading Delta, blocking, the merge and the Delta write). target >= 0.7
(c) achieved GFLOP/s of the job (2 M N d / wall time) vs the machine's measured float32 matmul
    peak (best of a few big torch/numpy matmuls on all cores, timed in the same run).
Plus how the job's time grows with M x N, and the agreement of its top-k with the torch baseline.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

log = logging.getLogger("bench.score")


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
          .select("id", "title", F.col("embedding").cast("array<float>"), "model_version", "content_hash", "embedded_at"))
    write_table(df, str(path), mode="overwrite")
    shutil.rmtree(staging, ignore_errors=True)


def torch_baseline(q: np.ndarray, b: np.ndarray, k: int, threads: int, mbr: int, nbr: int):
    """Single process: blocked torch matmul + topk per block, running merge; returns (ids, scores, seconds)."""
    import torch

    torch.set_num_threads(threads)
    torch.set_float32_matmul_precision("highest")
    t0 = time.perf_counter()
    qt, bt = torch.from_numpy(q), torch.from_numpy(b)
    out_i, out_s = [], []
    for m0 in range(0, len(q), mbr):
        best_s = best_i = None
        for n0 in range(0, len(b), nbr):
            s = qt[m0:m0 + mbr] @ bt[n0:n0 + nbr].T
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
    res = torch.cat(out_i).numpy(), torch.cat(out_s).numpy()
    return res[0], res[1], time.perf_counter() - t0


def matmul_peak(threads: int, d: int) -> dict:
    """Best-of-3 float32 GFLOP/s of a block-shaped and a square matmul, torch and numpy, all cores."""
    import torch

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    out = {}
    for name, (m, kk, n) in {"block 4096x384x16384": (4096, d, 16384), "square 4096^3": (4096, 4096, 4096)}.items():
        a = rng.standard_normal((m, kk), dtype=np.float32)
        b = rng.standard_normal((kk, n), dtype=np.float32)
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        for lib, f in (("torch", lambda: ta @ tb), ("numpy", lambda: a @ b)):
            f()
            best = min(_timed(f) for _ in range(3))
            out[f"{lib} {name}"] = 2 * m * kk * n / best / 1e9
    return out


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
    pairs = m.crossJoin(b).select("movie_id", "book_id", (dot / (F.col("mn") * F.col("bn"))).cast("float").alias("score"))
    w = Window.partitionBy("movie_id").orderBy(F.col("score").desc(), F.col("book_id"))
    out = pairs.withColumn("rank", F.row_number().over(w)).filter(F.col("rank") <= k)
    write_table(out, out_path, mode="overwrite")
    return time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="20000x50000,100000x200000", help="MOVIESxBOOKS,... (default %(default)s)")
    p.add_argument("--naive-size", default="2000x5000", help="size for (a); 'none' to skip (default %(default)s)")
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--movie-block-rows", type=int, default=None, help="default: score.movie_block_rows")
    p.add_argument("--book-block-rows", type=int, default=None, help="default: score.book_block_rows")
    p.add_argument("--master", default=None, help="Spark master (default: the config's, local[*])")
    p.add_argument("--work-dir", default=str(ROOT / "work" / "bench"), help="tables are kept here between runs")
    p.add_argument("--no-torch", action="store_true", help="skip (b), the single-process torch baseline")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--conf", action="append", default=[], help="extra config overrides (spark.* or score.*)")
    a = p.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("py4j", "lfr.data.pairs"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from lfr.config import load_config
    from lfr.score import score_recommendations
    from lfr.spark import build_session

    overrides = list(a.conf) + ([f"spark.master={a.master}"] if a.master else [])
    cfg = load_config(overrides=overrides)
    spark = build_session(cfg)
    spark.sparkContext.setLogLevel("ERROR")
    cores = spark.sparkContext.defaultParallelism
    mbr = a.movie_block_rows or int(cfg["score"]["movie_block_rows"])
    nbr = a.book_block_rows or int(cfg["score"]["book_block_rows"])
    work = Path(a.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    d, k = a.dim, a.k
    print(f"# bench/score.py  master={spark.sparkContext.master} cores={cores} (os.cpu_count={os.cpu_count()}) "
          f"d={d} k={k} blocks={mbr}x{nbr} load avg at start={os.getloadavg()[0]:.1f}", flush=True)

    def tables(m: int, n: int) -> tuple[str, str, np.ndarray, np.ndarray]:
        mv = unit_vectors(m, d, a.seed)
        bv = unit_vectors(n, d, a.seed + 1)
        mp, bp = work / f"movies_{m}_{d}_{a.seed}", work / f"books_{n}_{d}_{a.seed}"
        write_embeddings(spark, mp, "m", mv)
        write_embeddings(spark, bp, "b", bv)
        return str(mp), str(bp), mv, bv

    def run_job(m: int, n: int, mp: str, bp: str):
        movies = spark.read.format("delta").load(mp)
        books = spark.read.format("delta").load(bp)
        t0 = time.perf_counter()
        res = score_recommendations(spark, movies, books, str(work / f"recs_{m}x{n}"), k=k,
                                    movie_block_rows=mbr, book_block_rows=nbr)
        return res, time.perf_counter() - t0

    lines = []
    peak = matmul_peak(cores, d)
    peak_best = max(peak.values())
    for name, g in peak.items():
        print(f"peak  {name:28s} {g:8.1f} GFLOP/s", flush=True)

    # (a) naive Spark vs this job
    if a.naive_size.lower() != "none":
        m, n = parse_size(a.naive_size)
        mp, bp, _, _ = tables(m, n)
        run_job(m, n, mp, bp)                              # warm-up: Python workers, torch import
        res, t_job = run_job(m, n, mp, bp)
        t_naive = naive_spark(spark, mp, bp, str(work / f"naive_{m}x{n}"), k)
        same = (spark.read.format("delta").load(str(work / f"naive_{m}x{n}")).select("movie_id", "rank", "book_id")
                .subtract(spark.read.format("delta").load(res.path).select("movie_id", "rank", "book_id")).count())
        lines.append(f"(a) naive/job at {m}x{n}: naive {t_naive:.1f}s, job {t_job:.1f}s -> ratio {t_naive / t_job:.1f}x "
                     f"(target >= 50x); rows differing from the naive ranking: {same}")
        print(lines[-1], flush=True)

    # (b), (c) and growth
    growth = []
    for size in a.sizes.split(","):
        m, n = parse_size(size)
        mp, bp, mv, bv = tables(m, n)
        if not growth and a.naive_size.lower() == "none":
            run_job(min(m, 2000), min(n, 5000), *tables(min(m, 2000), min(n, 5000))[:2])   # warm-up
        res, t_job = run_job(m, n, mp, bp)
        flops = 2.0 * m * n * d
        g_job = flops / t_job / 1e9
        growth.append((m, n, t_job))
        msg = (f"size {m}x{n}: job {t_job:.1f}s (blocks {res.seconds_blocks:.1f}s, kernel+merge+write {res.seconds_score:.1f}s, "
               f"{res.movie_blocks}x{res.book_blocks} block pairs) = {g_job:.1f} GFLOP/s")
        if not a.no_torch:
            ti, ts, t_torch = torch_baseline(mv, bv, k, cores, min(mbr, 4096), nbr)   # 4096-row chunks: 256 MiB of scores
            # agreement: job's top-k ids vs torch's (differences only where scores tie within float32 error)
            got = {}
            for r in spark.read.format("delta").load(res.path).select("movie_id", "book_id").collect():
                got.setdefault(r.movie_id, set()).add(int(r.book_id[1:]))
            sample = range(0, m, max(1, m // 2000))
            agree = np.mean([len(got.get(f"m{i:08d}", set()) & set(ti[i].tolist())) / k for i in sample])
            msg += (f"\n    (b) torch single process {t_torch:.1f}s ({flops / t_torch / 1e9:.1f} GFLOP/s) -> "
                    f"torch/job = {t_torch / t_job:.2f} (target >= 0.7); top-k agreement {agree:.4f}")
        msg += f"\n    (c) job {g_job:.1f} GFLOP/s / measured peak {peak_best:.1f} = {g_job / peak_best:.2f}"
        lines.append(msg)
        print(msg, flush=True)
    if len(growth) > 1:
        (m0, n0, t0), *rest = growth
        for m, n, t in rest:
            lines.append(f"growth {m0}x{n0} -> {m}x{n}: pairs x{m * n / (m0 * n0):.1f}, time x{t / t0:.2f}")
    print("\n# summary (one run, load avg now %.1f)" % os.getloadavg()[0])
    for line in lines:
        print(line)
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
