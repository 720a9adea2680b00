"""Incremental lexical features of both catalogs: ``lexicalize(spark, settings, refit=False, full=False)``.

Steps:

1. The lexical model (vocabulary + document frequencies, ``lfr.lexical.model``) is loaded from
   ``paths.work_dir``/lexical/<version>/, the one ``current.json`` there names, when its settings
   equal ``lexical:``; otherwise -- or with ``refit`` -- it is fitted with Spark on the union of the
   validated catalog tables' descriptions (``tables.movies``, ``tables.books``, written by the
   embed jobs) and saved under its new version. Reusing it keeps the version (and hence every
   unchanged row) stable across reruns; a refit that yields another vocabulary or idf is a new
   ``lexical_version``, and every row is recomputed, as a new model_version does for embeddings.
2. Per domain, a plan (``lfr.spark.sync.IncrementalTable.plan``, as the embeddings): the catalog's
   ``content_hash`` (``lfr.data.content_hash_col``) and the model's version compared with the feature
   table's: only new or changed rows are featurized; ids that left the catalog are deleted. Both
   tables' plans are guarded (``guards.*``) before either table is written.
3. Per domain, one write: one MERGE of the featurized rows and the deletes; nothing changed -> no
   Delta commit. ``full`` rebuilds the table with one atomic overwrite.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lfr.config import is_uri, resolve_path
from lfr.data import content_hash_col
from lfr.data.schema import conform
from lfr.errors import UsageError
from lfr.lexical.features import featurize, fit_model
from lfr.lexical.model import LexicalModel, check_settings, fit_key
from lfr.lexical.schema import LEXICAL_SCHEMA, LEXICAL_TABLES
from lfr.settings import Settings, TablesSettings
from lfr.spark.delta import is_delta_table, register_table
from lfr.spark.guards import Guards
from lfr.spark.sync import ChangePlan, IncrementalTable

log = logging.getLogger(__name__)
DOMAINS = ("movies", "books")


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


def _catalog(spark: SparkSession, tables: TablesSettings, domain: str) -> DataFrame:
    path = getattr(tables, domain).path
    if not is_delta_table(spark, path):
        raise CatalogTableMissing(f"catalog table {path} does not exist: run jobs/embed_{domain}.py first "
                                  "(it validates the catalog and writes it)")
    return spark.read.format("delta").load(path)


def model_root(settings: Settings) -> str:
    """Where the lexical models live: ``paths.work_dir``/lexical, a local (or mounted) folder."""
    work_dir = str(settings.paths.work_dir)
    if is_uri(work_dir):
        raise UsageError(f"paths.work_dir must be a local/shared filesystem path for the lexical model, not "
                         f"{work_dir}")
    return os.path.join(resolve_path(work_dir), "lexical")


def lexical_model(spark: SparkSession, settings: Settings, refit: bool = False) -> tuple[LexicalModel, bool]:
    """The current lexical model (reused) or a new fit; ``(model, refitted)``."""
    lexical = check_settings(settings.lexical)
    root = model_root(settings)
    pointer = os.path.join(root, "current.json")
    if not refit and os.path.isfile(pointer):
        with open(pointer, encoding="utf-8") as fh:
            current = json.load(fh)
        if current.get("settings") == fit_key(lexical):
            return LexicalModel.load(os.path.join(root, current["version"])), False
        log.info("lexical settings changed (%s -> %s): refitting", current.get("settings"), fit_key(lexical))
    texts = _catalog(spark, settings.tables, "movies").select("description").unionByName(
        _catalog(spark, settings.tables, "books").select("description"))
    model = fit_model(spark, texts, lexical)
    model.save(os.path.join(root, model.version))
    tmp = pointer + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump({"version": model.version, "settings": fit_key(lexical)}, fh, indent=2, sort_keys=True)
    os.replace(tmp, pointer)  # atomic: a reader sees the old or the new pointer, never half of one
    log.info("lexical model %s fitted: %d terms from %d descriptions (avg %.1f terms)", model.version,
             len(model.vocabulary), model.n_docs, model.avgdl)
    return model, True


def lexical_table(spark: SparkSession, tables: TablesSettings, domain: str) -> IncrementalTable:
    """``domain``'s feature table (``tables.movie_lexical`` / ``tables.book_lexical``)."""
    spec = getattr(tables, LEXICAL_TABLES[domain])
    return IncrementalTable(spark, spec.path, spec.name, schema=LEXICAL_SCHEMA,
                            fix=f"rerun jobs/embed_lexical.py with --full (rewrites it) or delete the folder "
                                f"{spec.path}")


def plan_domain(spark: SparkSession, tables: TablesSettings, domain: str, model: LexicalModel, guards: Guards,
                full: bool = False) -> ChangePlan:
    """What bringing ``domain``'s feature table up to date with its catalog table would change (one Spark
    job); ``ShrinkRefused`` when it deletes more than ``guards`` allow."""
    cat = _catalog(spark, tables, domain)
    rows = cat.select("id", "title", "description", content_hash_col(cat).alias("content_hash"),
                      F.lit(model.version).alias("lexical_version"))
    return lexical_table(spark, tables, domain).plan(
        rows, compare=["content_hash", "lexical_version"], rebuild=full, guards=guards,
        sources=[getattr(tables, domain).path], what="rows")


def write_domain(spark: SparkSession, tables: TablesSettings, domain: str, model: LexicalModel, plan: ChangePlan,
                 run_ts: datetime) -> dict:
    """Featurize the plan's rows and write them with its deletes (one commit; none for an empty plan)."""
    out = {"featurized": 0, "deleted": plan.deleted, "unchanged": plan.unchanged, "table_written": False}
    if plan.is_empty:
        log.info("%s lexical features up to date (version %s): no commit", domain, model.version)
        return out
    feats = featurize(plan.upserts, model).select(
        F.coalesce(F.col("id"), F.lit("")).alias("id"), "title", "term_indices", "term_weights",
        F.lit(model.version).alias("lexical_version"), F.lit(len(model.vocabulary)).cast("int").alias("vocab_size"),
        "content_hash", F.lit(run_ts).cast("timestamp").alias("computed_at"))
    feats = conform(feats, LEXICAL_SCHEMA).persist()
    out["featurized"] = feats.count()
    out["table_written"] = lexical_table(spark, tables, domain).write(plan, feats)
    feats.unpersist()
    return out


def _register(spark: SparkSession, tables: TablesSettings) -> None:
    for domain in DOMAINS:
        spec = getattr(tables, LEXICAL_TABLES[domain])
        if is_delta_table(spark, spec.path):
            register_table(spark, tables.database, spec.name, spec.path)


def lexicalize(spark: SparkSession, settings: Settings, *, refit: bool = False, full: bool = False) -> LexicalStats:
    """Fit or reuse the lexical model, bring both feature tables up to date, register them for SQL.

    Parameters
    ----------
    spark : SparkSession
        A session with Delta enabled.
    settings : lfr.settings.Settings
        ``lexical`` (the model), ``tables`` (the catalog tables read, the feature tables written),
        ``paths.work_dir`` (where the model is kept) and ``guards`` (how much a run may shrink a
        feature table; both tables are checked before either is written).
    refit : bool, optional
        Fit the vocabulary and idf again even when the saved model's settings match.
    full : bool, optional
        Recompute every row and rewrite both tables (one overwrite each); guarded the same way.

    Returns
    -------
    LexicalStats
        The model's version and vocabulary size, whether it was refitted, and per domain the rows
        featurized, deleted and unchanged and whether the table was written.

    Raises
    ------
    CatalogTableMissing
        A catalog table the embed jobs write does not exist yet.
    lfr.spark.guards.ShrinkRefused
        A feature table would shrink beyond ``guards.*``; nothing was written.

    Example
    -------
    >>> from lfr.settings import load_settings
    >>> stats = lexicalize(spark, load_settings(overrides=["lexical.weighting=tfidf"]))   # doctest: +SKIP
    >>> stats.domains["books"]                                                            # doctest: +SKIP
    {'featurized': 0, 'deleted': 0, 'unchanged': 1000, 'table_written': False}
    """
    started = time.time()
    model, refitted = lexical_model(spark, settings, refit=refit)
    stats = LexicalStats(model.version, len(model.vocabulary), refitted)
    guards = Guards.from_settings(settings.guards)
    plans: dict[str, ChangePlan] = {}
    try:
        for domain in DOMAINS:   # every refusal before any write
            plans[domain] = plan_domain(spark, settings.tables, domain, model, guards, full=full)
        run_ts = datetime.now(timezone.utc)
        for domain in DOMAINS:
            stats.domains[domain] = write_domain(spark, settings.tables, domain, model, plans[domain], run_ts)
            log.info("%s lexical (version %s): %s", domain, model.version, stats.domains[domain])
    finally:
        for plan in plans.values():
            plan.release()
    _register(spark, settings.tables)
    stats.seconds = time.time() - started
    return stats
