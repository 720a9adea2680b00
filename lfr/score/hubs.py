"""Hubs: how evenly a run recommends the books (its statistics), and the hub-aware score (``score.hubness``).

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

Hub-aware score (``score.hubness: csls``, after CSLS, Lample et al. 2018): a book near the centre of the
films is close to every film, so its cosine is discounted by how close it is to its own nearest films::

    r(book) = mean of the hub_k highest cosines between the book and the run's films
    score   = cosine - hub_weight * r(book)

``hub_weight`` 0.5 ranks each film's books exactly as CSLS ``2 cos - r(film) - r(book)`` does (``r(film)`` is
constant per film); the published score is the one above. The dense and hybrid methods apply it to their
dense score (the hybrid before its per-film z-scores); it is exact in the kernel's sense, because it is a
dot product of *augmented* rows computed by the same kernels::

    film row [x, 1]   book row [y, -float32(hub_weight * r(book))]   ->   x.y - hub_weight * r(book)

so screening, exact float64 rescoring, ties and precision work unchanged (:func:`lfr.score.kernel.score_margin`
takes the rows' norms, ``<= sqrt(2)`` each here). ``r(book)`` itself comes from one pass over every block pair
with the roles swapped (:func:`hub_means`: each book's exact top ``hub_k`` films, the dense kernel's), and is
stored with the run (``tables.book_hubs``). A film row without a dense part (the hybrid's zeros under
``score.missing_side: use_present``) gets ``[0, 0]``: dense score 0, as without hubness, and takes no part in
any ``r(book)``.

Fused correction (``score.fused_hub_weight``, convex hybrid only): the dense correction cannot see the hubs of
the lexical half, so the hybrid's own score ``h`` (per-film z-scores, :mod:`lfr.score.hybrid`) is corrected
once more, by the same rule in its own units::

    r_h(book) = mean of the hub_k highest h between the book and the run's films
    score     = h - float32(fused_hub_weight * r_h(book))

``r_h`` needs every film's coefficients, so its pass (:func:`apply_fused_hubness`: each book's exact top
``hub_k`` films by ``h``, :func:`lfr.score.hybrid.hybrid_book_topk`) runs after the hybrid's statistics pass;
the book blocks then carry the offsets, which the main pass subtracts inside its margins (exact as before).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import partial
from typing import Iterator, Optional

import numpy as np
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lfr.config import ConfigError
from lfr.score.blocks import CANDIDATE_SCHEMA, BlockPair, Blocks, map_pairs, merge_candidates

#: ``score.hubness`` values
HUBNESS = ("none", "csls")

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


def book_occurrences(recs: DataFrame, top: int) -> DataFrame:
    """``book_id, occurrences``: the k-occurrence of every book in ``recs``'s (``movie_id, rank, book_id``) first
    ``top`` ranks (books in no list have no row)."""
    return recs.filter(F.col("rank") <= top).groupBy("book_id").agg(F.count("*").cast("int").alias("occurrences"))


def hub_stats(recs: DataFrame, films: int, n_books: int, k: int, top: int = HUB_TOP) -> HubStats:
    """:class:`HubStats` of ``recs`` (``movie_id, rank, book_id``) over its first ``min(top, k)`` ranks;
    ``films`` / ``n_books``: the films and books that were scored."""
    top = min(int(top), int(k))
    return occurrence_hub_stats(book_occurrences(recs, top), films, n_books, top)


def occurrence_hub_stats(per_book: DataFrame, films: int, n_books: int, top: int) -> HubStats:
    """:class:`HubStats` from :func:`book_occurrences` over the first ``top`` ranks. Only the histogram of the
    per-book counts (one row per distinct count, at most ``films`` rows, each with its smallest book id: the top
    book is the highest count's) comes to the driver, in one query."""
    hist = (per_book.groupBy("occurrences")
                    .agg(F.count("*").alias("books"), F.min("book_id").alias("first")).collect())
    values = np.array([r["occurrences"] for r in hist], dtype=np.int64)
    books = np.array([r["books"] for r in hist], dtype=np.int64)
    never, gini, skew = histogram_stats(values, books, n_books)
    hub = max(hist, key=lambda r: r["occurrences"]) if hist else None
    best = int(hub["occurrences"]) if hub else 0
    return HubStats(top=int(top), films=int(films), books=int(max(n_books, int(books.sum()))),
                    max_occurrence=best, max_share=round(best / films, 6) if films else 0.0,
                    hub_book=hub["first"] if hub else None, never_recommended=round(never, 6),
                    gini=round(gini, 6), skew=round(skew, 6))


# ---------------------------------------------------------------- hub-aware score (score.hubness)


@dataclass(frozen=True)
class Hubness:
    """``score.hubness`` / ``hub_k`` / ``hub_weight``, checked; what a dense score applies (module doc)."""
    kind: str
    k: int
    weight: float

    @classmethod
    def from_settings(cls, score) -> "Hubness":
        """From :class:`lfr.settings.ScoreSettings`; a bad value is a ``ConfigError`` naming the key."""
        if score.hubness not in HUBNESS:
            raise ConfigError(f"score.hubness must be one of {HUBNESS}, got {score.hubness!r}")
        if int(score.hub_k) <= 0:
            raise ConfigError(f"score.hub_k must be positive, got {score.hub_k}")
        if not 0.0 <= float(score.hub_weight) <= 1.0:   # <= 1 keeps the augmented book rows' norms <= sqrt(2)
            raise ConfigError(f"score.hub_weight must be in [0, 1], got {score.hub_weight}")
        return cls(score.hubness, int(score.hub_k), float(score.hub_weight))

    @property
    def active(self) -> bool:
        return self.kind != "none"

    def params(self) -> dict:
        """What the run records in ``method_params`` (nothing when off, so earlier runs' records stay as they were)."""
        if not self.active:
            return {}
        return {"hubness": self.kind, "hub_k": self.k, "hub_weight": self.weight,
                "hub_score": "cosine - hub_weight * r(book), r = mean cosine of the book's hub_k nearest films"}


def film_column(q: np.ndarray) -> np.ndarray:
    """The film rows' extra column: 1, or 0 for a row without direction (all zeros: no dense part)."""
    return (np.abs(q).max(axis=1) > 0).astype(np.float32) if len(q) else np.zeros(0, np.float32)


def book_column(r: np.ndarray, weight: float) -> np.ndarray:
    """The book rows' extra column ``-float32(weight * r)`` (float64 product, rounded once)."""
    return -(float(weight) * np.asarray(r, dtype=np.float64)).astype(np.float32)


def augment(x: np.ndarray, column: np.ndarray) -> np.ndarray:
    """``[x, column]``: float32 rows with one more column."""
    out = np.empty((x.shape[0], x.shape[1] + 1), dtype=np.float32)
    out[:, :-1] = x
    out[:, -1] = column
    return out


def book_side_topk(pair: BlockPair, k: int, precision: str) -> tuple:
    """Worker side of :func:`hub_means`: the pair's book rows (``pair.q``) against its film rows (``pair.b``),
    each book's exact top ``k`` films (:func:`lfr.score.kernel.block_topk`); films without a dense part skipped."""
    from lfr.score.kernel import block_topk

    films = np.flatnonzero(film_column(pair.b))
    rows, cols, scores = block_topk(pair.q, pair.b[films], k, threads=pair.threads, precision=precision)
    return rows, films[cols].astype(np.int32), scores


def hub_means(blocks: Blocks, k: int, precision: str) -> DataFrame:
    """``book_id, hub_r``: each book's mean cosine with its ``k`` nearest films of the run (lazy).

    The pass over every (book block, film block) pair keeps ``k`` films per book and pair, merged into the exact
    top ``k``; the mean adds the sorted scores in float64, so it does not depend on the order tasks finish."""
    return top_means(blocks, blocks.book_pairs(), partial(book_side_topk, k=k, precision=precision), k, None, "hub_r")


def top_means(blocks: Blocks, book_pairs: DataFrame, kernel, k: int, vocab: Optional[int], name: str) -> DataFrame:
    """``book_id, <name>``: per book the mean of the ``k`` scores ``kernel`` finds best over all its
    (book block, film block) pairs (the exact top ``k``, merged; float64 sum of the sorted scores)."""
    cands = map_pairs(book_pairs, kernel, blocks.dim, vocab, CANDIDATE_SCHEMA)
    top = merge_candidates(cands, k, rows=blocks.bs.rows * blocks.ms.blocks * min(k, blocks.ms.largest))
    # (movie_id: the book here, book_id: the film)
    scores = F.array_sort(F.collect_list(F.col("score").cast("double")))
    total = F.aggregate(scores, F.lit(0.0).cast("double"), lambda acc, x: acc + x)
    return top.groupBy(F.col("movie_id").alias("book_id")).agg((total / F.size(scores)).alias(name))


def fused_book_topk(pair: BlockPair, k: int, precision: str) -> tuple:
    """Worker side of :func:`apply_fused_hubness`: the pair's books (``pair.q``) against its films (``pair.b``,
    with their coefficients), each book's exact top ``k`` films by the hybrid score."""
    from lfr.score.hybrid import hybrid_book_topk

    return hybrid_book_topk(pair.q, pair.b, pair.qa, pair.ba, pair.b_coef, k, threads=pair.threads,
                            precision=precision)


def apply_fused_hubness(blocks: Blocks, movie_blocks: DataFrame, k: int, weight: float, precision: str) -> None:
    """``score.fused_hub_weight`` (the convex hybrid): ``r_h(book)``, the mean of the book's ``k`` highest hybrid
    scores over the run's films (``movie_blocks``: with their coefficients), then the book blocks replaced by
    ones carrying ``offset = float32(weight * r_h)`` per row (cached; the old ones released).
    ``book_id, fused_r, fused_offset`` (cached) joins ``blocks.book_stats``."""
    kernel = partial(fused_book_topk, k=k, precision=precision)
    fused = (top_means(blocks, blocks.book_pairs(movie_blocks), kernel, k, blocks.vocab, "fused_r")
             .withColumn("fused_offset", (F.lit(float(weight)) * F.col("fused_r")).cast("float"))
             .persist(StorageLevel.MEMORY_AND_DISK))
    blocks.book_stats.append(fused)
    names = blocks.books.columns

    def with_offsets(batches: Iterator) -> Iterator:
        import pyarrow as pa

        for batch in batches:
            out = [_row_values(batch, i, batch.column("n")[i].as_py() or 0).astype(np.float32).tobytes()
                   for i in range(batch.num_rows)]          # float32 of the float32 offsets: the same values
            yield pa.RecordBatch.from_arrays([batch.column(c) for c in names] + [pa.array(out, pa.binary())],
                                             names=names + ["offset"])

    from pyspark.sql.types import BinaryType, StructField, StructType

    schema = StructType(blocks.books.schema.fields + [StructField("offset", BinaryType())])
    books = (_with_row_values(blocks.books, fused, "fused_offset").mapInArrow(with_offsets, schema)
             .persist(StorageLevel.MEMORY_AND_DISK))
    books.count()
    blocks.books.unpersist()
    blocks.books = books


def _augmented(column_of, dim: int, schema):
    """mapInArrow function: every block's ``vec`` (``n x dim``) -> ``n x (dim + 1)`` with ``column_of(batch, i, q)``
    as the extra column; the other columns of ``schema`` unchanged."""
    names = [f.name for f in schema.fields]

    def add(batches: Iterator) -> Iterator:
        import pyarrow as pa

        for batch in batches:
            vecs = []
            for i in range(batch.num_rows):
                raw = batch.column("vec")[i].as_buffer()
                q = np.frombuffer(raw if raw is not None else b"", np.float32).reshape(-1, dim)
                vecs.append(augment(q, column_of(batch, i, q)).tobytes())
            cols = [pa.array(vecs, pa.binary()) if n == "vec" else batch.column(n) for n in names]
            yield pa.RecordBatch.from_arrays(cols, names=names)

    return add


def _film_column(batch, i, q):
    return film_column(q)


def _book_column(weight: float):
    def column(batch, i, q):
        return book_column(_row_values(batch, i, len(q)), weight)

    return column


def _with_row_values(book_blocks: DataFrame, per_book: DataFrame, column: str) -> DataFrame:
    """The book blocks plus ``per_row``: ``per_book``'s ``column`` of each block's books by row position
    (sorted ``struct<pos, value>``; a book without a value has none), read back by :func:`_row_values`."""
    per_block = (book_blocks.filter("n > 0").select("block", F.posexplode("ids").alias("pos", "book_id"))
                 .join(per_book, "book_id", "left")
                 .groupBy("block")
                 .agg(F.sort_array(F.collect_list(F.struct("pos", F.col(column).alias("value")))).alias("per_row")))
    return book_blocks.join(F.broadcast(per_block), "block", "left")


def _row_values(batch, i: int, n: int) -> np.ndarray:
    """Block ``i``'s ``per_row`` values as float64 by row (Arrow arrays, no Python loop over books; none: 0)."""
    out = np.zeros(n)
    rows = batch.column("per_row")[i].values
    if rows is not None and len(rows):
        pos = rows.field("pos").to_numpy(zero_copy_only=False)
        vals = rows.field("value").to_numpy(zero_copy_only=False).astype(np.float64)
        known = ~np.isnan(vals)                       # a null value (a book without films) arrives as NaN
        out[pos[known]] = vals[known]
    return out


def augment_film_blocks(movie_blocks: DataFrame, dim: int) -> DataFrame:
    """Film blocks with rows ``[x, 1]`` (``[0, 0]`` without a dense part), lazy."""
    return movie_blocks.mapInArrow(_augmented(_film_column, dim, movie_blocks.schema), movie_blocks.schema)


def apply_hubness(blocks: Blocks, hub: Hubness, precision: str) -> None:
    """The hub pass: ``r(book)`` for every book (:func:`hub_means`), then both sides' blocks replaced by their
    augmented rows (cached; the old ones released), ``blocks.dim`` one more. ``book_id, hub_r, hub_offset``
    (cached) joins ``blocks.book_stats``."""
    dim = blocks.dim
    hub_r = hub_offsets(hub_means(blocks, hub.k, precision), hub).persist(StorageLevel.MEMORY_AND_DISK)
    blocks.book_stats.append(hub_r)
    books = _with_row_values(blocks.books, hub_r, "hub_r").mapInArrow(
        _augmented(_book_column(hub.weight), dim, blocks.books.schema), blocks.books.schema)
    movies = augment_film_blocks(blocks.movies, dim)
    new = [df.persist(StorageLevel.MEMORY_AND_DISK) for df in (movies, books)]
    for df in new:
        df.count()
    blocks.unpersist()
    blocks.movies, blocks.books, blocks.dim = new[0], new[1], dim + 1
    blocks.extra_columns += 1
    blocks.augment = partial(augment_film_blocks, dim=dim)


#: ``tables.book_hubs``: the columns a pass did not run are null
BOOK_HUB_COLUMNS = {"hub_r": "double", "hub_offset": "float", "fused_r": "double", "fused_offset": "float",
                    "lexical_scale": "double", "lexical_shift": "double"}


def hub_offsets(hub_r: DataFrame, hub: Hubness) -> DataFrame:
    """``book_id, hub_r, hub_offset``: the dense hub pass's statistic and the offset the run subtracted."""
    return hub_r.withColumn("hub_offset", (F.lit(hub.weight) * F.col("hub_r")).cast("float"))


def write_book_hubs(per_book: list, occ: DataFrame, path: str, params: dict, stats: HubStats, run_id: str) -> None:
    """``tables.book_hubs``: per scored book the statistics of the run's hub passes (``per_book``: frames keyed
    by ``book_id``: :func:`hub_offsets`, :func:`apply_fused_hubness`), the offsets the run subtracted and its
    k-occurrence in the run's top ``stats.top`` lists (``occ``: :func:`book_occurrences` of the written table);
    replaced with each hub-aware run (one overwrite commit whose ``userMetadata`` holds the run's ``params`` and
    :class:`HubStats`)."""
    out = per_book[0]
    for df in per_book[1:]:
        out = out.join(df, "book_id", "full_outer")
    out = (out.join(occ, "book_id", "left").fillna(0, ["occurrences"]).withColumn("run_id", F.lit(run_id))
           .select("book_id", *(F.col(c) if c in out.columns else F.lit(None).cast(t).alias(c)
                                for c, t in BOOK_HUB_COLUMNS.items()), "occurrences", "run_id"))
    (out.coalesce(1).write.format("delta").mode("overwrite").option("overwriteSchema", "true")
        .option("userMetadata", json.dumps({"run_id": run_id, **params, "hubs": stats.as_dict()}, sort_keys=True))
        .save(path))
