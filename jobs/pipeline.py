"""The whole pipeline in ONE Spark session: train -> embed books/movies -> lexical -> score -> evaluate.

    spark-submit jobs/pipeline.py [--steps train,embed_books,...] [--from score_all] [--sql "SELECT ..."]
                                  [--allow-deletes] [--conf paths.data_dir=../shared/data ...]

Each step is the same library call as its own job (jobs/train.py, jobs/embed_books.py, ...,
with that job's default flags), so the tables, idempotence and exit codes are the same; what
one session saves is a JVM start, a Spark session and a cold first query per step (most of a
small catalog's wall time). The steps run in order; the first that fails stops the run (its exit
code is the pipeline's) and the steps after it are named in the log, so
``--from STEP`` resumes there. ``--sql`` runs statements after the last step, like jobs/sql.py.
Per-job flags (``--full``, ``--force``, ``--artifact``, ...) stay with the single jobs, except
``--allow-deletes``, which reaches every step that takes it (lfr.spark.guards).
"""
import argparse
import sys
import time

import embed_lexical
import evaluate
import score_all
import sql
import train
from jobkit import (
    EXIT_OK,
    JobContext,
    add_allow_deletes,
    add_embed_args,
    embed_job,
    exit_code,
    log,
    parse_args,
    run_job,
)

#: step name -> (job body, the job's own flags); the order is the pipeline's
STEPS = {
    "train": (train.main, train.add_args),
    "embed_books": (embed_job("books"), add_embed_args),
    "embed_movies": (embed_job("movies"), add_embed_args),
    "embed_lexical": (embed_lexical.main, embed_lexical.add_args),
    "score_all": (score_all.main, score_all.add_args),
    "evaluate": (evaluate.main, evaluate.add_args),
}


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated steps, run in pipeline order "
                                                            f"(default: all of {', '.join(STEPS)})")
    p.add_argument("--from", dest="start", default=None, choices=list(STEPS),
                   help="skip the steps before this one (resume after a failure)")
    p.add_argument("--sql", default=None, metavar="SQL", help="statement(s) to run after the last step (';'-separated)")
    p.add_argument("--max-rows", type=int, default=20, help="rows printed per --sql query (default 20)")
    add_allow_deletes(p)


def selected_steps(steps: str, start: str | None = None) -> list[str]:
    """The steps to run, in pipeline order; unknown names are a usage error."""
    from lfr.config import ConfigError

    wanted = [s.strip() for s in steps.split(",") if s.strip()]
    unknown = sorted(set(wanted) - set(STEPS))
    if unknown:
        raise ConfigError(f"--steps: unknown step(s) {unknown}; the steps are {', '.join(STEPS)}")
    order = list(STEPS)
    first = order.index(start) if start else 0
    return [s for s in order[first:] if s in wanted]


def step_context(ctx: JobContext, step: str) -> JobContext:
    """The context a step's body gets: the session and settings of the run, the step's own default flags
    (plus the pipeline's ``--allow-deletes`` for the steps that may delete rows)."""
    args = parse_args(step, STEPS[step][1], [])
    if hasattr(args, "allow_deletes"):
        args.allow_deletes = bool(ctx.args.allow_deletes)
    return JobContext(args=args, settings=ctx.settings, spark=ctx.spark)


def main(ctx: JobContext) -> int:
    steps = selected_steps(ctx.args.steps, ctx.args.start)
    log.info("pipeline: %s", " -> ".join(steps) or "(no step)")
    seconds: dict[str, float] = {}
    for i, step in enumerate(steps):
        started = time.time()
        body = STEPS[step][0]
        code = exit_code(step, lambda: body(step_context(ctx, step)))
        seconds[step] = round(time.time() - started, 1)
        if code:
            log.error("pipeline stopped: %s exited with %d; not run: %s (resume with --from %s)",
                      step, code, ", ".join(steps[i + 1:]) or "-", step)
            return code
    log.info("pipeline steps (s): %s", ", ".join(f"{s} {t}" for s, t in seconds.items()))
    if ctx.args.sql:
        sql_args = parse_args("sql", sql.add_args, ["-e", ctx.args.sql, "--max-rows", str(ctx.args.max_rows)])
        return exit_code("sql", lambda: sql.main(JobContext(sql_args, ctx.settings, ctx.spark)))
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(run_job("pipeline", main, add_args, sys.argv[1:]))
