"""Incremental lexical features of both catalogs: ``lexicalize(spark, cfg, refit=False, full=False)``.

Steps:

1. The lexical model (vocabulary + document frequencies, ``lfr.lexical.model``) is loaded from
   ``paths.work_dir``/lexical/<version>/, the one ``current.json`` there names, when its settings
   equal ``lexical:``; otherwise -- or with ``refit`` -- it is fitted with Spark on the union of the
   validated catalog tables' descriptions (``tables.movies``, ``tables.books``, written by the
   embed jobs) and saved under its new version. Reusing it keeps the version (and hence every
   unchanged row) stable across reruns; a refit that yields another vocabulary or idf is a new
   ``lexical_version``, and every row is recomputed, as a new model_version does for embeddings.
2. Per domain, the catalog's ``content_hash`` (``lfr.data.content_hash_col``, as the embeddings)
   is compared with the feature table on ``(id, content_hash, lexical_version)``: only new or
   changed rows are featurized; ids that left the catalog are deleted in the same MERGE
   (``lfr.spark.delta.merge_changes``); nothing changed -> no Delta commit. ``full`` rebuilds the
   table with one atomic overwrite.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Mapping

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lfr.data import content_hash_col
from lfr.data.schema import conform
from lfr.errors import UsageError
from lfr.lexical.features import featurize, fit_model
from lfr.lexical.model import LexicalModel, LexicalSettings
from lfr.lexical.schema import LEXICAL_SCHEMA, LEXICAL_TABLES
from lfr.spark.delta import is_delta_table, merge_changes, register_table, write_table
from lfr.spark.guards import Guards, guards_for, table_shrink

log = logging.getLogger(__name__)


class CatalogTableMissing(UsageError):
    """The validated catalog table does not exist yet (the embed jobs write it)."""


@dataclass
class LexicalStats:
    lexical_version: str
    vocab_size: int
    refitted: bool
    domains: dict = field(default_factory=dict)   # domain -> {featurized, deleted, unchanged, table_written}
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def _catalog(spark: SparkSession, cfg: Mapping, domain: str) -> DataFrame:
    path = cfg["tables"][domain]["path"]
    if not is_delta_table(spark, path):
        raise CatalogTableMissing(f"catalog table {path} does not exist: run jobs/embed_{domain}.py first "
                                  "(it validates the catalog and writes it)")
    return spark.read.format("delta").load(path)


def model_root(cfg: Mapping) -> str:
    root = os.path.join(str(cfg["paths"]["work_dir"]), "lexical")
    if "://" in root:
        raise ValueError(f"paths.work_dir must be a local/shared filesystem path for the lexical model, not {root}")
    return root


def lexical_model(spark: SparkSession, cfg: Mapping, refit: bool = False) -> tuple[LexicalModel, bool]:
    """The current lexical model (reused) or a new fit; ``(model, refitted)``."""
    settings = LexicalSettings.from_cfg(cfg)
    root = model_root(cfg)
    pointer = os.path.join(root, "current.json")
    if not refit and os.path.isfile(pointer):
        with open(pointer, encoding="utf-8") as fh:
            current = json.load(fh)
        if current.get("settings") == settings.fit_key():
            return LexicalModel.load(os.path.join(root, current["version"])), False
        log.info("lexical settings changed (%s -> %s): refitting", current.get("settings"), settings.fit_key())
    texts = _catalog(spark, cfg, "movies").select("description").unionByName(
        _catalog(spark, cfg, "books").select("description"))
    model = fit_model(spark, texts, settings)
    model.save(os.path.join(root, model.version))
    tmp = pointer + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump({"version": model.version, "settings": settings.fit_key()}, fh, indent=2, sort_keys=True)
    os.replace(tmp, pointer)  # atomic: a reader sees the old or the new pointer, never half of one
    log.info("lexical model %s fitted: %d terms from %d descriptions (avg %.1f terms)", model.version,
             len(model.vocabulary), model.n_docs, model.avgdl)
    return model, True


def _plan(spark: SparkSession, cat: DataFrame, path: str, version: str) -> DataFrame:
    """Every id classified: ``featurize`` (new, changed, other version), ``delete`` (left the catalog)."""
    existing = spark.read.format("delta").load(path).select(
        F.col("id").alias("_e_id"), F.col("content_hash").alias("_e_hash"), F.col("lexical_version").alias("_e_v"))
    joined = cat.join(existing, cat["id"] == existing["_e_id"], "full_outer")
    keep = (F.col("_e_hash") == F.col("content_hash")) & (F.col("_e_v") == F.lit(version))
    action = (F.when(F.col("id").isNull(), F.lit("delete"))
              .when(F.col("_e_id").isNotNull() & keep, F.lit(None)).otherwise(F.lit("featurize")))
    return joined.select("*", action.alias("_action")).filter(F.col("_action").isNotNull())


def update_domain(spark: SparkSession, cfg: Mapping, domain: str, model: LexicalModel, full: bool = False,
                  run_ts: datetime | None = None) -> dict:
    """Bring ``domain``'s lexical table up to date with its catalog table; see the module doc.
    Unguarded: ``lexicalize`` checks both tables' shrink first."""
    spec = cfg["tables"][LEXICAL_TABLES[domain]]
    path = spec["path"]
    cat_df = _catalog(spark, cfg, domain)
    cat = cat_df.select("id", "title", "description", content_hash_col(cat_df).alias("content_hash"))
    out = {"featurized": 0, "deleted": 0, "unchanged": 0, "table_written": False}
    rebuild = bool(full) or not is_delta_table(spark, path)
    plan = deletes = None
    if rebuild:
        todo = cat
    else:
        plan = _plan(spark, cat, path, model.version).persist()
        counts = {r["_action"]: r["count"] for r in plan.groupBy("_action").count().collect()}
        out["deleted"] = counts.get("delete", 0)
        todo = plan.filter(F.col("_action") == "featurize").select(
            F.coalesce(F.col("id"), F.lit("")).alias("id"), "title", "description", "content_hash")
        deletes = plan.filter(F.col("_action") == "delete").select(F.col("_e_id").alias("id"))
        if not counts:
            out["unchanged"] = cat.count()
            plan.unpersist()
            log.info("%s lexical features up to date (version %s): no commit", domain, model.version)
            return out
    ts = run_ts or datetime.now(timezone.utc)
    feats = featurize(todo, model).select(
        F.coalesce(F.col("id"), F.lit("")).alias("id"), "title", "term_indices", "term_weights",
        F.lit(model.version).alias("lexical_version"), F.lit(len(model.vocabulary)).cast("int").alias("vocab_size"),
        "content_hash", F.lit(ts).cast("timestamp").alias("computed_at"))
    feats = conform(feats, LEXICAL_SCHEMA).persist()
    out["featurized"] = feats.count()
    if rebuild:
        write_table(feats, path, mode="overwrite")
    else:
        merge_changes(spark, path, feats if out["featurized"] else None, deletes if out["deleted"] else None, ["id"])
        out["unchanged"] = cat.count() - out["featurized"]
    out["table_written"] = True
    feats.unpersist()
    if plan is not None:
        plan.unpersist()
    return out


def lexicalize(spark: SparkSession, cfg: Mapping, refit: bool = False, full: bool = False,
               guards: Guards | None = None) -> LexicalStats:
    """Fit or reuse the lexical model, update both feature tables, register them for SQL.
    ``guards`` (default ``cfg['guards']``): a run that would delete more of a feature table than they
    allow is refused (``ShrinkRefused``); both tables are checked before either is written."""
    started = time.time()
    model, refitted = lexical_model(spark, cfg, refit=refit)
    stats = LexicalStats(model.version, len(model.vocabulary), refitted)
    run_ts = datetime.now(timezone.utc)
    guards = guards or guards_for(cfg)
    for domain in ("movies", "books"):
        spec = cfg["tables"][LEXICAL_TABLES[domain]]
        guards.check(table_shrink(spark, spec["path"], _catalog(spark, cfg, domain), spec["name"]),
                     [cfg["tables"][domain]["path"]], "rows")
    for domain in ("movies", "books"):
        stats.domains[domain] = update_domain(spark, cfg, domain, model, full=full, run_ts=run_ts)
        log.info("%s lexical (version %s): %s", domain, model.version, stats.domains[domain])
    database = cfg["tables"]["database"]
    for domain in ("movies", "books"):
        spec = cfg["tables"][LEXICAL_TABLES[domain]]
        if is_delta_table(spark, spec["path"]):
            register_table(spark, database, spec["name"], spec["path"])
    stats.seconds = time.time() - started
    return stats
