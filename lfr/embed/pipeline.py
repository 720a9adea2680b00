"""Incremental embedding of a catalog:
``embed_catalog(spark, cfg, domain, tables=..., model_dir=..., ...) -> EmbedStats``.

Steps:

1. Ship the model artifact (``lfr.embed.ship``): fails first, with a message naming
   ``jobs/train.py``, when there is no artifact -- before any data is read.
2. ``read_catalog`` -> valid rows and rejects; a file that cannot be used as a whole (cut,
   empty, unbalanced quotes) is a ``CatalogReadError`` (exit code 2) before anything is written.
   Guards (``lfr.spark.guards``): a run that would delete more of the catalog table or of the
   embeddings table than ``guards`` allows is refused here too (``--allow-deletes`` accepts
   it; ``--full`` is checked the same); items that lost a source's text are counted and logged.
3. Rejects -> the ``rejects`` Delta table (partitioned by ``domain``), synchronised per
   domain: a reject already recorded (same domain, source, id, reason and raw row) is
   left as is -- its ``rejected_at`` is when it was first seen --, new ones are inserted,
   and this domain's rows that are no longer rejected (fixed at the source) are deleted.
   Reruns therefore never duplicate; the movies and books jobs touch disjoint partitions.
4. Valid rows -> the catalog table (``tables.movies`` / ``tables.books``, ``CATALOG_SCHEMA``),
   synchronised the same way on ``id`` (scoring joins it for genre/year filters and titles).
5. ``content_hash`` (sha256 of title, description, genres) is compared with the embeddings
   table on ``(id, content_hash, model_version)``: only new or changed rows -- all rows
   when the model version changed or the table does not exist -- are embedded, by the
   pandas UDF (``lfr.embed.udf``), on ``partitions`` partitions (``embed.partitions``) (default: the cluster's
   default parallelism; never more than one partition per ``embed.batch_size`` rows).
6. One MERGE on ``id`` upserts them and deletes the embeddings of ids that left the
   valid catalog (decision: delete, ``embed.delete_missing``: an item removed from the
   source or now rejected must not keep being recommended; Delta time travel keeps the
   old rows). ``--full`` rebuilds the table with one atomic overwrite instead.

A rerun with nothing changed makes no Delta commit at all (no table is written when
there is nothing to insert, update or delete). Every table is registered for SQL in
``tables.database``.

Phases (one function each): ``_ship`` -> ``read_catalog`` + ``_count_rejects`` -> ``_guard``
(step 2) -> ``_sync_catalog`` (steps 3-4) -> ``_embed_and_write`` (``plan_changes``, ``_embed``,
``_write``: steps 5-6) -> ``_register``. ``sync_table`` and ``plan_changes``
share ``_classify`` (one null-safe full outer join, one action column, one counting job).

Upserts and deletions go into ONE MERGE (``lfr.spark.delta.merge_changes``): two commits
would leave a window in which readers see a half-updated table.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from functools import reduce
from typing import Mapping, Sequence

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lfr.data import content_hash_col
from lfr.data.catalog import CatalogLoad, read_catalog
from lfr.data.schema import conform
from lfr.embed.schema import EMBEDDINGS_SCHEMA
from lfr.embed.ship import ArtifactRef, ship_artifact
from lfr.embed.udf import embed_column
from lfr.phases import Phases
from lfr.spark.delta import (
    TableSchemaError,
    is_delta_table,
    merge_changes,
    register_table,
    retry_on_conflict,
    schema_diff,
    write_table,
)
from lfr.spark.guards import Guards, guards_for, table_shrink
from lfr.spark.progress import progress

log = logging.getLogger(__name__)

EMBEDDING_TABLES = {"movies": "movie_embeddings", "books": "book_embeddings"}
REJECT_KEYS = ["domain", "source", "id", "reason", "raw"]
_CUR = "_c_"   # prefix of the current table's columns in a change plan


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


# ------------------------------------------------------------------ change plans (shared)
def _classify(new: DataFrame, current: DataFrame, keys: Sequence[str], action: Column) -> tuple[DataFrame, dict]:
    """Full outer join of ``new`` and ``current`` (its columns prefixed ``_c_``) on ``keys``, null-safe;
    the rows whose ``action`` is not null, persisted, and how many rows per action (one Spark job).

    ``action`` sees both sides' columns; a row only in ``current`` has every ``new`` column null."""
    cur = current.select(*[F.col(c).alias(_CUR + c) for c in current.columns])
    cond = reduce(lambda a, b: a & b, [new[k].eqNullSafe(cur[_CUR + k]) for k in keys])
    changes = (new.join(cur, cond, "full_outer").select("*", action.alias("_action"))
               .filter(F.col("_action").isNotNull()).persist())
    counts = {r["_action"]: r["count"] for r in changes.groupBy("_action").count().collect()}
    return changes, counts


def _current_keys(changes: DataFrame, action: str, keys: Sequence[str]) -> DataFrame:
    """The current table's keys of the rows planned for ``action`` (e.g. the rows to delete)."""
    return changes.filter(F.col("_action") == action).select(*[F.col(_CUR + k).alias(k) for k in keys])


def sync_table(spark: SparkSession, df: DataFrame, path: str, keys: Sequence[str], *,
               scope: Mapping[str, str] | None = None, compare: Sequence[str] | None = None,
               partition_by: Sequence[str] = ()) -> tuple[int, int]:
    """Make the table (within ``scope``) hold exactly ``df``'s rows; no commit when it already does.

    Rows are matched on ``keys`` (null-safe); a matched row is rewritten only when one of
    ``compare`` (default: every other column) differs. One Spark job finds the changes
    (a full outer join, persisted); the MERGE runs only when there are some.
    Returns ``(upserted, deleted)``. A concurrent job's commit to the same table is retried
    (``retry_on_conflict``: the retry sees the table the other job created)."""
    return retry_on_conflict(lambda: _sync_table_once(spark, df, path, keys, scope=scope, compare=compare,
                                                      partition_by=partition_by), f"sync {path}")


def _rewrite_if_schema_changed(df: DataFrame, current: DataFrame, path: str, scope: Mapping[str, str] | None,
                               partition_by: Sequence[str]) -> bool:
    """A table written by an older version (e.g. a catalog without ``sources``/``merged_ids``).

    Unscoped tables are a pure function of the catalog files, so they are rewritten with the new
    schema (explicit evolution, one overwrite; the old version stays in the Delta history). A scoped
    table (``rejects``) also holds other jobs' rows: a clear error naming the fix instead."""
    diff = schema_diff(df.schema, current.schema)
    if not diff:
        return False
    if scope:
        raise TableSchemaError(f"Delta table {path} has an older schema ({'; '.join(diff)}). Delete the folder "
                               f"{path}: embed_movies and embed_books rebuild it from the catalogs")
    log.warning("Delta table %s has an older schema (%s): rewriting it from the catalog", path, "; ".join(diff))
    write_table(df, path, mode="overwrite", partition_by=partition_by, overwrite_schema=True)
    return True


def _sync_table_once(spark: SparkSession, df: DataFrame, path: str, keys: Sequence[str], *,
                     scope: Mapping[str, str] | None, compare: Sequence[str] | None,
                     partition_by: Sequence[str]) -> tuple[int, int]:
    if not is_delta_table(spark, path):
        # Scoped (a shared table such as rejects): append, so a job of another scope that
        # created the table meanwhile keeps its rows; otherwise one atomic overwrite.
        write_table(df, path, mode="append" if scope else "overwrite", partition_by=partition_by)
        return df.count(), 0
    current = spark.read.format("delta").load(path)
    if _rewrite_if_schema_changed(df, current, path, scope, partition_by):
        return df.count(), 0
    for c, v in (scope or {}).items():
        current = current.filter(F.col(c) == v)
    compare = [c for c in (compare if compare is not None else df.columns) if c not in keys]
    row_hash = lambda frame: F.xxhash64(*[frame[c] for c in compare]) if compare else F.lit(0)  # noqa: E731
    new = df.select(*df.columns, F.lit(True).alias("_new"), row_hash(df).alias("_h"))
    cur = current.select(*keys, row_hash(current).alias("h"))
    is_new, cur_h = F.col("_new").isNotNull(), F.col(_CUR + "h")
    action = (F.when(is_new & (cur_h.isNull() | (F.col("_h") != cur_h)), F.lit("upsert"))
              .when(~is_new, F.lit("delete")))
    changes, counts = _classify(new, cur, keys, action)
    n_up, n_del = counts.get("upsert", 0), counts.get("delete", 0)
    if n_up or n_del:
        upserts = changes.filter(F.col("_action") == "upsert").select(*df.columns)
        merge_changes(spark, path, upserts if n_up else None,
                      _current_keys(changes, "delete", keys) if n_del else None, keys, scope)
    changes.unpersist()
    return n_up, n_del


@dataclass
class EmbedPlan:
    """What one run writes: rows to embed, ids to delete, or a full rebuild."""
    todo: DataFrame                  # id, title, description, genres, content_hash
    deletes: DataFrame | None        # id
    n_embed: int
    n_delete: int
    rebuild: bool
    cached: DataFrame | None = None  # the persisted plan, released by ``release``

    @property
    def is_empty(self) -> bool:
        return not self.rebuild and self.n_embed == 0 and self.n_delete == 0

    def release(self) -> None:
        if self.cached is not None:
            self.cached.unpersist()


def plan_changes(spark: SparkSession, catalog: DataFrame, path: str, model_version: str, *,
                 rebuild: bool, delete_missing: bool, n_catalog: int) -> EmbedPlan:
    """Which catalog rows to (re-)embed: new ids, changed ``content_hash``, another model version;
    and which ids left the catalog. One Spark job classifies every id (``_classify``).
    ``n_catalog``: the catalog's row count (already known: a rebuild embeds them all)."""
    cat = catalog.select("id", "title", "description", "genres", content_hash_col(catalog).alias("content_hash"))
    if rebuild:
        return EmbedPlan(cat, None, n_catalog, 0, True)
    existing = spark.read.format("delta").load(path).select("id", "content_hash", "model_version")
    keep = ((F.col(_CUR + "content_hash") == F.col("content_hash"))
            & (F.col(_CUR + "model_version") == F.lit(model_version)))
    action = (F.when(F.col("id").isNull(), F.lit("delete" if delete_missing else None))
              .when(F.col(_CUR + "id").isNotNull() & keep, F.lit(None)).otherwise(F.lit("embed")))
    plan, counts = _classify(cat, existing, ["id"], action)
    todo = plan.filter(F.col("_action") == "embed").select(
        F.coalesce(F.col("id"), F.lit("")).alias("id"),  # never null for 'embed' rows; keeps the column NOT NULL
        *[c for c in cat.columns if c != "id"])
    return EmbedPlan(todo, _current_keys(plan, "delete", ["id"]), counts.get("embed", 0), counts.get("delete", 0),
                     False, plan)


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


def _ship(spark: SparkSession, model_dir: str, mode: str, precision: str | None) -> ArtifactRef:
    if str(spark.conf.get("spark.python.worker.reuse", "true")).lower() != "true":
        log.warning("spark.python.worker.reuse is false: every task will reload the model")
    ref = ship_artifact(spark, model_dir, mode=mode)
    return replace(ref, precision=precision) if precision else ref


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


def _guard(spark: SparkSession, tables: Mapping, load: CatalogLoad, guards: Guards, *, rebuild: bool,
           delete_missing: bool, stats: EmbedStats) -> None:
    """Refuse (``ShrinkRefused``, before any write) a run that would shrink the catalog table or the
    embeddings table beyond the guards; count and log the items that lost a source's text."""
    domain = stats.domain
    catalog = tables[domain]
    guards.check(table_shrink(spark, catalog["path"], load.valid, catalog["name"]), load.sources, "items")
    emb = tables[EMBEDDING_TABLES[domain]]
    if rebuild or delete_missing:
        guards.check(table_shrink(spark, emb["path"], load.valid, emb["name"]), load.sources, "embeddings")
    stats.lost_source_text, sample = lost_source_text(spark, catalog["path"], load.valid)
    if stats.lost_source_text:
        log.warning("%s: %d item(s) lost a source's text since the last run (merged films now read from fewer "
                    "files), e.g. %s: they are re-embedded from what is left", domain, stats.lost_source_text,
                    ", ".join(sample))


def _sync_catalog(spark: SparkSession, tables: Mapping, valid: DataFrame, rejects: DataFrame,
                  stats: EmbedStats) -> None:
    """Steps 3-4 of the module doc: the rejects table (this domain's partition), the catalog table."""
    new_rej, gone_rej = sync_table(spark, rejects, tables["rejects"]["path"], REJECT_KEYS,
                                   scope={"domain": stats.domain}, compare=[], partition_by=["domain"])
    log.info("rejects table: %d new, %d no longer rejected", new_rej, gone_rej)
    cat_spec = tables[stats.domain]
    up_cat, del_cat = sync_table(spark, valid, cat_spec["path"], ["id"])
    log.info("catalog table %s: %d rows inserted/updated, %d deleted", cat_spec["name"], up_cat, del_cat)


def _embed(spark: SparkSession, plan: EmbedPlan, ref: ArtifactRef, *, batch_size: int,
           partitions: int | None, rows_per_partition: int | None, progress_seconds: float,
           stats: EmbedStats) -> DataFrame:
    """The plan's rows embedded by the UDF, persisted and counted (the write then reads the cache)."""
    parts = embed_partitions(spark, plan.n_embed, batch_size, partitions, rows_per_partition)
    embedded = conform(plan.todo.repartition(parts).select(
        "id", "title",
        embed_column(ref, "title", "description", "genres", ids="id", batch_size=batch_size,
                     domain=stats.domain).alias("embedding"),
        F.lit(ref.model_version).alias("model_version"), "content_hash",
        F.lit(datetime.now(timezone.utc)).cast("timestamp").alias("embedded_at"),
    ), EMBEDDINGS_SCHEMA).persist(StorageLevel.MEMORY_AND_DISK)
    t0 = time.time()
    log.info("embedding %d %s on %d partitions", plan.n_embed, stats.domain, parts)
    with progress(spark, f"embed {stats.domain}", interval=progress_seconds):
        stats.embedded = embedded.count()
    stats.embed_seconds = time.time() - t0
    stats.items_per_s = stats.embedded / stats.embed_seconds if stats.embed_seconds > 0 else 0.0
    log.info("embedded %d %s on %d partitions in %.1fs: %.1f items/s", stats.embedded, stats.domain, parts,
             stats.embed_seconds, stats.items_per_s)
    return embedded


def _write(spark: SparkSession, plan: EmbedPlan, embedded: DataFrame, path: str) -> None:
    """One atomic overwrite (rebuild, also of an older schema) or one MERGE of upserts and deletes;
    retried when a concurrent job committed first."""
    if plan.rebuild:
        retry_on_conflict(lambda: write_table(embedded, path, mode="overwrite", overwrite_schema=True), f"write {path}")
    else:
        retry_on_conflict(lambda: merge_changes(spark, path, embedded if plan.n_embed else None,
                                                plan.deletes if plan.n_delete else None, ["id"]), f"merge {path}")


def check_embeddings_schema(spark: SparkSession, path: str) -> None:
    """An embeddings table of an older schema cannot take a MERGE: a clear error naming the fix."""
    diff = schema_diff(EMBEDDINGS_SCHEMA, spark.read.format("delta").load(path).schema)
    if diff:
        raise TableSchemaError(f"Delta table {path} has an older schema ({'; '.join(diff)}): rerun the job with "
                               f"--full (rewrites it) or delete the folder {path}")


def _register(spark: SparkSession, tables: Mapping, domain: str) -> None:
    for spec in (tables[EMBEDDING_TABLES[domain]], tables[domain], tables["rejects"]):
        if is_delta_table(spark, spec["path"]):
            register_table(spark, tables["database"], spec["name"], spec["path"])


def embed_catalog(spark: SparkSession, cfg: Mapping, domain: str, *, tables: Mapping, model_dir: str,
                  batch_size: int, partitions: int | None, ship_model: str, delete_missing: bool,
                  full: bool = False, precision: str | None = None, rows_per_partition: int | None = None,
                  progress_seconds: float = 0.0, guards: Guards | None = None) -> EmbedStats:
    """Validate, record rejects, and (re-)embed the new/changed items of ``domain``; see the module doc.

    ``cfg``: what ``read_catalog`` reads (``catalogs``, ``validation``, ``guards``); ``tables``: the
    ``tables`` section; the rest are the ``embed`` settings (``lfr.settings.EmbedSettings``). ``precision``:
    the run's ``model.precision`` (auto|bf16|fp32), applied on the executors over the artifact's own
    (None: the artifact's); an inference setting, so the embeddings keep their model_version.
    ``rows_per_partition`` / ``progress_seconds``: see ``embed_partitions`` and ``lfr.spark.progress``
    (off when not given: their values live in conf/lfr.yaml, passed by the jobs). ``guards``: how much
    this run may shrink the catalog and embeddings tables (default: ``cfg['guards']``); a refusal
    (``ShrinkRefused``) comes before any table is written, ``full`` included."""
    started = time.time()
    if domain not in EMBEDDING_TABLES:
        raise ValueError(f"domain must be one of {sorted(EMBEDDING_TABLES)}, not {domain!r}")
    phases = Phases(f"embed_{domain}", log)
    with phases("ship model"):
        ref = _ship(spark, model_dir, ship_model, precision)
    stats = EmbedStats(domain=domain, model_version=ref.model_version, full=bool(full))
    path = tables[EMBEDDING_TABLES[domain]]["path"]
    rebuild = bool(full) or not is_delta_table(spark, path)
    with phases("read catalog"):
        load = read_catalog(spark, cfg, domain)
        _count_rejects(load, stats)
    with phases("guards"):
        _guard(spark, tables, load, guards or guards_for(cfg), rebuild=rebuild, delete_missing=delete_missing,
               stats=stats)
    with phases("sync catalog+rejects"):
        _sync_catalog(spark, tables, load.valid, load.rejects, stats)
    _embed_and_write(spark, load.valid, path, ref, rebuild=rebuild, delete_missing=delete_missing, phases=phases,
                     stats=stats, batch_size=batch_size, partitions=partitions, rows_per_partition=rows_per_partition,
                     progress_seconds=progress_seconds)
    with phases("register"):
        _register(spark, tables, domain)
    stats.seconds = time.time() - started
    log.info("embed_%s phases: %s", domain, phases.summary())
    log.info("%s: %d read, %d valid, %d merged, %d rejected, %d unchanged, %d embedded, %d deleted; %.1f items/s; "
             "%.1fs total", domain, stats.read, stats.valid, stats.merged, stats.rejected, stats.unchanged,
             stats.embedded, stats.deleted, stats.items_per_s, stats.seconds)
    return stats


def _embed_and_write(spark: SparkSession, valid: DataFrame, path: str, ref: ArtifactRef, *, rebuild: bool,
                     delete_missing: bool, phases: Phases, stats: EmbedStats, **embed_settings) -> None:
    """Steps 5-6 of the module doc: plan, embed the new/changed rows, one write (none when nothing changed)."""
    if not rebuild:
        check_embeddings_schema(spark, path)
    plan = plan_changes(spark, valid, path, ref.model_version, rebuild=rebuild,
                        delete_missing=delete_missing, n_catalog=stats.valid)
    stats.unchanged, stats.deleted = stats.valid - plan.n_embed, plan.n_delete
    phases.lap("plan changes")
    if plan.is_empty:
        log.info("%s embeddings are up to date (model %s): nothing to embed, no commit", stats.domain,
                 ref.model_version)
    else:
        with phases("embed"):
            embedded = _embed(spark, plan, ref, stats=stats, **embed_settings)
        with phases("write"):
            _write(spark, plan, embedded, path)
        embedded.unpersist()
        stats.table_written = True
    plan.release()
