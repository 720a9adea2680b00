"""Input checks of a scoring run: one model / lexical version per run, no duplicate ids, one dimension.

The checks of a run are one small Spark job over the id and version columns (features are not decoded
here; embedding lengths and term indices are checked while the blocks are built).
"""
from __future__ import annotations

from functools import reduce
from typing import Optional

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lfr.errors import UsageError

EMBEDDING_COLUMNS = ("id", "embedding", "model_version")
LEXICAL_COLUMNS = ("id", "term_indices", "term_weights", "lexical_version", "vocab_size")
EMBEDDING_KIND, LEXICAL_KIND = "embeddings", "lexical features"


class ScoringError(UsageError):
    """The inputs cannot be scored (empty, inconsistent dimensions, duplicate ids, ...): the input must
    change, so every job exits with code 2 (``lfr.errors``), still a ``ValueError`` for callers."""


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


def _sides(movies: DataFrame, books: DataFrame, columns: tuple, version_col: str, kind: str) -> list:
    """The two sides of one kind of input, checked for their columns: ``[(label, df, version_col)]``."""
    for what, df in (("movie", movies), ("book", books)):
        missing = set(columns) - set(df.columns)
        if missing:
            raise ScoringError(f"{what} {kind} lack column(s) {sorted(missing)} (have {df.columns})")
    return [(f"movie {kind}", movies, version_col), (f"book {kind}", books, version_col)]


def _version_stats(sides: list) -> list:
    """ONE Spark job over every side: per side and version, rows, ids, distinct ids and vocab_size range."""
    parts = [df.select(F.lit(label).alias("side"), "id", F.col(version_col).cast("string").alias("version"),
                       (F.col("vocab_size") if "vocab_size" in df.columns else F.lit(None)).cast("int").alias("vocab"))
             for label, df, version_col in sides]
    both = reduce(DataFrame.unionByName, parts)
    return (both.groupBy("side", "version")
                .agg(F.count(F.lit(1)).alias("rows"), F.count("id").alias("ids"),
                     F.countDistinct("id").alias("distinct_ids"), F.min("vocab").alias("vmin"),
                     F.max("vocab").alias("vmax"))
                .collect())


def _agreeing_versions(stats: list, kind: str, version_col: str) -> tuple[str, int, int]:
    """(version, movie rows, book rows) of one kind of input: one version per side, the same on both."""
    mv, m_rows = _check_side([r for r in stats if r["side"] == f"movie {kind}"], f"movie {kind}", version_col)
    bv, b_rows = _check_side([r for r in stats if r["side"] == f"book {kind}"], f"book {kind}", version_col)
    if mv != bv:
        raise ModelVersionMismatch(
            f"movie {kind} are {version_col} {mv!r} but book {kind} are {bv!r}: "
            f"scores across models are meaningless; recompute both catalogs with the same model")
    return mv, m_rows, b_rows


def _vocab_size(stats: list, lv: str) -> int:
    sizes = {r[c] for r in stats if r["side"].endswith(LEXICAL_KIND) for c in ("vmin", "vmax")}
    if len(sizes) != 1 or None in sizes or min(sizes) <= 0:
        raise ScoringError(f"lexical features of version {lv!r} disagree on vocab_size ({sorted(map(str, sizes))})")
    return int(sizes.pop())


def check_inputs(movies: DataFrame, books: DataFrame) -> tuple[str, int, int]:
    """``(model_version, movie_rows, book_rows)`` of two embedding tables; raises when they cannot be scored
    together."""
    stats = _version_stats(_sides(movies, books, EMBEDDING_COLUMNS, "model_version", EMBEDDING_KIND))
    return _agreeing_versions(stats, EMBEDDING_KIND, "model_version")


def check_lexical_inputs(movies: DataFrame, books: DataFrame) -> tuple[str, int, int, int]:
    """``(lexical_version, vocab_size, movie_rows, book_rows)`` of two lexical tables (LEXICAL_CONTRACT)."""
    stats = _version_stats(_sides(movies, books, LEXICAL_COLUMNS, "lexical_version", LEXICAL_KIND))
    lv, m_rows, b_rows = _agreeing_versions(stats, LEXICAL_KIND, "lexical_version")
    return lv, _vocab_size(stats, lv), m_rows, b_rows


def check_hybrid_inputs(movies: DataFrame, books: DataFrame, movie_lexical: DataFrame,
                        book_lexical: DataFrame) -> tuple[tuple[str, int, int], tuple[str, int, int, int]]:
    """Both checks above in ONE Spark job over the four tables (a small run pays per job):
    ``((model_version, movie_rows, book_rows), (lexical_version, vocab_size, movie_rows, book_rows))``."""
    stats = _version_stats(_sides(movies, books, EMBEDDING_COLUMNS, "model_version", EMBEDDING_KIND)
                           + _sides(movie_lexical, book_lexical, LEXICAL_COLUMNS, "lexical_version", LEXICAL_KIND))
    dense = _agreeing_versions(stats, EMBEDDING_KIND, "model_version")
    lv, lm_rows, lb_rows = _agreeing_versions(stats, LEXICAL_KIND, "lexical_version")
    return dense, (lv, _vocab_size(stats, lv), lm_rows, lb_rows)


def dimension(ms, bs) -> int:
    """The one embedding length of both sides (``lfr.score.blocks.BlockStats``: dmin/dmax), or a clear error."""
    for what, st in (("movie", ms), ("book", bs)):
        if st.dmin is None:
            raise ScoringError(f"{what} embeddings: every embedding (or id) is null: nothing to score")
        if st.dmin != st.dmax or st.dmin <= 0:
            raise ScoringError(f"{what} embeddings have lengths {st.dmin}..{st.dmax}: one dimension expected")
    if ms.dmin != bs.dmin:
        raise ScoringError(f"movie embeddings have dimension {ms.dmin}, book embeddings {bs.dmin}")
    return int(ms.dmin)


def require_columns(df: Optional[DataFrame], what: str) -> DataFrame:
    if df is None:
        raise ScoringError(f"{what} are required by this scoring method")
    return df
