"""Incremental embedding of a catalog: ``embed_catalog(spark, cfg, domain, full=False) -> EmbedStats``.

Steps:

1. Ship the model artifact (``lfr.embed.ship``): fails first, with a message naming
   ``jobs/train.py``, when there is no artifact -- before any data is read.
2. ``load_catalog`` -> valid rows and rejects.
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
   pandas UDF (``lfr.embed.udf``), on ``embed.partitions`` partitions (default: the cluster's
   default parallelism; never more than one partition per ``embed.batch_size`` rows).
6. One MERGE on ``id`` upserts them and deletes the embeddings of ids that left the
   valid catalog (decision: delete, ``embed.delete_missing``: an item removed from the
   source or now rejected must not keep being recommended; Delta time travel keeps the
   old rows). ``--full`` rebuilds the table with one atomic overwrite instead.

A rerun with nothing changed makes no Delta commit at all (no table is written when
there is nothing to insert, update or delete). Every table is registered for SQL in
``tables.database``.

Upserts and deletions go into ONE MERGE (``lfr.spark.delta.merge_changes``): two commits
would leave a window in which readers see a half-updated table.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Mapping, Sequence

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lfr.data import content_hash_col, load_catalog
from lfr.data.schema import conform
from lfr.embed.schema import EMBEDDINGS_SCHEMA
from lfr.embed.ship import ship_artifact
from lfr.embed.udf import embed_column
from lfr.spark.delta import is_delta_table, merge_changes, register_table, write_table

log = logging.getLogger(__name__)

EMBEDDING_TABLES = {"movies": "movie_embeddings", "books": "book_embeddings"}


@dataclass
class EmbedStats:
    domain: str
    model_version: str
    read: int = 0
    valid: int = 0
    rejected: int = 0
    rejected_by_reason: dict = field(default_factory=dict)
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


def _null_safe_join(left: DataFrame, right: DataFrame, keys: Sequence[str], how: str) -> DataFrame:
    r = right.select(*[F.col(k).alias(f"_r_{k}") for k in keys])
    cond = None
    for k in keys:
        c = left[k].eqNullSafe(r[f"_r_{k}"])
        cond = c if cond is None else cond & c
    return left.join(r, cond, how)


def sync_table(spark: SparkSession, df: DataFrame, path: str, keys: Sequence[str], *,
               scope: Mapping[str, str] | None = None, compare: Sequence[str] | None = None,
               partition_by: Sequence[str] = ()) -> tuple[int, int]:
    """Make the table (within ``scope``) hold exactly ``df``'s rows; no commit when it already does.

    Rows are matched on ``keys`` (null-safe); a matched row is rewritten only when one of
    ``compare`` (default: every other column) differs. One Spark job finds the changes
    (a full outer join, persisted); the MERGE runs only when there are some.
    Returns ``(upserted, deleted)``."""
    if not is_delta_table(spark, path):
        # Scoped (a shared table such as rejects): append, so a job of another scope that
        # created the table meanwhile keeps its rows; otherwise one atomic overwrite.
        write_table(df, path, mode="append" if scope else "overwrite", partition_by=partition_by)
        return df.count(), 0
    current = spark.read.format("delta").load(path)
    for c, v in (scope or {}).items():
        current = current.filter(F.col(c) == v)
    compare = [c for c in (compare if compare is not None else df.columns) if c not in keys]
    row_hash = lambda frame: F.xxhash64(*[frame[c] for c in compare]) if compare else F.lit(0)  # noqa: E731
    new = df.select(*df.columns, F.lit(True).alias("_new"), row_hash(df).alias("_h"))
    cur = current.select(*[F.col(k).alias(f"_c_{k}") for k in keys], row_hash(current).alias("_c_h"))
    cond = None
    for k in keys:
        c = new[k].eqNullSafe(cur[f"_c_{k}"])
        cond = c if cond is None else cond & c
    joined = new.join(cur, cond, "full_outer")
    is_new = F.col("_new").isNotNull()
    action = (F.when(is_new & (F.col("_c_h").isNull() | (F.col("_h") != F.col("_c_h"))), F.lit("upsert"))
              .when(~is_new, F.lit("delete")))
    changes = joined.select("*", action.alias("_action")).filter(F.col("_action").isNotNull()).persist()
    counts = {r["_action"]: r["count"] for r in changes.groupBy("_action").count().collect()}
    n_up, n_del = counts.get("upsert", 0), counts.get("delete", 0)
    if n_up or n_del:
        upserts = changes.filter(F.col("_action") == "upsert").select(*df.columns)
        deletes = changes.filter(F.col("_action") == "delete").select(*[F.col(f"_c_{k}").alias(k) for k in keys])
        merge_changes(spark, path, upserts if n_up else None, deletes if n_del else None, keys, scope)
    changes.unpersist()
    return n_up, n_del


def _partitions(spark: SparkSession, cfg: Mapping, n_rows: int, batch_size: int) -> int:
    configured = (cfg.get("embed") or {}).get("partitions")
    p = int(configured) if configured else spark.sparkContext.defaultParallelism
    return max(1, min(p, math.ceil(n_rows / max(1, batch_size))))


def embed_catalog(spark: SparkSession, cfg: Mapping, domain: str, full: bool = False,
                  model_dir: str | None = None) -> EmbedStats:
    """Validate, record rejects, and (re-)embed the new/changed items of ``domain``; see the module doc."""
    started = time.time()
    if domain not in EMBEDDING_TABLES:
        raise ValueError(f"domain must be one of {sorted(EMBEDDING_TABLES)}, not {domain!r}")
    ecfg = cfg.get("embed") or {}
    tables = cfg["tables"]
    database = tables["database"]
    model_dir = model_dir or cfg["paths"]["model_dir"]
    if str(spark.conf.get("spark.python.worker.reuse", "true")).lower() != "true":
        log.warning("spark.python.worker.reuse is false: every task will reload the model")
    ref = ship_artifact(spark, model_dir, mode=str(ecfg.get("ship_model") or "archive"))
    stats = EmbedStats(domain=domain, model_version=ref.model_version, full=bool(full))
    run_ts = datetime.now(timezone.utc)

    # -- catalog and rejects
    valid, rejects = load_catalog(spark, cfg, domain)
    stats.valid = valid.count()
    per_reason = rejects.groupBy("reason").count().collect()   # one small job; reasons split on the driver
    stats.rejected = sum(r["count"] for r in per_reason)
    kinds: dict[str, int] = {}
    for r in per_reason:
        for reason in r["reason"].split(","):
            kind = "duplicate_of" if reason.startswith("duplicate_of:") else reason
            kinds[kind] = kinds.get(kind, 0) + r["count"]
    stats.rejected_by_reason = dict(sorted(kinds.items(), key=lambda kv: -kv[1]))
    stats.read = stats.valid + stats.rejected
    log.info("%s: read %d rows, %d valid, %d rejected %s", domain, stats.read, stats.valid, stats.rejected,
             stats.rejected_by_reason)
    rj = tables["rejects"]
    new_rej, gone_rej = sync_table(spark, rejects, rj["path"], ["domain", "source", "id", "reason", "raw"],
                                   scope={"domain": domain}, compare=[], partition_by=["domain"])
    log.info("rejects table: %d new, %d no longer rejected", new_rej, gone_rej)
    cat_spec = tables[domain]
    up_cat, del_cat = sync_table(spark, valid, cat_spec["path"], ["id"])
    log.info("catalog table %s: %d rows inserted/updated, %d deleted", cat_spec["name"], up_cat, del_cat)

    # -- what needs embedding
    emb_spec = tables[EMBEDDING_TABLES[domain]]
    path = emb_spec["path"]
    cat = valid.select("id", "title", "description", "genres", content_hash_col(valid).alias("content_hash"))
    exists = is_delta_table(spark, path)
    rebuild = bool(full) or not exists
    deletes = None
    plan = None
    if rebuild:
        todo = cat
        n_todo = stats.valid
    else:
        # One job classifies every id: embed (new, changed, or other model version), delete, or keep.
        existing = spark.read.format("delta").load(path).select(
            F.col("id").alias("_e_id"), F.col("content_hash").alias("_e_hash"), F.col("model_version").alias("_e_version"))
        joined = cat.join(existing, cat["id"] == existing["_e_id"], "full_outer")
        keep = (F.col("_e_hash") == F.col("content_hash")) & (F.col("_e_version") == F.lit(ref.model_version))
        action = (F.when(F.col("id").isNull(), F.lit("delete" if ecfg.get("delete_missing", True) else None))
                  .when(F.col("_e_id").isNotNull() & keep, F.lit(None)).otherwise(F.lit("embed")))
        plan = joined.select("*", action.alias("_action")).filter(F.col("_action").isNotNull()).persist()
        counts = {r["_action"]: r["count"] for r in plan.groupBy("_action").count().collect()}
        n_todo, stats.deleted = counts.get("embed", 0), counts.get("delete", 0)
        todo = plan.filter(F.col("_action") == "embed").select(
            F.coalesce(F.col("id"), F.lit("")).alias("id"),  # never null for 'embed' rows; keeps the column NOT NULL
            *[c for c in cat.columns if c != "id"])
        deletes = plan.filter(F.col("_action") == "delete").select(F.col("_e_id").alias("id"))
    stats.unchanged = stats.valid - n_todo

    # -- embed and write
    if not rebuild and n_todo == 0 and stats.deleted == 0:
        log.info("%s embeddings are up to date (model %s): nothing to embed, no commit", domain, ref.model_version)
    else:
        batch_size = int(ecfg.get("batch_size") or 64)
        parts = _partitions(spark, cfg, n_todo, batch_size)
        embedded = conform(todo.repartition(parts).select(
            "id", "title",
            embed_column(ref, "title", "description", "genres", batch_size=batch_size).alias("embedding"),
            F.lit(ref.model_version).alias("model_version"), "content_hash",
            F.lit(run_ts).cast("timestamp").alias("embedded_at"),
        ), EMBEDDINGS_SCHEMA).persist(StorageLevel.MEMORY_AND_DISK)
        t0 = time.time()
        stats.embedded = embedded.count()  # materialises the embeddings once (the MERGE reads the cache)
        stats.embed_seconds = time.time() - t0
        stats.items_per_s = stats.embedded / stats.embed_seconds if stats.embed_seconds > 0 else 0.0
        log.info("embedded %d %s on %d partitions in %.1fs: %.1f items/s", stats.embedded, domain, parts,
                 stats.embed_seconds, stats.items_per_s)
        if rebuild:
            write_table(embedded, path, mode="overwrite")
        else:
            merge_changes(spark, path, embedded if stats.embedded else None,
                           deletes if stats.deleted else None, ["id"])
        embedded.unpersist()
        stats.table_written = True
    if plan is not None:
        plan.unpersist()
    for spec in (emb_spec, cat_spec, rj):
        if is_delta_table(spark, spec["path"]):
            register_table(spark, database, spec["name"], spec["path"])
    stats.seconds = time.time() - started
    log.info("%s: %d read, %d valid, %d rejected, %d unchanged, %d embedded, %d deleted; %.1f items/s; %.1fs total",
             domain, stats.read, stats.valid, stats.rejected, stats.unchanged, stats.embedded, stats.deleted,
             stats.items_per_s, stats.seconds)
    return stats
