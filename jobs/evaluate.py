"""Offline evaluation: LightFusionRec vs baselines on held-out movie->book links.

    spark-submit jobs/evaluate.py [--conf paths.data_dir=../shared/data] [--conf eval.folds=1] [--artifact [DIR]]
    spark-submit jobs/evaluate.py --xcross [--xcross-candidates 200] [--xcross-fractions 1,0.5]   # X-Cross rows

Reads the catalogs and the pair file (``catalogs.pairs``) with Spark, collects them to the
driver, holds out films (k-fold by film, ``eval.folds``/``eval.seed``), trains the fusion model
on the other films' links, scores every method on the held-out films against the full book
catalog, and writes ``report.md``, ``metrics.png`` and ``metrics.json`` under
``paths.reports_dir``. It does all of this once per ``eval.protocols`` entry (default: ``open``,
the texts as given, and ``strict``, the linked books' titles and authors removed from their films'
texts and the films' titles from their books' texts; ``--conf 'eval.protocols=[strict]'`` runs one).
See ``lfr.eval`` for the metric definitions.
"""
from jobkit import JobContext, run_job

MODEL_DIR = "<paths.model_dir>"


def add_args(parser) -> None:
    parser.add_argument("--artifact", nargs="?", const=MODEL_DIR, default=None, metavar="DIR",
                        help="evaluate a saved model (DIR, or paths.model_dir when no DIR is given) as the trained "
                             "row instead of training one per fold (it may have seen the held-out links; flagged)")
    parser.add_argument("--reports-dir", default=None, help="output folder (default: paths.reports_dir)")
    parser.add_argument("--xcross", action="store_true",
                        help="instead: X-Cross, its ablations and the 25/50/75/100%% links curve on the same folds "
                             "(lfr.eval.xcross; xcross_report.md next to the main report)")
    parser.add_argument("--xcross-candidates", type=int, default=0,
                        help="--xcross: books ranked per film, all linked ones + random others (0: the whole catalog)")
    parser.add_argument("--xcross-fractions", default="1,0.25,0.5,0.75",
                        help="--xcross: fractions of the training links")
    parser.add_argument("--xcross-max-length", type=int, default=0,
                        help="--xcross: tokens per item (0: xcross.max_length)")


def main(ctx: JobContext) -> int:
    from lfr.config import resolve_path
    from lfr.eval.job import evaluate

    paths = ctx.settings.paths
    reports_dir = resolve_path(ctx.args.reports_dir) if ctx.args.reports_dir else paths.reports_dir
    if ctx.args.xcross:
        from lfr.eval.job import evaluate_xcross_job

        evaluate_xcross_job(ctx.spark, ctx.settings, reports_dir=reports_dir,
                            candidates=ctx.args.xcross_candidates or None,
                            fractions=[float(q) for q in ctx.args.xcross_fractions.split(",")],
                            max_length=ctx.args.xcross_max_length or None)
        return 0
    artifact = paths.model_dir if ctx.args.artifact == MODEL_DIR else ctx.args.artifact
    evaluate(ctx.spark, ctx.settings, artifact=resolve_path(artifact) if artifact else None,
             reports_dir=reports_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_job("evaluate", main, add_args))
