"""Spark side of the evaluation: read the catalogs and links, collect them to pandas, evaluate.

The catalogs are small (thousands of rows), so they are collected to the driver once; the
evaluation itself (``lfr.eval.runner``) is plain pandas/numpy/torch on the driver.

The X-Cross evaluation (``spark-submit jobs/evaluate.py --xcross``, ``evaluate_xcross_job``)
collects the same inputs (books with ``authors``: same-author positives of the book adapter),
runs ``lfr.eval.xcross.evaluate_xcross`` and writes its own report next to the main one
(``xcross_report.md``, ``xcross_metrics.json``, ``xcross_curve.png``). Per (method, fraction, fold)
results go to ``<reports_dir>/xcross_progress-<digest>.jsonl``: a rerun with the same inputs and
settings resumes instead of starting over.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from lfr.config import ConfigError, is_uri
from lfr.eval.report import format_tables, write_report
from lfr.eval.runner import EvalResult, run_protocols
from lfr.settings import Settings

log = logging.getLogger(__name__)


def _check_pairs(settings: Settings) -> None:
    if not settings.catalogs.get("pairs"):
        raise ConfigError("evaluation needs ground-truth links: set catalogs.pairs to a pair file")


def collect_inputs(spark, settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, int]:
    """``(movies, books, links, n_unresolved)`` as pandas; the evaluation needs a pair file. The books
    keep ``authors``: the strict protocol removes their names from the linked films' texts."""
    from lfr.data import collect_driver_inputs

    _check_pairs(settings)
    inputs = collect_driver_inputs(spark, settings, book_columns=("authors",))
    return inputs.movies, inputs.books, inputs.links, inputs.n_unresolved


def evaluate(spark, settings: Settings, *, reports_dir: str,
             artifact: str | None = None) -> tuple[dict[str, EvalResult], dict]:
    """Run the evaluation under every ``eval.protocols`` entry and write ``report.md``/``metrics.png``/
    ``metrics.json`` under ``reports_dir``; returns ``({protocol: EvalResult}, paths)``.

    ``artifact``: evaluate this saved model as the trained row instead of training one on the
    split's training links (flagged in the report: it may have seen the held-out links).
    """
    out_dir = reports_dir
    if is_uri(out_dir):
        raise ConfigError(f"paths.reports_dir must be a local folder for the evaluation report, got {out_dir}")
    movies, books, links, n_unresolved = collect_inputs(spark, settings)
    trained = None
    if artifact:
        from lfr.model import load

        trained = load(artifact, precision=settings.model.precision)  # the run's, as embed jobs
    results = run_protocols(movies, books, links, settings, trained_model=trained, n_unresolved_pairs=n_unresolved)
    paths = write_report(results, out_dir)
    print(format_tables(results), flush=True)
    for protocol, result in results.items():
        for note in result.notes:
            print(f"note ({protocol}): {note}", flush=True)
    log.info("evaluation report: %s", paths["report"])
    return results, paths


def progress_digest(movies, books, links, settings: Settings, candidates: int | None, max_length: int | None) -> str:
    """What a finished (method, fraction, fold) result depends on: settings (the ``xcross``, ``eval``
    and ``model`` sections), inputs and the code that computes it (a fix to X-Cross or the evaluation
    must not reuse ranks of the old code)."""
    from lfr.digest import code_digest

    h = hashlib.sha256(json.dumps({"xcross": settings.xcross.as_dict(), "eval": settings.eval.as_dict(),
                                   "model": settings.model.as_dict(),
                                   "candidates": candidates, "max_length": max_length,
                                   "code": code_digest(["lfr.model", "lfr.eval", "lfr.train"])},
                                  sort_keys=True, default=str).encode())
    for frame, cols in ((movies, ["id", "title", "description"]), (books, ["id", "title", "description"]),
                        (links, ["movie_id", "book_id"])):
        h.update(frame[cols].astype(str).sort_values(cols).to_csv(index=False).encode())
    return h.hexdigest()[:16]


def evaluate_xcross_job(spark: Any, settings: Settings, *, reports_dir: str, candidates: int | None = None,
                        fractions: Sequence[float] = (1.0, 0.25, 0.5, 0.75), max_length: int | None = None) -> dict:
    """Collect, evaluate, write the report; returns the written paths."""
    from lfr.data import collect_driver_inputs
    from lfr.eval.xcross import evaluate_xcross
    from lfr.eval.xcross_report import write_xcross_report

    if is_uri(reports_dir):
        raise ConfigError(f"paths.reports_dir must be a local folder for the evaluation report, got {reports_dir}")
    _check_pairs(settings)
    inputs = collect_driver_inputs(spark, settings, book_columns=("authors",))
    digest = progress_digest(inputs.movies, inputs.books, inputs.links, settings, candidates, max_length)
    ev = evaluate_xcross(inputs.movies, inputs.books, inputs.links, settings, fractions=fractions,
                         candidates=candidates, max_length=max_length, batch_size=settings.embed.batch_size,
                         progress_path=Path(reports_dir) / f"xcross_progress-{digest}.jsonl")
    paths = write_xcross_report(ev, reports_dir)
    print(Path(paths["report"]).read_text(encoding="utf-8"), flush=True)
    log.info("X-Cross evaluation report: %s", paths["report"])
    return paths
