"""Guards before destructive writes: no run shrinks a table unless the user asked for it.

Why: a damaged or partial input (half a JSON file, a CSV missing a third of its rows) used to
delete the missing items from every downstream table with exit code 0. Each job that deletes or
replaces rows first measures what the write would do to the table (rows before, rows after, rows
deleted) and checks it (``Guards.check``) before writing anything; a refusal is a ``UsageError``
(exit code 2) naming the table, the inputs, the counts and the flag that accepts it. Incremental
tables measure it with their change plan (``lfr.spark.sync.IncrementalTable.plan(..., guards=)``);
a table replaced as a whole with :func:`table_shrink`.

Limits (``guards`` in conf/lfr.yaml): a run may delete at most ``max_delete_fraction`` of a
table's rows and at most ``max_delete_rows`` rows (null: no absolute limit), and its row count
may drop by no more than that either. ``allow_deletes`` (the jobs' ``--allow-deletes``) accepts
any shrink; a rebuild (``--full``) is checked like any other run.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional, Sequence

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lfr.errors import UsageError
from lfr.settings import GuardsSettings

log = logging.getLogger(__name__)


class ShrinkRefused(UsageError):
    """A run would delete more of a table than the guards allow."""


@dataclass(frozen=True)
class Shrink:
    """What a write would do to a table: rows before and after it, and rows it deletes."""
    table: str
    before: int
    after: int
    deleted: int

    @property
    def dropped(self) -> int:
        return max(0, self.before - self.after)


@dataclass(frozen=True)
class Guards:
    """The ``guards`` settings of one run (``lfr.settings.GuardsSettings`` plus the run's flag)."""
    max_delete_fraction: float
    max_delete_rows: Optional[int]
    allow_deletes: bool = False

    @classmethod
    def from_settings(cls, section: GuardsSettings, allow_deletes: bool = False) -> "Guards":
        """The guards of the run's ``guards`` section; ``allow_deletes`` adds a run's flag to it."""
        return cls(float(section.max_delete_fraction), section.max_delete_rows,
                   bool(allow_deletes or section.allow_deletes))

    def limit(self, before: int) -> int:
        """The most rows a run may remove from a table of ``before`` rows."""
        allowed = int(self.max_delete_fraction * before)
        return allowed if self.max_delete_rows is None else min(allowed, int(self.max_delete_rows))

    def check(self, shrink: Shrink, sources: Sequence[str] = (), what: str = "rows") -> None:
        """Refuse (``ShrinkRefused``) when ``shrink`` deletes or drops more than the limit allows."""
        worst = max(shrink.deleted, shrink.dropped)
        if worst == 0:
            return
        limit = self.limit(shrink.before)
        inputs = f" from {', '.join(map(str, sources))}" if sources else ""
        counts = (f"{shrink.table}: {shrink.before} {what} before, {shrink.after} after, "
                  f"{shrink.deleted} deleted{inputs}")
        if worst <= limit or self.allow_deletes:
            log.info("guard: %s (limit %d%s)", counts, limit, ", --allow-deletes" if self.allow_deletes else "")
            return
        raise ShrinkRefused(
            f"refusing to shrink {counts}; the guards allow {limit} (guards.max_delete_fraction="
            f"{self.max_delete_fraction}, guards.max_delete_rows="
            f"{'null' if self.max_delete_rows is None else self.max_delete_rows}). Nothing was written. "
            "If the input is right, rerun with --allow-deletes (or --conf guards.allow_deletes=true)")


def table_shrink(spark: SparkSession, path: str, new_keys: Optional[DataFrame], table: str,
                 keys: Sequence[str] = ("id",)) -> Shrink:
    """``Shrink`` of replacing the rows of the Delta table at ``path`` with ``new_keys``'s keys
    (one Spark job; a table that does not exist yet has 0 rows before). ``new_keys`` None: every
    row goes."""
    from lfr.spark.delta import is_delta_table

    if not is_delta_table(spark, path):
        after = new_keys.select(*keys).distinct().count() if new_keys is not None else 0
        return Shrink(table, 0, after, 0)
    cur = spark.read.format("delta").load(path).select(*keys).distinct().withColumn("_cur", F.lit(1))
    if new_keys is None:
        return Shrink(table, cur.count(), 0, cur.count())
    new = new_keys.select(*keys).distinct().withColumn("_new", F.lit(1))
    row = (cur.join(new, list(keys), "full_outer")
           .agg(F.count("_cur").alias("before"), F.count("_new").alias("after"),
                F.count(F.when(F.col("_new").isNull(), 1)).alias("deleted"))
           .first())
    return Shrink(table, int(row["before"]), int(row["after"]), int(row["deleted"]))
