"""SQL registration of Delta tables: idempotent without reading the Delta log, re-pointed on a path change."""
from pyspark.sql import Row

from lfr.spark.delta import register_table, register_tables, registered_locations, write_table


def _jobs(spark) -> int:
    """The last job's id: ids count up, while the tracker forgets old jobs (spark.ui.retainedJobs), so a count
    of the jobs it still knows can stand still or fall while jobs run."""
    return max(spark.sparkContext.statusTracker().getJobIdsForGroup(None), default=-1)


def test_registering_again_runs_no_spark_job_and_keeps_the_table(spark, tmp_path):
    path = str(tmp_path / "a")
    write_table(spark.createDataFrame([Row(id="x", n=1)]), path, mode="overwrite")
    name = register_table(spark, "lfr_reg", "a", path)
    assert registered_locations(spark, "lfr_reg", like="a")["a"].removeprefix("file:").rstrip("/") == path
    before = _jobs(spark)
    assert register_table(spark, "lfr_reg", "a", path) == name
    assert _jobs(spark) == before          # a metastore lookup only: no Delta snapshot (DESCRIBE DETAIL) job
    assert spark.sql(f"SELECT n FROM {name}").first().n == 1


def test_a_table_registered_elsewhere_is_re_pointed(spark, tmp_path):
    old, new = str(tmp_path / "old"), str(tmp_path / "new")
    write_table(spark.createDataFrame([Row(id="x", n=1)]), old, mode="overwrite")
    write_table(spark.createDataFrame([Row(id="x", n=2)]), new, mode="overwrite")
    name = register_table(spark, "lfr_reg", "moved", old)
    assert register_table(spark, "lfr_reg", "moved", new) == name
    assert spark.sql(f"SELECT n FROM {name}").first().n == 2
    assert registered_locations(spark, "lfr_reg", like="moved")["moved"].removeprefix("file:").rstrip("/") == new


def test_register_tables_creates_the_database_once_and_skips_missing_tables(spark, tmp_path):
    from lfr.settings import load_settings

    tables = load_settings(overrides=[f"paths.warehouse={tmp_path}", "tables.database=lfr_reg_new"]).tables
    write_table(spark.createDataFrame([Row(id="x", n=3)]), tables.movies.path, mode="overwrite")  # the others absent
    assert registered_locations(spark, "lfr_reg_new") == {}
    assert register_tables(spark, tables) == ["`lfr_reg_new`.`movies`"]
    assert register_tables(spark, tables) == ["`lfr_reg_new`.`movies`"]
    assert set(registered_locations(spark, "lfr_reg_new")) == {"movies"}
    assert spark.sql("SELECT n FROM lfr_reg_new.movies").first().n == 3
