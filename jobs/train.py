"""Train the LightFusionRec fusion model (or X-Cross) and publish it to ``paths.model_dir``.

    spark-submit jobs/train.py [--conf train.epochs=5 --conf train.lr=1e-3] [--no-pairs] [--model-dir DIR]
    spark-submit jobs/train.py --conf model.kind=xcross     # X-Cross (lfr.train.xcross, docs/XCROSS.md)

Reads the catalogs (valid rows) and, when ``catalogs.pairs`` is set, the known
movie->book links with Spark; trains on the driver (``lfr.train``); writes the
artifact atomically (temp dir + rename: a failed run keeps the previous model).
Logs the loss curve (train/val loss and validation AUC per epoch) and timings.
"""
from jobkit import JobContext, run_job


def add_args(parser) -> None:
    parser.add_argument("--no-pairs", action="store_true",
                        help="ignore catalogs.pairs and use genre-agreement positives")
    parser.add_argument("--model-dir", default=None, help="output artifact folder (default: paths.model_dir)")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    parser.add_argument("--force", action="store_true",
                        help="retrain even when the published model was trained on the same inputs and settings")


def main(ctx: JobContext) -> int:
    from lfr.config import resolve_path
    from lfr.train.job import run_training

    model_dir = resolve_path(ctx.args.model_dir) if ctx.args.model_dir else ctx.settings.paths.model_dir
    run_training(ctx.spark, ctx.settings, model_dir=model_dir, use_pairs=not ctx.args.no_pairs,
                 progress=not ctx.args.no_progress, force=ctx.args.force)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_job("train", main, add_args))
