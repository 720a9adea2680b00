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
    x = np.zeros(max(int(n_books), len(counts)), dtype=np.float64)
    x[:len(counts)] = np.asarray(counts, dtype=np.float64)
    n, total = len(x), float(x.sum())
    if n == 0 or total == 0:
        return (1.0 if n else 0.0), 0.0, 0.0
    ascending = np.sort(x)
    gini = float(2.0 * np.sum(np.arange(1, n + 1) * ascending) / (n * total) - (n + 1) / n)
    std = float(x.std())
    skew = float(np.mean((x - x.mean()) ** 3) / std ** 3) if std > 0 else 0.0
    return float(np.mean(x == 0)), gini, skew


def hub_stats(recs: DataFrame, films: int, n_books: int, k: int, top: int = HUB_TOP) -> HubStats:
    """:class:`HubStats` of ``recs`` (``movie_id, rank, book_id``) over its first ``min(top, k)`` ranks;
    ``films`` / ``n_books``: the films and books that were scored. One Spark aggregation; the per-book
    counts (at most one row per book) come to the driver."""
    top = min(int(top), int(k))
    rows = (recs.filter(F.col("rank") <= top).groupBy("book_id").agg(F.count("*").alias("n"))
            .orderBy(F.desc("n"), "book_id").collect())
    counts = np.array([r["n"] for r in rows], dtype=np.int64)
    never, gini, skew = occurrence_stats(counts, n_books)
    best = int(counts[0]) if len(counts) else 0
    return HubStats(top=top, films=int(films), books=int(max(n_books, len(counts))), max_occurrence=best,
                    max_share=round(best / films, 6) if films else 0.0,
                    hub_book=rows[0]["book_id"] if rows else None, never_recommended=round(never, 6),
                    gini=round(gini, 6), skew=round(skew, 6))
