"""Hub statistics of a recommendations table: how evenly the books are recommended.

Why: an exact cosine top-k over high-dimensional embeddings has *hubs*, a few books in the
top-k of a large share of all films (on the full catalogs *Hamlet* reached 7% of the films'
top-10 lists). Accuracy on the known links does not show it; a user browsing the table does.
Every run measures it from the table it wrote (one aggregation) and reports it beside its counts.

For ``top`` (10, or ``k`` when smaller): the k-occurrence ``N(b)`` of a book is the number of
films with ``b`` among their first ``top``. Over all books that were scored (never recommended
ones count with 0):

* ``max_occurrence`` and ``max_share`` (of the films), the book with the most lists;
* ``never_recommended``: the share of scored books in no list;
* ``gini`` of ``N`` (0: every book equally often; near 1: a few books take every list);
* ``skew``: the skewness of ``N`` (the hubness measure of Radovanović et al., 2010).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

HUB_TOP = 10


@dataclass(frozen=True)
class HubStats:
    top: int
    films: int
    books: int                 # books scored (the denominator: never recommended ones count with 0)
    max_occurrence: int
    max_share: float           # max_occurrence / films
    hub_book: Optional[str]
    never_recommended: float   # share of the scored books in no film's list
    gini: float
    skew: float

    def as_dict(self) -> dict:
        return asdict(self)


def occurrence_stats(counts: np.ndarray, n_books: int) -> tuple[float, float, float]:
    """``(never_recommended, gini, skew)`` of per-book occurrence counts, padded with zeros to ``n_books``."""
    values, books = np.unique(np.asarray(counts, dtype=np.int64), return_counts=True)
    return histogram_stats(values, books, n_books)


def histogram_stats(values: np.ndarray, books: np.ndarray, n_books: int) -> tuple[float, float, float]:
    """``(never_recommended, gini, skew)`` from the histogram of the occurrence counts: ``books[i]`` books
    are in ``values[i]`` lists; the books of ``n_books`` that no histogram row covers are in none."""
    v = np.asarray(values, dtype=np.float64)
    m = np.asarray(books, dtype=np.float64)
    zeros = max(float(n_books) - float(m.sum()), 0.0)
    v, m = np.append(v, 0.0), np.append(m, zeros)
    order = np.argsort(v, kind="stable")
    v, m = v[order], m[order]
    n, total = float(m.sum()), float((v * m).sum())
    if n == 0 or total == 0:
        return (1.0 if n else 0.0), 0.0, 0.0
    start = np.cumsum(m) - m                        # books before each run of equal counts (ascending)
    weighted = float(np.sum(v * (m * start + m * (m + 1) / 2)))   # sum of position * count over every book
    gini = 2.0 * weighted / (n * total) - (n + 1) / n
    mean = total / n
    var = float(np.sum(m * (v - mean) ** 2)) / n
    skew = float(np.sum(m * (v - mean) ** 3)) / n / var ** 1.5 if var > 0 else 0.0
    return float(m[v == 0].sum() / n), float(gini), skew


def hub_stats(recs: DataFrame, films: int, n_books: int, k: int, top: int = HUB_TOP) -> HubStats:
    """:class:`HubStats` of ``recs`` (``movie_id, rank, book_id``) over its first ``min(top, k)`` ranks;
    ``films`` / ``n_books``: the films and books that were scored. Only the histogram of the per-book
    counts (one row per distinct count, at most ``films`` rows) and the top book come to the driver."""
    top = min(int(top), int(k))
    per_book = recs.filter(F.col("rank") <= top).groupBy("book_id").agg(F.count("*").alias("n"))
    hist = per_book.groupBy("n").agg(F.count("*").alias("books")).collect()
    hub = per_book.orderBy(F.desc("n"), "book_id").first()
    values = np.array([r["n"] for r in hist], dtype=np.int64)
    books = np.array([r["books"] for r in hist], dtype=np.int64)
    never, gini, skew = histogram_stats(values, books, n_books)
    best = int(hub["n"]) if hub else 0
    return HubStats(top=top, films=int(films), books=int(max(n_books, int(books.sum()))), max_occurrence=best,
                    max_share=round(best / films, 6) if films else 0.0,
                    hub_book=hub["book_id"] if hub else None, never_recommended=round(never, 6),
                    gini=round(gini, 6), skew=round(skew, 6))
