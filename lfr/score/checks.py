"""Input checks of a scoring run: one model / lexical version per run, no duplicate ids, one dimension.

Each check is one small Spark job over the id and version columns (features are not decoded
here; embedding lengths and term indices are checked while the blocks are built).
"""
from __future__ import annotations

from typing import Optional

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

EMBEDDING_COLUMNS = ("id", "embedding", "model_version")
LEXICAL_COLUMNS = ("id", "term_indices", "term_weights", "lexical_version", "vocab_size")


class ScoringError(ValueError):
    """The inputs cannot be scored (empty, inconsistent dimensions, duplicate ids, ...)."""


class ModelVersionMismatch(ScoringError):
    """Movie and book features come from different models, or a table mixes several."""


def _check_side(rows: list, what: str, version_col: str) -> tuple[str, int]:
    """(version, rows) from the per-version statistics of one side, or a clear error."""
    if not rows:
        raise ScoringError(f"{what} are empty: nothing to score")
    label = version_col.replace("_", " ")
    if len(rows) > 1:
        versions = sorted(repr(r["version"]) for r in rows)
        raise ModelVersionMismatch(
            f"{what} mix {len(rows)} {label}s ({', '.join(versions)}); "
            f"recompute the whole table with one model before scoring")
    r = rows[0]
    if r["version"] is None:
        raise ModelVersionMismatch(f"{what} have no {version_col} (null)")
    if r["ids"] != r["distinct_ids"]:
        raise ScoringError(f"{what} have {r['ids'] - r['distinct_ids']} duplicate id(s)")
    return r["version"], int(r["rows"])


def _version_stats(movies: DataFrame, books: DataFrame, columns: tuple, version_col: str, kind: str,
                   extra=()) -> tuple:
    """Per side and version: rows, ids, distinct ids (+ ``extra`` aggregates); checks both sides agree."""
    for what, df in (("movie", movies), ("book", books)):
        missing = set(columns) - set(df.columns)
        if missing:
            raise ScoringError(f"{what} {kind} lack column(s) {sorted(missing)} (have {df.columns})")
    keep = ["id", version_col] + [c for c in ("vocab_size",) if c in columns]
    both = (movies.select(F.lit("movie").alias("side"), *keep)
                  .unionByName(books.select(F.lit("book").alias("side"), *keep)))
    stats = (both.groupBy("side", F.col(version_col).alias("version"))
                 .agg(F.count(F.lit(1)).alias("rows"), F.count("id").alias("ids"),
                      F.countDistinct("id").alias("distinct_ids"), *extra)
                 .collect())
    mv, m_rows = _check_side([r for r in stats if r["side"] == "movie"], f"movie {kind}", version_col)
    bv, b_rows = _check_side([r for r in stats if r["side"] == "book"], f"book {kind}", version_col)
    if mv != bv:
        raise ModelVersionMismatch(
            f"movie {kind} are {version_col} {mv!r} but book {kind} are {bv!r}: "
            f"scores across models are meaningless; recompute both catalogs with the same model")
    return mv, m_rows, b_rows, stats


def check_inputs(movies: DataFrame, books: DataFrame) -> tuple[str, int, int]:
    """``(model_version, movie_rows, book_rows)`` of two embedding tables; raises when they cannot be scored together."""
    mv, m_rows, b_rows, _ = _version_stats(movies, books, EMBEDDING_COLUMNS, "model_version", "embeddings")
    return mv, m_rows, b_rows


def check_lexical_inputs(movies: DataFrame, books: DataFrame) -> tuple[str, int, int, int]:
    """``(lexical_version, vocab_size, movie_rows, book_rows)`` of two lexical tables (LEXICAL_CONTRACT)."""
    lv, m_rows, b_rows, stats = _version_stats(
        movies, books, LEXICAL_COLUMNS, "lexical_version", "lexical features",
        extra=(F.min("vocab_size").alias("vmin"), F.max("vocab_size").alias("vmax")))
    sizes = {r["vmin"] for r in stats} | {r["vmax"] for r in stats}
    if len(sizes) != 1 or None in sizes or min(sizes) <= 0:
        raise ScoringError(f"lexical features of version {lv!r} disagree on vocab_size ({sorted(map(str, sizes))})")
    return lv, int(sizes.pop()), m_rows, b_rows


def dimension(ms, bs) -> int:
    """The one embedding length of both sides (from the blocks' dmin/dmax), or a clear error."""
    for what, st in (("movie", ms), ("book", bs)):
        if st["dmin"] is None:
            raise ScoringError(f"{what} embeddings: every embedding (or id) is null: nothing to score")
        if st["dmin"] != st["dmax"] or st["dmin"] <= 0:
            raise ScoringError(f"{what} embeddings have lengths {st['dmin']}..{st['dmax']}: one dimension expected")
    if ms["dmin"] != bs["dmin"]:
        raise ScoringError(f"movie embeddings have dimension {ms['dmin']}, book embeddings {bs['dmin']}")
    return int(ms["dmin"])


def require_columns(df: Optional[DataFrame], what: str) -> DataFrame:
    if df is None:
        raise ScoringError(f"{what} are required by this scoring method")
    return df
