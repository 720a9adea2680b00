"""Catalogs and known links collected to the driver, for training and evaluation.

Both run on the driver (torch, scikit-learn) over catalogs of thousands to tens of
thousands of rows, so Spark reads, validates, deduplicates and resolves the pair file,
and the model inputs are collected once as pandas frames.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pandas as pd

from lfr.settings import Settings

log = logging.getLogger(__name__)
MODEL_INPUT_COLUMNS = ["id", "title", "description", "genres"]


@dataclass
class DriverInputs:
    movies: pd.DataFrame
    books: pd.DataFrame
    #: resolved (movie_id, book_id) links; None when no pair file is used
    links: pd.DataFrame | None
    #: pair-file rows that did not resolve to a distinct catalog link
    n_unresolved: int = 0


def collect_driver_inputs(spark: Any, settings: Settings, use_pairs: bool = True,
                          book_columns: tuple = ()) -> DriverInputs:
    """Valid catalog rows (model input columns) and, when ``catalogs.pairs`` is set, the links.
    ``book_columns``: more catalog columns for the books (X-Cross pairs books by ``authors``)."""
    from lfr.data.catalog import load_catalog
    from lfr.data.pairs import read_pairs
    from lfr.data.readers import read_csv

    movies_df, _ = load_catalog(spark, settings, "movies")
    books_df, _ = load_catalog(spark, settings, "books")
    movies_df, books_df = movies_df.cache(), books_df.cache()
    pairs_path = settings.catalogs.get("pairs")
    links, n_unresolved = None, 0
    if use_pairs and pairs_path:
        # read_pairs needs the full catalog rows (year, authors) to resolve titles to ids.
        links = read_pairs(spark, str(pairs_path), movies_df, books_df).toPandas()
        n_unresolved = max(0, read_csv(spark, str(pairs_path)).count() - len(links))
    movies = movies_df.select(*MODEL_INPUT_COLUMNS).toPandas()
    books = books_df.select(*MODEL_INPUT_COLUMNS, *book_columns).toPandas()
    log.info("driver inputs: %d movies, %d books, %s", len(movies), len(books),
             f"{len(links)} known links ({n_unresolved} pair-file rows unresolved)" if links is not None
             else "no pair file")
    return DriverInputs(movies, books, links, n_unresolved)
