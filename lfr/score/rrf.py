"""Spark side of ``score.method: hybrid`` with ``score.fusion: rrf``: exact reciprocal rank fusion top-k.

RRF needs each book's rank among ALL books of a movie, by each method, so no (movie block, book block)
task can fuse on its own (the proof is in :mod:`lfr.score.hybrid`, "reciprocal rank fusion"). Plan::

    pairs (movie block with dense + lexical rows, book block likewise)
        | mapInArrow: hybrid.rrf_block_candidates -> per movie, the block's top-n by dense U top-n by lexical,
        |             each with both exact scores              (n_movies x n_book_blocks x <= 2n rows)
        | groupBy(movie_id).applyInPandas: hybrid.rrf_fuse -> the exact top-k, or "not proven with this n"
        v
    proven movies' top-k (cached)  +  the unproven movies again with n x 4 (their blocks rebuilt) ... until none

Every movie is proven once ``n`` reaches the number of books (all ranks exact), so the loop ends; on real
catalogs the first round proves nearly every movie (``RRF_FIRST_N`` books per method, against top-k of 10).
Memory per task: the dense/lexical kernels' bounds; per movie in the fusion: ``n_book_blocks x 2n`` rows.
"""
from __future__ import annotations

import logging
from typing import Callable, Optional

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

log = logging.getLogger(__name__)

#: books per method and movie block emitted in the first round (grown x RRF_GROWTH for unproven movies)
RRF_FIRST_N = 100
RRF_GROWTH = 4
RRF_CANDIDATE_SCHEMA = "movie_id string, book_id string, s_d float, s_l float"
RRF_FUSED_SCHEMA = "movie_id string, rank int, book_id string, score float"


def fuse_candidates(cands: DataFrame, k: int, n_top: int, rrf_k: int, complete: bool) -> DataFrame:
    """Per movie: its exact RRF top-k (rank 1..k), or one row with ``rank = 0`` when not proven."""

    def fuse(pdf):
        import numpy as np
        import pandas as pd

        from lfr.score.hybrid import rrf_fuse

        movie = pdf["movie_id"].iloc[0]
        out = rrf_fuse(pdf["book_id"].to_numpy(), pdf["s_d"].to_numpy(np.float32), pdf["s_l"].to_numpy(np.float32),
                       k, n_top, rrf_k, complete)
        if out is None:
            return pd.DataFrame({"movie_id": [movie], "rank": [0], "book_id": [None], "score": [np.nan]})
        books, scores = out
        return pd.DataFrame({"movie_id": movie, "rank": np.arange(1, len(books) + 1, dtype=np.int32),
                             "book_id": books, "score": scores.astype(np.float32)})

    return cands.groupBy("movie_id").applyInPandas(fuse, RRF_FUSED_SCHEMA)


def rrf_topk(movie_blocks: DataFrame, candidates_of: Callable[[DataFrame, int], DataFrame],
             rebuild: Callable[[DataFrame, int], DataFrame], *, k: int, rrf_k: int, n_books: int, cached: list,
             first_n: Optional[int] = None):
    """The exact RRF top-k of every movie (module doc). ``candidates_of(movie_blocks, n)``: the rows
    (:data:`RRF_CANDIDATE_SCHEMA`) of ``hybrid.rrf_block_candidates`` with ``n`` books per method over every
    block pair; ``rebuild(ids, n)``: movie blocks of the ``n`` movies in ``ids`` (a one-column ``id`` DataFrame).
    Each round's result is cached (appended to ``cached``). Returns ``(top-k DataFrame, {rounds, n_top, retried})``."""
    n_top = max(int(first_n if first_n is not None else RRF_FIRST_N), k)
    blocks, parts, rounds, retried = movie_blocks, [], 0, 0
    while True:
        rounds += 1
        complete = n_top >= n_books
        cands = candidates_of(blocks, n_top)
        fused = fuse_candidates(cands, k, n_top, rrf_k, complete).persist(StorageLevel.MEMORY_AND_DISK)
        cached.append(fused)
        unproven = fused.filter(F.col("rank") == 0).select(F.col("movie_id").alias("id"))
        n_unproven = unproven.count()
        parts.append(fused.filter(F.col("rank") > 0))
        log.info("score rrf: round %d with n=%d books per method and block: %d movie(s) not proven yet",
                 rounds, n_top, n_unproven)
        if n_unproven == 0:
            break
        if complete:    # cannot happen: with every book emitted every rank is exact (lfr.score.hybrid.rrf_fuse)
            raise RuntimeError(f"rrf: {n_unproven} movie(s) not proven with every book ranked")
        retried += n_unproven
        n_top = min(n_top * RRF_GROWTH, n_books)
        blocks = rebuild(unproven, n_unproven).persist(StorageLevel.MEMORY_AND_DISK)
        cached.append(blocks)
    result = parts[0]
    for p in parts[1:]:
        result = result.unionByName(p)
    return result, {"rounds": rounds, "n_top": n_top, "retried": retried}
