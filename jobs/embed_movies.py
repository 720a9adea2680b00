"""Embed the movies catalog incrementally into `tables.movie_embeddings` (Delta), rejects into `tables.rejects`.

    spark-submit jobs/embed_movies.py [--full] [--model-dir DIR] [--conf embed.batch_size=128]

Only new or changed movies (by content hash) are embedded, or all of them when the model
version changed or with --full; see lfr.embed.pipeline. Needs a trained model
(spark-submit jobs/train.py).
"""
from lfr.cli import JobContext, log, run_job


def add_args(parser) -> None:
    parser.add_argument("--full", action="store_true", help="re-embed everything and rewrite the table")
    parser.add_argument("--model-dir", default=None, help="model artifact folder (default: paths.model_dir)")


def main(ctx: JobContext) -> int:
    from lfr.embed import ModelArtifactMissing, embed_catalog

    try:
        embed_catalog(ctx.spark, ctx.cfg, "movies", full=ctx.args.full, model_dir=ctx.args.model_dir)
    except ModelArtifactMissing as exc:
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(run_job("embed_movies", main, add_args))
