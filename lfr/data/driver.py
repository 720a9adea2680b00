"""Catalogs and known links collected to the driver, for training and evaluation.

Both run on the driver (torch, scikit-learn) over catalogs of thousands to tens of
thousands of rows, so Spark reads, validates, deduplicates and resolves the pair file,
and the model inputs are collected once as pandas frames. A caller that needs only a sample of
a larger catalog (X-Cross's label-free adapters) passes ``max_items``: the sample is drawn on the
Spark side, so the driver never holds more than that many rows of a catalog (plus the links' own).
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
                          book_columns: tuple = (), max_items: int | None = None, seed: int | None = None
                          ) -> DriverInputs:
    """Valid catalog rows (model input columns) and, when ``catalogs.pairs`` is set, the links.
    ``book_columns``: more catalog columns for the books (X-Cross pairs books by ``authors``).
    ``max_items``: collect at most that many rows of a larger catalog (``bounded_sample``; the links
    are resolved on the whole catalogs first and their endpoints are always kept), drawn with ``seed``
    (required with ``max_items``); None: every row."""
    from lfr.data.catalog import load_catalog
    from lfr.data.pairs import read_pairs
    from lfr.data.readers import read_csv

    movies_df, _ = load_catalog(spark, settings, "movies")
    books_df, _ = load_catalog(spark, settings, "books")
    movies_df, books_df = movies_df.cache(), books_df.cache()
    pairs_path = settings.catalogs.get("pairs")
    links, links_df, n_unresolved = None, None, 0
    if use_pairs and pairs_path:
        # read_pairs needs the full catalog rows (year, authors) to resolve titles to ids.
        links_df = read_pairs(spark, str(pairs_path), movies_df, books_df).cache()
        links = links_df.toPandas()
        n_unresolved = max(0, read_csv(spark, str(pairs_path)).count() - len(links))
    totals = None
    if max_items is not None:
        if seed is None:
            raise ValueError("a bounded sample (max_items) needs its seed")
        movies_df, n_movies = bounded_sample(movies_df, max_items, seed, id_key(), _endpoints(links_df, "movie_id"))
        books_df, n_books = bounded_sample(books_df, max_items, seed, author_key(), _endpoints(links_df, "book_id"))
        totals = {"movies": n_movies, "books": n_books}
    movies = movies_df.select(*MODEL_INPUT_COLUMNS).toPandas()
    books = books_df.select(*MODEL_INPUT_COLUMNS, *book_columns).toPandas()
    if totals:   # a sample's row order is the shuffle's: sort, so that training sees the same order every run
        movies, books = (f.sort_values("id", ignore_index=True) for f in (movies, books))
        for domain, kept in (("movies", len(movies)), ("books", len(books))):
            if kept < (total := totals[domain]):
                log.info("%s: a bounded sample of %d of %d valid rows collected to the driver (max_items %d, "
                         "seed %d, every link's item kept)", domain, kept, total, max_items, seed)
    log.info("driver inputs: %d movies, %d books, %s", len(movies), len(books),
             f"{len(links)} known links ({n_unresolved} pair-file rows unresolved)" if links is not None
             else "no pair file")
    return DriverInputs(movies, books, links, n_unresolved)


def id_key():
    """Sample key of an item: its id (films: one item per key)."""
    from pyspark.sql import functions as F

    return F.col("id")


def author_key():
    """Sample key of a book: its first author, normalised (``lfr.train.xcross`` pairs consecutive books of
    one author, so a book sample keeps or drops an author's books together); the id when it has none."""
    from pyspark.sql import functions as F

    first = F.lower(F.trim(F.get("authors", 0)))   # null for an empty list
    return F.when(first.isNotNull() & (first != ""), F.concat(F.lit("a:"), first)).otherwise(
        F.concat(F.lit("i:"), F.col("id")))


def _endpoints(links_df: Any, column: str) -> Any:
    """The distinct ids of one side of the resolved links (None without links)."""
    return None if links_df is None else links_df.select(column).distinct()


def bounded_sample(df: Any, max_items: int, seed: int, key: Any, keep_ids: Any = None) -> tuple[Any, int]:
    """``(at most max_items rows of df plus the rows whose id is in keep_ids, valid rows in df)``.

    Which rows: those with the smallest seeded hash of ``key`` (``xxhash64``), ties by id --
    deterministic for a given catalog and seed, a uniform sample of keys (rows of one key are taken
    together, except the last key drawn, which may be cut), and drawn with Spark's top-k (each
    partition keeps ``max_items`` rows), so a catalog of any size costs the driver at most
    ``max_items`` rows. A catalog that fits is returned whole."""
    from pyspark.sql import functions as F

    if int(max_items) < 1:
        raise ValueError(f"max_items must be >= 1 (null: no bound), got {max_items}")
    total = df.count()
    if total <= max_items:
        return df, total
    ranked = df.withColumn("_sample_key", F.xxhash64(key, F.lit(int(seed))))
    sample = ranked.orderBy("_sample_key", "id").limit(int(max_items)).drop("_sample_key")
    if keep_ids is not None:
        kept = df.join(keep_ids.withColumnRenamed(keep_ids.columns[0], "id"), "id", "left_semi")
        sample = sample.unionByName(kept).dropDuplicates(["id"])
    return sample, total
