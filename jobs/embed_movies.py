"""Embed the movies catalog incrementally into `tables.movie_embeddings` (Delta), rejects into `tables.rejects`.

    spark-submit jobs/embed_movies.py [--full] [--model-dir DIR] [--conf embed.batch_size=128]

Only new or changed movies (by content hash) are embedded, or all of them when the model
version changed or with --full; see lfr.embed.pipeline. Needs a trained model
(spark-submit jobs/train.py).
"""
from jobkit import run_embed_job

if __name__ == "__main__":
    raise SystemExit(run_embed_job("movies"))
