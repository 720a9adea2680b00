"""Offline evaluation: LightFusionRec vs baselines on held-out movie->book links.

    spark-submit jobs/evaluate.py [--conf paths.data_dir=../shared/data] [--conf eval.folds=1] [--artifact [DIR]]

Reads the catalogs and the pair file (``catalogs.pairs``) with Spark, collects them to the
driver, holds out films (k-fold by film, ``eval.folds``/``eval.seed``), trains the fusion model
on the other films' links, scores every method on the held-out films against the full book
catalog, and writes ``report.md``, ``metrics.png`` and ``metrics.json`` under
``paths.reports_dir``. See ``lfr.eval`` for the metric definitions.
"""
from jobkit import JobContext, run_job

MODEL_DIR = "<paths.model_dir>"


def add_args(parser) -> None:
    parser.add_argument("--artifact", nargs="?", const=MODEL_DIR, default=None, metavar="DIR",
                        help="evaluate a saved model (DIR, or paths.model_dir when no DIR is given) as the trained "
                             "row instead of training one per fold (it may have seen the held-out links; flagged)")
    parser.add_argument("--reports-dir", default=None, help="output folder (default: paths.reports_dir)")


def main(ctx: JobContext) -> int:
    from lfr.eval.job import evaluate

    from lfr.config import resolve_path

    paths = ctx.settings.paths
    artifact = paths.model_dir if ctx.args.artifact == MODEL_DIR else ctx.args.artifact
    evaluate(ctx.spark, ctx.cfg, artifact=resolve_path(artifact) if artifact else None,
             reports_dir=resolve_path(ctx.args.reports_dir) if ctx.args.reports_dir else paths.reports_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_job("evaluate", main, add_args))
