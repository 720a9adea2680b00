"""Spark side of the X-Cross evaluation (``spark-submit jobs/evaluate.py --xcross``).

Reads the catalogs (books with ``authors``: same-author positives of the book adapter) and the
links with Spark, collects them to the driver, runs ``evaluate_xcross`` and writes its own report
next to the main one (``xcross_report.md``, ``xcross_metrics.json``, ``xcross_curve.png``).
Per (method, fraction, fold) results go to ``<reports_dir>/xcross_progress-<digest>.jsonl``: a
rerun with the same inputs and settings resumes instead of starting over.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Sequence

from lfr.config import ConfigError, is_uri

log = logging.getLogger(__name__)


def progress_digest(movies, books, links, cfg: Any, candidates: int | None, max_length: int | None) -> str:
    """What a finished (method, fraction, fold) result depends on: settings, inputs and the code that
    computes it (a fix to X-Cross or the evaluation must not reuse ranks of the old code)."""
    from lfr.digest import code_digest

    h = hashlib.sha256(json.dumps({"xcross": cfg.get("xcross"), "eval": cfg.get("eval"), "model": cfg.get("model"),
                                   "candidates": candidates, "max_length": max_length,
                                   "code": code_digest(["lfr.xcross", "lfr.model", "lfr.eval", "lfr.train"])},
                                  sort_keys=True, default=str).encode())
    for frame, cols in ((movies, ["id", "title", "description"]), (books, ["id", "title", "description"]),
                        (links, ["movie_id", "book_id"])):
        h.update(frame[cols].astype(str).sort_values(cols).to_csv(index=False).encode())
    return h.hexdigest()[:16]


def evaluate_xcross_job(spark: Any, cfg: Any, *, reports_dir: str, candidates: int | None = None,
                        fractions: Sequence[float] = (1.0, 0.25, 0.5, 0.75), max_length: int | None = None) -> dict:
    """Collect, evaluate, write the report; returns the written paths."""
    from lfr.data import collect_driver_inputs
    from lfr.xcross.evaluate import evaluate_xcross
    from lfr.xcross.report import write_xcross_report

    if is_uri(reports_dir):
        raise ConfigError(f"paths.reports_dir must be a local folder for the evaluation report, got {reports_dir}")
    if not (cfg.get("catalogs") or {}).get("pairs"):
        raise ConfigError("evaluation needs ground-truth links: set catalogs.pairs to a pair file")
    inputs = collect_driver_inputs(spark, cfg, book_columns=("authors",))
    digest = progress_digest(inputs.movies, inputs.books, inputs.links, cfg, candidates, max_length)
    ev = evaluate_xcross(inputs.movies, inputs.books, inputs.links, dict(cfg), fractions=fractions,
                         candidates=candidates, max_length=max_length,
                         batch_size=int(cfg["embed"]["batch_size"]),
                         progress_path=Path(reports_dir) / f"xcross_progress-{digest}.jsonl")
    paths = write_xcross_report(ev, reports_dir)
    print(Path(paths["report"]).read_text(encoding="utf-8"), flush=True)
    log.info("X-Cross evaluation report: %s", paths["report"])
    return paths
