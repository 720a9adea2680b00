"""Environment check: start the project's Spark session, run a Python worker, write a Delta table.

    spark-submit jobs/smoke_delta.py [--conf paths.work_dir=/tmp/x]

Prints where the driver and the executors import ``lfr`` from (the clone next to this script, on
both sides) and which interpreter the workers run.
"""
from jobkit import JobContext, log, run_job
from lfr.spark.delta import register_table, write_table


def _where_executors_import_lfr(spark) -> list[str]:
    """One Python task per partition reports its interpreter and the ``lfr`` it imported."""
    def probe(_rows):
        import sys

        import lfr
        yield f"{lfr.__file__} | {sys.executable}"

    return sorted(set(spark.sparkContext.parallelize(range(2), 2).mapPartitions(probe).collect()))


def main(ctx: JobContext) -> int:
    import lfr

    log.info("driver imports lfr from %s", lfr.__file__)
    for line in _where_executors_import_lfr(ctx.spark):
        log.info("executors import lfr from %s", line)
    path = ctx.settings.paths.warehouse + "/smoke"
    df = ctx.spark.range(10).selectExpr("id", "id * id AS square")
    write_table(df, path, mode="overwrite")
    name = register_table(ctx.spark, ctx.settings.tables.database, "smoke", path)
    total = ctx.spark.sql(f"SELECT sum(square) AS s FROM {name}").first()["s"]
    log.info("wrote Delta table %s at %s; sum(square) = %s", name, path, total)
    if total != 285:
        raise RuntimeError(f"unexpected sum {total}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_job("smoke_delta", main))
