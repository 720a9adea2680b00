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
from lfr.digest import code_digest
from lfr.model.artifact import ArtifactError, model_version_of, read_manifest
from lfr.settings import Settings
from lfr.train.publish import publish_model
from lfr.train.result import TrainResult
from lfr.train.trainer import train

log = logging.getLogger(__name__)
MODEL_KINDS = ("lightfusionrec", "xcross")
# The code a model of each kind is made by: a change to any of these files retrains (inputs_key).
TRAINING_CODE = {"lightfusionrec": ("lfr.model", "lfr.train"), "xcross": ("lfr.model", "lfr.train")}


def model_kind(settings: Settings) -> str:
    """``model.kind``: which model the job trains (lightfusionrec: lfr.train.trainer; xcross: lfr.train.xcross)."""
    kind = settings.model.kind
    if kind not in MODEL_KINDS:
        raise ValueError(f"model.kind must be one of {', '.join(MODEL_KINDS)}, got {kind!r}")
    return kind


def collect_inputs(spark: Any, settings: Settings, use_pairs: bool = True
                   ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """``(movies, books, positives or None)`` as pandas (valid catalog rows only). X-Cross reads the
    books' authors (its book pairs) and at most ``xcross.adapter_max_items`` items of each catalog
    (label-free pairs need no whole catalog; a sample keeps the driver bounded at any catalog size)."""
    from lfr.data import collect_driver_inputs

    if model_kind(settings) == "xcross":
        x = settings.xcross
        inputs = collect_driver_inputs(spark, settings, use_pairs=use_pairs, book_columns=("authors",),
                                       max_items=x.adapter_max_items, seed=x.seed)
    else:
        inputs = collect_driver_inputs(spark, settings, use_pairs=use_pairs)
    return inputs.movies, inputs.books, inputs.links


HISTORY_COLUMNS = ("stage", "train_loss", "val_loss", "val_auc", "val_mrr", "seconds")


def format_history(result: TrainResult) -> str:
    """One line per epoch, with the columns the recipe logs: the paper recipe has val_loss/val_auc,
    the contrastive one stage/val_mrr (a fixed set of columns crashed the job after training)."""
    cols = [c for c in HISTORY_COLUMNS if any(c in h for h in result.history)]
    fmt = lambda v: "n/a" if v is None else f"{v:.5f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["epoch  " + "  ".join(f"{c:>10}" for c in cols)]
    for h in result.history:
        lines.append(f"{h['epoch']:>5}  " + "  ".join(f"{fmt(h.get(c)):>10}" for c in cols))
    return "\n".join(lines)


def format_xcross_history(result: Any) -> str:
    """One line per X-Cross stage: steps, first and last InfoNCE loss, the held-aside pairs' loss before
    training and at its best (adapters with ``xcross.adapter_val_fraction``), seconds."""
    lines = ["stage              steps  first_loss  last_loss  val_before  best_val  seconds"]
    for stage, seconds in result.stage_seconds.items():
        rows = [h for h in result.history if h["stage"] == stage]
        losses = [h["loss"] for h in rows if h["step"] >= 0]
        vals = [h["val_loss"] for h in rows if "val_loss" in h]
        first, last = (f"{losses[0]:.4f}", f"{losses[-1]:.4f}") if losses else ("n/a", "n/a")
        before, best = (f"{vals[0]:.4f}", f"{min(vals):.4f}") if vals else ("n/a", "n/a")
        lines.append(f"{stage:<18} {len(losses):>5}  {first:>10}  {last:>9}  {before:>10}  {best:>8}  {seconds:>7.1f}")
    return "\n".join(lines)


def _train(kind: str, movies: pd.DataFrame, books: pd.DataFrame, positives: pd.DataFrame | None,
           settings: Settings, progress: bool) -> tuple[Any, str]:
    """``(result, printable training log)`` of the ``model.kind`` model; both results have
    ``model.save(dir, extra_manifest=...)`` and ``manifest_extra()``, so publishing is the same."""
    if kind == "xcross":
        from lfr.train.xcross import train as train_xcross

        result = train_xcross(movies, books, positives, settings)
        return result, format_xcross_history(result)
    result = train(movies, books, positives, settings, progress=progress)
    return result, format_history(result)


def training_code_digest(kind: str) -> str:
    """sha256 of the sources of the packages that train a ``kind`` model (``TRAINING_CODE``)."""
    return code_digest(TRAINING_CODE[kind])


def inputs_key(movies: pd.DataFrame, books: pd.DataFrame, positives: pd.DataFrame | None,
               settings: Settings) -> str:
    """sha256 of everything training depends on: the catalog rows, the known links, the
    ``model``/``train`` settings (the recipe among them) and the training code
    (``training_code_digest``). Training is seeded, so equal keys give the same model; a fix to the
    training code gives a new key, so the next run retrains without ``--force``."""
    kind = model_kind(settings)
    sections = {"model": settings.model.as_dict(), "train": settings.train.as_dict()}
    if kind == "xcross":
        sections["xcross"] = settings.xcross.as_dict()
    h = hashlib.sha256(json.dumps(sections, sort_keys=True, default=str).encode())
    h.update(b"#code" + training_code_digest(kind).encode())
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


def run_training(spark: Any, settings: Settings, *, model_dir: str, use_pairs: bool = True,
                 progress: bool = True, force: bool = False) -> tuple[Any, str]:
    """Train on the configured catalogs and publish to ``model_dir`` (the job passes ``paths.model_dir``).

    ``settings``: what ``collect_driver_inputs`` and ``lfr.train.train`` read (catalogs, validation,
    model, train sections; with ``model.kind: xcross``, ``lfr.train.xcross.train`` and the xcross section).

    Idempotent: when the published model was trained on the same inputs, settings and training
    code (``inputs_key`` in its manifest) nothing is retrained -- a new model would get a new
    ``model_version`` and force every embedding to be recomputed -- unless ``force``.
    Returns ``(result or None when skipped, model_version)``. The previous model stays
    in place if anything fails.
    """
    started, target = time.time(), model_dir
    kind = model_kind(settings)
    movies, books, positives = collect_inputs(spark, settings, use_pairs=use_pairs)
    key = inputs_key(movies, books, positives, settings)
    published = _published(target)
    if not force and published is not None and published.get("inputs_key") == key:
        version = model_version_of(published, target)
        log.info("model %s at %s is up to date (same catalogs, links, settings and training code): not retraining "
                 "(--force retrains)", version, target)
        return None, version
    code = training_code_digest(kind)
    if not force and published is not None and published.get("training_code") not in (None, code):
        log.info("the training code changed since model %s was trained: retraining", published.get("model_version"))
    read_seconds = time.time() - started
    result, history = _train(kind, movies, books, positives, settings, progress)
    extra = {**result.manifest_extra(), "inputs_key": key, "training_code": code}
    version = publish_model(result.model, target, extra_manifest=extra, spark=spark)
    print(history, flush=True)
    log.info("trained model %s (%s): %s, training %.1fs (reading %.1fs), artifact %s", version,
             kind if kind == "xcross" else result.settings["recipe"], result.pair_stats, result.seconds,
             read_seconds, target)
    return result, version
