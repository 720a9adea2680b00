"""Benchmark of the embedding path (not a test: the speed target lives here, never in tests).

    .venv/bin/python bench/embed.py                       # 2,000 real descriptions, all cores
    .venv/bin/python bench/embed.py --n 200 --threads 2   # quick check on a busy machine
    .venv/bin/python bench/embed.py --model-dir work/models/lightfusionrec --out work/reports/bench_embed.json

The same N items (real descriptions: half books, half movies, the first valid rows of
``--data-dir``'s catalogs by id) are embedded, on the same T cores, by

(a) the Spark path: ``udfs.embed`` on a ``local[T]`` session (``spark.task.cpus=1``: T tasks x 1
    torch thread), the items cached in Spark, partitioned like the pipeline does
    (``lfr.embed.pipeline.embed_partitions``), timed end to end as a ``noop`` write of the
    embedding column. Session start-up is excluded. Pass 1 (cold) also starts the Python
    workers and loads the model in each; the reported number is the best warm pass.
(b) a plain single-process loop: ``model.embed`` over the same items with
    ``torch.set_num_threads(T)`` (model already loaded).

Prints items/s for both and the ratio spark/plain (target >= 0.85). The model: ``--model-dir``,
or by default a freshly built, untrained model on the configured encoder (MiniLM by default):
throughput does not depend on training.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

log = logging.getLogger("bench.embed")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"), help="catalog folder (default ../shared/data)")
    p.add_argument("--n", type=int, default=2000, help="items to embed (half books, half movies)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="cores for both paths (local[T] / torch threads)")
    p.add_argument("--model-dir", default=None, help="model artifact (default: a fresh untrained model on model.encoder)")
    p.add_argument("--batch-size", type=int, default=None, help="model batch size (default embed.batch_size)")
    p.add_argument("--partitions", type=int, default=None, help="Spark partitions (default: as the pipeline, T)")
    p.add_argument("--passes", type=int, default=2, help="timed Spark passes (the first is cold); plain loop: passes-1, min 1")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    return p.parse_args(argv)


def build_default_model(cfg, books, movies, folder: str) -> str:
    from lfr.model import build_model

    corpus = [list(g) for g in books["genres"]] + [list(g) for g in movies["genres"]]
    model = build_model(cfg["model"], corpus)
    model.save(folder, extra_manifest={"bench": "untrained head, for throughput only"})
    return folder


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("py4j", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from lfr.config import load_config
    from lfr.spark import build_session

    t_threads = max(1, int(args.threads))
    cfg = load_config(overrides=[
        f"paths.data_dir={args.data_dir}", f"spark.master=local[{t_threads}]", "spark.task.cpus=1",
        f"spark.default.parallelism={t_threads}", "spark.ui.enabled=false", "spark.python.worker.reuse=true",
        *args.conf,
    ])
    batch_size = int(args.batch_size or cfg["embed"]["batch_size"])
    spark = build_session(cfg)
    spark.sparkContext.setLogLevel("ERROR")

    import numpy as np
    import torch

    from lfr.data import load_catalog
    from lfr.embed.pipeline import embed_partitions
    from lfr.embed.ship import ship_artifact
    from lfr.model import load
    from udfs.embed import embed_column

    cols = ["id", "title", "description", "genres"]
    books = load_catalog(spark, cfg, "books")[0].select(*cols).orderBy("id").limit(args.n - args.n // 2).toPandas()
    movies = load_catalog(spark, cfg, "movies")[0].select(*cols).orderBy("id").limit(args.n // 2).toPandas()
    import pandas as pd

    items = pd.concat([books, movies], ignore_index=True)
    items["genres"] = items["genres"].map(lambda g: [str(x) for x in g])
    n = len(items)
    chars = int(items["description"].str.len().sum())
    log.info("%d items (%d books, %d movies), %.0f chars on average", n, len(books), len(movies), chars / max(n, 1))

    model_dir = args.model_dir
    if model_dir is None:
        model_dir = build_default_model(cfg, books, movies, os.path.join(tempfile.mkdtemp(prefix="lfr-bench-"), "model"))
    model = load(model_dir)
    log.info("model %s (%s, %s, dim %d), batch size %d, %d threads", model.model_version, model.manifest["encoder"]["name"],
             model.manifest["precision"], model.output_dim, batch_size, t_threads)

    # (b) plain single-process torch loop, same threads
    torch.set_num_threads(t_threads)
    titles, descs, genres = list(items["title"]), list(items["description"]), list(items["genres"])
    model.embed(titles[:batch_size], descs[:batch_size], genres[:batch_size], batch_size=batch_size)  # warm-up
    plain_times = []
    for _ in range(max(1, args.passes - 1)):
        t0 = time.perf_counter()
        ref_vecs = model.embed(titles, descs, genres, batch_size=batch_size)
        plain_times.append(time.perf_counter() - t0)
    plain = n / min(plain_times)
    log.info("plain torch loop: %s s -> %.1f items/s", [round(t, 2) for t in plain_times], plain)
    torch.set_num_threads(1)  # the driver's torch stays idle while Spark runs

    # (a) the Spark path
    parts = args.partitions or embed_partitions(spark, n, batch_size, cfg["embed"]["partitions"])
    plain_items = items.astype({"id": object, "title": object, "description": object})  # Arrow-friendly (pandas 3 str dtype)
    df = spark.createDataFrame(plain_items, "id string, title string, description string, genres array<string>")
    df = df.repartition(parts).persist()
    df.count()
    ref = ship_artifact(spark, model_dir)
    col = embed_column(ref, "title", "description", "genres", batch_size=batch_size).alias("embedding")
    spark_times = []
    for _ in range(max(2, args.passes)):
        t0 = time.perf_counter()
        df.select("id", col).write.format("noop").mode("overwrite").save()
        spark_times.append(time.perf_counter() - t0)
    cold, warm = spark_times[0], min(spark_times[1:])
    spark_rate = n / warm
    log.info("spark local[%d], %d partitions: %s s (first pass cold: workers start, model loads) -> %.1f items/s warm",
             t_threads, parts, [round(t, 2) for t in spark_times], spark_rate)

    # same numbers on both paths
    got = df.select("id", col).toPandas().set_index("id").loc[list(items["id"]), "embedding"]
    max_diff = float(np.abs(np.stack(got.to_list()) - ref_vecs).max())

    ratio = spark_rate / plain
    result = {
        "items": n, "threads": t_threads, "partitions": parts, "batch_size": batch_size,
        "model_version": model.model_version, "encoder": model.manifest["encoder"]["name"],
        "precision": model.manifest["precision"],
        "plain_items_per_s": round(plain, 2), "spark_items_per_s": round(spark_rate, 2),
        "spark_cold_items_per_s": round(n / cold, 2), "ratio": round(ratio, 3), "target": 0.85,
        "max_abs_diff_spark_vs_plain": max_diff, "plain_seconds": plain_times, "spark_seconds": spark_times,
    }
    print(f"plain torch loop : {plain:8.1f} items/s ({t_threads} threads, 1 process)")
    print(f"spark UDF path   : {spark_rate:8.1f} items/s (local[{t_threads}], {parts} partitions, warm; cold {n / cold:.1f})")
    print(f"ratio spark/plain: {ratio:8.3f} (target >= 0.85)   max |diff| {max_diff:.2e}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
