"""Spark side of the evaluation: read the catalogs and links, collect them to pandas, evaluate.

The catalogs are small (thousands of rows), so they are collected to the driver once; the
evaluation itself (``lfr.eval.runner``) is plain pandas/numpy/torch on the driver.
"""
from __future__ import annotations

import logging

import pandas as pd

from lfr.config import ConfigError, is_uri
from lfr.eval.report import format_tables, write_report
from lfr.eval.runner import EvalResult, run_evaluation

log = logging.getLogger(__name__)


def collect_inputs(spark, cfg) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, int]:
    """``(movies, books, links, n_unresolved)`` as pandas; the evaluation needs a pair file."""
    from lfr.data import collect_driver_inputs

    if not (cfg.get("catalogs") or {}).get("pairs"):
        raise ConfigError("evaluation needs ground-truth links: set catalogs.pairs to a pair file")
    inputs = collect_driver_inputs(spark, cfg)
    return inputs.movies, inputs.books, inputs.links, inputs.n_unresolved


def evaluate(spark, cfg, *, reports_dir: str, artifact: str | None = None) -> tuple[EvalResult, dict]:
    """Run the evaluation and write ``report.md``/``metrics.png``/``metrics.json`` under ``reports_dir``.

    ``artifact``: evaluate this saved model as the trained row instead of training one on the
    split's training links (flagged in the report: it may have seen the held-out links).
    """
    out_dir = reports_dir
    if is_uri(out_dir):
        raise ConfigError(f"paths.reports_dir must be a local folder for the evaluation report, got {out_dir}")
    movies, books, links, n_unresolved = collect_inputs(spark, cfg)
    trained = None
    if artifact:
        from lfr.model import load

        trained = load(artifact, precision=(cfg.get("model") or {}).get("precision"))  # the run's, as embed jobs
    result = run_evaluation(movies, books, links, cfg, trained_model=trained, n_unresolved_pairs=n_unresolved)
    paths = write_report(result, out_dir)
    print(format_tables(result), flush=True)
    for note in result.notes:
        print(f"note: {note}", flush=True)
    log.info("evaluation report: %s", paths["report"])
    return result, paths
