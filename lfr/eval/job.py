"""Spark side of the evaluation: read the catalogs and links, collect them to pandas, evaluate.

The catalogs are small (thousands of rows), so they are collected to the driver once; the
evaluation itself (``lfr.eval.runner``) is plain pandas/numpy/torch on the driver.
"""
from __future__ import annotations

import logging

import pandas as pd

from lfr.config import ConfigError, is_uri
from lfr.eval.report import format_tables, write_report
from lfr.eval.runner import EvalResult, run_protocols

log = logging.getLogger(__name__)


def collect_inputs(spark, cfg) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, int]:
    """``(movies, books, links, n_unresolved)`` as pandas; the evaluation needs a pair file. The books
    keep ``authors``: the strict protocol removes their names from the linked films' texts."""
    from lfr.data import collect_driver_inputs

    if not (cfg.get("catalogs") or {}).get("pairs"):
        raise ConfigError("evaluation needs ground-truth links: set catalogs.pairs to a pair file")
    inputs = collect_driver_inputs(spark, cfg, book_columns=("authors",))
    return inputs.movies, inputs.books, inputs.links, inputs.n_unresolved


def evaluate(spark, cfg, *, reports_dir: str, artifact: str | None = None) -> tuple[dict[str, EvalResult], dict]:
    """Run the evaluation under every ``eval.protocols`` entry and write ``report.md``/``metrics.png``/
    ``metrics.json`` under ``reports_dir``; returns ``({protocol: EvalResult}, paths)``.

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
    results = run_protocols(movies, books, links, cfg, trained_model=trained, n_unresolved_pairs=n_unresolved)
    paths = write_report(results, out_dir)
    print(format_tables(results), flush=True)
    for protocol, result in results.items():
        for note in result.notes:
            print(f"note ({protocol}): {note}", flush=True)
    log.info("evaluation report: %s", paths["report"])
    return results, paths
