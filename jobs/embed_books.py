"""Embed the books catalog incrementally into `tables.book_embeddings` (Delta), rejects into `tables.rejects`.

    spark-submit jobs/embed_books.py [--full] [--model-dir DIR] [--conf embed.batch_size=128]

Only new or changed books (by content hash) are embedded, or all of them when the model
version changed or with --full; see lfr.embed.pipeline. Needs a trained model
(spark-submit jobs/train.py).
"""
from jobkit import run_embed_job

if __name__ == "__main__":
    raise SystemExit(run_embed_job("books"))
