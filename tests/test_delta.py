"""Delta helpers: schema-enforced writes, versions, SQL registration (MERGEs: tests/test_sync.py)."""
import pytest
from pyspark.sql import Row

from lfr.spark.delta import TableSchemaError, register_table, table_version, write_table


def test_delta_round_trip_and_schema_enforcement(spark, tmp_path):
    path = str(tmp_path / "t")
    df = spark.createDataFrame([Row(id="a", score=1.0), Row(id="b", score=2.0)])
    write_table(df, path, mode="overwrite")
    back = {r.id: r.score for r in spark.read.format("delta").load(path).collect()}
    assert back == {"a": 1.0, "b": 2.0}

    wrong = spark.createDataFrame([Row(id="c", score="high")])
    with pytest.raises(TableSchemaError) as err:
        write_table(wrong, path, mode="append")
    assert "score" in str(err.value) and path in str(err.value)
    extra = spark.createDataFrame([Row(id="c", score=3.0, note="x")])
    with pytest.raises(TableSchemaError, match="unexpected column 'note'"):
        write_table(extra, path, mode="append")
    # the failed writes changed nothing
    assert spark.read.format("delta").load(path).count() == 2
    assert table_version(spark, path) == (0, 2)


def test_registered_table_is_queryable_from_sql(spark, tmp_path):
    path = str(tmp_path / "reg")
    write_table(spark.createDataFrame([Row(id="x", n=7)]), path, mode="overwrite")
    name = register_table(spark, "lfr_test", "reg", path)
    assert register_table(spark, "lfr_test", "reg", path) == name    # idempotent
    assert spark.sql(f"SELECT n FROM {name} WHERE id = 'x'").first().n == 7
