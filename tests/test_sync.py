"""lfr.spark.sync: change plans (null-safe), guards before any write, one commit, schema checks, retries."""
from __future__ import annotations

import pytest
from delta.tables import DeltaTable

from lfr.spark.delta import TableSchemaError, write_table
from lfr.spark.guards import Guards, ShrinkRefused
from lfr.spark.sync import IncrementalTable, retry_on_conflict

SCHEMA = "id string, x string, y string, n int"


def _commits(spark, path) -> int:
    return DeltaTable.forPath(spark, path).history().count()


def _rows(spark, path) -> set:
    return {tuple(r) for r in spark.read.format("delta").load(path).select("id", "x", "y", "n").collect()}


@pytest.fixture
def table(spark, tmp_path):
    path = str(tmp_path / "t")
    rows = [("a", "p", None, 1), (None, "q", "r", 2), ("c", "s", "t", 3), ("d", None, "a", 4), ("f", "u", "v", 6)]
    write_table(spark.createDataFrame(rows, SCHEMA), path, mode="overwrite")
    return IncrementalTable(spark, path, "t")


def test_plan_is_null_safe_and_a_rerun_is_a_no_op(spark, table):
    new = spark.createDataFrame([
        ("a", "p", None, 1),        # same, a null in a compared column on both sides
        (None, "q", "r", 2),        # same: a null key matches the table's null key (<=>), once
        ("c", "s", None, 3),        # update: a compared value became null
        ("d", "a", None, 4),        # update: (null, 'a') -> ('a', null) is a change, not the same "row hash"
        ("e", "w", "x", 5),         # insert
    ], SCHEMA)                      # 'f' only in the table: delete
    plan = table.plan(new)
    assert (plan.inserts, plan.updates, plan.same, plan.deleted) == (1, 2, 2, 1)
    assert (plan.before, plan.after, plan.rows_written, plan.unchanged) == (5, 5, 3, 2)
    assert {r["id"] for r in plan.upserts.collect()} == {"c", "d", "e"}
    assert plan.upserts.schema == new.schema                        # the new rows as they are (semi join)
    assert [r["id"] for r in plan.deletes.collect()] == ["f"]
    commits = _commits(spark, table.path)
    assert table.write(plan) is True
    plan.release()
    assert _commits(spark, table.path) == commits + 1                # upserts and deletes: one commit
    assert _rows(spark, table.path) == {tuple(r) for r in new.collect()}

    again = table.plan(new)                                          # idempotent rerun: nothing to do, no commit
    assert again.is_empty and (again.same, again.before, again.after) == (5, 5, 5)
    assert table.write(again) is False and _commits(spark, table.path) == commits + 1
    again.release()


def test_compare_columns_and_kept_rows(spark, table):
    new = spark.createDataFrame([("a", "p", "CHANGED", 1), ("c", "s", "t", 30)], SCHEMA)
    plan = table.plan(new, compare=["n"], delete_missing=False)     # only n counts; the rest stay
    assert (plan.inserts, plan.updates, plan.same, plan.deleted) == (0, 1, 1, 0)
    assert (plan.before, plan.after, plan.deletes.count()) == (5, 5, 0)
    table.write(plan)
    plan.release()
    got = {r[0]: r for r in _rows(spark, table.path)}
    assert got["c"][3] == 30 and got["a"][2] is None and set(got) == {"a", None, "c", "d", "f"}


def test_a_guard_refuses_before_any_write_and_a_rebuild_is_no_bypass(spark, table):
    new = spark.createDataFrame([("a", "p", None, 1), ("c", "s", "t", 3)], SCHEMA)   # 3 of 5 rows gone
    commits = _commits(spark, table.path)
    strict = Guards(max_delete_fraction=0.02, max_delete_rows=None)
    with pytest.raises(ShrinkRefused, match=r"t: 5 rows before, 2 after, 3 deleted from in\.csv"):
        table.plan(new, guards=strict, sources=["in.csv"])
    with pytest.raises(ShrinkRefused, match="5 items before, 2 after"):
        table.plan(new, rebuild=True, guards=strict, what="items")   # a full rewrite is measured the same way
    with pytest.raises(ShrinkRefused):
        table.sync(new, guards=strict)
    assert _commits(spark, table.path) == commits                    # nothing was written
    assert table.sync(new, guards=Guards(0.02, None, allow_deletes=True)) == (0, 3)
    assert _rows(spark, table.path) == {("a", "p", None, 1), ("c", "s", "t", 3)}
    rebuilt = table.plan(new, rebuild=True)
    assert rebuilt.rebuild and not rebuilt.is_empty and (rebuilt.rows_written, rebuilt.unchanged) == (2, 0)
    rebuilt.release()


def test_a_new_table_is_created_by_its_first_write(spark, tmp_path):
    t = IncrementalTable(spark, str(tmp_path / "new"), "new")
    new = spark.createDataFrame([("a", "p", None, 1)], SCHEMA)
    plan = t.plan(new, guards=Guards(0.02, None))
    assert plan.rebuild and (plan.before, plan.inserts, plan.after) == (0, 1, 1)
    assert t.write(plan) and _rows(spark, t.path) == {("a", "p", None, 1)}
    assert t.sync(new) == (0, 0)


def test_schema_mismatch_is_an_error_naming_the_fix_or_a_rebuild(spark, table):
    from pyspark.sql.types import IntegerType, StringType, StructField, StructType

    wanted = StructType([StructField("id", StringType()), StructField("x", StringType()),
                         StructField("n", IntegerType()), StructField("z", StringType())])
    strict = IncrementalTable(spark, table.path, "t", schema=wanted, fix="rerun with --full")
    new = spark.createDataFrame([("a", "p", 1, "zz")], wanted)
    with pytest.raises(TableSchemaError, match=r"(?s)t\) has an older schema.*missing column 'z'.*"
                                               r"unexpected column 'y'.*rerun with --full"):
        strict.plan(new)
    commits = _commits(spark, table.path)
    with pytest.raises(TableSchemaError, match="unexpected column 'z'"):   # a MERGE is checked too
        table.merge(new, None)
    assert _commits(spark, table.path) == commits
    rebuilt = IncrementalTable(spark, table.path, "t", on_schema_change="rebuild")
    assert rebuilt.sync(new, guards=Guards(0.02, None, allow_deletes=True)) == (1, 4)
    assert spark.read.format("delta").load(table.path).columns == ["id", "x", "n", "z"]
    with pytest.raises(ValueError, match="never rebuilt"):
        IncrementalTable(spark, table.path, "t", scope={"domain": "books"}, on_schema_change="rebuild")


def test_merge_upserts_and_deletes_in_one_commit(spark, tmp_path):
    from pyspark.sql import Row

    from lfr.spark.delta import table_version

    path = str(tmp_path / "m")
    write_table(spark.createDataFrame([Row(id="a", v=1), Row(id="b", v=2), Row(id="d", v=4)]), path, mode="overwrite")
    t = IncrementalTable(spark, path, "m")
    t.merge(spark.createDataFrame([Row(id="b", v=20), Row(id="c", v=3)]), spark.createDataFrame([Row(id="d")]))
    assert {r.id: r.v for r in spark.read.format("delta").load(path).collect()} == {"a": 1, "b": 20, "c": 3}
    assert table_version(spark, path)[0] == 1


def test_a_scoped_sync_leaves_the_other_scopes_alone(spark, tmp_path):
    path = str(tmp_path / "shared")
    schema = "domain string, id string, reason string"

    def sync(domain, ids):
        t = IncrementalTable(spark, path, "shared", ("domain", "id"), scope={"domain": domain},
                             partition_by=("domain",))
        return t.sync(spark.createDataFrame([(domain, i, "r") for i in ids], schema), compare=[])

    assert sync("movies", ["m1", "m2"]) == (2, 0)
    assert sync("books", ["b1"]) == (1, 0)                           # appended: the movies rows stay
    assert sync("books", ["b2"]) == (1, 1)
    got = {(r["domain"], r["id"]) for r in spark.read.format("delta").load(path).collect()}
    assert got == {("movies", "m1"), ("movies", "m2"), ("books", "b2")}


def test_retry_on_conflict_retries_a_lost_commit_then_gives_up():
    from delta.exceptions import ConcurrentAppendException

    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise ConcurrentAppendException("another job committed first")
        return "done"

    assert retry_on_conflict(flaky, "test") == "done" and len(calls) == 2

    def always():
        raise ConcurrentAppendException("always")

    with pytest.raises(ConcurrentAppendException):
        retry_on_conflict(always, "test", attempts=2)
    with pytest.raises(ZeroDivisionError):                           # other errors are not retried
        retry_on_conflict(lambda: 1 / 0, "test")
