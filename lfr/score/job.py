"""Score every movie against every book: checks, exclusions, filters, the Delta write, SQL.

``score_recommendations`` is the library entry point (DataFrames in, Delta table out, a ``ScoreSettings``
and the ``Guards``); ``run_score`` is what ``jobs/score_all.py`` calls with the typed ``Settings``.
What differs between methods (inputs, blocks, kernel, ``method_params``) is the method's strategy
(:mod:`lfr.score.methods`); this module runs any of them the same way.

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
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import reduce
from typing import Callable, Optional, Sequence

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lfr.phases import Phases
from lfr.score.blocks import Blocks, plan_blocks
from lfr.score.checks import ModelVersionMismatch, ScoringError, check_inputs
from lfr.score.hubs import HUB_TOP, HubStats, apply_hubness, book_occurrences, occurrence_hub_stats, write_book_hubs
from lfr.score.methods import Frames, Inputs, ScoringMethod, scoring_method
from lfr.score.sides import MissingSideError
from lfr.score.view import create_view, register_recommendations
from lfr.settings import ScoreSettings, Settings, TablesSettings
from lfr.spark.delta import is_delta_table, table_version
from lfr.spark.guards import Guards, Shrink, ShrinkRefused, table_shrink

log = logging.getLogger(__name__)

__all__ = ["MissingSideError", "ModelVersionMismatch", "ScoreResult", "ScoringError", "ShrinkRefused",
           "check_inputs", "create_view", "load_exclusions", "register_recommendations", "run_score",
           "score_recommendations"]

#: rows per output file (~100 MB of recommendations; module doc, "Layout")
ROWS_PER_FILE = 4_000_000


@dataclass
class ScoreResult:
    """A run's summary: what was scored, what was written, and seconds per phase (``lfr.phases.Phases``)."""
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
    path: str
    phases: dict           # seconds per phase (read, check, blocks, guard, score+write, history, hubs, register)
    # hybrid: the ids with one side only, per domain, and score.missing_side (lfr.score.sides); None otherwise
    missing_sides: Optional[dict] = None
    films: dict = field(default_factory=dict)    # the guard's count: films in the table before, after, deleted
    hubs: dict = field(default_factory=dict)     # lfr.score.hubs.HubStats of the written table

    @property
    def seconds(self) -> float:
        """The run's seconds: the sum of its phases."""
        return round(sum(self.phases.values()), 2)

    def as_dict(self) -> dict:
        return {**asdict(self), "seconds": self.seconds}


@dataclass(frozen=True)
class _Target:
    """Where and how a run writes: the table, its file size, the guards and the inputs a refusal names."""
    path: str
    rows_per_file: int
    guards: Guards
    sources: tuple
    run_id: str
    hubs_path: Optional[str] = None    # where a hub-aware run stores r(book) (tables.book_hubs); None: not stored


def _with_exclusions(movies: DataFrame, exclude: Optional[DataFrame]) -> DataFrame:
    """Movies + ``excluded``: the book ids never to recommend to each (masked inside the kernel)."""
    if exclude is None:
        return movies
    ex = (exclude.select(F.col("movie_id").cast("string"), F.col("book_id").cast("string"))
                 .dropna().groupBy("movie_id").agg(F.collect_set("book_id").alias("excluded")))
    return movies.join(ex, movies["id"] == ex["movie_id"], "left").drop("movie_id")


def _write(merged: DataFrame, inputs: Inputs, method: ScoringMethod, target: _Target, n_rows: int,
           metadata: str) -> None:
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
           .withColumn("method_params", F.lit(method.params_json()))
           .withColumn("run_id", F.lit(target.run_id))
           .withColumn("scored_at", F.lit(datetime.now(timezone.utc)).cast("timestamp"))
           .repartitionByRange(n_files, "movie_id")
           .sortWithinPartitions("movie_id", "rank"))
    (out.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
        .option("userMetadata", metadata).save(target.path))


def _commit_metadata(target: _Target, method: ScoringMethod, inputs: Inputs, shrink: Shrink) -> str:
    """JSON recorded in the Delta commit: the run, the films it covers vs the table it replaces, and
    (hybrid) the ids with one side only -- what a later reader needs to see that nothing shrank silently."""
    return json.dumps({"run_id": target.run_id, "method": method.name, "films": _films(shrink),
                       "missing_sides": inputs.sides.as_dict() if inputs.sides else None}, sort_keys=True)


def _films(shrink: Shrink) -> dict:
    return {"before": shrink.before, "after": shrink.after, "deleted": shrink.deleted}


def _guard_films(spark: SparkSession, blocks: Blocks, target: _Target) -> Shrink:
    """The films of the current table vs those this run covers (one Spark job; none when there is no
    table yet), checked by the guards BEFORE anything is written: a run over damaged or partial inputs
    must not replace a full table with a smaller one unless asked (``--allow-deletes``)."""
    table = f"recommendations ({target.path})"
    if not is_delta_table(spark, target.path):
        shrink = Shrink(table, 0, blocks.ms.rows, 0)
    else:
        films = blocks.movies.filter("n > 0").select(F.explode("ids").alias("movie_id"))
        shrink = table_shrink(spark, target.path, films, table, keys=("movie_id",))
    target.guards.check(shrink, sources=target.sources, what="films")
    return shrink


def score_recommendations(spark: SparkSession, movies: Optional[DataFrame], books: Optional[DataFrame],
                          output_path: str, *, settings: ScoreSettings, guards: Guards,
                          movie_lexical: Optional[DataFrame] = None, book_lexical: Optional[DataFrame] = None,
                          exclude: Optional[DataFrame] = None, run_id: Optional[str] = None,
                          rows_per_file: int = ROWS_PER_FILE, kernel: Optional[Callable] = None,
                          phases: Optional[Phases] = None, sources: Sequence[str] = (),
                          hubs_path: Optional[str] = None) -> ScoreResult:
    """Exact top-k books per movie by ``settings.method``, written to the Delta table at ``output_path``
    in one overwrite commit (the previous version stays readable until then).

    Parameters
    ----------
    spark : :class:`pyspark.sql.SparkSession`
    movies, books : :class:`pyspark.sql.DataFrame` or None
        Embedding tables (``id, embedding array<float>, model_version``), read by ``dense`` and ``hybrid``;
        other columns are ignored, but the filters may use them.
    output_path : str
        The recommendations table (module doc: schema, layout, atomicity).
    settings : :class:`lfr.settings.ScoreSettings`
        ``method``, ``fusion``, ``alpha``, ``rrf_k``, ``missing_side``, ``k``, the block sizes and the SQL
        filters (``movie_filter`` / ``book_filter``, applied to every table the method reads). Its
        ``exclude_pairs`` (a file) is read by :func:`run_score`; pass the pairs here as ``exclude``.
    guards : :class:`lfr.spark.guards.Guards`
        How many films the run may remove from the table; checked before anything is written.
    movie_lexical, book_lexical : :class:`pyspark.sql.DataFrame`, optional
        Lexical tables (``jobs/embed_lexical.py``), read by ``lexical`` and ``hybrid``.
    exclude : :class:`pyspark.sql.DataFrame`, optional
        ``movie_id, book_id`` pairs never to recommend, masked before the top-k is cut.
    run_id, rows_per_file, kernel, phases, sources : optional
        The run's id (default: UTC time + random), rows per output file, a stand-in for the method's
        block kernel (tests), the caller's phase timer, the inputs a guard's refusal names.
    hubs_path : str, optional
        With ``settings.hubness: csls``: the Delta table that stores each book's ``r(book)`` with the run
        (:func:`lfr.score.hubs.write_book_hubs`; ``tables.book_hubs`` in the job); None: not stored.

    Returns
    -------
    ScoreResult
        Counts (scored, invalid, blocks), versions, rows and Delta version written, films before / after,
        the hybrid's one-sided ids and seconds per phase.

    Examples
    --------
    >>> from lfr.settings import load_settings
    >>> from lfr.spark.guards import Guards
    >>> s = load_settings(overrides=["score.method=dense", "score.k=5"])
    >>> read = lambda spec: spark.read.format("delta").load(spec.path)
    >>> result = score_recommendations(
    ...     spark, read(s.tables.movie_embeddings), read(s.tables.book_embeddings), "/tmp/recs",
    ...     settings=s.score, guards=Guards.from_settings(s.guards))
    >>> result.rows, result.table_version, result.phases  # doctest: +SKIP
    """
    run_id = run_id or f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    target = _Target(output_path, rows_per_file, guards, tuple(sources), run_id, hubs_path)
    return _score(spark, scoring_method(settings), Frames(movies, books, movie_lexical, book_lexical), settings,
                  exclude, target, kernel, phases if phases is not None else Phases(f"score {run_id}", log))


def _score(spark: SparkSession, method: ScoringMethod, frames: Frames, settings: ScoreSettings,
           exclude: Optional[DataFrame], target: _Target, kernel: Optional[Callable], phases: Phases) -> ScoreResult:
    """The phases of a run: check, blocks, guard, (hub pass,) score+write, history, hubs."""
    with phases("check"):
        inputs = method.prepare(frames, settings)
        inputs.movies = _with_exclusions(inputs.movies, exclude)
    with phases("blocks"):
        blocks = plan_blocks(spark, inputs.movies, inputs.books, (inputs.movie_rows, inputs.book_rows), inputs.spec,
                             (settings.movie_block_rows, settings.book_block_rows), exclude is not None)
    _log_plan(target.run_id, method, inputs, blocks, settings.k, phases)
    shrink = _score_and_write(spark, blocks, inputs, method, settings, kernel, target, phases)
    with phases("history"):
        version, rows = table_version(spark, target.path)
    with phases("hubs"):
        hubs = _hubs(spark, blocks, method, settings.k, target)
    result = _result(target, method, inputs, blocks, settings.k, version, rows, phases)
    result.films, result.hubs = _films(shrink), hubs.as_dict()
    log.info("score %s: hubs over the top %d: the most recommended book (%s) is in %d of %d films' lists (%.1f%%); "
             "%.1f%% of the books in none; Gini %.3f, skew %.2f", result.run_id, hubs.top, hubs.hub_book,
             hubs.max_occurrence, hubs.films, 100 * hubs.max_share, 100 * hubs.never_recommended, hubs.gini,
             hubs.skew)
    log.info("score %s: wrote %d rows (%d films; %d before, %d of them no longer scored) to %s (Delta version %s) "
             "in %.1fs (kernel+merge+write %.1fs)", result.run_id, result.rows, shrink.after, shrink.before,
             shrink.deleted, result.path, result.table_version, result.seconds, result.phases["score+write"])
    return result


def _hubs(spark: SparkSession, blocks: Blocks, method: ScoringMethod, k: int, target: _Target) -> HubStats:
    """The written table's hub statistics and, for a hub-aware run with a ``hubs_path``, ``tables.book_hubs``:
    both read one aggregation of the table (its per-book k-occurrence, cached when both do). Releases the hub
    passes' ``blocks.book_stats``."""
    top = min(HUB_TOP, k)
    occ = book_occurrences(spark.read.format("delta").load(target.path), top)
    store = bool(blocks.book_stats and target.hubs_path)
    try:
        if store:
            occ = occ.persist()
        hubs = occurrence_hub_stats(occ, blocks.ms.rows, blocks.bs.rows, top)
        if store:
            write_book_hubs(blocks.book_stats, occ, target.hubs_path, method.params(), hubs, target.run_id)
        return hubs
    finally:
        if store:
            occ.unpersist()
        _release(blocks.book_stats)


def _score_and_write(spark: SparkSession, blocks: Blocks, inputs: Inputs, method: ScoringMethod,
                     settings: ScoreSettings, kernel: Optional[Callable], target: _Target,
                     phases: Phases) -> Shrink:
    """Phase 3: the films guard, the hub pass (``score.hubness``), then the method's kernel over every block
    pair, the k-bounded merge and the Delta write; the cached blocks are released whatever happens (the hub
    passes' ``blocks.book_stats`` only on failure: the run stores them). Returns the guard's count."""
    cached = [blocks.movies, blocks.books]
    k = settings.k
    try:
        n_movies, n_books = blocks.ms.rows, blocks.bs.rows
        if n_movies == 0 or n_books == 0:
            raise ScoringError(f"nothing to score: {n_movies} valid movie and {n_books} valid book rows")
        with phases("guard"):
            shrink = _guard_films(spark, blocks, target)
        if method.hub:
            with phases("hub pass"):
                apply_hubness(blocks, method.hub, settings.precision)
                cached += [blocks.movies, blocks.books]
        with phases("score+write"):
            merged = method.topk(blocks, k, kernel, cached)
            _write(merged, inputs, method, target, n_movies * min(k, n_books),
                   _commit_metadata(target, method, inputs, shrink))
        return shrink
    except BaseException:
        _release(blocks.book_stats)
        raise
    finally:
        _release(cached)


def _release(frames: list) -> None:
    for df in frames:
        df.unpersist()


def _result(target: _Target, method: ScoringMethod, inputs: Inputs, blocks: Blocks, k: int, version, rows,
            phases: Phases) -> ScoreResult:
    """The run's summary from its plan, its table version and its phases."""
    ms, bs = blocks.ms, blocks.bs
    return ScoreResult(
        run_id=target.run_id, method=method.name, method_params=method.params_json(),
        model_version=inputs.model_version, lexical_version=inputs.lexical_version, k=k,
        dim=blocks.embedding_dim,
        vocab_size=inputs.vocab_size, movies=ms.rows, books=bs.rows, movies_invalid=ms.invalid,
        books_invalid=bs.invalid, movie_blocks=ms.blocks, book_blocks=bs.blocks, pairs=blocks.n_pairs,
        rows=rows if rows is not None else -1, table_version=version, path=target.path, phases=phases.rounded(),
        missing_sides=inputs.sides.as_dict() if inputs.sides else None)


def _log_plan(run_id: str, method: ScoringMethod, inputs: Inputs, blocks: Blocks, k: int, phases: Phases) -> None:
    ms, bs = blocks.ms, blocks.bs
    log.info("score %s: method=%s %s model_version=%s lexical_version=%s d=%s vocab=%s k=%d | "
             "movies %d (+%d invalid) in %d blocks (largest %d) | books %d (+%d invalid) in %d blocks (largest %d) | "
             "%d block pairs | checks %.1fs, blocks built %.1fs",
             run_id, method.name, method.params_json(), inputs.model_version, inputs.lexical_version,
             blocks.dim, inputs.vocab_size, k, ms.rows, ms.invalid, ms.blocks, ms.largest,
             bs.rows, bs.invalid, bs.blocks, bs.largest, blocks.n_pairs, phases.seconds.get("check", 0.0),
             phases.seconds.get("blocks", 0.0))


# ---------------------------------------------------------------- the job

def load_exclusions(spark: SparkSession, settings: Settings, path: str, movies: DataFrame,
                    books: DataFrame) -> DataFrame:
    """A pair file -> ``DataFrame(movie_id, book_id)`` via ``lfr.data.read_pairs``.

    A ``movie_id,book_id`` file is resolved against the embedding tables being scored
    (``movies`` / ``books``: the ids that can be recommended). The adaptations format needs
    titles, years and authors, so it is resolved against the catalog tables
    (``tables.movies`` / ``tables.books``), read from Delta when they exist and from the
    configured sources (``settings.catalogs``) otherwise. Unresolved pairs are logged by ``read_pairs``.
    """
    from lfr.data import load_catalog, read_pairs

    header = spark.read.option("header", True).csv(path).columns
    if {"movie_id", "book_id"} <= set(header):
        return read_pairs(spark, path, movies, books)

    def catalog(domain: str) -> DataFrame:
        p = getattr(settings.tables, domain).path
        if is_delta_table(spark, p):
            return spark.read.format("delta").load(p)
        return load_catalog(spark, settings, domain)[0]

    return read_pairs(spark, path, catalog("movies"), catalog("books"))


def _with_catalog_columns(spark: SparkSession, emb: DataFrame, catalog_path: str) -> DataFrame:
    """Embeddings + the catalog's other columns (genres, year, ...), so filters can use them."""
    if not is_delta_table(spark, catalog_path):
        return emb
    cat = spark.read.format("delta").load(catalog_path)
    extra = [c for c in cat.columns if c not in emb.columns or c == "id"]
    return emb.join(cat.select(*extra), "id", "left")


def _read_tables(spark: SparkSession, tables: TablesSettings, method: ScoringMethod) -> dict:
    """The input tables the method reads (``tables.<key>``), or a clear error naming the job that writes them."""
    out = {}
    for key in method.tables:
        path = getattr(tables, key).path
        if not is_delta_table(spark, path):
            job = ("jobs/embed_lexical.py" if "lexical" in key
                   else "the embedding jobs (jobs/embed_movies.py, jobs/embed_books.py)")
            raise ScoringError(f"no Delta table at {path} ({key}), needed by score.method={method.name}; "
                               f"run {job} first")
        out[key] = spark.read.format("delta").load(path)
    return out


def run_score(spark: SparkSession, settings: Settings, *, kernel: Optional[Callable] = None) -> ScoreResult:
    """The job (``jobs/score_all.py``): the feature tables of ``settings.tables`` -> ``recommendations``
    and the view ``tables.recommendations_view``, registered for SQL.

    Filters (``score.movie_filter`` / ``book_filter``) may use the catalog columns (``genres``, ``year``,
    ``authors``, ...) when the catalog tables exist: they are joined in by id. ``score.exclude_pairs``
    is a ``movie_id,book_id`` file or the adaptations format (:func:`load_exclusions`).

    Parameters
    ----------
    spark : :class:`pyspark.sql.SparkSession`
    settings : :class:`lfr.settings.Settings`
        Read: ``score`` (everything :func:`score_recommendations` takes, plus ``exclude_pairs``),
        ``tables`` (inputs, output, SQL names), ``guards`` (a job's ``--allow-deletes`` is
        ``guards.allow_deletes``) and, for an adaptations file without catalog tables, ``catalogs``.
    kernel : callable, optional
        A stand-in for the method's block kernel (tests).

    Returns
    -------
    ScoreResult
        As :func:`score_recommendations`, its phases including ``read`` and ``register``.

    Examples
    --------
    >>> from lfr.settings import load_settings, with_values
    >>> settings = with_values(load_settings(overrides=["score.method=dense"]), {"score.k": 20})
    >>> result = run_score(spark, settings)
    >>> spark.sql("SELECT movie_title, rank, book_title FROM lfr.movie_book_recommendations").show()
    """
    score, tables = settings.score, settings.tables
    phases = Phases("score_all", log)
    with phases("read"):
        frames = _read_tables(spark, tables, scoring_method(score))
    _join_catalogs(spark, tables, frames, score.movie_filter, score.book_filter)
    exclude = (load_exclusions(spark, settings, score.exclude_pairs, _pair_ids(frames, "movie_"),
                               _pair_ids(frames, "book_")) if score.exclude_pairs else None)
    result = score_recommendations(
        spark, frames.get("movie_embeddings"), frames.get("book_embeddings"), tables.recommendations.path,
        settings=score, guards=Guards.from_settings(settings.guards), movie_lexical=frames.get("movie_lexical"),
        book_lexical=frames.get("book_lexical"), exclude=exclude, kernel=kernel, phases=phases,
        sources=[getattr(tables, key).path for key in frames], hubs_path=tables.book_hubs.path)
    with phases("register"):
        names = register_recommendations(spark, settings)
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


def _join_catalogs(spark: SparkSession, tables: TablesSettings, frames: dict, movie_filter: Optional[str],
                   book_filter: Optional[str]) -> None:
    """The catalog columns joined into every input table of a filtered domain (in place), so the
    filter reads the same columns on each table (the hybrid filters both sides)."""
    for predicate, domain, prefix in ((movie_filter, "movies", "movie_"), (book_filter, "books", "book_")):
        if predicate:
            for key in [key for key in frames if key.startswith(prefix)]:
                frames[key] = _with_catalog_columns(spark, frames[key], getattr(tables, domain).path)
