"""Spark side of training: read the catalogs (and pairs), collect to pandas, train, publish.

The catalogs are small enough (thousands to tens of thousands of rows) to
train on the driver; Spark does the reading, validation, de-duplication and
pair resolution (``lfr.data``), and the training itself is ``lfr.train.train``.
"""
from __future__ import annotations

import logging
import time
from typing import Any

import pandas as pd

from lfr.train.publish import publish_model
from lfr.train.trainer import TrainResult, train

log = logging.getLogger(__name__)
COLUMNS = ["id", "title", "description", "genres"]


def collect_inputs(spark: Any, cfg: Any, use_pairs: bool = True) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """``(movies, books, positives or None)`` as pandas (valid catalog rows only)."""
    from lfr.data import load_catalog, read_pairs

    movies_df, _ = load_catalog(spark, cfg, "movies")
    books_df, _ = load_catalog(spark, cfg, "books")
    movies_df, books_df = movies_df.cache(), books_df.cache()
    pairs_path = (cfg.get("catalogs") or {}).get("pairs")
    positives = None
    if use_pairs and pairs_path:
        positives = read_pairs(spark, str(pairs_path), movies_df, books_df).toPandas()
    movies, books = movies_df.select(*COLUMNS).toPandas(), books_df.select(*COLUMNS).toPandas()
    log.info("training inputs: %d movies, %d books, %s", len(movies), len(books),
             f"{len(positives)} known links" if positives is not None else "genre-agreement positives")
    return movies, books, positives


def format_history(result: TrainResult) -> str:
    lines = ["epoch  train_loss  val_loss  val_auc  seconds"]
    for h in result.history:
        fmt = lambda v, p: "   n/a" if v is None else f"{v:.{p}f}"  # noqa: E731
        lines.append(f"{h['epoch']:>5}  {fmt(h['train_loss'], 5):>10}  {fmt(h['val_loss'], 5):>8}  "
                     f"{fmt(h['val_auc'], 4):>7}  {h['seconds']:>7}")
    return "\n".join(lines)


def run_training(spark: Any, cfg: Any, model_dir: str | None = None, use_pairs: bool = True,
                 progress: bool = True) -> tuple[TrainResult, str]:
    """Train on the configured catalogs and publish to ``model_dir`` (default ``paths.model_dir``).

    Returns ``(result, model_version)``. The previous model stays in place if anything fails.
    """
    started = time.time()
    target = model_dir or cfg.path("paths.model_dir")
    movies, books, positives = collect_inputs(spark, cfg, use_pairs=use_pairs)
    read_seconds = time.time() - started
    result = train(movies, books, positives, cfg, progress=progress)
    version = publish_model(result.model, target, extra_manifest=result.manifest_extra(), spark=spark)
    print(format_history(result), flush=True)
    log.info("trained model %s: %d train pairs / %d val pairs, training %.1fs (reading %.1fs), artifact %s",
             version, result.pair_stats["train_pairs"], result.pair_stats["val_pairs"], result.seconds,
             read_seconds, target)
    return result, version
