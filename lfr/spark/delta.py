"""Delta table helpers: schema-enforced writes, versions, SQL registration.

Incremental writes (change plans, MERGEs, retries on concurrent commits) are ``lfr.spark.sync``.

Why explicit: Delta's schema enforcement is the guard against silent data
corruption, so nothing here turns on ``mergeSchema``/``overwriteSchema``
implicitly; a write whose schema does not match the table fails with
``TableSchemaError`` naming the table and the differing fields.
"""
from __future__ import annotations

import logging
import re
from typing import Mapping, Sequence

from delta.tables import DeltaTable
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from lfr.errors import UsageError
from lfr.settings import TablesSettings

log = logging.getLogger(__name__)
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class TableSchemaError(UsageError):
    """A DataFrame's schema does not match the Delta table it is written to."""


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


def register_tables(spark: SparkSession, settings: TablesSettings) -> list[str]:
    """Register every existing Delta table of the ``tables`` settings for SQL (one catalog lookup for all)."""
    tables = settings.as_dict()
    database = settings.database
    registered = registered_locations(spark, database)
    if not registered and not spark.catalog.databaseExists(database):
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {_ident(database)}")
        registered = {}
    done = []
    for key, spec in tables.items():
        if isinstance(spec, dict) and "path" in spec and is_delta_table(spark, spec["path"]):
            done.append(register_table(spark, database, spec["name"], spec["path"], registered))
    return done
