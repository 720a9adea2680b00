"""Delta table helpers: schema-enforced writes, explicit MERGEs, SQL registration.

Why explicit: Delta's schema enforcement is the guard against silent data
corruption, so nothing here turns on ``mergeSchema``/``overwriteSchema``
implicitly; a write whose schema does not match the table fails with
``TableSchemaError`` naming the table and the differing fields.
"""
from __future__ import annotations

import logging
import random
import re
import time
from typing import Callable, Mapping, Sequence, TypeVar

from delta.tables import DeltaTable
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from lfr.errors import UsageError

log = logging.getLogger(__name__)
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class TableSchemaError(UsageError):
    """A DataFrame's schema does not match the Delta table it is written to."""


T = TypeVar("T")


def _conflicts() -> tuple[type[BaseException], ...]:
    from delta.exceptions import (
        ConcurrentAppendException,
        ConcurrentTransactionException,
        ConcurrentWriteException,
        MetadataChangedException,
        ProtocolChangedException,
    )

    return (ConcurrentAppendException, ConcurrentWriteException, ConcurrentTransactionException,
            MetadataChangedException, ProtocolChangedException)


def retry_on_conflict(write: Callable[[], T], what: str, attempts: int = 5) -> T:
    """Run ``write`` again when a concurrent Delta commit beat it (optimistic concurrency).

    Why: two jobs started at once on an empty warehouse (embed_books + embed_movies) both create
    ``rejects``; the loser gets ProtocolChanged/MetadataChanged/ConcurrentAppend. ``write`` must
    decide what to do from the table as it is when called (create vs MERGE), so a retry sees the
    winner's commit and is correct; after ``attempts`` the conflict is raised as is."""
    for attempt in range(1, attempts + 1):
        try:
            return write()
        except _conflicts() as exc:
            if attempt == attempts:
                raise
            log.warning("%s: concurrent Delta commit (%s), retry %d/%d", what, type(exc).__name__, attempt,
                        attempts - 1)
            time.sleep(0.2 * attempt + random.random() * 0.3)
    raise AssertionError("unreachable")


def is_delta_table(spark: SparkSession, path: str) -> bool:
    return DeltaTable.isDeltaTable(spark, path)


def schema_diff(expected: StructType, actual: StructType) -> list[str]:
    """Human-readable differences between two schemas (name/type level)."""
    exp = {f.name: f.dataType.simpleString() for f in expected.fields}
    act = {f.name: f.dataType.simpleString() for f in actual.fields}
    out = [f"missing column '{n}' ({t})" for n, t in exp.items() if n not in act]
    out += [f"unexpected column '{n}' ({t})" for n, t in act.items() if n not in exp]
    out += [f"column '{n}' is {act[n]}, table has {t}" for n, t in exp.items() if n in act and act[n] != t]
    return out


def _check_schema(spark: SparkSession, df: DataFrame, path: str) -> None:
    if not is_delta_table(spark, path):
        return
    table_schema = spark.read.format("delta").load(path).schema
    diff = schema_diff(table_schema, df.schema)
    if diff:
        raise TableSchemaError(f"schema mismatch writing to Delta table {path}: " + "; ".join(diff))


def write_table(df: DataFrame, path: str, mode: str = "append", partition_by: Sequence[str] = (),
                overwrite_schema: bool = False) -> None:
    """Write with schema enforcement. ``overwrite`` is one atomic Delta commit:
    readers see the old version until it succeeds, and a failed run leaves it intact.
    ``overwrite_schema`` (overwrite only): replace the table's schema too -- an explicit rebuild."""
    spark = df.sparkSession
    if mode != "overwrite":
        _check_schema(spark, df, path)
    writer = df.write.format("delta").mode(mode)
    if overwrite_schema and mode == "overwrite":
        writer = writer.option("overwriteSchema", "true")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    try:
        writer.save(path)
    except AnalysisException as exc:
        if "schema" in str(exc).lower():
            raise TableSchemaError(f"schema mismatch writing to Delta table {path}: {exc}") from exc
        raise


def table_version(spark: SparkSession, path: str) -> tuple[int | None, int | None]:
    """``(latest version, numOutputRows of that commit)`` of the Delta table at ``path``;
    ``(None, None)`` for a table without history."""
    h = DeltaTable.forPath(spark, path).history(1).select("version", "operationMetrics").first()
    if h is None:
        return None, None
    rows = (h["operationMetrics"] or {}).get("numOutputRows")
    return int(h["version"]), int(rows) if rows is not None else None


DELETE_FLAG = "_lfr_delete"


def merge_changes(spark: SparkSession, path: str, upserts: DataFrame | None, deletes: DataFrame | None,
                   keys: Sequence[str], scope: Mapping[str, str] | None = None) -> None:
    """One MERGE: ``upserts`` (full rows) updated/inserted, ``deletes`` (key columns) deleted.

    Creates nothing: the table must exist. Keys compare null-safely (``<=>``); ``scope`` adds
    ``t.col = 'value'`` conditions (partition pruning)."""
    table = DeltaTable.forPath(spark, path)
    target_schema = table.toDF().schema
    cols = [f.name for f in target_schema.fields]
    parts = []
    if upserts is not None:
        diff = schema_diff(target_schema, upserts.schema)
        if diff:
            raise TableSchemaError(f"schema mismatch writing to Delta table {path}: " + "; ".join(diff))
        parts.append(upserts.select(*cols).withColumn(DELETE_FLAG, F.lit(False)))
    if deletes is not None:
        d = deletes.select(*keys)
        for f in target_schema.fields:
            if f.name not in keys:
                d = d.withColumn(f.name, F.lit(None).cast(f.dataType))
        parts.append(d.select(*cols).withColumn(DELETE_FLAG, F.lit(True)))
    if not parts:
        return
    src = parts[0] if len(parts) == 1 else parts[0].unionByName(parts[1])
    cond = " AND ".join([f"t.`{k}` <=> s.`{k}`" for k in keys]
                        + [f"t.`{c}` = '{v}'" for c, v in (scope or {}).items()])
    (table.alias("t").merge(src.alias("s"), cond)
     .whenMatchedDelete(condition=f"s.`{DELETE_FLAG}`")
     .whenMatchedUpdate(set={c: f"s.`{c}`" for c in cols})
     .whenNotMatchedInsert(condition=f"NOT s.`{DELETE_FLAG}`", values={c: f"s.`{c}`" for c in cols})
     .execute())


def _ident(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"'{name}' is not a valid SQL identifier (letters, digits, underscore)")
    return f"`{name}`"


def _same_location(a: str, b: str) -> bool:
    return str(a).rstrip("/").removeprefix("file:") == str(b).rstrip("/").removeprefix("file:")


def registered_locations(spark: SparkSession, database: str, like: str = "*") -> dict[str, str | None]:
    """``{table: location}`` of ``database``'s tables matching ``like`` (views: None), or {} without it.

    Why: one metastore query (``SHOW TABLE EXTENDED``), no Delta log read and no Spark job, where
    ``DESCRIBE DETAIL`` per table reconstructed each table's Delta snapshot (three Spark jobs each)."""
    if not spark.catalog.databaseExists(database):
        return {}
    out: dict[str, str | None] = {}
    for r in spark.sql(f"SHOW TABLE EXTENDED IN {_ident(database)} LIKE '{like}'").collect():
        if r["isTemporary"]:
            continue
        lines = [ln for ln in (r["information"] or "").splitlines() if ln.startswith("Location: ")]
        out[r["tableName"]] = lines[0].removeprefix("Location: ").strip() if lines else None
    return out


def register_table(spark: SparkSession, database: str, name: str, path: str,
                   registered: Mapping[str, str | None] | None = None) -> str:
    """``CREATE TABLE IF NOT EXISTS db.name USING DELTA LOCATION path``; idempotent.

    Returns the qualified name. A table already registered at ``path`` costs one metastore lookup
    (none when ``registered``, from :func:`registered_locations`, is given); one registered at
    another location is re-pointed, so a config change of paths does not leave SQL reading stale data.
    """
    qualified = f"{_ident(database)}.{_ident(name)}"
    if registered is None:
        registered = registered_locations(spark, database, like=name)
    if name.lower() in {k.lower() for k in registered}:
        current = next(v for k, v in registered.items() if k.lower() == name.lower())
        if current is not None and _same_location(current, path):
            return qualified
        log.warning("re-registering %s at %s (was %s)", qualified, path, current)
        spark.sql(f"DROP TABLE IF EXISTS {qualified}")  # external table: data stays
    elif not registered and not spark.catalog.databaseExists(database):
        # once: a repeated CREATE warns "created concurrently"
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {_ident(database)}")
    location = path.replace("'", "\\'")
    spark.sql(f"CREATE TABLE IF NOT EXISTS {qualified} USING DELTA LOCATION '{location}'")
    return qualified


def register_tables(spark: SparkSession, cfg) -> list[str]:
    """Register every existing Delta table named in ``cfg['tables']`` for SQL (one catalog lookup for all)."""
    tables = cfg["tables"]
    database = tables["database"]
    registered = registered_locations(spark, database)
    if not registered and not spark.catalog.databaseExists(database):
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {_ident(database)}")
        registered = {}
    done = []
    for key, spec in tables.items():
        if isinstance(spec, dict) and "path" in spec and is_delta_table(spark, spec["path"]):
            done.append(register_table(spark, database, spec["name"], spec["path"], registered))
    return done
