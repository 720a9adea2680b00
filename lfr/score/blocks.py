"""Spark side of the blocked top-k: rows -> blocks, block pairs -> partial top-k, merge.

Plan (all lazy until the caller writes the result)::

    movies (id, embedding[, excluded])    books (id, embedding)
        | repartition(n_mb, id)               | repartition(n_bb, id)       hash of id, no sort
        | mapInArrow: build_blocks            | mapInArrow: build_blocks    <= block_rows rows per block,
        v                                     v                             normalised, sorted by id
    movie blocks (cached, few rows)       book blocks (cached, few rows)
                 \\____ crossJoin (SHUFFLE_REPLICATE_NL = cartesian) ____/
                                     |  one task per (movie block, book block)
                                     |  mapInArrow: kernel.block_topk -> <= k rows per movie
                                     v
                  candidates (movie_id, book_id, score): n_movies x n_book_blocks x k rows
                                     |  row_number() over (movie_id, score desc, book_id)
                                     |  <= k  (Spark plans a WindowGroupLimit: map-side top-k
                                     v         before the shuffle, so the merge is k-bounded)
                           recommendations (movie_id, rank, book_id, score)

Why no broadcast: either catalog can be the big one (millions of rows x 1.5 KB), so
neither side is shipped whole to every executor. Both sides are cut into blocks that
are cached once (one row per block: ids + float32 matrix bytes), and the cartesian
product of the two *block* tables hands every task exactly one movie block and one
book block read from the cache. Memory per task is ``movie_block_rows x d +
book_block_rows x d`` floats plus ``kernel.CHUNK_ELEMS`` scores, whatever the catalog
sizes; the number of tasks is ``n_movie_blocks x n_book_blocks``. (A broadcast nested
loop join would instead put *all* pairs of a movie block into one Arrow batch of one
Python worker: catalog-sized memory.)

Block sizes: every task ships its two blocks JVM -> Python (Arrow, ~0.1 s per 25 MB on
the 2-core dev box, plus ~0.1 s fixed per task) and then computes ``m x n x d`` multiply-adds,
so large near-square blocks amortise the transfer best (16384 x 16384 by default:
~2 s of BLAS per task vs ~0.3 s of overhead). When all pairs together are small
(``job.SMALL_PAIRS_BYTES``) they are coalesced into ~2 tasks per core instead.

Blocks: rows are hash-partitioned by id into ``blocks_needed`` partitions (about
``block_rows - 4 sqrt(block_rows)`` rows each, so a partition rarely exceeds the cap);
each partition becomes one block, or is split evenly when it does exceed
``block_rows``: the cap is hard. Rows are L2-normalised once here (float64 norm),
invalid ones (null/NaN/inf/zero vector, null id) dropped and counted, and sorted by id
(the kernel breaks score ties by column order).
"""
from __future__ import annotations

import math
from typing import Callable, Iterator, Optional

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from lfr.score.kernel import block_topk, blocks_needed

BLOCK_SCHEMA = "block bigint, n int, n_invalid int, dmin int, dmax int, ids array<string>, vec binary"
MOVIE_BLOCK_SCHEMA = BLOCK_SCHEMA + ", ex_row array<int>, ex_book array<string>"
CANDIDATE_SCHEMA = "movie_id string, book_id string, score float"


def _block_builder(block_rows: int, with_exclusions: bool) -> Callable:
    """mapInArrow function: one partition of (id, embedding[, excluded]) rows -> blocks.

    ``dmin``/``dmax``: the embedding lengths seen. A partition whose embeddings disagree in
    length yields one empty block carrying them (no vectors), and the driver refuses to score.
    """

    def build(batches: Iterator) -> Iterator:
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc
        from pyspark import TaskContext

        from lfr.score.kernel import normalize_rows

        batches = [b for b in batches if b.num_rows]
        if not batches:
            return
        table = pa.Table.from_batches(batches).combine_chunks()
        ids, emb = table.column("id").chunk(0), table.column("embedding").chunk(0)
        present = pc.and_(pc.is_valid(ids), pc.is_valid(emb))
        ids, emb = ids.filter(present), emb.filter(present)
        lengths = pc.list_value_length(emb).to_numpy(zero_copy_only=False)
        dmin, dmax = (int(lengths.min()), int(lengths.max())) if len(lengths) else (None, None)
        names = ["block", "n", "n_invalid", "dmin", "dmax", "ids", "vec"] + (["ex_row", "ex_book"] if with_exclusions else [])

        def block(j, n_rows, n_bad, ids_list, vec_bytes, ex=None):
            arrays = [pa.array([pid * 65536 + j], pa.int64()), pa.array([n_rows], pa.int32()),
                      pa.array([n_bad], pa.int32()), pa.array([dmin], pa.int32()), pa.array([dmax], pa.int32()),
                      ids_list, pa.array([vec_bytes], pa.binary())]
            if with_exclusions:
                arrays += ex or [pa.array([None], pa.list_(pa.int32())), pa.array([None], pa.list_(pa.string()))]
            return pa.RecordBatch.from_arrays(arrays, names=names)

        pid = TaskContext.get().partitionId() if TaskContext.get() else 0
        if dmin != dmax or dmin is None:          # lengths disagree (driver refuses) or nothing present
            yield block(0, 0, int(table.num_rows), pa.array([[]], pa.list_(pa.string())), b"")
            return
        dim = dmin
        values = emb.flatten().to_numpy(zero_copy_only=False)   # null elements -> NaN -> invalid row
        vecs, valid = normalize_rows(values.reshape(len(ids), dim))
        n_invalid = int(table.num_rows - valid.sum())
        keep = np.flatnonzero(valid)
        ids_kept = ids.take(pa.array(keep, pa.int64()))
        order = pc.sort_indices(ids_kept).to_numpy()            # binary (UTF-8 byte) order, as Spark SQL
        sel = keep[order]
        ids_sorted = ids_kept.take(pa.array(order, pa.int64()))
        vecs = vecs[sel]
        if with_exclusions:
            ex_lists = table.column("excluded").chunk(0).filter(present).take(pa.array(sel, pa.int64()))
            ex_rows_all = pc.list_parent_indices(ex_lists).to_numpy(zero_copy_only=False)
            ex_books_all = pc.list_flatten(ex_lists)
        n = len(sel)
        pieces = max(1, math.ceil(n / block_rows))
        bounds = np.linspace(0, n, pieces + 1).round().astype(int)
        for j in range(pieces):
            s, e = int(bounds[j]), int(bounds[j + 1])
            ex = None
            if with_exclusions:
                w = (ex_rows_all >= s) & (ex_rows_all < e)
                ex = [pa.array([(ex_rows_all[w] - s).astype(np.int32)], pa.list_(pa.int32())),
                      pa.array([ex_books_all.filter(pa.array(w)).to_pylist()], pa.list_(pa.string()))]
            yield block(j, e - s, n_invalid if j == 0 else 0,
                        pa.ListArray.from_arrays(pa.array([0, e - s], pa.int32()), ids_sorted.slice(s, e - s)),
                        np.ascontiguousarray(vecs[s:e]).tobytes(), ex)

    return build


def build_blocks(df: DataFrame, block_rows: int, n_rows: int, min_blocks: int = 1,
                 with_exclusions: bool = False) -> DataFrame:
    """``df`` (id, embedding[, excluded]) -> one row per block (see module doc)."""
    n_blocks = max(min_blocks, blocks_needed(n_rows, block_rows), 1)
    cols = ["id", "embedding"] + (["excluded"] if with_exclusions else [])
    return (df.select(*cols)
              .repartition(n_blocks, "id")
              .mapInArrow(_block_builder(block_rows, with_exclusions),
                          MOVIE_BLOCK_SCHEMA if with_exclusions else BLOCK_SCHEMA))


def _pair_scorer(dim: int, k: int, kernel: Optional[Callable]) -> Callable:
    """mapInArrow function: rows (movie block, book block) -> candidate rows."""

    def score(batches: Iterator) -> Iterator:
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc
        from pyspark import TaskContext

        fn = kernel or block_topk
        ctx = TaskContext.get()
        threads = max(1, ctx.cpus()) if ctx else None
        for batch in batches:
            col = {name: batch.column(name) for name in batch.schema.names}
            for i in range(batch.num_rows):
                m_ids = col["m_ids"][i].values
                b_ids = col["b_ids"][i].values
                # read-only views of the Arrow buffers (no copy); the kernel copies what it reshapes
                q = np.frombuffer(col["m_vec"][i].as_buffer(), dtype=np.float32).reshape(-1, dim)
                b = np.frombuffer(col["b_vec"][i].as_buffer(), dtype=np.float32).reshape(-1, dim)
                ex_r = ex_c = None
                ex_book = col["ex_book"][i].values
                if ex_book is not None and len(ex_book):
                    pos = pc.index_in(ex_book, value_set=b_ids)
                    hit = pc.is_valid(pos)
                    if pc.any(hit).as_py():
                        ex_r = col["ex_row"][i].values.filter(hit).to_numpy()
                        ex_c = pos.filter(hit).to_numpy()
                r, c, s = fn(q, b, k, exclude_rows=ex_r, exclude_cols=ex_c, threads=threads)
                yield pa.RecordBatch.from_arrays(
                    [m_ids.take(pa.array(r, pa.int32())), b_ids.take(pa.array(c, pa.int32())),
                     pa.array(s, pa.float32())],
                    names=["movie_id", "book_id", "score"])

    return score


def pair_blocks(movie_blocks: DataFrame, book_blocks: DataFrame) -> DataFrame:
    """All (movie block, book block) pairs as a cartesian product of the two block tables."""
    has_ex = "ex_row" in movie_blocks.columns
    m = movie_blocks.filter("n > 0").select(
        F.col("block").alias("m_block"), F.col("ids").alias("m_ids"), F.col("vec").alias("m_vec"),
        F.col("ex_row") if has_ex else F.lit(None).cast("array<int>").alias("ex_row"),
        F.col("ex_book") if has_ex else F.lit(None).cast("array<string>").alias("ex_book"))
    b = book_blocks.filter("n > 0").select(
        F.col("block").alias("b_block"), F.col("ids").alias("b_ids"), F.col("vec").alias("b_vec"))
    # SHUFFLE_REPLICATE_NL = CartesianProduct: task (i, j) reads movie block partition i and
    # book block partition j; never a broadcast of a whole side (see module doc).
    return m.hint("shuffle_replicate_nl").crossJoin(b)


def candidates(pairs: DataFrame, dim: int, k: int, kernel: Optional[Callable] = None) -> DataFrame:
    """Partial top-k per (movie, book block): ``movie_id, book_id, score``."""
    return pairs.mapInArrow(_pair_scorer(dim, k, kernel), CANDIDATE_SCHEMA)


def merge_candidates(cands: DataFrame, k: int) -> DataFrame:
    """Final top-k per movie: rank 1..k by score desc, then book_id asc (the tie rule)."""
    w = Window.partitionBy("movie_id").orderBy(F.col("score").desc(), F.col("book_id").asc())
    return (cands.withColumn("rank", F.row_number().over(w))
                 .filter(F.col("rank") <= k)
                 .select("movie_id", F.col("rank").cast("int").alias("rank"), "book_id", "score"))
