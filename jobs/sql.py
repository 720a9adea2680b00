"""Run SQL against the project's tables: registers them (and the recommendations view) first.

    spark-submit jobs/sql.py -e "SELECT * FROM lfr.movie_book_recommendations
                                 WHERE movie_title = 'Jurassic Park' ORDER BY rank"
    spark-submit jobs/sql.py -f conf/queries.sql [--max-rows 50]

With Spark's default in-memory catalog, table registrations and views last only as long as
the session, so this runner re-registers every existing Delta table of `tables` in conf/lfr.yaml
(`CREATE TABLE IF NOT EXISTS ... USING DELTA LOCATION ...`, idempotent) and re-creates the view
before running anything. With a Hive metastore they persist and this is a no-op.
"""
import argparse
import sys
from pathlib import Path

from jobkit import JobContext, log, run_job


def add_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("-e", dest="sql", metavar="SQL", help="statement(s) to run; ';'-separated")
    g.add_argument("-f", dest="file", metavar="FILE", help="SQL file to run")
    p.add_argument("--max-rows", type=int, default=20, help="rows printed per query (default 20)")


def main(ctx: JobContext) -> int:
    from lfr.score import register_recommendations
    from lfr.score.sql import run_statements, split_sql

    names = register_recommendations(ctx.spark, ctx.settings)
    log.info("registered: %s", ", ".join(names) or "(no tables yet: run the pipeline first)")
    if ctx.args.file is not None and not Path(ctx.args.file).is_file():
        log.error("no SQL file %s", ctx.args.file)
        return 2
    text = ctx.args.sql if ctx.args.sql is not None else Path(ctx.args.file).read_text(encoding="utf-8")
    statements = split_sql(text)
    if not statements:
        log.error("no SQL statement given")
        return 2
    for _ in run_statements(ctx.spark, statements, max_rows=ctx.args.max_rows, stream=sys.stdout):
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(run_job("sql", main, add_args))
