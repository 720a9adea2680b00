"""Spark side of the evaluation: read the catalogs and links, collect them to pandas, evaluate.

The catalogs are small (thousands of rows), so they are collected to the driver once; the
evaluation itself (``lfr.eval.runner``) is plain pandas/numpy/torch on the driver.
"""
from __future__ import annotations

import logging
import re

import pandas as pd

from lfr.eval.report import format_tables, write_report
from lfr.eval.runner import EvalResult, run_evaluation

log = logging.getLogger(__name__)
COLUMNS = ["id", "title", "description", "genres"]
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def collect_inputs(spark, cfg) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, int]:
    """``(movies, books, links, n_unresolved)`` as pandas; ``n_unresolved`` = pair-file rows not
    resolved to a (distinct) catalog link."""
    from lfr.data import load_catalog, read_pairs
    from lfr.data.readers import read_csv

    movies_df, _ = load_catalog(spark, cfg, "movies")
    books_df, _ = load_catalog(spark, cfg, "books")
    movies_df, books_df = movies_df.cache(), books_df.cache()
    pairs_path = cfg.path("catalogs.pairs")
    # read_pairs needs the full catalog rows (year, authors) to resolve titles to ids.
    links = read_pairs(spark, pairs_path, movies_df, books_df).toPandas()
    n_rows = read_csv(spark, pairs_path).count()
    movies, books = movies_df.select(*COLUMNS).toPandas(), books_df.select(*COLUMNS).toPandas()
    log.info("eval inputs: %d movies, %d books, %d links from %d pair-file rows",
             len(movies), len(books), len(links), n_rows)
    return movies, books, links, max(0, n_rows - len(links))


def evaluate(spark, cfg, artifact: str | None = None, reports_dir: str | None = None) -> tuple[EvalResult, dict]:
    """Run the evaluation and write ``report.md``/``metrics.png``/``metrics.json``.

    ``artifact``: evaluate this saved model as the trained row instead of training one on the
    split's training links (flagged in the report: it may have seen the held-out links).
    """
    out_dir = reports_dir or cfg.path("paths.reports_dir")
    if _URI.match(out_dir):
        raise ValueError(f"paths.reports_dir must be a local folder for the evaluation report, got {out_dir}")
    movies, books, links, n_unresolved = collect_inputs(spark, cfg)
    trained = None
    if artifact:
        from lfr.model import load

        trained = load(artifact)
    result = run_evaluation(movies, books, links, cfg, trained_model=trained, n_unresolved_pairs=n_unresolved)
    paths = write_report(result, out_dir)
    print(format_tables(result), flush=True)
    for note in result.notes:
        print(f"note: {note}", flush=True)
    log.info("evaluation report: %s", paths["report"])
    return result, paths
