"""Score every movie against every book: checks, exclusions, filters, the Delta write, SQL.

``score_recommendations`` is the library entry point (DataFrames in, Delta table out);
``run_score`` is what ``jobs/score_all.py`` calls with the configuration.

Output table ``recommendations`` (docs/CONTRACTS.md)::

    movie_id string, rank int, book_id string, score float, model_version string, run_id string, scored_at timestamp

* ``rank`` 1..k per movie: score descending, on equal score the smaller ``book_id``
  first (UTF-8 byte order, as Spark SQL compares strings). ``score`` is the cosine of
  the L2-normalised embeddings, computed exactly to float32 (see ``lfr.score.kernel``),
  so ties are real ties whatever the blocking.
* A movie gets ``min(k, books left after filters/exclusions)`` rows. Embeddings that
  cannot be normalised (null, NaN/inf element, all-zero vector) are dropped and counted
  in the result (and the log): such a movie gets no rows, such a book is never recommended.
* ``model_version``: the single version both input tables carry; a run refuses to mix
  versions (:class:`ModelVersionMismatch`). ``run_id`` and ``scored_at`` are one value per run.

Atomicity: the whole table is replaced by **one** Delta overwrite commit at the end of the
run. Readers see the previous version until that commit; a run that fails or is killed
before it leaves the previous version intact and readable (its partial files are never
referenced; ``VACUUM`` removes them), and ``VERSION AS OF`` / ``RESTORE`` reach earlier runs.

Layout -- not partitioned, clustered by movie_id: ~1e5..1e6 movies x k=10 is 1e6..1e7 small
rows (a few hundred MB at most), which partitioning would only cut into many small files:
by ``rank`` gives k directories each holding a slice of every file, and by
``model_version`` gives one partition because every run overwrites the table with a single
version. Instead the rows are range-partitioned by ``movie_id`` into
``ceil(rows / rows_per_file)`` files (default 4M rows, ~100 MB) and sorted by
(movie_id, rank) inside each, so Delta's per-file min/max statistics let
``WHERE movie_id = ...`` read one file and a movie's k rows are adjacent.
"""
from __future__ import annotations

import logging
import math
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Callable, Optional

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lfr.score.blocks import build_blocks, candidates, merge_candidates, pair_blocks
from lfr.score.kernel import blocks_needed
from lfr.spark.delta import is_delta_table, register_table, register_tables, write_table

log = logging.getLogger(__name__)

#: a movie block is not cut below this many rows just to create parallelism
MIN_PARALLEL_BLOCK_ROWS = 256
#: when all block pairs together hold at most this many bytes, they are coalesced into
#: ~2 x parallelism tasks instead of one task per pair (small catalogs: task overhead dominates)
SMALL_PAIRS_BYTES = 64 << 20


class ScoringError(ValueError):
    """The inputs cannot be scored (empty, inconsistent dimensions, duplicate ids, ...)."""


class ModelVersionMismatch(ScoringError):
    """Movie and book embeddings come from different models, or a table mixes several."""


@dataclass
class ScoreResult:
    run_id: str
    model_version: str
    k: int
    dim: int
    movies: int            # movies scored (valid embeddings)
    books: int             # books scored (valid embeddings, after the filter)
    movies_invalid: int    # dropped: null / NaN / inf / zero embedding
    books_invalid: int
    movie_blocks: int
    book_blocks: int
    pairs: int             # kernel tasks = movie_blocks x book_blocks
    rows: int              # rows written
    table_version: Optional[int]
    seconds_blocks: float
    seconds_score: float   # kernel + merge + Delta write
    seconds: float
    path: str

    def as_dict(self) -> dict:
        return asdict(self)


def _check_side(rows: list, what: str) -> tuple[str, int]:
    """(model_version, rows) from the per-version statistics of one side, or a clear error."""
    if not rows:
        raise ScoringError(f"{what} embeddings are empty: nothing to score")
    if len(rows) > 1:
        versions = sorted(repr(r["model_version"]) for r in rows)
        raise ModelVersionMismatch(
            f"{what} embeddings mix {len(rows)} model versions ({', '.join(versions)}); "
            f"re-embed the whole table with one model before scoring")
    r = rows[0]
    if r["model_version"] is None:
        raise ModelVersionMismatch(f"{what} embeddings have no model_version (null)")
    if r["ids"] != r["distinct_ids"]:
        raise ScoringError(f"{what} embeddings have {r['ids'] - r['distinct_ids']} duplicate id(s)")
    return r["model_version"], int(r["rows"])


def check_inputs(movies: DataFrame, books: DataFrame) -> tuple[str, int, int]:
    """``(model_version, movie_rows, book_rows)``; raises when the tables cannot be scored together.

    One Spark job over the ``id`` and ``model_version`` columns only (the embeddings are not
    decoded here; their lengths are checked while the blocks are built): per side and
    model_version, row count and distinct ids.
    """
    for what, df in (("movie", movies), ("book", books)):
        missing = {"id", "embedding", "model_version"} - set(df.columns)
        if missing:
            raise ScoringError(f"{what} embeddings lack column(s) {sorted(missing)} (have {df.columns})")
    both = (movies.select(F.lit("movie").alias("side"), "id", "model_version")
                  .unionByName(books.select(F.lit("book").alias("side"), "id", "model_version")))
    stats = (both.groupBy("side", "model_version")
                 .agg(F.count(F.lit(1)).alias("rows"), F.count("id").alias("ids"),
                      F.countDistinct("id").alias("distinct_ids"))
                 .collect())
    mv, m_rows = _check_side([r for r in stats if r["side"] == "movie"], "movie")
    bv, b_rows = _check_side([r for r in stats if r["side"] == "book"], "book")
    if mv != bv:
        raise ModelVersionMismatch(
            f"movie embeddings are model_version {mv!r} but book embeddings are {bv!r}: "
            f"scores across models are meaningless; re-embed both catalogs with the same model")
    return mv, m_rows, b_rows


def _dimension(ms, bs) -> int:
    """The one embedding length of both sides (from the blocks' dmin/dmax), or a clear error."""
    for what, st in (("movie", ms), ("book", bs)):
        if st["dmin"] is None:
            raise ScoringError(f"{what} embeddings: every embedding (or id) is null: nothing to score")
        if st["dmin"] != st["dmax"] or st["dmin"] <= 0:
            raise ScoringError(f"{what} embeddings have lengths {st['dmin']}..{st['dmax']}: one dimension expected")
    if ms["dmin"] != bs["dmin"]:
        raise ScoringError(f"movie embeddings have dimension {ms['dmin']}, book embeddings {bs['dmin']}")
    return int(ms["dmin"])


def _delta_version(spark: SparkSession, path: str) -> tuple[Optional[int], Optional[int]]:
    """(latest version, numOutputRows of that commit) of the Delta table at ``path``."""
    from delta.tables import DeltaTable

    h = DeltaTable.forPath(spark, path).history(1).select("version", "operationMetrics").first()
    if h is None:
        return None, None
    rows = (h["operationMetrics"] or {}).get("numOutputRows")
    return int(h["version"]), int(rows) if rows is not None else None


def score_recommendations(
    spark: SparkSession,
    movies: DataFrame,
    books: DataFrame,
    output_path: str,
    *,
    k: int = 10,
    movie_block_rows: int = 16384,
    book_block_rows: int = 16384,
    exclude: Optional[DataFrame] = None,
    movie_filter: Optional[str] = None,
    book_filter: Optional[str] = None,
    run_id: Optional[str] = None,
    rows_per_file: int = 4_000_000,
    kernel: Optional[Callable] = None,
) -> ScoreResult:
    """Exact top-k books per movie by cosine, written to the Delta table at ``output_path``.

    ``movies`` / ``books``: embedding tables (``id, embedding array<float>, model_version``;
    other columns are ignored). ``exclude``: ``DataFrame(movie_id, book_id)`` of pairs never to
    recommend (e.g. known adaptations); masked inside the block kernel before the top-k is cut,
    so every movie still gets k books when k others exist. ``movie_filter`` / ``book_filter``:
    SQL predicates applied to the inputs before blocking (e.g. ``"year >= 2000"`` when the
    caller joined catalog columns in). ``kernel``: replaces :func:`lfr.score.kernel.block_topk`
    (same signature) -- for tests and experiments.
    """
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    if movie_block_rows <= 0 or book_block_rows <= 0:
        raise ValueError("block sizes must be positive")
    started = time.time()
    run_id = run_id or f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    if movie_filter:
        movies = movies.filter(movie_filter)
    if book_filter:
        books = books.filter(book_filter)
    movies = movies.select("id", "embedding", "model_version")
    books = books.select("id", "embedding", "model_version")
    model_version, m_rows, b_rows = check_inputs(movies, books)
    t_check = time.time() - started

    if exclude is not None:
        ex = (exclude.select(F.col("movie_id").cast("string"), F.col("book_id").cast("string"))
                     .dropna().groupBy("movie_id").agg(F.collect_set("book_id").alias("excluded")))
        movies = movies.join(ex, movies["id"] == ex["movie_id"], "left").drop("movie_id")

    n_bb = blocks_needed(b_rows, book_block_rows)
    parallel = 2 * spark.sparkContext.defaultParallelism          # enough tasks to keep every core busy
    min_mb = min(math.ceil(parallel / n_bb), max(1, m_rows // MIN_PARALLEL_BLOCK_ROWS))
    mb = build_blocks(movies, movie_block_rows, m_rows, min_blocks=min_mb,
                      with_exclusions=exclude is not None).persist(StorageLevel.MEMORY_AND_DISK)
    bb = build_blocks(books, book_block_rows, b_rows).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        # one job builds (and caches) both sides' blocks and returns their statistics
        side_stats = {r["side"]: r for r in (
            mb.select(F.lit("m").alias("side"), "n", "n_invalid", "dmin", "dmax")
              .unionByName(bb.select(F.lit("b").alias("side"), "n", "n_invalid", "dmin", "dmax"))
              .groupBy("side")
              .agg(F.count(F.when(F.col("n") > 0, 1)).alias("blocks"), F.sum("n").alias("rows"),
                   F.sum("n_invalid").alias("invalid"), F.max("n").alias("largest"),
                   F.min("dmin").alias("dmin"), F.max("dmax").alias("dmax"))
              .collect())}
        empty = {"blocks": 0, "rows": 0, "invalid": 0, "largest": 0, "dmin": None, "dmax": None}
        ms, bs = side_stats.get("m", empty), side_stats.get("b", empty)
        t_blocks = time.time() - started
        dim = _dimension(ms, bs)
        n_movies, n_books = int(ms["rows"] or 0), int(bs["rows"] or 0)
        log.info("score %s: model_version=%s d=%d k=%d | movies %d (+%d invalid) in %d blocks (largest %s) | "
                 "books %d (+%d invalid) in %d blocks (largest %s) | %d block pairs | checks %.1fs, blocks built %.1fs",
                 run_id, model_version, dim, k, n_movies, ms["invalid"] or 0, ms["blocks"], ms["largest"],
                 n_books, bs["invalid"] or 0, bs["blocks"], bs["largest"], ms["blocks"] * bs["blocks"],
                 t_check, t_blocks - t_check)
        if n_movies == 0 or n_books == 0:
            raise ScoringError(f"nothing to score: {n_movies} valid movie and {n_books} valid book embeddings")

        pairs = pair_blocks(mb, bb)
        n_pairs = int(ms["blocks"]) * int(bs["blocks"])
        if n_pairs > parallel and n_pairs * (ms["largest"] + bs["largest"]) * dim * 4 <= SMALL_PAIRS_BYTES:
            pairs = pairs.coalesce(parallel)
        merged = merge_candidates(candidates(pairs, dim, k, kernel), k)
        n_files = max(1, math.ceil(n_movies * min(k, n_books) / rows_per_file))
        out = (merged
               .withColumn("model_version", F.lit(model_version))
               .withColumn("run_id", F.lit(run_id))
               .withColumn("scored_at", F.lit(datetime.now(timezone.utc)).cast("timestamp"))
               .repartitionByRange(n_files, "movie_id")
               .sortWithinPartitions("movie_id", "rank"))
        t0 = time.time()
        write_table(out, output_path, mode="overwrite")
        t_score = time.time() - t0
    finally:
        mb.unpersist()
        bb.unpersist()
    version, rows = _delta_version(spark, output_path)
    result = ScoreResult(
        run_id=run_id, model_version=model_version, k=k, dim=dim, movies=n_movies, books=n_books,
        movies_invalid=int(ms["invalid"] or 0), books_invalid=int(bs["invalid"] or 0),
        movie_blocks=int(ms["blocks"]), book_blocks=int(bs["blocks"]),
        pairs=int(ms["blocks"]) * int(bs["blocks"]),
        rows=rows if rows is not None else -1, table_version=version,
        seconds_blocks=round(t_blocks, 2), seconds_score=round(t_score, 2),
        seconds=round(time.time() - started, 2), path=output_path)
    log.info("score %s: wrote %d rows to %s (Delta version %s) in %.1fs (kernel+merge+write %.1fs)",
             run_id, result.rows, output_path, version, result.seconds, t_score)
    return result


# ---------------------------------------------------------------- SQL registration

VIEW_SQL = """CREATE OR REPLACE VIEW {view} AS
SELECT r.movie_id, r.rank, r.book_id, r.score, r.model_version, r.run_id, r.scored_at,
       m.title AS movie_title, b.title AS book_title
FROM {recommendations} r
LEFT JOIN {movie_embeddings} m ON m.id = r.movie_id
LEFT JOIN {book_embeddings} b ON b.id = r.book_id"""


def create_view(spark: SparkSession, view: str, recommendations: str, movie_embeddings: str,
                book_embeddings: str) -> str:
    """``CREATE OR REPLACE VIEW``: recommendations with ``movie_title`` and ``book_title``.

    Arguments are qualified table names (``lfr.recommendations``). Idempotent. With Spark's
    default in-memory catalog the view lives as long as the session (as the table
    registrations do), so every job that wants SQL re-creates it; with a Hive metastore it persists.
    """
    spark.sql(VIEW_SQL.format(view=view, recommendations=recommendations,
                              movie_embeddings=movie_embeddings, book_embeddings=book_embeddings))
    return view


def register_recommendations(spark: SparkSession, cfg) -> list[str]:
    """Register every existing table of ``cfg['tables']`` plus the view; returns the names (idempotent)."""
    names = register_tables(spark, cfg)
    t = cfg["tables"]
    db = t["database"]
    needed = [t["recommendations"], t["movie_embeddings"], t["book_embeddings"]]
    if all(is_delta_table(spark, spec["path"]) for spec in needed):
        q = [register_table(spark, db, spec["name"], spec["path"]) for spec in needed]
        view = create_view(spark, f"`{db}`.`{t['recommendations_view']}`", *q)
        names.append(view)
    else:
        log.info("view %s.%s not created: recommendations or embedding tables missing", db, t["recommendations_view"])
    return names


# ---------------------------------------------------------------- the job

def load_exclusions(spark: SparkSession, cfg, path: str, movies: DataFrame, books: DataFrame) -> DataFrame:
    """A pair file -> ``DataFrame(movie_id, book_id)`` via ``lfr.data.read_pairs``.

    A ``movie_id,book_id`` file is resolved against the embedding tables being scored
    (``movies`` / ``books``: the ids that can be recommended). The adaptations format needs
    titles, years and authors, so it is resolved against the catalog tables
    (``tables.movies`` / ``tables.books``), read from Delta when they exist and from the
    configured sources otherwise. Unresolved pairs are logged by ``read_pairs``.
    """
    from lfr.data import load_catalog, read_pairs

    header = spark.read.option("header", True).csv(path).columns
    if {"movie_id", "book_id"} <= set(header):
        return read_pairs(spark, path, movies, books)

    def catalog(domain: str) -> DataFrame:
        p = cfg["tables"][domain]["path"]
        if is_delta_table(spark, p):
            return spark.read.format("delta").load(p)
        return load_catalog(spark, cfg, domain)[0]

    return read_pairs(spark, path, catalog("movies"), catalog("books"))


def _with_catalog_columns(spark: SparkSession, emb: DataFrame, catalog_path: str) -> DataFrame:
    """Embeddings + the catalog's other columns (genres, year, ...), so filters can use them."""
    if not is_delta_table(spark, catalog_path):
        return emb
    cat = spark.read.format("delta").load(catalog_path)
    extra = [c for c in cat.columns if c not in emb.columns or c == "id"]
    return emb.join(cat.select(*extra), "id", "left")


def run_score(
    spark: SparkSession,
    cfg,
    *,
    k: Optional[int] = None,
    movie_block_rows: Optional[int] = None,
    book_block_rows: Optional[int] = None,
    exclude_pairs: Optional[str] = None,
    movie_filter: Optional[str] = None,
    book_filter: Optional[str] = None,
    kernel: Optional[Callable] = None,
) -> ScoreResult:
    """The job: embedding tables of ``cfg['tables']`` -> ``recommendations`` + view, registered for SQL.

    Arguments left ``None`` come from ``cfg['score']``. Filters may use the catalog columns
    (``genres``, ``year``, ``authors``, ...) when the catalog tables exist: they are joined in by id.
    """
    sc, t = cfg["score"], cfg["tables"]
    k = int(k if k is not None else sc["k"])
    movie_block_rows = int(movie_block_rows or sc["movie_block_rows"])
    book_block_rows = int(book_block_rows or sc["book_block_rows"])
    exclude_pairs = exclude_pairs if exclude_pairs is not None else sc.get("exclude_pairs")
    movie_filter = movie_filter if movie_filter is not None else sc.get("movie_filter")
    book_filter = book_filter if book_filter is not None else sc.get("book_filter")
    for key in ("movie_embeddings", "book_embeddings"):
        if not is_delta_table(spark, t[key]["path"]):
            raise ScoringError(f"no Delta table at {t[key]['path']} ({key}); run the embedding jobs first")
    movies = spark.read.format("delta").load(t["movie_embeddings"]["path"])
    books = spark.read.format("delta").load(t["book_embeddings"]["path"])
    if movie_filter:
        movies = _with_catalog_columns(spark, movies, t["movies"]["path"])
    if book_filter:
        books = _with_catalog_columns(spark, books, t["books"]["path"])
    exclude = load_exclusions(spark, cfg, exclude_pairs, movies, books) if exclude_pairs else None
    result = score_recommendations(
        spark, movies, books, t["recommendations"]["path"], k=k, movie_block_rows=movie_block_rows,
        book_block_rows=book_block_rows, exclude=exclude, movie_filter=movie_filter,
        book_filter=book_filter, kernel=kernel)
    names = register_recommendations(spark, cfg)
    log.info("registered for SQL: %s", ", ".join(names))
    return result
