"""Lexical (BM25 / TF-IDF) features of both catalogs -> `tables.movie_lexical`, `tables.book_lexical` (Delta).

    spark-submit jobs/embed_lexical.py [--refit] [--full] [--conf lexical.weighting=tfidf]

Run after jobs/embed_movies.py and jobs/embed_books.py (they write the validated catalog tables
this job reads). The vocabulary + idf are fitted once (Spark ML, union of both catalogs'
descriptions) and reused from `paths.work_dir`/lexical/ on reruns; --refit fits again (a new
vocabulary or idf is a new lexical_version: every row is then recomputed). Only new or changed
rows are featurized; see lfr.lexical.pipeline. Exit code 2 when a catalog table is missing.
"""
from jobkit import EXIT_OK, JobContext, add_allow_deletes, log, run_job


def add_args(parser) -> None:
    parser.add_argument("--refit", action="store_true", help="fit the vocabulary + idf again")
    parser.add_argument("--full", action="store_true", help="recompute every row and rewrite the tables")
    add_allow_deletes(parser)


def main(ctx: JobContext) -> int:
    from lfr.lexical.pipeline import lexicalize
    from lfr.settings import with_values

    settings = with_values(ctx.settings, {"guards.allow_deletes": True if ctx.args.allow_deletes else None})
    stats = lexicalize(ctx.spark, settings, refit=ctx.args.refit, full=ctx.args.full)
    log.info("lexical features: %s", stats.as_dict())
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(run_job("embed_lexical", main, add_args))
