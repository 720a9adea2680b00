"""Score every movie against every book: checks, exclusions, filters, the Delta write, SQL.

``score_recommendations`` is the library entry point (DataFrames in, Delta table out);
``run_score`` is what ``jobs/score_all.py`` calls with the configuration.

Output table ``recommendations`` (docs/CONTRACTS.md)::

    movie_id string, rank int, book_id string, score float, model_version string, lexical_version string,
    method string, method_params string, run_id string, scored_at timestamp

* ``rank`` 1..k per movie: score descending, on equal score the smaller ``book_id``
  first (UTF-8 byte order, as Spark SQL compares strings). ``score`` is the cosine of
  the L2-normalised embeddings, computed exactly to float32 (see ``lfr.score.kernel``),
  so ties are real ties whatever the blocking. ``method`` says which score (``score.method``):
  ``dense`` -- that cosine; ``lexical`` -- the cosine of the L2-normalised lexical (TF-IDF/BM25)
  vectors (``lfr.score.sparse``); ``hybrid`` -- ``alpha z_dense + (1 - alpha) z_lexical`` with
  per-movie z-scores over all scored books (``lfr.score.hybrid``), the exact top-k over all books.
  ``method_params``: the method's settings as JSON (fusion, alpha, the normalisation), one value per run.
* A movie gets ``min(k, books left after filters/exclusions)`` rows. Embeddings that
  cannot be normalised (null, NaN/inf element, all-zero vector) are dropped and counted
  in the result (and the log): such a movie gets no rows, such a book is never recommended.
* ``model_version``: the single version both embedding tables carry (null for ``lexical``);
  ``lexical_version``: the single version both lexical tables carry (null for ``dense``); a run
  refuses to mix versions (:class:`ModelVersionMismatch`). ``run_id`` and ``scored_at`` are one value per run.
* The hybrid pairs each item's embedding with its lexical row; ids present on one side only are
  counted per domain and side, logged, returned (``ScoreResult.missing_sides``) and written into the
  commit, and ``score.missing_side`` refuses them (``fail``) or scores them with the side they have
  (``use_present``; :mod:`lfr.score.sides` says exactly how).
* Guard: before anything is written, the films (distinct ``movie_id``) of the current table are
  compared with the films this run covers (one Spark job); a run that would drop more than the
  ``guards`` settings allow is refused (:class:`ShrinkRefused`, exit code 2; ``--allow-deletes``
  accepts it). The counts go into the result (``films``) and the commit.
* Every commit carries the run's counts as JSON in its ``userMetadata`` (run_id, method, films
  before / after / deleted, the hybrid's one-sided ids): ``DESCRIBE HISTORY lfr.recommendations``.

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

import json
import logging
import math
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import reduce
from typing import Callable, Optional, Sequence

from pyspark import StorageLevel
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lfr.phases import Phases
from lfr.score.blocks import (
    METHODS,
    BlockSpec,
    build_blocks,
    candidates,
    dense_moments,
    lexical_moments,
    merge_candidates,
    pair_blocks,
    with_coefficients,
)
from lfr.score.checks import (
    ModelVersionMismatch,
    ScoringError,
    check_hybrid_inputs,
    check_inputs,
    check_lexical_inputs,
    dimension,
    require_columns,
)
from lfr.score.kernel import blocks_needed
from lfr.score.sides import (
    MissingSideError,
    Sides,
    check_missing_side,
    count_sides,
    pair_sides,
    paired_rows,
    report_sides,
)
from lfr.score.view import create_view, register_recommendations
from lfr.spark.delta import is_delta_table, table_version
from lfr.spark.guards import Guards, Shrink, ShrinkRefused, table_shrink

log = logging.getLogger(__name__)

__all__ = ["Method", "MissingSideError", "ModelVersionMismatch", "ScoreResult", "ScoringError", "ShrinkRefused",
           "check_inputs", "create_view", "load_exclusions", "register_recommendations", "run_score",
           "score_recommendations"]

#: a movie block is not cut below this many rows just to create parallelism
MIN_PARALLEL_BLOCK_ROWS = 256
#: when all block pairs together hold at most this many bytes, they are coalesced into
#: ~2 x parallelism tasks instead of one task per pair (small catalogs: task overhead dominates)
SMALL_PAIRS_BYTES = 64 << 20
FUSIONS = ("convex", "rrf")


@dataclass(frozen=True)
class Method:
    """``score.method`` and its settings; ``params()`` is what the table records per run."""
    name: str = "dense"
    fusion: str = "convex"
    alpha: float = 0.7          # weight of the dense z-score in the convex fusion
    rrf_k: int = 60

    def __post_init__(self):
        if self.name not in METHODS:
            raise ValueError(f"score.method must be one of {METHODS}, got {self.name!r}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"score.fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if not 0.0 <= float(self.alpha) <= 1.0:
            raise ValueError(f"score.alpha must be in [0, 1], got {self.alpha}")

    @property
    def dense(self) -> bool:
        return self.name != "lexical"

    @property
    def lexical(self) -> bool:
        return self.name != "dense"

    def params(self) -> dict:
        if self.name == "hybrid" and self.fusion == "rrf":
            return {"fusion": "rrf", "rrf_k": int(self.rrf_k),
                    "ranks": "competition ranks per method over all scored books (ties share the best)"}
        if self.name == "hybrid":
            return {"fusion": self.fusion, "alpha": float(self.alpha),
                    "normalisation": "z-score per movie over all scored books"}
        return {"score": "cosine"}


@dataclass
class ScoreResult:
    run_id: str
    method: str
    method_params: str     # JSON, as recorded in the table
    model_version: Optional[str]
    lexical_version: Optional[str]
    k: int
    dim: Optional[int]     # embedding dimension (dense, hybrid)
    vocab_size: Optional[int]
    movies: int            # movies scored (valid features)
    books: int             # books scored (valid features, after the filter)
    movies_invalid: int    # dropped: null / NaN / inf / zero embedding, malformed or empty lexical row
    books_invalid: int
    movie_blocks: int
    book_blocks: int
    pairs: int             # kernel tasks = movie_blocks x book_blocks
    rows: int              # rows written
    table_version: Optional[int]
    seconds_blocks: float
    seconds_score: float   # (hybrid statistics +) kernel + merge + Delta write
    seconds: float
    path: str
    phases: dict = field(default_factory=dict)   # seconds per phase (read, check, blocks, score+write, ...)
    # hybrid: the ids with one side only, per domain, and score.missing_side (lfr.score.sides); None otherwise
    missing_sides: Optional[dict] = None
    films: dict = field(default_factory=dict)    # the guard's count: films in the table before, after, deleted

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Inputs:
    """Checked inputs of one run: rows to block (id + features) and their versions."""
    movies: DataFrame
    books: DataFrame
    model_version: Optional[str]
    lexical_version: Optional[str]
    vocab_size: Optional[int]
    movie_rows: int
    book_rows: int
    spec: BlockSpec                  # what a block carries (lfr.score.blocks)
    sides: Optional[Sides] = None    # hybrid: the ids with one side only (lfr.score.sides)


@dataclass(frozen=True)
class _Target:
    """Where and how a run writes: the table, its file size, the guards and the inputs a refusal names."""
    path: str
    rows_per_file: int
    guards: Guards
    sources: tuple
    run_id: str


@dataclass
class _Blocks:
    """Cached blocks of both sides and their statistics (one Spark job builds them)."""
    movies: DataFrame
    books: DataFrame
    ms: dict
    bs: dict
    dim: Optional[int]

    @property
    def pairs(self) -> int:
        return int(self.ms["blocks"]) * int(self.bs["blocks"])

    def unpersist(self) -> None:
        self.movies.unpersist()
        self.books.unpersist()


def _filtered(df: DataFrame, predicate: Optional[str], what: str) -> DataFrame:
    """``df`` filtered by the SQL ``predicate`` (None: unchanged), or an error naming the input it fails on."""
    if not predicate:
        return df
    try:
        return df.filter(predicate)
    except AnalysisException as exc:
        raise ScoringError(f"filter {predicate!r} cannot be evaluated on the {what} (columns {df.columns}): "
                           f"{str(exc).splitlines()[0]}") from exc


def _check_and_pair(method: Method, movies, books, movie_lexical, book_lexical, movie_filter: Optional[str],
                    book_filter: Optional[str], missing_side: str) -> _Inputs:
    """Phase 1: filters, version checks and, for the hybrid, each item's dense + lexical row paired by id.

    Filters apply to every table the method reads: the hybrid scores an item that passes on each side
    it has, so an item a filter removes is never counted as one-sided (``lfr.score.sides``).
    """
    from lfr.score.checks import EMBEDDING_COLUMNS, LEXICAL_COLUMNS

    if method.dense:
        movies = _filtered(require_columns(movies, "movie embeddings"), movie_filter, "movie embeddings")
        books = _filtered(require_columns(books, "book embeddings"), book_filter, "book embeddings")
        movies, books = movies.select(*EMBEDDING_COLUMNS), books.select(*EMBEDDING_COLUMNS)
    if method.lexical:
        ml = _filtered(require_columns(movie_lexical, "movie lexical features"), movie_filter, "movie lexical features")
        bl = _filtered(require_columns(book_lexical, "book lexical features"), book_filter, "book lexical features")
        ml, bl = ml.select(*LEXICAL_COLUMNS), bl.select(*LEXICAL_COLUMNS)
    if method.name == "hybrid":
        return _pair_hybrid(movies, books, ml, bl, missing_side)
    if method.dense:
        mv, m_rows, b_rows = check_inputs(movies, books)
        return _Inputs(movies, books, mv, None, None, m_rows, b_rows, BlockSpec.for_method("dense", None))
    lv, vocab, m_rows, b_rows = check_lexical_inputs(ml, bl)
    return _Inputs(ml, bl, None, lv, vocab, m_rows, b_rows, BlockSpec.for_method("lexical", vocab))


def _pair_hybrid(movies: DataFrame, books: DataFrame, ml: DataFrame, bl: DataFrame, missing_side: str) -> _Inputs:
    """The hybrid's inputs: one check job over the four tables, the ids with one side only counted, then
    refused or kept (``score.missing_side``, ``lfr.score.sides``), each item's two rows paired by id."""
    (mv, _, _), (lv, vocab, _, _) = check_hybrid_inputs(movies, books, ml, bl)
    sides = count_sides(movies, ml, books, bl, missing_side)
    report_sides(sides)
    fill = missing_side == "use_present" and sides.one_sided > 0
    return _Inputs(pair_sides(movies, ml, sides), pair_sides(books, bl, sides), mv, lv, vocab,
                   paired_rows(sides.movies, missing_side), paired_rows(sides.books, missing_side),
                   BlockSpec.for_method("hybrid", vocab, fill_dense=fill), sides)


def _with_exclusions(movies: DataFrame, exclude: Optional[DataFrame]) -> DataFrame:
    """Movies + ``excluded``: the book ids never to recommend to each (masked inside the kernel)."""
    if exclude is None:
        return movies
    ex = (exclude.select(F.col("movie_id").cast("string"), F.col("book_id").cast("string"))
                 .dropna().groupBy("movie_id").agg(F.collect_set("book_id").alias("excluded")))
    return movies.join(ex, movies["id"] == ex["movie_id"], "left").drop("movie_id")


def _plan_blocks(spark: SparkSession, inputs: _Inputs, spec: BlockSpec, movie_block_rows: int,
                 book_block_rows: int, with_exclusions: bool) -> _Blocks:
    """Phase 2: both sides cut into cached blocks; one Spark job builds them and returns their statistics."""
    n_bb = blocks_needed(inputs.book_rows, book_block_rows)
    parallel = 2 * spark.sparkContext.defaultParallelism          # enough tasks to keep every core busy
    min_mb = min(math.ceil(parallel / max(n_bb, 1)), max(1, inputs.movie_rows // MIN_PARALLEL_BLOCK_ROWS))
    mb = build_blocks(inputs.movies, movie_block_rows, inputs.movie_rows, min_blocks=min_mb,
                      with_exclusions=with_exclusions, spec=spec).persist(StorageLevel.MEMORY_AND_DISK)
    bb = build_blocks(inputs.books, book_block_rows, inputs.book_rows, spec=spec).persist(StorageLevel.MEMORY_AND_DISK)
    stats = {r["side"]: r.asDict() for r in (
        mb.select(F.lit("m").alias("side"), "n", "n_invalid", "dmin", "dmax")
          .unionByName(bb.select(F.lit("b").alias("side"), "n", "n_invalid", "dmin", "dmax"))
          .groupBy("side")
          .agg(F.count(F.when(F.col("n") > 0, 1)).alias("blocks"), F.sum("n").alias("rows"),
               F.sum("n_invalid").alias("invalid"), F.max("n").alias("largest"),
               F.min("dmin").alias("dmin"), F.max("dmax").alias("dmax"))
          .collect())}
    empty = {"blocks": 0, "rows": 0, "invalid": 0, "largest": 0, "dmin": None, "dmax": None}
    blocks = _Blocks(mb, bb, stats.get("m", empty), stats.get("b", empty), None)
    try:
        blocks.dim = dimension(blocks.ms, blocks.bs) if spec.dense else None
    except ScoringError:
        blocks.unpersist()
        raise
    return blocks


def _pairs(spark: SparkSession, blocks: _Blocks, movie_blocks: DataFrame) -> DataFrame:
    """The block pairs; coalesced into ~2 tasks per core when they are all small."""
    pairs = pair_blocks(movie_blocks, blocks.books)
    parallel = 2 * spark.sparkContext.defaultParallelism
    row_bytes = 4 * (blocks.dim or 128)                      # lexical rows: ~a hundred terms x 8 bytes
    if (blocks.pairs > parallel
            and blocks.pairs * (blocks.ms["largest"] + blocks.bs["largest"]) * row_bytes <= SMALL_PAIRS_BYTES):
        pairs = pairs.coalesce(parallel)
    return pairs


def _score_pairs(spark: SparkSession, blocks: _Blocks, inputs: _Inputs, method: Method, k: int,
                 kernel: Optional[Callable], cached: list) -> DataFrame:
    """Phase 3: the kernel over every block pair, merged into the top-k per movie (lazy).

    The hybrid first computes each movie's statistics over all books (lexical moments pass + the
    book side's dense moments) and stores its fusion coefficients in its block (cached, appended
    to ``cached`` for the caller to release).
    """
    movie_blocks = blocks.movies
    if method.name == "hybrid" and method.fusion == "rrf":
        return _rrf_pairs(spark, blocks, inputs, method, k, kernel, cached)
    if method.name == "hybrid":
        lex = lexical_moments(_pairs(spark, blocks, blocks.movies), inputs.vocab_size)
        book_sum, gram = dense_moments(blocks.books, blocks.dim)
        movie_blocks = with_coefficients(blocks.movies, lex, float(method.alpha), int(blocks.bs["rows"]),
                                         book_sum, gram, blocks.dim).persist(StorageLevel.MEMORY_AND_DISK)
        cached.append(movie_blocks)
    cands = candidates(_pairs(spark, blocks, movie_blocks), method.name, blocks.dim, inputs.vocab_size, k, kernel)
    return merge_candidates(cands, k)


def _rrf_pairs(spark: SparkSession, blocks: _Blocks, inputs: _Inputs, method: Method, k: int,
               kernel: Optional[Callable], cached: list) -> DataFrame:
    """Phase 3 for ``fusion: rrf`` (``lfr.score.rrf``): rounds of candidates + per-movie proof; unproven
    movies are re-blocked (same block settings) and rescored with more candidates."""
    from lfr.score.rrf import rrf_topk

    spec = inputs.spec
    with_ex = "ex_row" in blocks.movies.columns and "excluded" in inputs.movies.columns

    def rebuild(ids: DataFrame, n: int) -> DataFrame:
        return build_blocks(inputs.movies.join(ids, "id", "left_semi"), int(blocks.ms["largest"] or 1), n,
                            with_exclusions=with_ex, spec=spec)

    merged, info = rrf_topk(blocks.movies, lambda mb: _pairs(spark, blocks, mb), rebuild, dim=blocks.dim,
                            vocab=inputs.vocab_size, k=k, rrf_k=int(method.rrf_k), n_books=int(blocks.bs["rows"]),
                            cached=cached, kernel=kernel)
    log.info("score rrf: exact top-%d proven in %d round(s) (%d movie(s) retried, last n=%d)", k, info["rounds"],
             info["retried"], info["n_top"])
    return merged


def _write(merged: DataFrame, inputs: _Inputs, method: Method, target: _Target, n_rows: int, metadata: str) -> None:
    """Phase 4: one atomic Delta overwrite, range-partitioned and sorted by movie (module doc).

    ``overwriteSchema``: the table is a full snapshot of one run, its schema is the scorer's
    (a table written by an older version, without the method columns, is replaced, not merged).
    ``userMetadata``: the run's counts (:func:`_commit_metadata`) in the commit, for ``DESCRIBE HISTORY``.
    """
    n_files = max(1, math.ceil(n_rows / target.rows_per_file))
    out = (merged
           .withColumn("model_version", F.lit(inputs.model_version).cast("string"))
           .withColumn("lexical_version", F.lit(inputs.lexical_version).cast("string"))
           .withColumn("method", F.lit(method.name))
           .withColumn("method_params", F.lit(json.dumps(method.params(), sort_keys=True)))
           .withColumn("run_id", F.lit(target.run_id))
           .withColumn("scored_at", F.lit(datetime.now(timezone.utc)).cast("timestamp"))
           .repartitionByRange(n_files, "movie_id")
           .sortWithinPartitions("movie_id", "rank"))
    (out.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
        .option("userMetadata", metadata).save(target.path))


def _commit_metadata(target: _Target, method: Method, inputs: _Inputs, shrink: Shrink) -> str:
    """JSON recorded in the Delta commit: the run, the films it covers vs the table it replaces, and
    (hybrid) the ids with one side only -- what a later reader needs to see that nothing shrank silently."""
    return json.dumps({"run_id": target.run_id, "method": method.name, "films": _films(shrink),
                       "missing_sides": inputs.sides.as_dict() if inputs.sides else None}, sort_keys=True)


def _films(shrink: Shrink) -> dict:
    return {"before": shrink.before, "after": shrink.after, "deleted": shrink.deleted}


def _guard_films(spark: SparkSession, blocks: _Blocks, target: _Target) -> Shrink:
    """The films of the current table vs those this run covers (one Spark job; none when there is no
    table yet), checked by the guards BEFORE anything is written: a run over damaged or partial inputs
    must not replace a full table with a smaller one unless asked (``--allow-deletes``)."""
    table = f"recommendations ({target.path})"
    if not is_delta_table(spark, target.path):
        shrink = Shrink(table, 0, int(blocks.ms["rows"] or 0), 0)
    else:
        films = blocks.movies.filter("n > 0").select(F.explode("ids").alias("movie_id"))
        shrink = table_shrink(spark, target.path, films, table, keys=("movie_id",))
    target.guards.check(shrink, sources=target.sources, what="films")
    return shrink


def _configured(missing_side: Optional[str], guards: Optional[Guards]) -> tuple[str, Guards]:
    """Arguments left None come from the configuration (conf/lfr.yaml + LFR_CONF): a library call is
    guarded like the job, and no second default is written here."""
    if missing_side is None or guards is None:
        from lfr.config import load_config

        cfg = load_config()
        missing_side = cfg["score"]["missing_side"] if missing_side is None else missing_side
        guards = Guards.from_settings(cfg["guards"]) if guards is None else guards
    return check_missing_side(missing_side), guards


def score_recommendations(
    spark: SparkSession,
    movies: Optional[DataFrame],
    books: Optional[DataFrame],
    output_path: str,
    *,
    k: int = 10,
    method: Method = Method(),
    movie_lexical: Optional[DataFrame] = None,
    book_lexical: Optional[DataFrame] = None,
    movie_block_rows: int = 16384,
    book_block_rows: int = 16384,
    exclude: Optional[DataFrame] = None,
    movie_filter: Optional[str] = None,
    book_filter: Optional[str] = None,
    run_id: Optional[str] = None,
    rows_per_file: int = 4_000_000,
    kernel: Optional[Callable] = None,
    phases: Optional[Phases] = None,
    missing_side: Optional[str] = None,
    guards: Optional[Guards] = None,
    sources: Sequence[str] = (),
) -> ScoreResult:
    """Exact top-k books per movie by ``method``, written to the Delta table at ``output_path``.

    ``movies`` / ``books``: embedding tables (``id, embedding array<float>, model_version``; dense
    and hybrid); ``movie_lexical`` / ``book_lexical``: lexical tables (LEXICAL_CONTRACT schema;
    lexical and hybrid); other columns are ignored. ``exclude``: ``DataFrame(movie_id, book_id)`` of
    pairs never to recommend (e.g. known adaptations); masked inside the block kernel before the
    top-k is cut, so every movie still gets k books when k others exist. ``movie_filter`` /
    ``book_filter``: SQL predicates applied to the inputs before blocking (e.g. ``"year >= 2000"``
    when the caller joined catalog columns in; the hybrid applies them to both of a domain's tables).
    ``kernel``: replaces the block kernel (tests, experiments). ``phases``: the job's phase timer.
    ``missing_side``: the hybrid's ids with one side only (``lfr.score.sides``); ``guards``: how many films
    the run may remove from the table, checked before anything is written (``sources`` named in a refusal);
    None: the configuration's (``score.missing_side``, ``guards``) -- a library call is never unguarded.
    """
    if k <= 0 or movie_block_rows <= 0 or book_block_rows <= 0:
        raise ValueError(f"k and the block sizes must be positive, got {k}, {movie_block_rows}, {book_block_rows}")
    method = method if isinstance(method, Method) else Method(str(method))
    missing_side, guards = _configured(missing_side, guards)
    started = time.time()
    run_id = run_id or f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    phases = phases if phases is not None else Phases(f"score {run_id}", log)
    with phases("check"):
        inputs = _check_and_pair(method, movies, books, movie_lexical, book_lexical, movie_filter, book_filter,
                                 missing_side)
        inputs.movies = _with_exclusions(inputs.movies, exclude)
    t_check = time.time() - started
    with phases("blocks"):
        blocks = _plan_blocks(spark, inputs, inputs.spec, movie_block_rows, book_block_rows, exclude is not None)
    t_blocks = time.time() - started
    _log_plan(run_id, method, inputs, blocks, k, t_check, t_blocks)
    target = _Target(output_path, rows_per_file, guards, tuple(sources), run_id)
    t_score, shrink = _score_and_write(spark, blocks, inputs, method, k, kernel, target, phases)
    return _finish(spark, target, method, inputs, blocks, k, phases, shrink, (t_blocks, t_score, started))


def _finish(spark: SparkSession, target: _Target, method: Method, inputs: _Inputs, blocks: _Blocks, k: int,
            phases: Phases, shrink: Shrink, times: tuple[float, float, float]) -> ScoreResult:
    """The written table's version and rows, the run's summary, one INFO line."""
    t_blocks, t_score, started = times
    with phases("history"):
        version, rows = table_version(spark, target.path)
    result = _result(target.run_id, method, inputs, blocks, k, version, rows, target.path, phases,
                     seconds=(t_blocks, t_score, time.time() - started))
    result.films = _films(shrink)
    log.info("score %s: wrote %d rows (%d films; %d before, %d of them no longer scored) to %s (Delta version %s) "
             "in %.1fs (kernel+merge+write %.1fs)", result.run_id, result.rows, shrink.after, shrink.before,
             shrink.deleted, result.path, result.table_version, result.seconds, result.seconds_score)
    return result


def _score_and_write(spark: SparkSession, blocks: _Blocks, inputs: _Inputs, method: Method, k: int,
                     kernel: Optional[Callable], target: _Target, phases: Phases) -> tuple[float, Shrink]:
    """Phase 3: the films guard, then the block kernel over every block pair, the k-bounded merge and
    the Delta write; the cached blocks are released whatever happens. Returns (its seconds, the shrink)."""
    cached = [blocks.movies, blocks.books]
    try:
        n_movies, n_books = int(blocks.ms["rows"] or 0), int(blocks.bs["rows"] or 0)
        if n_movies == 0 or n_books == 0:
            raise ScoringError(f"nothing to score: {n_movies} valid movie and {n_books} valid book rows")
        with phases("guard"):
            shrink = _guard_films(spark, blocks, target)
        t0 = time.time()
        with phases("score+write"):
            merged = _score_pairs(spark, blocks, inputs, method, k, kernel, cached)
            _write(merged, inputs, method, target, n_movies * min(k, n_books),
                   _commit_metadata(target, method, inputs, shrink))
        return time.time() - t0, shrink
    finally:
        for df in cached:
            df.unpersist()


def _result(run_id: str, method: Method, inputs: _Inputs, blocks: _Blocks, k: int, version, rows,
            output_path: str, phases: Phases, seconds: tuple[float, float, float]) -> ScoreResult:
    """The run's summary from its plan, its table version and ``seconds`` = (blocks, score, total)."""
    ms, bs = blocks.ms, blocks.bs
    t_blocks, t_score, total = seconds
    return ScoreResult(
        run_id=run_id, method=method.name, method_params=json.dumps(method.params(), sort_keys=True),
        model_version=inputs.model_version, lexical_version=inputs.lexical_version, k=k, dim=blocks.dim,
        vocab_size=inputs.vocab_size, movies=int(ms["rows"] or 0), books=int(bs["rows"] or 0),
        movies_invalid=int(ms["invalid"] or 0), books_invalid=int(bs["invalid"] or 0),
        movie_blocks=int(ms["blocks"]), book_blocks=int(bs["blocks"]), pairs=blocks.pairs,
        rows=rows if rows is not None else -1, table_version=version, seconds_blocks=round(t_blocks, 2),
        seconds_score=round(t_score, 2), seconds=round(total, 2), path=output_path, phases=phases.seconds,
        missing_sides=inputs.sides.as_dict() if inputs.sides else None)


def _log_plan(run_id: str, method: Method, inputs: _Inputs, blocks: _Blocks, k: int, t_check: float,
              t_blocks: float) -> None:
    ms, bs = blocks.ms, blocks.bs
    log.info("score %s: method=%s %s model_version=%s lexical_version=%s d=%s vocab=%s k=%d | "
             "movies %d (+%d invalid) in %d blocks (largest %s) | books %d (+%d invalid) in %d blocks (largest %s) | "
             "%d block pairs | checks %.1fs, blocks built %.1fs",
             run_id, method.name, json.dumps(method.params()), inputs.model_version, inputs.lexical_version,
             blocks.dim, inputs.vocab_size, k, ms["rows"] or 0, ms["invalid"] or 0, ms["blocks"], ms["largest"],
             bs["rows"] or 0, bs["invalid"] or 0, bs["blocks"], bs["largest"], blocks.pairs, t_check,
             t_blocks - t_check)


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


def _read_tables(spark: SparkSession, t, method: Method) -> dict:
    """The input tables the method needs, or a clear error naming the job that writes them."""
    keys = (["movie_embeddings", "book_embeddings"] if method.dense else []) + \
           (["movie_lexical", "book_lexical"] if method.lexical else [])
    out = {}
    for key in keys:
        spec = t.get(key) if hasattr(t, "get") else None
        if not spec or not is_delta_table(spark, spec["path"]):
            where = spec["path"] if spec else f"tables.{key} (not configured)"
            job = ("jobs/embed_lexical.py" if "lexical" in key
                   else "the embedding jobs (jobs/embed_movies.py, jobs/embed_books.py)")
            raise ScoringError(f"no Delta table at {where} ({key}), needed by score.method={method.name}; "
                               f"run {job} first")
        out[key] = spark.read.format("delta").load(spec["path"])
    return out


def method_from_settings(sc, method: Optional[str] = None) -> Method:
    """``score.method`` / ``fusion`` / ``alpha`` / ``rrf_k`` (``method`` overrides the first)."""
    get = sc.get if hasattr(sc, "get") else (lambda key, default=None: getattr(sc, key, default))
    return Method(name=str(method or get("method", "dense") or "dense"),
                  fusion=str(get("fusion", "convex") or "convex"),
                  alpha=float(get("alpha", 0.7) if get("alpha", 0.7) is not None else 0.7),
                  rrf_k=int(get("rrf_k", 60) or 60))


def run_score(
    spark: SparkSession,
    cfg,
    *,
    k: Optional[int] = None,
    method: Optional[str] = None,
    movie_block_rows: Optional[int] = None,
    book_block_rows: Optional[int] = None,
    exclude_pairs: Optional[str] = None,
    movie_filter: Optional[str] = None,
    book_filter: Optional[str] = None,
    kernel: Optional[Callable] = None,
    missing_side: Optional[str] = None,
    guards: Optional[Guards] = None,
) -> ScoreResult:
    """The job: feature tables of ``cfg['tables']`` -> ``recommendations`` + view, registered for SQL.

    Arguments left ``None`` come from ``cfg['score']`` (``method``, ``fusion``, ``alpha``,
    ``rrf_k``, ``missing_side`` too) and ``guards`` from ``cfg['guards']`` (the job adds its
    ``--allow-deletes``). Filters may use the catalog columns (``genres``, ``year``, ``authors``, ...)
    when the catalog tables exist: they are joined in by id.
    """
    sc, t = cfg["score"], cfg["tables"]
    m = method_from_settings(sc, method)
    k = int(k if k is not None else sc["k"])
    movie_block_rows = int(movie_block_rows or sc["movie_block_rows"])
    book_block_rows = int(book_block_rows or sc["book_block_rows"])
    exclude_pairs = exclude_pairs if exclude_pairs is not None else sc.get("exclude_pairs")
    movie_filter = movie_filter if movie_filter is not None else sc.get("movie_filter")
    book_filter = book_filter if book_filter is not None else sc.get("book_filter")
    missing_side = missing_side if missing_side is not None else sc["missing_side"]
    guards = guards if guards is not None else Guards.from_settings(cfg["guards"])
    phases = Phases("score_all", log)
    with phases("read"):
        tables = _read_tables(spark, t, m)
    _join_catalogs(spark, t, tables, movie_filter, book_filter)
    exclude = (load_exclusions(spark, cfg, exclude_pairs, _pair_ids(tables, "movie_"), _pair_ids(tables, "book_"))
               if exclude_pairs else None)
    result = score_recommendations(
        spark, tables.get("movie_embeddings"), tables.get("book_embeddings"), t["recommendations"]["path"], k=k,
        method=m, movie_lexical=tables.get("movie_lexical"), book_lexical=tables.get("book_lexical"),
        movie_block_rows=movie_block_rows, book_block_rows=book_block_rows, exclude=exclude,
        movie_filter=movie_filter, book_filter=book_filter, kernel=kernel, phases=phases,
        missing_side=missing_side, guards=guards, sources=[t[key]["path"] for key in tables])
    with phases("register"):
        names = register_recommendations(spark, cfg)
    log.info("registered for SQL: %s", ", ".join(names))
    result.phases = phases.rounded()
    log.info("score_all phases: %s", phases.summary())
    return result


def _pair_ids(tables: dict, prefix: str) -> DataFrame:
    """The ids (and ``merged_ids``) a ``movie_id,book_id`` pair file is resolved against: those of every
    input table of the domain, so an item the hybrid scores with one side (``use_present``) keeps its exclusions."""
    frames = [df.select("id", *(["merged_ids"] if "merged_ids" in df.columns else []))
              for key, df in tables.items() if key.startswith(prefix)]
    if len(frames) == 1:
        return frames[0]
    return reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), frames).dropDuplicates(["id"])


def _join_catalogs(spark: SparkSession, t, tables: dict, movie_filter: Optional[str],
                   book_filter: Optional[str]) -> None:
    """The catalog columns joined into every input table of a filtered domain (in place), so the
    filter reads the same columns on each table (the hybrid filters both sides)."""
    for predicate, domain, prefix in ((movie_filter, "movies", "movie_"), (book_filter, "books", "book_")):
        if predicate:
            for key in [key for key in tables if key.startswith(prefix)]:
                tables[key] = _with_catalog_columns(spark, tables[key], t[domain]["path"])
