"""Environment check: start the project's Spark session and write a Delta table.

    spark-submit jobs/smoke_delta.py [--conf paths.work_dir=/tmp/x]
"""
from jobkit import JobContext, log, run_job
from lfr.spark.delta import register_table, write_table


def main(ctx: JobContext) -> int:
    path = ctx.cfg["paths"]["warehouse"] + "/smoke"
    df = ctx.spark.range(10).selectExpr("id", "id * id AS square")
    write_table(df, path, mode="overwrite")
    name = register_table(ctx.spark, ctx.cfg["tables"]["database"], "smoke", path)
    total = ctx.spark.sql(f"SELECT sum(square) AS s FROM {name}").first()["s"]
    log.info("wrote Delta table %s at %s; sum(square) = %s", name, path, total)
    if total != 285:
        raise RuntimeError(f"unexpected sum {total}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_job("smoke_delta", main))
