"""Offline evaluation: LightFusionRec vs baselines on held-out movie->book links.

    spark-submit jobs/evaluate.py [--conf paths.data_dir=../shared/data] [--artifact DIR]

Reads the catalogs and the pair file (``catalogs.pairs``) with Spark, collects them to the
driver, holds out films (``eval.holdout_fraction``, ``eval.seed``), trains the fusion model on
the other films' links, scores every method on the held-out films against the full book
catalog, and writes ``report.md``, ``metrics.png`` and ``metrics.json`` under
``paths.reports_dir``. See ``lfr.eval`` for the metric definitions.
"""
from lfr.cli import JobContext, run_job


def add_args(parser) -> None:
    parser.add_argument("--artifact", default=None,
                        help="evaluate this saved model as the trained row instead of training one on the split "
                             "(it may have seen the held-out links; flagged in the report)")
    parser.add_argument("--reports-dir", default=None, help="output folder (default: paths.reports_dir)")


def main(ctx: JobContext) -> int:
    from lfr.eval.job import evaluate

    evaluate(ctx.spark, ctx.cfg, artifact=ctx.args.artifact, reports_dir=ctx.args.reports_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_job("evaluate", main, add_args))
