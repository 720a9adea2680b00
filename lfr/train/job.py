"""Spark side of training: read the catalogs (and pairs), collect to pandas, train, publish.

The catalogs are small enough (thousands to tens of thousands of rows) to
train on the driver; Spark does the reading, validation, de-duplication and
pair resolution (``lfr.data``), and the training itself is ``lfr.train.train``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

import pandas as pd

from lfr.config import is_uri
from lfr.model.artifact import ArtifactError, model_version_of, read_manifest
from lfr.train.publish import publish_model
from lfr.train.trainer import TrainResult, train

log = logging.getLogger(__name__)


def collect_inputs(spark: Any, cfg: Any, use_pairs: bool = True) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """``(movies, books, positives or None)`` as pandas (valid catalog rows only)."""
    from lfr.data import collect_driver_inputs

    inputs = collect_driver_inputs(spark, cfg, use_pairs=use_pairs)
    return inputs.movies, inputs.books, inputs.links


def format_history(result: TrainResult) -> str:
    lines = ["epoch  train_loss  val_loss  val_auc  seconds"]
    for h in result.history:
        fmt = lambda v, p: "   n/a" if v is None else f"{v:.{p}f}"  # noqa: E731
        lines.append(f"{h['epoch']:>5}  {fmt(h['train_loss'], 5):>10}  {fmt(h['val_loss'], 5):>8}  "
                     f"{fmt(h['val_auc'], 4):>7}  {h['seconds']:>7}")
    return "\n".join(lines)


def inputs_key(movies: pd.DataFrame, books: pd.DataFrame, positives: pd.DataFrame | None, cfg: Any) -> str:
    """sha256 of everything training depends on: the catalog rows, the known links and
    the ``model``/``train`` settings. Training is seeded, so equal keys give the same model."""
    h = hashlib.sha256(json.dumps({"model": cfg.get("model"), "train": cfg.get("train")}, sort_keys=True,
                                  default=str).encode())
    for frame in (movies, books, positives):
        if frame is None:
            h.update(b"#none")
            continue
        cols = sorted(frame.columns)
        rows = frame[cols].astype(str).sort_values(cols).to_csv(index=False)
        h.update(rows.encode())
    return h.hexdigest()


def _published(target: str) -> dict | None:
    """The manifest of the model published at ``target``; None when there is none (or it is remote)."""
    if is_uri(target):
        return None
    try:
        return read_manifest(target)
    except ArtifactError:   # missing or unreadable: retrain
        return None


def run_training(spark: Any, cfg: Any, *, model_dir: str, use_pairs: bool = True,
                 progress: bool = True, force: bool = False) -> tuple[TrainResult | None, str]:
    """Train on the configured catalogs and publish to ``model_dir`` (the job passes ``paths.model_dir``).

    ``cfg``: what ``collect_driver_inputs`` and ``lfr.train.train`` read (catalogs, validation,
    model, train sections).

    Idempotent: when the published model was trained on the same inputs and settings
    (``inputs_key`` in its manifest) nothing is retrained -- a new model would get a new
    ``model_version`` and force every embedding to be recomputed -- unless ``force``.
    Returns ``(result or None when skipped, model_version)``. The previous model stays
    in place if anything fails.
    """
    started, target = time.time(), model_dir
    movies, books, positives = collect_inputs(spark, cfg, use_pairs=use_pairs)
    key = inputs_key(movies, books, positives, cfg)
    published = _published(target)
    if not force and published is not None and published.get("inputs_key") == key:
        version = model_version_of(published, target)
        log.info("model %s at %s is up to date (same catalogs, links and settings): not retraining "
                 "(--force retrains)", version, target)
        return None, version
    read_seconds = time.time() - started
    result = train(movies, books, positives, cfg, progress=progress)
    extra = {**result.manifest_extra(), "inputs_key": key}
    version = publish_model(result.model, target, extra_manifest=extra, spark=spark)
    print(format_history(result), flush=True)
    log.info("trained model %s (%s): %s, training %.1fs (reading %.1fs), artifact %s",
             version, result.settings.get("recipe", "paper"), result.pair_stats, result.seconds, read_seconds, target)
    return result, version
