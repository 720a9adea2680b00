"""Score every movie against every book: exact blocked top-k -> Delta table `recommendations`.

    spark-submit jobs/score_all.py [--k 10] [--movie-block-rows 4096] [--book-block-rows 16384]
                                   [--exclude-pairs data/sample/adaptations_dev.csv]
                                   [--book-filter "array_contains(genres, 'Fantasy')"] [--allow-deletes]
                                   [--conf score.k=20 ...]

`score.method` (--conf score.method=dense|lexical|hybrid, score.fusion=convex|rrf, score.alpha, score.rrf_k) says
what is scored; every method is the exact top-k over all books.
Reads `tables.movie_embeddings` / `tables.book_embeddings` (dense, hybrid) and `tables.movie_lexical` /
`tables.book_lexical` (lexical, hybrid: jobs/embed_lexical.py), writes `tables.recommendations`
(one atomic Delta overwrite per run) and registers it for SQL with the view
`tables.recommendations_view` (see lfr/score/job.py for the table's layout and guarantees).
Flags left out come from the `score` section of conf/lfr.yaml (each flag sets its `score.*` key).

Nothing shrinks silently: a run that would cover fewer films than the table it replaces, beyond the `guards`
limits, is refused before anything is written (exit code 2; `--allow-deletes` accepts it), and the hybrid's
ids with an embedding but no lexical row (or the reverse) are refused unless `score.missing_side=use_present`.
The counts of both are in the log, the summary line and the Delta commit (`DESCRIBE HISTORY lfr.recommendations`).
"""
import argparse
import json

from jobkit import JobContext, log, run_job


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--k", type=int, default=None, help="books per movie (default score.k)")
    p.add_argument("--movie-block-rows", type=int, default=None,
                   help="max movies per block (default score.movie_block_rows)")
    p.add_argument("--book-block-rows", type=int, default=None,
                   help="max books per block (default score.book_block_rows)")
    p.add_argument("--exclude-pairs", default=None, metavar="PAIR_FILE",
                   help="known movie->book pairs never to recommend: movie_id,book_id or the adaptations format "
                        "(default score.exclude_pairs)")
    p.add_argument("--movie-filter", default=None, metavar="SQL",
                   help="SQL predicate on movies (default score.movie_filter)")
    p.add_argument("--book-filter", default=None, metavar="SQL",
                   help="SQL predicate on books, may use catalog columns, e.g. \"year >= 2000\" "
                        "(default score.book_filter)")
    p.add_argument("--allow-deletes", action="store_true",
                   help="accept a table that covers fewer films than the guards allow (default guards.allow_deletes)")


def main(ctx: JobContext) -> int:
    from lfr.config import resolve_path
    from lfr.score import run_score
    from lfr.settings import with_values

    a = ctx.args
    settings = with_values(ctx.settings, {
        "score.k": a.k, "score.movie_block_rows": a.movie_block_rows, "score.book_block_rows": a.book_block_rows,
        "score.exclude_pairs": resolve_path(a.exclude_pairs) if a.exclude_pairs else None,
        "score.movie_filter": a.movie_filter, "score.book_filter": a.book_filter,
        "guards.allow_deletes": a.allow_deletes or None})
    result = run_score(ctx.spark, settings)
    log.info("score_all: %s", json.dumps(result.as_dict()))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_job("score_all", main, add_args))
