"""Incremental embedding of a catalog: ``embed_catalog(spark, settings, domain, full=False) -> EmbedStats``.

Steps:

1. Ship the model artifact (``lfr.embed.ship``): fails first, with a message naming
   ``jobs/train.py``, when there is no artifact -- before any data is read.
2. ``read_catalog`` -> valid rows and rejects; a file that cannot be used as a whole (cut,
   empty, unbalanced quotes) is a ``CatalogReadError`` (exit code 2) before anything is written.
3. Plans (``lfr.spark.sync.IncrementalTable.plan``, one Spark job each) of the three tables this
   run writes, and the guards (``lfr.spark.guards``) on them: a run that would delete more of the
   catalog table or of the embeddings table than ``guards`` allows is refused here, before any
   table is written (``guards.allow_deletes`` / ``--allow-deletes`` accepts it; ``--full`` is
   checked the same); items that lost a source's text are counted and logged.
4. Rejects -> the ``rejects`` Delta table (partitioned by ``domain``), synchronised per
   domain: a reject already recorded (same domain, source, id, reason and raw row) is
   left as is -- its ``rejected_at`` is when it was first seen --, new ones are inserted,
   and this domain's rows that are no longer rejected (fixed at the source) are deleted.
   Reruns therefore never duplicate; the movies and books jobs touch disjoint partitions.
   Valid rows -> the catalog table (``tables.movies`` / ``tables.books``, ``CATALOG_SCHEMA``),
   synchronised the same way on ``id`` (scoring joins it for genre/year filters and titles).
5. ``content_hash`` (sha256 of title, description, genres) and the model version are compared
   with the embeddings table's: only new or changed rows -- all rows when the model version
   changed or the table does not exist -- are embedded, by the pandas UDF (``lfr.embed.udf``),
   on ``embed.partitions`` partitions (see ``embed_partitions``).
6. One MERGE on ``id`` upserts them and deletes the embeddings of ids that left the valid
   catalog (``embed.delete_missing``: an item removed from the source or now rejected must not
   keep being recommended; Delta time travel keeps the old rows). ``full`` rebuilds the table
   with one atomic overwrite instead.

A rerun with nothing changed makes no Delta commit at all. Every table is registered for SQL in
``tables.database``. Upserts and deletions go into ONE commit: two would leave a window in which
readers see a half-updated table.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lfr.data import content_hash_col
from lfr.data.catalog import CatalogLoad, read_catalog
from lfr.data.schema import conform
from lfr.embed.schema import EMBEDDINGS_SCHEMA
from lfr.embed.ship import ArtifactRef, ship_artifact
from lfr.embed.udf import embed_column
from lfr.model.onnxrt import check_runtime
from lfr.phases import Phases
from lfr.settings import EmbedSettings, ModelSettings, Settings, TablesSettings
from lfr.spark.delta import is_delta_table, register_table
from lfr.spark.guards import Guards
from lfr.spark.progress import progress
from lfr.spark.sync import ChangePlan, IncrementalTable, sync_table

log = logging.getLogger(__name__)

EMBEDDING_TABLES = {"movies": "movie_embeddings", "books": "book_embeddings"}
REJECT_KEYS = ("domain", "source", "id", "reason", "raw")
__all__ = ["EMBEDDING_TABLES", "EmbedStats", "REJECT_KEYS", "embed_catalog", "embed_partitions", "embed_tables",
           "sync_table"]   # sync_table: lfr.spark.sync's, importable here for tests/test_cluster.py


@dataclass
class EmbedStats:
    domain: str
    model_version: str
    read: int = 0
    valid: int = 0
    rejected: int = 0
    rejected_by_reason: dict = field(default_factory=dict)
    merged: int = 0                 # rows folded into an item of an earlier source (films)
    near_matches: int = 0           # title matches kept apart for lack of evidence (lfr.data.catalog)
    lost_source_text: int = 0       # items whose text lost a source they had in the catalog table
    unchanged: int = 0
    embedded: int = 0
    deleted: int = 0
    embed_seconds: float = 0.0
    items_per_s: float = 0.0
    full: bool = False
    table_written: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------ phases of embed_catalog
def embed_partitions(spark: SparkSession, n_rows: int, batch_size: int, configured: int | None = None,
                     rows_per_partition: int | None = None) -> int:
    """``configured`` partitions, else the cluster's parallelism or one per ``rows_per_partition`` rows,
    whichever is more; never more than one per batch.

    Bounded partitions keep a large run observable and cheap to retry: a task is the unit of the
    progress log and of what a lost executor or Python worker makes Spark redo (the model loads once
    per reused Python worker, not per task).
    """
    p = int(configured) if configured else spark.sparkContext.defaultParallelism
    if not configured and rows_per_partition:
        p = max(p, math.ceil(n_rows / int(rows_per_partition)))
    return max(1, min(p, math.ceil(n_rows / max(1, batch_size))))


def _ship(spark: SparkSession, model_dir: str, mode: str, model: ModelSettings) -> ArtifactRef:
    """The artifact shipped, with the run's ``model.precision``/``runtime``/``quantize`` for the executors."""
    check_runtime(model.runtime, model.quantize, model.precision)
    if str(spark.conf.get("spark.python.worker.reuse", "true")).lower() != "true":
        log.warning("spark.python.worker.reuse is false: every task will reload the model")
    ref = ship_artifact(spark, model_dir, mode=mode, runtime=model.runtime)
    if model.runtime != "torch":
        log.info("executors run the model on ONNX Runtime (model.quantize=%s)", model.quantize)
    return replace(ref, precision=model.precision or ref.precision, runtime=model.runtime, quantize=model.quantize)


def _count_rejects(load: CatalogLoad, stats: EmbedStats) -> None:
    stats.valid = load.valid.count()
    per_reason = load.rejects.groupBy("reason").count().collect()   # one small job; reasons split on the driver
    stats.rejected = sum(r["count"] for r in per_reason)
    kinds: dict[str, int] = {}
    for r in per_reason:
        for reason in r["reason"].split(","):
            kind = "duplicate_of" if reason.startswith("duplicate_of:") else reason
            kinds[kind] = kinds.get(kind, 0) + r["count"]
    stats.rejected_by_reason = dict(sorted(kinds.items(), key=lambda kv: -kv[1]))
    stats.read = sum(load.records.values())
    stats.merged, stats.near_matches = load.merged, load.near
    log.info("%s: read %d rows (%s), %d valid, %d merged into another source's item, %d rejected %s", stats.domain,
             stats.read, ", ".join(f"{path}: {n}" for path, n in load.records.items()), stats.valid, stats.merged,
             stats.rejected, stats.rejected_by_reason)


def lost_source_text(spark: SparkSession, path: str, valid: DataFrame) -> tuple[int, list[str]]:
    """Items of the catalog table at ``path`` that keep their id but lose a source's text in ``valid``
    (a film whose Wikipedia plot is gone because that file lost it): how many, and up to 5 ids."""
    if not is_delta_table(spark, path):
        return 0, []
    cur = spark.read.format("delta").load(path).select("id", F.col("sources").alias("_was"))
    lost = (valid.select("id", "sources").join(cur, "id")
            .filter(F.size(F.array_except("_was", "sources")) > 0))
    row = lost.agg(F.count(F.lit(1)).alias("n"), F.slice(F.collect_list("id"), 1, 5).alias("ids")).first()
    return int(row["n"]), list(row["ids"] or [])


# ------------------------------------------------------------------ the tables and their plans
@dataclass(frozen=True)
class EmbedTables:
    """The incremental tables one embed run of a domain writes."""
    rejects: IncrementalTable
    catalog: IncrementalTable
    embeddings: IncrementalTable


def embed_tables(spark: SparkSession, tables: TablesSettings, domain: str) -> EmbedTables:
    """The ``rejects`` table (this domain's partition), the domain's catalog table (a pure function of
    the catalog files: an older schema is rewritten) and its embeddings table."""
    rej, cat, emb = tables.rejects, getattr(tables, domain), getattr(tables, EMBEDDING_TABLES[domain])
    return EmbedTables(
        IncrementalTable(spark, rej.path, rej.name, REJECT_KEYS, scope={"domain": domain}, partition_by=("domain",),
                         fix=f"Delete the folder {rej.path}: embed_movies and embed_books rebuild it from the "
                             "catalogs"),
        IncrementalTable(spark, cat.path, cat.name, on_schema_change="rebuild"),
        IncrementalTable(spark, emb.path, emb.name, schema=EMBEDDINGS_SCHEMA,
                         fix=f"rerun the job with --full (rewrites it) or delete the folder {emb.path}"))


def embedding_rows(catalog: DataFrame, model_version: str) -> DataFrame:
    """What the embeddings table records of each catalog item before embedding: the model's inputs,
    their ``content_hash`` and the model version (an item is re-embedded when either changes)."""
    return catalog.select("id", "title", "description", "genres", content_hash_col(catalog).alias("content_hash"),
                          F.lit(model_version).alias("model_version"))


@dataclass
class EmbedPlans:
    rejects: ChangePlan
    catalog: ChangePlan
    embeddings: ChangePlan

    def release(self) -> None:
        for plan in (self.rejects, self.catalog, self.embeddings):
            plan.release()


def _plan(t: EmbedTables, load: CatalogLoad, ref: ArtifactRef, guards: Guards, *, full: bool,
          delete_missing: bool, stats: EmbedStats) -> EmbedPlans:
    """Step 3 of the module doc: every table's plan; ``ShrinkRefused`` before any write."""
    done: list[ChangePlan] = []
    try:
        done.append(t.catalog.plan(load.valid, guards=guards, sources=load.sources, what="items"))
        done.append(t.embeddings.plan(embedding_rows(load.valid, ref.model_version),
                                      compare=["content_hash", "model_version"], delete_missing=delete_missing,
                                      rebuild=full, guards=guards, sources=load.sources, what="embeddings"))
        done.append(t.rejects.plan(load.rejects, compare=[]))
    except Exception:
        for plan in done:
            plan.release()
        raise
    stats.lost_source_text, sample = lost_source_text(t.catalog.spark, t.catalog.path, load.valid)
    if stats.lost_source_text:
        log.warning("%s: %d item(s) lost a source's text since the last run (merged films now read from fewer "
                    "files), e.g. %s: they are re-embedded from what is left", stats.domain, stats.lost_source_text,
                    ", ".join(sample))
    return EmbedPlans(done[2], done[0], done[1])


def _sync_catalog(t: EmbedTables, plans: EmbedPlans) -> None:
    """Step 4 of the module doc: the rejects table (this domain's partition), the catalog table."""
    t.rejects.write(plans.rejects)
    log.info("rejects table: %d new, %d no longer rejected", plans.rejects.rows_written, plans.rejects.deleted)
    t.catalog.write(plans.catalog)
    log.info("catalog table %s: %d rows inserted/updated, %d deleted", t.catalog.name, plans.catalog.rows_written,
             plans.catalog.deleted)


def _embed(spark: SparkSession, plan: ChangePlan, ref: ArtifactRef, settings: EmbedSettings,
           stats: EmbedStats) -> DataFrame:
    """The plan's rows embedded by the UDF, persisted and counted (the write then reads the cache)."""
    parts = embed_partitions(spark, plan.rows_written, settings.batch_size, settings.partitions,
                             settings.rows_per_partition)
    embedded = conform(plan.upserts.repartition(parts).select(
        "id", "title",
        embed_column(ref, "title", "description", "genres", ids="id", batch_size=settings.batch_size,
                     domain=stats.domain).alias("embedding"),
        F.lit(ref.model_version).alias("model_version"), "content_hash",
        F.lit(datetime.now(timezone.utc)).cast("timestamp").alias("embedded_at"),
    ), EMBEDDINGS_SCHEMA).persist(StorageLevel.MEMORY_AND_DISK)
    t0 = time.time()
    log.info("embedding %d %s on %d partitions", plan.rows_written, stats.domain, parts)
    with progress(spark, f"embed {stats.domain}", interval=settings.progress_seconds):
        stats.embedded = embedded.count()
    stats.embed_seconds = time.time() - t0
    stats.items_per_s = stats.embedded / stats.embed_seconds if stats.embed_seconds > 0 else 0.0
    log.info("embedded %d %s on %d partitions in %.1fs: %.1f items/s", stats.embedded, stats.domain, parts,
             stats.embed_seconds, stats.items_per_s)
    return embedded


def _embed_and_write(t: EmbedTables, plan: ChangePlan, ref: ArtifactRef, settings: EmbedSettings,
                     phases: Phases, stats: EmbedStats) -> None:
    """Steps 5-6 of the module doc: embed the new/changed rows, one write (none when nothing changed)."""
    stats.unchanged, stats.deleted = plan.unchanged, plan.deleted
    if plan.is_empty:
        log.info("%s embeddings are up to date (model %s): nothing to embed, no commit", stats.domain,
                 ref.model_version)
        return
    with phases("embed"):
        embedded = _embed(t.embeddings.spark, plan, ref, settings, stats)
    with phases("write"):
        stats.table_written = t.embeddings.write(plan, embedded)
    embedded.unpersist()


def _register(spark: SparkSession, tables: TablesSettings, domain: str) -> None:
    for spec in (getattr(tables, EMBEDDING_TABLES[domain]), getattr(tables, domain), tables.rejects):
        if is_delta_table(spark, spec.path):
            register_table(spark, tables.database, spec.name, spec.path)


def _summary(stats: EmbedStats, phases: Phases) -> None:
    log.info("embed_%s phases: %s", stats.domain, phases.summary())
    log.info("%s: %d read, %d valid, %d merged, %d rejected, %d unchanged, %d embedded, %d deleted; %.1f items/s; "
             "%.1fs total", stats.domain, stats.read, stats.valid, stats.merged, stats.rejected, stats.unchanged,
             stats.embedded, stats.deleted, stats.items_per_s, stats.seconds)


def embed_catalog(spark: SparkSession, settings: Settings, domain: str, *, full: bool = False) -> EmbedStats:
    """Validate a catalog, record its rejects, and embed its new or changed items into Delta.

    The incremental counterpart of ``predict_batch_udf`` over a whole table: only the items whose
    content or model version changed are embedded (by ``embed_column``), and the catalog, rejects
    and embeddings tables are each brought up to date in one commit (none when nothing changed).
    See the module doc for the steps.

    Parameters
    ----------
    spark : SparkSession
        A session with Delta enabled (``lfr.spark.build_session``).
    settings : lfr.settings.Settings
        The run's settings: ``catalogs`` and ``validation`` (what is read), ``tables`` (where it
        goes), ``embed`` (batch size, partitions, shipping, ``delete_missing``), ``paths.model_dir``
        (the trained artifact), ``model.precision`` (applied on the executors over the artifact's
        own; an inference setting, so the embeddings keep their model version) and ``guards``
        (how much the run may shrink the catalog and embeddings tables).
    domain : str
        ``"movies"`` or ``"books"``.
    full : bool, optional
        Re-embed every item and rewrite the embeddings table (one overwrite). Checked by the
        guards like any other run.

    Returns
    -------
    EmbedStats
        Rows read, valid, rejected (by reason), merged, embedded, unchanged and deleted; timings.

    Raises
    ------
    lfr.model.artifact.ArtifactMissing
        No trained model at ``paths.model_dir`` (before any data is read).
    lfr.data.catalog.CatalogReadError
        A catalog file that cannot be used as a whole.
    lfr.spark.guards.ShrinkRefused
        The run would delete more than ``guards.*`` allows; nothing was written.
    lfr.spark.delta.TableSchemaError
        An embeddings or rejects table of an older schema (the message names the fix).

    Example
    -------
    >>> from lfr.settings import load_settings, with_values
    >>> settings = with_values(load_settings(), {"embed.batch_size": 32, "guards.allow_deletes": True})
    >>> stats = embed_catalog(spark, settings, "books")              # doctest: +SKIP
    >>> stats.embedded, stats.unchanged, stats.deleted               # doctest: +SKIP
    (12, 988, 0)
    """
    if domain not in EMBEDDING_TABLES:
        raise ValueError(f"domain must be one of {sorted(EMBEDDING_TABLES)}, not {domain!r}")
    started, phases = time.time(), Phases(f"embed_{domain}", log)
    stats = _run(spark, settings, domain, bool(full), phases)
    stats.seconds = time.time() - started
    _summary(stats, phases)
    return stats


def _run(spark: SparkSession, settings: Settings, domain: str, full: bool, phases: Phases) -> EmbedStats:
    """The phases of ``embed_catalog`` (steps 1-6 of the module doc, then the SQL registration)."""
    with phases("ship model"):
        ref = _ship(spark, settings.paths.model_dir, settings.embed.ship_model, settings.model)
    stats = EmbedStats(domain=domain, model_version=ref.model_version, full=full)
    tables = embed_tables(spark, settings.tables, domain)
    with phases("read catalog"):
        load = read_catalog(spark, settings, domain)
        _count_rejects(load, stats)
    with phases("plan + guards"):
        plans = _plan(tables, load, ref, Guards.from_settings(settings.guards), full=full,
                      delete_missing=settings.embed.delete_missing, stats=stats)
    try:
        with phases("sync catalog+rejects"):
            _sync_catalog(tables, plans)
        _embed_and_write(tables, plans.embeddings, ref, settings.embed, phases, stats)
    finally:
        plans.release()
    with phases("register"):
        _register(spark, settings.tables, domain)
    return stats
