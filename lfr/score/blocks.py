"""Spark side of the blocked top-k: rows -> blocks, block pairs -> partial top-k, merge.

Plan (all lazy until the caller writes the result)::

    movies (id, features[, excluded])     books (id, features)          features: embedding and/or
                                                                        term_indices + term_weights
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

Block sizes: every task ships its two blocks JVM -> Python and pays a fixed turnaround, then
computes ``m x n x d`` multiply-adds, so large blocks amortise the transfer (``score.movie_block_rows``
/ ``book_block_rows``; why the defaults: docs/BENCHMARKS.md, Scoring on an Intel Xeon with AMX). When all pairs
together are small (:data:`SMALL_PAIRS_BYTES`) they are coalesced into ~2 tasks per core instead.

Blocks: rows are hash-partitioned by id into ``blocks_needed`` partitions (about
``block_rows - 4 sqrt(block_rows)`` rows each, so a partition rarely exceeds the cap);
each partition becomes one block, or is split evenly when it does exceed
``block_rows``: the cap is hard. Rows are L2-normalised once here (float64 norm),
invalid ones (null/NaN/inf/zero vector, null id) dropped and counted, and sorted by id
(the kernel breaks score ties by column order).

Methods (:class:`BlockSpec`, chosen by the method's strategy, :mod:`lfr.score.methods`): a block
carries a dense part (``vec``: float32 rows), a lexical part (``indptr``/``terms``/``weights``: the
CSR bytes of its rows, vocabulary size known), or both -- the hybrid's dense and lexical rows of
the same items in the same order, so one task scores both with one pair of blocks. The hybrid
first runs :func:`lexical_moments` over the pairs (each movie's lexical score sum and sum of
squares over all books) and :func:`dense_moments` over the book blocks (sum and Gram matrix),
then :func:`with_coefficients` stores each movie's fusion coefficients in its block; with
``score.lexical_hubness: bookz`` :func:`lexical_book_moments` (one more pass) and :func:`with_book_z` give
each book block its rows' ``(P, T)``. Every mapInArrow over pairs decodes them once
(:func:`iter_block_pairs` -> :class:`BlockPair`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from lfr.score.checks import ScoringError, dimension
from lfr.score.kernel import blocks_needed
from lfr.worker import freeze_long_lived, release_free_memory

BLOCK_SCHEMA = ("block bigint, n int, n_invalid int, dmin int, dmax int, ids array<string>, vec binary, "
                "indptr binary, terms binary, weights binary")
MOVIE_BLOCK_SCHEMA = BLOCK_SCHEMA + ", ex_row array<int>, ex_book array<string>"
CANDIDATE_SCHEMA = "movie_id string, book_id string, score float"
BLOCK_COLUMNS = ["block", "n", "n_invalid", "dmin", "dmax", "ids", "vec", "indptr", "terms", "weights"]
#: a movie block is not cut below this many rows just to create parallelism
MIN_PARALLEL_BLOCK_ROWS = 256
#: when all block pairs together hold at most this many bytes, they are coalesced into
#: ~2 x parallelism tasks instead of one task per pair (small catalogs: task overhead dominates)
SMALL_PAIRS_BYTES = 64 << 20


@dataclass(frozen=True)
class BlockSpec:
    """What a block carries: ``dense`` (embedding) and/or lexical rows of ``vocab_size`` terms
    (``None``: no lexical part); each scoring method (:mod:`lfr.score.methods`) says which.

    ``require_terms``: a row without any term is invalid (lexical-only scoring: no direction);
    the hybrid keeps such rows (lexical score 0 against every book). ``fill_dense`` (hybrid with
    ``score.missing_side: use_present``, :mod:`lfr.score.sides`): a row whose ``dense_missing`` is true
    has no embedding and carries zeros; it is kept (dense score 0 against everything) instead of
    being dropped as an all-zero vector.
    """
    dense: bool
    vocab_size: Optional[int]
    fill_dense: bool

    @property
    def lexical(self) -> bool:
        return self.vocab_size is not None

    @property
    def require_terms(self) -> bool:
        return self.lexical and not self.dense

    @property
    def columns(self) -> list[str]:
        return (["id"] + (["embedding"] if self.dense else [])
                + (["term_indices", "term_weights"] if self.lexical else [])
                + (["dense_missing"] if self.fill_dense else []))



@dataclass(frozen=True)
class BlockStats:
    """One side's blocks, from the Spark job that builds them: rows kept, rows dropped as invalid,
    non-empty blocks, rows of the largest block, embedding lengths seen (``None``: no dense part)."""
    rows: int
    invalid: int
    blocks: int
    largest: int
    dmin: Optional[int]
    dmax: Optional[int]

    @classmethod
    def from_row(cls, row) -> "BlockStats":
        """From a row of the statistics query (:func:`plan_blocks`); ``None`` (no block at all): empty."""
        if row is None:
            return cls(0, 0, 0, 0, None, None)
        return cls(int(row["rows"] or 0), int(row["invalid"] or 0), int(row["blocks"] or 0),
                   int(row["largest"] or 0), row["dmin"], row["dmax"])


def _features(table, spec: BlockSpec):
    """Present rows of one partition -> (ids, dense rows or None, CSR of all rows or None, valid, dmin, dmax).

    ``dmin``/``dmax``: the embedding lengths seen; when they disagree nothing is decoded
    (``ids is None``) and the driver refuses to score.
    """
    import numpy as np
    import pyarrow.compute as pc

    from lfr.score.kernel import normalize_rows
    from lfr.score.sparse import csr_rows

    t = table.filter(_present_mask(table, spec))
    ids, valid = t.column("id").combine_chunks(), np.ones(t.num_rows, bool)
    vecs, csr, dmin, dmax = None, None, None, None
    if spec.dense:
        emb = t.column("embedding").combine_chunks()
        lengths = pc.list_value_length(emb).to_numpy(zero_copy_only=False)
        dmin, dmax = (int(lengths.min()), int(lengths.max())) if len(lengths) else (None, None)
        if dmin != dmax or dmin is None:
            return None, None, None, valid[:0], dmin, dmax
        values = emb.flatten().to_numpy(zero_copy_only=False)   # null elements -> NaN -> invalid row
        vecs, valid = normalize_rows(values.reshape(len(ids), dmin))
        if spec.fill_dense:                                            # zeros standing for no embedding
            valid |= t.column("dense_missing").combine_chunks().fill_null(False).to_numpy(zero_copy_only=False)
    if spec.lexical:
        ti, tw = t.column("term_indices").combine_chunks(), t.column("term_weights").combine_chunks()
        offsets = ti.offsets.to_numpy() - ti.offsets[0].as_py()
        mat, ok = csr_rows(offsets, ti.flatten().to_numpy(zero_copy_only=False),
                           tw.flatten().to_numpy(zero_copy_only=False), spec.vocab_size, spec.require_terms)
        valid &= ok
        csr = (mat, np.cumsum(ok) - 1)                                 # row -> CSR row
    return ids, vecs, csr, valid, dmin, dmax


def _block_builder(block_rows: int, spec: BlockSpec, with_exclusions: bool) -> Callable:
    """mapInArrow function: one partition of (id, features[, excluded]) rows -> blocks (module doc)."""

    def build(batches: Iterator) -> Iterator:
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc
        from pyspark import TaskContext

        batches = [b for b in batches if b.num_rows]
        if not batches:
            return
        table = pa.Table.from_batches(batches).combine_chunks()
        pid = TaskContext.get().partitionId() if TaskContext.get() else 0
        names = BLOCK_COLUMNS + (["ex_row", "ex_book"] if with_exclusions else [])
        ids, vecs, csr, valid, dmin, dmax = _features(table, spec)
        n_invalid = int(table.num_rows - valid.sum())
        if ids is None:                           # embedding lengths disagree (driver refuses) or none present
            yield _block_batch(names, [pid * 65536, 0, n_invalid, dmin, dmax, [], b"", b"", b"", b""], with_exclusions)
            return
        keep = np.flatnonzero(valid)
        order = pc.sort_indices(ids.take(pa.array(keep, pa.int64()))).to_numpy()   # UTF-8 byte order, as Spark SQL
        sel = keep[order]
        ids_sorted = ids.take(pa.array(sel, pa.int64())).to_pylist()
        vecs = vecs[sel] if vecs is not None else None
        mat = csr[0][csr[1][sel]] if csr is not None else None
        if with_exclusions:
            ex_lists = table.column("excluded").combine_chunks().filter(_present_mask(table, spec)).take(
                pa.array(sel, pa.int64()))
            ex_rows_all = pc.list_parent_indices(ex_lists).to_numpy(zero_copy_only=False)
            ex_books_all = pc.list_flatten(ex_lists).to_pylist()
        pieces = max(1, math.ceil(len(sel) / block_rows))
        bounds = np.linspace(0, len(sel), pieces + 1).round().astype(int)
        for j in range(pieces):
            s, e = int(bounds[j]), int(bounds[j + 1])
            values = [pid * 65536 + j, e - s, n_invalid if j == 0 else 0, dmin, dmax, ids_sorted[s:e],
                      np.ascontiguousarray(vecs[s:e]).tobytes() if vecs is not None else b"",
                      *_csr_bytes(mat[s:e] if mat is not None else None)]
            if with_exclusions:
                w = (ex_rows_all >= s) & (ex_rows_all < e)
                values += [(ex_rows_all[w] - s).astype(np.int32).tolist(),
                           [b for b, x in zip(ex_books_all, w) if x]]
            yield _block_batch(names, values, with_exclusions)

    return build


def _present_mask(table, spec: BlockSpec):
    """The rows :func:`_features` decodes (same filter), to align the exclusion lists with them."""
    import pyarrow.compute as pc

    present = pc.is_valid(table.column("id"))
    for c in spec.columns[1:]:
        present = pc.and_(present, pc.is_valid(table.column(c)))
    if spec.lexical:
        same = pc.equal(pc.list_value_length(table.column("term_indices")),
                        pc.list_value_length(table.column("term_weights")))
        present = pc.and_(present, pc.fill_null(same, False))
    return present


def _csr_bytes(mat) -> list[bytes]:
    """CSR rows -> [indptr int64, terms int32, weights float32] bytes (empty when no lexical part)."""
    import numpy as np

    if mat is None:
        return [b"", b"", b""]
    return [mat.indptr.astype(np.int64).tobytes(), mat.indices.astype(np.int32).tobytes(),
            mat.data.astype(np.float32).tobytes()]


def _block_batch(names: list[str], values: list, with_exclusions: bool):
    """One block as a one-row Arrow batch of the block schema."""
    import pyarrow as pa

    types = [pa.int64(), pa.int32(), pa.int32(), pa.int32(), pa.int32(), pa.list_(pa.string()),
             pa.binary(), pa.binary(), pa.binary(), pa.binary()]
    if with_exclusions:
        types += [pa.list_(pa.int32()), pa.list_(pa.string())]
        if len(values) == len(BLOCK_COLUMNS):
            values = values + [None, None]
    return pa.RecordBatch.from_arrays([pa.array([v], t) for v, t in zip(values, types)], names=names)


def decode_csr(indptr: bytes, terms: bytes, weights: bytes, n: int, vocab_size: int):
    """CSR bytes of a block -> scipy CSR matrix (n x vocab_size), read-only views where possible."""
    import numpy as np
    import scipy.sparse as sp

    if not indptr:
        return sp.csr_matrix((n, vocab_size), dtype=np.float32)
    return sp.csr_matrix((np.frombuffer(weights, np.float32), np.frombuffer(terms, np.int32),
                          np.frombuffer(indptr, np.int64)), shape=(n, vocab_size))


def build_blocks(df: DataFrame, block_rows: int, n_rows: int, spec: BlockSpec, min_blocks: int = 1,
                 with_exclusions: bool = False) -> DataFrame:
    """``df`` (id, features[, excluded]) -> one row per block (see module doc)."""
    n_blocks = max(min_blocks, blocks_needed(n_rows, block_rows), 1)
    cols = spec.columns + (["excluded"] if with_exclusions else [])
    return (df.select(*cols)
              .repartition(n_blocks, "id")
              .mapInArrow(_block_builder(block_rows, spec, with_exclusions),
                          MOVIE_BLOCK_SCHEMA if with_exclusions else BLOCK_SCHEMA))


def _block_arrays(col: dict, i: int, side: str, dim: Optional[int], vocab: Optional[int]):
    """Row ``i`` of a pair batch -> (ids Arrow array, dense rows or None, CSR or None) of one side."""
    import numpy as np

    ids = col[f"{side}_ids"][i].values
    dense = (np.frombuffer(col[f"{side}_vec"][i].as_buffer(), dtype=np.float32).reshape(-1, dim)
             if dim else None)                          # read-only view of the Arrow buffer (no copy)
    csr = None
    if vocab:
        csr = decode_csr(*(col[f"{side}_{c}"][i].as_py() for c in ("indptr", "terms", "weights")), len(ids), vocab)
    return ids, dense, csr


def _exclusions(col: dict, i: int, b_ids):
    """Excluded (row, col) pairs of this pair of blocks, or (None, None)."""
    import pyarrow.compute as pc

    ex_book = col["ex_book"][i].values
    if ex_book is None or not len(ex_book):
        return None, None
    pos = pc.index_in(ex_book, value_set=b_ids)
    hit = pc.is_valid(pos)
    if not pc.any(hit).as_py():
        return None, None
    return col["ex_row"][i].values.filter(hit).to_numpy(), pos.filter(hit).to_numpy()


def _coefficients(col: dict, i: int, side: str = "m"):
    """A block's convex-fusion coefficients ``(a, b, c)`` per row (``n x 3``), or None (``side``: ``m`` the
    movie block, ``b`` the films of a book-side pair, :meth:`Blocks.book_pairs`)."""
    import numpy as np

    raw = col[f"{side}_coef"][i].as_py() if f"{side}_coef" in col else None
    if raw is None:
        return None
    values, n = np.frombuffer(raw, np.float64), len(col[f"{side}_ids"][i].values)
    return values.reshape(n, -1) if n and len(values) else values.reshape(-1, 3)   # 3 per row, 4 with bookz


def _offsets(col: dict, i: int):
    """The book block's per-row offsets (float32, ``score.fused_hub_weight``), or None."""
    import numpy as np

    raw = col["b_offset"][i].as_py() if "b_offset" in col else None
    return None if raw is None else np.frombuffer(raw, np.float32)


def _book_z(col: dict, i: int):
    """The book block's per-row ``(P, T)`` (n x 2 float64, ``score.lexical_hubness: bookz``), or None."""
    import numpy as np

    raw = col["b_lexz"][i].as_py() if "b_lexz" in col else None
    return None if raw is None else np.frombuffer(raw, np.float64).reshape(-1, 2)


@dataclass
class BlockPair:
    """One (movie block, book block) row of a paired-blocks batch, decoded once for every kernel."""

    m_block: int         # block numbers (the hybrid's statistics are keyed by them)
    b_block: int
    m_ids: object        # pyarrow array of movie ids
    q: object            # dense movie rows (or None)
    qa: object           # sparse movie rows (or None)
    coef: object         # the hybrid's per-movie fusion coefficients (m x 3 float64), or None
    b_ids: object
    b: object
    ba: object
    ex_rows: object      # excluded (row, col) positions, or None
    ex_cols: object
    threads: Optional[int]
    b_coef: object = None    # book-side pairs of the hybrid: the films' coefficients (n x 3), or None
    b_offset: object = None  # the books' float32 offsets (score.fused_hub_weight), or None
    b_z: object = None       # the books' (P, T) of score.lexical_hubness: bookz (n x 2), or None

    @property
    def kernel_args(self) -> dict:
        """The keyword arguments every block-pair kernel takes: the exclusions and the task's threads."""
        return {"exclude_rows": self.ex_rows, "exclude_cols": self.ex_cols, "threads": self.threads}


def iter_block_pairs(batches: Iterator, dim: Optional[int], vocab: Optional[int]) -> Iterator[BlockPair]:
    """The block pairs of a mapInArrow input, with the task's CPU count (one torch thread each).
    ``dim`` / ``vocab``: decode the dense / lexical part (``None``: leave it out). Every pass over the pairs
    reads them here, so the worker hygiene of :mod:`lfr.worker` runs here, after each pair's work."""
    from pyspark import TaskContext

    ctx = TaskContext.get()
    threads = max(1, ctx.cpus()) if ctx else None
    for batch in batches:
        col = {name: batch.column(name) for name in batch.schema.names}
        for i in range(batch.num_rows):
            m_ids, q, qa = _block_arrays(col, i, "m", dim, vocab)
            b_ids, b, ba = _block_arrays(col, i, "b", dim, vocab)
            ex_r, ex_c = _exclusions(col, i, b_ids)
            yield BlockPair(col["m_block"][i].as_py(), col["b_block"][i].as_py(), m_ids, q, qa,
                            _coefficients(col, i), b_ids, b, ba, ex_r, ex_c, threads, _coefficients(col, i, "b"),
                            _offsets(col, i), _book_z(col, i))
            # the caller has done the pair's work: torch and the kernels' imports out of every task's
            # gc.collect() (once), the pair's freed buffers back to the OS (a worker's RSS follows the blocks)
            freeze_long_lived()
            release_free_memory()


def pair_blocks(movie_blocks: DataFrame, book_blocks: DataFrame) -> DataFrame:
    """All (movie block, book block) pairs as a cartesian product of the two block tables. Optional columns
    travel when a side has them: exclusions and ``coef`` (movie side), ``coef``, ``offset`` and ``lexz`` (book side)."""
    data = ["block", "ids", "vec", "indptr", "terms", "weights"]

    def col_or_null(df: DataFrame, c: str, t: str):
        return F.col(c) if c in df.columns else F.lit(None).cast(t)
    m = movie_blocks.filter("n > 0").select(
        *[F.col(c).alias(f"m_{c}") for c in data], col_or_null(movie_blocks, "ex_row", "array<int>").alias("ex_row"),
        col_or_null(movie_blocks, "ex_book", "array<string>").alias("ex_book"),
        col_or_null(movie_blocks, "coef", "binary").alias("m_coef"))
    b = book_blocks.filter("n > 0").select(*[F.col(c).alias(f"b_{c}") for c in data],
                                           col_or_null(book_blocks, "coef", "binary").alias("b_coef"),
                                           col_or_null(book_blocks, "offset", "binary").alias("b_offset"),
                                           col_or_null(book_blocks, "lexz", "binary").alias("b_lexz"))
    # SHUFFLE_REPLICATE_NL = CartesianProduct: task (i, j) reads movie block partition i and
    # book block partition j; never a broadcast of a whole side (see module doc).
    return m.hint("shuffle_replicate_nl").crossJoin(b)


def decoded_parts(pairs: DataFrame, dim: Optional[int], vocab: Optional[int]) -> DataFrame:
    """The pairs without the block parts a pass does not decode (``dim`` None: the dense rows, ``vocab`` None: the
    CSR), so the JVM does not ship them to Python: a lexical statistics pass over the hybrid's pairs would
    otherwise carry every dense block along (Spark prunes the columns below the cartesian product)."""
    unused = (["vec"] if not dim else []) + (["indptr", "terms", "weights"] if not vocab else [])
    return pairs.drop(*(f"{side}_{c}" for side in ("m", "b") for c in unused))


def map_pairs(pairs: DataFrame, kernel: Callable[[BlockPair], tuple], dim: Optional[int], vocab: Optional[int],
              schema: str) -> DataFrame:
    """``kernel`` over every block pair (mapInArrow): ``kernel(pair) -> (rows, cols, *float32 columns)`` with
    positions in the pair's blocks; each output row is ``(movie id, book id, *values)`` of ``schema``. Only the
    parts ``dim`` / ``vocab`` decode travel (:func:`decoded_parts`)."""
    names = [f.split()[0] for f in schema.split(",")]

    def score(batches: Iterator) -> Iterator:
        import pyarrow as pa

        for p in iter_block_pairs(batches, dim, vocab):
            r, c, *values = kernel(p)
            yield pa.RecordBatch.from_arrays(
                [p.m_ids.take(pa.array(r, pa.int32())), p.b_ids.take(pa.array(c, pa.int32())),
                 *(pa.array(v, pa.float32()) for v in values)], names=names)

    return decoded_parts(pairs, dim, vocab).mapInArrow(score, schema)


#: candidate rows per merge task: the merge sorts its share of ``movies x book blocks x k`` rows, so their number
#: sets the tasks (``spark.sql.shuffle.partitions`` alone, 8 locally, put 7.8M rows per task at 100k x 1M and
#: ran out of execution memory)
MERGE_ROWS_PER_TASK = 2_000_000


def merge_candidates(cands: DataFrame, k: int, rows: int = 0) -> DataFrame:
    """Final top-k per movie: rank 1..k by score desc, then book_id asc (the tie rule). ``rows``: how many
    candidate rows to expect (0: unknown); they are hashed by movie into at least ``rows /``
    :data:`MERGE_ROWS_PER_TASK` merge tasks (never fewer than ``spark.sql.shuffle.partitions``)."""
    parts = math.ceil(rows / MERGE_ROWS_PER_TASK)
    if parts > int(cands.sparkSession.conf.get("spark.sql.shuffle.partitions")):
        cands = cands.repartition(parts, "movie_id")
    w = Window.partitionBy("movie_id").orderBy(F.col("score").desc(), F.col("book_id").asc())
    return (cands.withColumn("rank", F.row_number().over(w))
                 .filter(F.col("rank") <= k)
                 .select("movie_id", F.col("rank").cast("int").alias("rank"), "book_id", "score"))


# ---------------------------------------------------------------- the blocks of a run

@dataclass
class Blocks:
    """Both sides of a run cut into cached blocks (:func:`plan_blocks`), their statistics, and how to pair them."""
    movies: DataFrame
    books: DataFrame
    ms: BlockStats
    bs: BlockStats
    dim: Optional[int]           # embedding length (None: no dense part)
    spec: BlockSpec
    movie_rows: DataFrame        # the rows the movie blocks were built from
    with_exclusions: bool
    parallel: int                # 2 x the session's default parallelism
    augment: Optional[Callable[[DataFrame], DataFrame]] = None   # applied to rebuilt movie blocks (lfr.score.hubs)
    extra_columns: int = 0       # columns the hub pass appended to the dense rows (lfr.score.hubs)
    book_stats: list = field(default_factory=list)   # the hub passes' per-book frames (cached; lfr.score.hubs)

    @property
    def embedding_dim(self) -> Optional[int]:
        """The embeddings' length: ``dim`` without the columns the hub pass appended."""
        return self.dim - self.extra_columns if self.dim else self.dim

    @property
    def vocab(self) -> Optional[int]:
        return self.spec.vocab_size

    @property
    def n_pairs(self) -> int:
        return self.ms.blocks * self.bs.blocks

    def pairs(self, movie_blocks: Optional[DataFrame] = None) -> DataFrame:
        """The (movie block, book block) pairs (``movie_blocks``: instead of the run's, e.g. with the hybrid's
        coefficients); coalesced into ~2 tasks per core when they are all small."""
        return self._coalesced(pair_blocks(self.movies if movie_blocks is None else movie_blocks, self.books))

    def book_pairs(self, movie_blocks: Optional[DataFrame] = None) -> DataFrame:
        """The same pairs with the roles swapped: each book block (``m_*`` columns) with each movie block
        (``b_*``; ``movie_blocks``: instead of the run's), for statistics per book (:mod:`lfr.score.hubs`);
        no exclusions."""
        return self._coalesced(pair_blocks(self.books, self.movies if movie_blocks is None else movie_blocks))

    def _coalesced(self, pairs: DataFrame) -> DataFrame:
        row_bytes = 4 * (self.dim or 128)                      # lexical rows: ~a hundred terms x 8 bytes
        if (self.n_pairs > self.parallel
                and self.n_pairs * (self.ms.largest + self.bs.largest) * row_bytes <= SMALL_PAIRS_BYTES):
            pairs = pairs.coalesce(self.parallel)
        return pairs

    def rebuild(self, ids: DataFrame, n: int) -> DataFrame:
        """Movie blocks of the ``n`` movies in ``ids`` (one ``id`` column), cut like the run's."""
        built = build_blocks(self.movie_rows.join(ids, "id", "left_semi"), self.ms.largest or 1, n, self.spec,
                             with_exclusions=self.with_exclusions)
        return self.augment(built) if self.augment else built

    def unpersist(self) -> None:
        self.movies.unpersist()
        self.books.unpersist()


def plan_blocks(spark: SparkSession, movies: DataFrame, books: DataFrame, rows: tuple[int, int], spec: BlockSpec,
                block_rows: tuple[int, int], with_exclusions: bool) -> Blocks:
    """Both sides cut into cached blocks (``rows``: movie and book rows; ``block_rows``: the caps); one
    Spark job builds them and returns their statistics; inconsistent embedding lengths are refused."""
    (movie_rows, book_rows), (movie_block_rows, book_block_rows) = rows, block_rows
    n_bb = blocks_needed(book_rows, book_block_rows)
    parallel = 2 * spark.sparkContext.defaultParallelism          # enough tasks to keep every core busy
    min_mb = min(math.ceil(parallel / max(n_bb, 1)), max(1, movie_rows // MIN_PARALLEL_BLOCK_ROWS))
    mb = build_blocks(movies, movie_block_rows, movie_rows, spec, min_blocks=min_mb,
                      with_exclusions=with_exclusions).persist(StorageLevel.MEMORY_AND_DISK)
    bb = build_blocks(books, book_block_rows, book_rows, spec).persist(StorageLevel.MEMORY_AND_DISK)
    stats = {r["side"]: r for r in (
        mb.select(F.lit("m").alias("side"), "n", "n_invalid", "dmin", "dmax")
          .unionByName(bb.select(F.lit("b").alias("side"), "n", "n_invalid", "dmin", "dmax"))
          .groupBy("side")
          .agg(F.count(F.when(F.col("n") > 0, 1)).alias("blocks"), F.sum("n").alias("rows"),
               F.sum("n_invalid").alias("invalid"), F.max("n").alias("largest"),
               F.min("dmin").alias("dmin"), F.max("dmax").alias("dmax"))
          .collect())}
    blocks = Blocks(mb, bb, BlockStats.from_row(stats.get("m")), BlockStats.from_row(stats.get("b")), None, spec,
                    movies, with_exclusions, parallel)
    try:
        blocks.dim = dimension(blocks.ms, blocks.bs) if spec.dense else None
    except ScoringError:
        blocks.unpersist()
        raise
    return blocks


# ---------------------------------------------------------------- hybrid: per-movie statistics

def lexical_moments(pairs: DataFrame, vocab: int) -> DataFrame:
    """Per movie block: each movie's lexical score sum and sum of squares over ALL books.

    One pass over the pairs (``block, s1, s2``: float64 bytes aligned with the block's rows); the
    partial sums are added in book-block order, so the statistics do not depend on task timing.
    """
    return _moments_pass(pairs, vocab, _film_moments, "m")


def lexical_book_moments(pairs: DataFrame, vocab: int) -> DataFrame:
    """Per book block (``score.lexical_hubness: bookz``): each book's sum and sum of squares of the films'
    lexical z-scores over ALL films (:func:`lfr.score.sparse.sparse_book_moments`; ``pairs``: the movie blocks
    with their :func:`lfr.score.hybrid.bookz_coefficients`). One pass over the pairs (``block, s1, s2``: float64
    bytes aligned with the book block's rows); the partial sums are added in movie-block order."""
    return _moments_pass(pairs, vocab, _book_moments, "b")


def _film_moments(p: BlockPair):
    from lfr.score.sparse import sparse_moments

    return sparse_moments(p.qa, p.ba)


def _book_moments(p: BlockPair):
    from lfr.score.sparse import sparse_book_moments

    return sparse_book_moments(p.qa, p.ba, p.coef[:, 1], p.coef[:, 3])


def _moments_pass(pairs: DataFrame, vocab: int, kernel: Callable, side: str) -> DataFrame:
    """``kernel(pair) -> (s1, s2)``, float64 arrays over the rows of the pair's ``side`` block (``m`` or ``b``),
    over every pair (lexical rows only), added per block of that side in the other side's block order."""
    other = "b" if side == "m" else "m"

    def moments(batches: Iterator) -> Iterator:
        import pyarrow as pa

        schema = pa.schema([("m_block", pa.int64()), ("b_block", pa.int64()), ("s1", pa.binary()), ("s2", pa.binary())])
        for p in iter_block_pairs(batches, None, vocab):
            s1, s2 = kernel(p)
            yield pa.RecordBatch.from_pydict(
                {"m_block": [p.m_block], "b_block": [p.b_block], "s1": [s1.tobytes()], "s2": [s2.tobytes()]},
                schema=schema)

    def add(pdf):
        import numpy as np
        import pandas as pd

        pdf = pdf.sort_values(f"{other}_block")
        s1 = sum(np.frombuffer(x, np.float64) for x in pdf["s1"])
        s2 = sum(np.frombuffer(x, np.float64) for x in pdf["s2"])
        return pd.DataFrame({"block": [int(pdf[f"{side}_block"].iloc[0])], "s1": [s1.tobytes()], "s2": [s2.tobytes()]})

    return (decoded_parts(pairs, None, vocab)
            .mapInArrow(moments, "m_block bigint, b_block bigint, s1 binary, s2 binary")
            .groupBy(f"{side}_block").applyInPandas(add, "block bigint, s1 binary, s2 binary"))


def with_book_z(book_blocks: DataFrame, stats: DataFrame, n_films: int, alpha: float) -> DataFrame:
    """Book blocks + ``lexz``: each book's ``(P, T)`` (:func:`lfr.score.hybrid.book_lexical_scale`), float64 bytes,
    from :func:`lexical_book_moments` (broadcast: one row per book block, the blocks keep their partitions)."""
    cols = book_blocks.columns

    def add(batches: Iterator) -> Iterator:
        import numpy as np
        import pyarrow as pa

        from lfr.score.hybrid import book_lexical_scale

        for batch in batches:
            out = []
            for i in range(batch.num_rows):
                s1 = batch.column("s1")[i].as_py()
                if s1 is None:
                    out.append(None)
                    continue
                out.append(book_lexical_scale(np.frombuffer(s1, np.float64),
                                              np.frombuffer(batch.column("s2")[i].as_py(), np.float64),
                                              n_films, alpha).tobytes())
            yield pa.RecordBatch.from_arrays([batch.column(c) for c in cols] + [pa.array(out, pa.binary())],
                                             names=cols + ["lexz"])

    from pyspark.sql.types import BinaryType, StructField, StructType

    schema = StructType(book_blocks.schema.fields + [StructField("lexz", BinaryType())])
    return book_blocks.join(F.broadcast(stats), "block", "left").mapInArrow(add, schema)


def book_z_frame(book_blocks: DataFrame) -> DataFrame:
    """``book_id, lexical_scale, lexical_shift``: each book's ``(P, T)`` from blocks carrying ``lexz``
    (:func:`with_book_z`), one row per book (for ``tables.book_hubs``)."""
    def rows(batches: Iterator) -> Iterator:
        import numpy as np
        import pyarrow as pa

        for batch in batches:
            for i in range(batch.num_rows):
                raw = batch.column("lexz")[i].as_py()
                if not raw:
                    continue
                pt = np.frombuffer(raw, np.float64).reshape(-1, 2)
                yield pa.RecordBatch.from_arrays([batch.column("ids")[i].values, pa.array(pt[:, 0]),
                                                  pa.array(pt[:, 1])], names=["book_id", "lexical_scale",
                                                                              "lexical_shift"])

    return (book_blocks.filter("n > 0").select("ids", "lexz")
            .mapInArrow(rows, "book_id string, lexical_scale double, lexical_shift double"))


def dense_moments(book_blocks: DataFrame, dim: int):
    """(sum of the book rows, Gram matrix B^T B) over all book blocks, on the driver (d + d^2 floats)."""
    import numpy as np

    def moments(batches: Iterator) -> Iterator:
        import pyarrow as pa

        from lfr.score.hybrid import dense_book_moments

        for batch in batches:
            for i in range(batch.num_rows):
                vec = batch.column("vec")[i].as_buffer()
                b = (np.frombuffer(vec, np.float32).reshape(-1, dim) if vec is not None
                     else np.zeros((0, dim), np.float32))
                bsum, gram = dense_book_moments(b)
                yield pa.RecordBatch.from_pydict({"block": [batch.column("block")[i].as_py()],
                                                  "bsum": [bsum.tobytes()], "gram": [gram.tobytes()]})

    rows = sorted(book_blocks.filter("n > 0").select("block", "vec")
                  .mapInArrow(moments, "block bigint, bsum binary, gram binary").collect(), key=lambda r: r["block"])
    bsum = sum(np.frombuffer(r["bsum"], np.float64) for r in rows)
    gram = sum(np.frombuffer(r["gram"], np.float64).reshape(dim, dim) for r in rows)
    return bsum, gram


def with_coefficients(movie_blocks: DataFrame, lex_stats: DataFrame, alpha: float, n_books: int,
                      book_sum, gram, dim: int, bookz: bool = False) -> DataFrame:
    """Movie blocks + ``coef``: each movie's convex-fusion coefficients (a, b, c), float64 bytes (``bookz``:
    :func:`lfr.score.hybrid.bookz_coefficients`, four per movie)."""
    cols = movie_blocks.columns

    def add(batches: Iterator) -> Iterator:
        import numpy as np
        import pyarrow as pa

        from lfr.score.hybrid import bookz_coefficients, convex_coefficients, dense_movie_stats, moments_to_stats

        coefficients = bookz_coefficients if bookz else convex_coefficients

        for batch in batches:
            coefs = []
            for i in range(batch.num_rows):
                vec, s1 = batch.column("vec")[i].as_buffer(), batch.column("s1")[i].as_py()
                if vec is None or not batch.column("n")[i].as_py():
                    coefs.append(b"")
                    continue
                q = np.frombuffer(vec, np.float32).reshape(-1, dim)
                mu_l, var_l = moments_to_stats(np.frombuffer(s1, np.float64),
                                               np.frombuffer(batch.column("s2")[i].as_py(), np.float64), n_books)
                coefs.append(coefficients(alpha, *dense_movie_stats(q, n_books, book_sum, gram), mu_l, var_l).tobytes())
            yield pa.RecordBatch.from_arrays([batch.column(c) for c in cols] + [pa.array(coefs, pa.binary())],
                                             names=cols + ["coef"])

    from pyspark.sql.types import BinaryType, StructField, StructType

    schema = StructType(movie_blocks.schema.fields + [StructField("coef", BinaryType())])
    # broadcast: the statistics are small, and the blocks keep their partitions (a shuffle would move them and
    # spread the blocks over spark.sql.shuffle.partitions, each empty one a task in every pass over the pairs)
    return movie_blocks.join(F.broadcast(lex_stats), "block", "left").mapInArrow(add, schema)
