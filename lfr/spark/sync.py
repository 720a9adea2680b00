"""Incremental Delta tables: what a run would change, the guards on it, and one write.

    table = IncrementalTable(spark, path, "book_embeddings", schema=EMBEDDINGS_SCHEMA,
                             fix=f"rerun with --full or delete the folder {path}")
    plan = table.plan(rows, compare=["content_hash", "model_version"], guards=guards)  # one Spark job
    table.write(plan, embedded)        # one MERGE (upserts + deletes), or nothing when the plan is empty
    plan.release()

Every table a job keeps in step with its input (the catalog tables, ``rejects``, the embeddings and the
lexical features) goes through here, so they share one set of rules:

* **Plan** (``IncrementalTable.plan``): one null-safe full outer join of the new rows' keys with the
  table's keys (within ``scope``, the partition of a shared table) classifies every key as ``insert``,
  ``update`` (a ``compare`` column differs, nulls compared as values), ``same``, ``delete`` (only in the
  table) or ``stay`` (only in the table, kept: ``delete_missing=False``); one counting job. The counts
  give the rows before and after the write, which is what the guards measure.
* **Guards** (``lfr.spark.guards``): ``plan(..., guards=)`` refuses (``ShrinkRefused``) a write that would
  shrink the table beyond ``guards.*``, before anything is written; ``rebuild`` is checked the same way.
* **Schema**: the table's schema is compared with the one it should have (``schema``, else the new
  rows'): a difference is a ``TableSchemaError`` naming the table, the differences and ``fix``, unless
  the table is a pure function of its input (``on_schema_change="rebuild"``: rewritten, one overwrite).
  A MERGE is checked against the table's schema too.
* **Write** (``IncrementalTable.write`` / ``merge``): one commit -- an explicit Delta MERGE via the
  ``DeltaTable`` API (upserts and deletes together: two commits would let readers see half an update),
  one atomic overwrite for a rebuild, an append for a shared table's first rows --; none for an empty
  plan. A commit that loses to a concurrent one is retried (``retry_on_conflict``).
"""
from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from functools import reduce
from typing import Callable, Mapping, Optional, Sequence, TypeVar

from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from lfr.spark.delta import TableSchemaError, is_delta_table, schema_diff, write_table
from lfr.spark.guards import Guards, Shrink

log = logging.getLogger(__name__)
T = TypeVar("T")

INSERT, UPDATE, SAME, DELETE, STAY = "insert", "update", "same", "delete", "stay"
_ACTION, _NEW, _CUR = "_lfr_action", "_lfr_n_", "_lfr_c_"   # plan columns: new side / table side
DELETE_FLAG = "_lfr_delete"                                   # MERGE source column: the row is a delete
SCHEMA_CHANGES = ("fail", "rebuild")


# ------------------------------------------------------------------ retries
def _conflicts() -> tuple[type[BaseException], ...]:
    from delta.exceptions import (
        ConcurrentAppendException,
        ConcurrentDeleteDeleteException,
        ConcurrentDeleteReadException,
        ConcurrentTransactionException,
        ConcurrentWriteException,
        DeltaConcurrentModificationException,
        MetadataChangedException,
        ProtocolChangedException,
    )

    return (ConcurrentAppendException, ConcurrentWriteException, ConcurrentTransactionException,
            ConcurrentDeleteReadException, ConcurrentDeleteDeleteException, MetadataChangedException,
            ProtocolChangedException, DeltaConcurrentModificationException)


def retry_on_conflict(write: Callable[[], T], what: str, attempts: int = 5) -> T:
    """Run ``write`` again when a concurrent Delta commit beat it (optimistic concurrency).

    Why: two jobs started at once on an empty warehouse (embed_books + embed_movies) both create
    ``rejects``; the loser gets ProtocolChanged/MetadataChanged/ConcurrentAppend. ``write`` must be
    right against the table as it is when called (a keyed MERGE, an append of its own partition, an
    overwrite), so a retry sees the winner's commit and is correct; after ``attempts`` the conflict is
    raised as is."""
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


# ------------------------------------------------------------------ the plan
@dataclass
class ChangePlan:
    """What one write does to a table (``IncrementalTable.plan``).

    ``upserts``: the new rows to write (the new frame's own columns and schema): the inserted and
    updated ones, every new row for a ``rebuild``. ``deletes``: the key columns of the table's rows
    to delete (None for a rebuild, which replaces the table). ``before``: the table's rows (within
    its scope) now."""
    table: str
    upserts: DataFrame
    deletes: Optional[DataFrame]
    inserts: int
    updates: int
    same: int
    deleted: int
    before: int
    rebuild: bool
    cached: Optional[DataFrame] = field(default=None, repr=False)

    @property
    def rows_written(self) -> int:
        """Rows the write puts into the table (a rebuild writes every new row)."""
        return self.inserts + self.updates + (self.same if self.rebuild else 0)

    @property
    def unchanged(self) -> int:
        """New rows the write leaves as they are in the table (none for a rebuild)."""
        return 0 if self.rebuild else self.same

    @property
    def after(self) -> int:
        return self.before - self.deleted + self.inserts

    @property
    def shrink(self) -> Shrink:
        return Shrink(self.table, self.before, self.after, self.deleted)

    @property
    def is_empty(self) -> bool:
        """Nothing to insert, update or delete: no commit (a rebuild always writes)."""
        return not self.rebuild and self.inserts == self.updates == self.deleted == 0

    def release(self) -> None:
        """Drop the plan's cached classification (the keys of every row and their action)."""
        if self.cached is not None:
            self.cached.unpersist()
            self.cached = None


def _all(conds: Sequence[Column]) -> Column:
    return reduce(lambda a, b: a & b, conds)


def fingerprint(columns: Sequence[str]) -> Column:
    """One value per row that changes whenever one of ``columns`` does, nulls included (the JSON of
    the columns names each present field, so ``(null, 'a')`` and ``('a', null)`` differ)."""
    if not columns:
        return F.lit(0).cast("long")
    return F.xxhash64(F.to_json(F.struct(*[F.col(f"`{c}`") for c in columns])))


# ------------------------------------------------------------------ the table
@dataclass(frozen=True)
class IncrementalTable:
    """A Delta table kept in step with a frame of new rows, matched on ``keys`` (see the module doc).

    ``scope``: ``{column: value}`` of the part of a shared table this run owns (``rejects``: its
    domain); the rest is neither read for the plan nor written. ``schema``: the schema the table
    must have (default: the new rows'). ``on_schema_change``: ``fail`` (a ``TableSchemaError``
    ending with ``fix``) or ``rebuild`` (rewrite the table from the new rows; unscoped tables only)."""
    spark: SparkSession
    path: str
    name: str
    keys: tuple[str, ...] = ("id",)
    scope: Optional[Mapping[str, str]] = None
    partition_by: tuple[str, ...] = ()
    schema: Optional[StructType] = None
    on_schema_change: str = "fail"
    fix: str = ""

    def __post_init__(self) -> None:
        if self.on_schema_change not in SCHEMA_CHANGES:
            raise ValueError(f"on_schema_change must be one of {SCHEMA_CHANGES}, not {self.on_schema_change!r}")
        if self.scope and self.on_schema_change == "rebuild":
            raise ValueError(f"{self.name}: a scoped (shared) table is never rebuilt from one run's rows")

    def exists(self) -> bool:
        return is_delta_table(self.spark, self.path)

    def current(self) -> DataFrame:
        """The table's rows within ``scope``."""
        df = self.spark.read.format("delta").load(self.path)
        for c, v in (self.scope or {}).items():
            df = df.filter(F.col(c) == F.lit(v))
        return df

    def check_schema(self, expected: StructType) -> list[str]:
        """Differences between ``expected`` and the table's schema ([] when it has no table)."""
        if not self.exists():
            return []
        return schema_diff(expected, self.spark.read.format("delta").load(self.path).schema)

    def plan(self, new: DataFrame, *, compare: Optional[Sequence[str]] = None, delete_missing: bool = True,
             rebuild: bool = False, guards: Optional[Guards] = None, sources: Sequence[str] = (),
             what: str = "rows") -> ChangePlan:
        """What writing ``new`` would change (see the module doc); one Spark job, two without a table.

        ``compare``: the columns whose change makes a matched row an update (default: every non-key
        column of ``new``); ``delete_missing``: delete the table's rows whose key is not in ``new``;
        ``rebuild``: replace the table with ``new`` (one overwrite). ``guards``: refuse
        (``ShrinkRefused``, before any write) a plan that shrinks the table beyond them; ``sources``
        and ``what`` name the inputs and the rows in the refusal."""
        if not self.exists():
            n = new.count()
            plan = ChangePlan(self.name, new, None, n, 0, 0, 0, 0, rebuild=True)
        else:
            rebuild = bool(rebuild) or self._rebuild_for_schema(new)
            if rebuild:   # every row is rewritten: the keys alone measure the shrink
                compare, delete_missing = [], True
            elif compare is None:
                compare = [c for c in new.columns if c not in self.keys]
            plan = self._classified(new, list(compare), delete_missing, rebuild)
        if guards is not None:
            try:
                guards.check(plan.shrink, sources, what)
            except Exception:
                plan.release()
                raise
        return plan

    def _rebuild_for_schema(self, new: DataFrame) -> bool:
        diff = self.check_schema(self.schema or new.schema)
        if not diff:
            return False
        if self.on_schema_change == "rebuild":
            log.warning("Delta table %s has an older schema (%s): rewriting it from its input", self.path,
                        "; ".join(diff))
            return True
        raise TableSchemaError(f"Delta table {self.path} ({self.name}) has an older schema ({'; '.join(diff)})"
                               + (f". {self.fix}" if self.fix else ""))

    def _classified(self, new: DataFrame, compare: list[str], delete_missing: bool, rebuild: bool) -> ChangePlan:
        keys = list(self.keys)
        n = new.select(*[F.col(f"`{k}`").alias(_NEW + k) for k in keys], fingerprint(compare).alias(_NEW + "fp"),
                       F.lit(True).alias(_NEW))
        c = self.current().select(*[F.col(f"`{k}`").alias(_CUR + k) for k in keys],
                                  fingerprint(compare).alias(_CUR + "fp"), F.lit(True).alias(_CUR))
        action = (F.when(F.col(_CUR).isNull(), F.lit(INSERT))
                  .when(F.col(_NEW).isNull(), F.lit(DELETE if delete_missing else STAY))
                  .when(F.col(_NEW + "fp").eqNullSafe(F.col(_CUR + "fp")), F.lit(SAME))
                  .otherwise(F.lit(UPDATE)))
        on = _all([F.col(_NEW + k).eqNullSafe(F.col(_CUR + k)) for k in keys])
        classified = (n.join(c, on, "full_outer")
                      .select(*[_NEW + k for k in keys], *[_CUR + k for k in keys], action.alias(_ACTION)).persist())
        counts = {r[_ACTION]: int(r["count"]) for r in classified.groupBy(_ACTION).count().collect()}
        if rebuild:
            upserts, deletes = new, None
        else:
            changed = classified.filter(F.col(_ACTION).isin(INSERT, UPDATE)).select(*[_NEW + k for k in keys])
            upserts = new.alias("_lfr_new").join(
                changed, _all([F.col(f"_lfr_new.`{k}`").eqNullSafe(F.col(_NEW + k)) for k in keys]), "left_semi")
            deletes = classified.filter(F.col(_ACTION) == DELETE).select(*[F.col(_CUR + k).alias(k) for k in keys])
        get = lambda a: counts.get(a, 0)  # noqa: E731
        return ChangePlan(self.name, upserts, deletes, get(INSERT), get(UPDATE), get(SAME), get(DELETE),
                          before=get(UPDATE) + get(SAME) + get(DELETE) + get(STAY), rebuild=rebuild,
                          cached=classified)

    def write(self, plan: ChangePlan, rows: Optional[DataFrame] = None) -> bool:
        """Carry out ``plan`` in one commit, with ``rows`` (default: the plan's upserts; e.g. those rows
        embedded) as the rows to write; nothing for an empty plan. Returns whether it committed."""
        rows = plan.upserts if rows is None else rows
        if plan.is_empty:
            return False
        if plan.rebuild:   # a new table, or a rewrite; a shared table's first rows are appended to it
            mode = "append" if self.scope else "overwrite"
            retry_on_conflict(lambda: write_table(rows, self.path, mode=mode, partition_by=self.partition_by,
                                                  overwrite_schema=not self.scope), f"write {self.name}")
        else:
            self.merge(rows if plan.rows_written else None, plan.deletes if plan.deleted else None)
        return True

    def merge(self, upserts: Optional[DataFrame], deletes: Optional[DataFrame]) -> None:
        """One Delta MERGE: ``upserts`` (full rows) updated or inserted, ``deletes`` (key columns) deleted.

        The table must exist. Keys compare null-safely (``<=>``); ``scope`` adds ``t.col = 'value'``
        conditions (partition pruning). ``upserts`` must have the table's columns and types, else a
        ``TableSchemaError`` before anything is written. Retried on a concurrent commit."""
        if upserts is None and deletes is None:
            return
        retry_on_conflict(lambda: self._merge_once(upserts, deletes), f"merge {self.name}")

    def _merge_once(self, upserts: Optional[DataFrame], deletes: Optional[DataFrame]) -> None:
        table = DeltaTable.forPath(self.spark, self.path)
        target = table.toDF().schema
        cols = [f.name for f in target.fields]
        parts = []
        if upserts is not None:
            diff = schema_diff(target, upserts.schema)
            if diff:
                raise TableSchemaError(f"schema mismatch writing to Delta table {self.path}: " + "; ".join(diff))
            parts.append(upserts.select(*cols).withColumn(DELETE_FLAG, F.lit(False)))
        if deletes is not None:
            d = deletes.select(*self.keys)
            for f in target.fields:
                if f.name not in self.keys:
                    d = d.withColumn(f.name, F.lit(None).cast(f.dataType))
            parts.append(d.select(*cols).withColumn(DELETE_FLAG, F.lit(True)))
        src = reduce(lambda a, b: a.unionByName(b), parts)
        cond = " AND ".join([f"t.`{k}` <=> s.`{k}`" for k in self.keys]
                            + [f"t.`{c}` = '{v}'" for c, v in (self.scope or {}).items()])
        (table.alias("t").merge(src.alias("s"), cond)
         .whenMatchedDelete(condition=f"s.`{DELETE_FLAG}`")
         .whenMatchedUpdate(set={c: f"s.`{c}`" for c in cols})
         .whenNotMatchedInsert(condition=f"NOT s.`{DELETE_FLAG}`", values={c: f"s.`{c}`" for c in cols})
         .execute())

    def sync(self, new: DataFrame, *, compare: Optional[Sequence[str]] = None, guards: Optional[Guards] = None,
             sources: Sequence[str] = (), what: str = "rows") -> tuple[int, int]:
        """Make the table (within ``scope``) hold exactly ``new``'s rows: plan, guard, write, release.
        Returns ``(rows written, rows deleted)``; no commit when the table already holds them."""
        plan = self.plan(new, compare=compare, guards=guards, sources=sources, what=what)
        try:
            self.write(plan)
            return plan.rows_written, plan.deleted
        finally:
            plan.release()


def sync_table(spark: SparkSession, df: DataFrame, path: str, keys: Sequence[str], *,
               scope: Mapping[str, str] | None = None, compare: Sequence[str] | None = None,
               partition_by: Sequence[str] = ()) -> tuple[int, int]:
    """``IncrementalTable(...).sync(df, compare=compare)`` for a table named after its folder: an older
    schema rewrites an unscoped table, and is an error naming the fix for a scoped (shared) one."""
    table = IncrementalTable(spark, path, path.rstrip("/").rsplit("/", 1)[-1], tuple(keys), scope=scope,
                             partition_by=tuple(partition_by), on_schema_change="fail" if scope else "rebuild",
                             fix=f"Delete the folder {path}: the jobs that write it rebuild it from their input")
    return table.sync(df, compare=compare)
