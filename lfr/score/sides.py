"""The hybrid's two sides of an item -- its embedding and its lexical row -- paired by id, and the ids
present on one side only counted, logged, recorded and refused (``score.missing_side``).

Why: the hybrid scores an item from both rows. An inner join used to drop an item present on one side
only (a lexical table older than the catalog, an embedding job stopped half-way) with no count and no
log line, so a film silently lost its recommendations and a book was silently never recommended. Every
hybrid run now counts those ids per domain (movies, books) and side (one Spark job; a second one picks
up to :data:`SAMPLE` ids of each kind, only when there are any), logs them, returns them in the result
and writes them into the Delta commit of the recommendations table (``userMetadata``, so
``DESCRIBE HISTORY`` shows them). ``score.missing_side`` then decides:

* ``fail`` (the default): refuse with :class:`MissingSideError` (exit code 2) naming the counts, sample
  ids and the job that writes the missing rows; nothing is written.
* ``use_present``: score every item with the side it has. The missing side is *empty*, never guessed:
  no lexical row -> no terms (lexical cosine 0 with every item, exactly like a text without a known
  term, which the hybrid already scores); no embedding -> a zero vector (dense cosine 0 with every
  item). The scores stay exact, the blocks simply carry these rows (``BlockSpec.fill_dense``):

  - a *movie* with one side: the missing side is 0 against every book, so its variance is 0 and its
    fusion weight is 0 (``lfr.score.hybrid``: a constant component contributes nothing). The movie is
    ranked by its present side alone (convex: ``alpha z_dense`` or ``(1 - alpha) z_lexical``; rrf: the
    missing side gives every book the same rank, so the other side's rank decides).
  - a *book* with one side: its missing side's cosine is 0 with every movie. It is ranked like a book
    that shares nothing with the movie on that side (for a cosine of 0 the z-score is the movie's
    ``-mean / sd`` on that side, not 0), and that 0 enters every movie's statistics over all books.
    A per-book neutral value (z = 0) would need per-book flags in the kernels, moments and rrf ranks;
    the empty side keeps one exact definition of every score.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from functools import reduce
from typing import Optional

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from lfr.score.checks import ScoringError

log = logging.getLogger(__name__)

MISSING_SIDE = ("fail", "use_present")
#: ids of each kind shown in the log, the error, the result and the commit
SAMPLE = 5
DOMAINS = ("movies", "books")
_EMBED_JOB = {"movies": "jobs/embed_movies.py", "books": "jobs/embed_books.py"}


class MissingSideError(ScoringError):
    """Hybrid inputs with ids on one side only, and ``score.missing_side: fail``."""


@dataclass
class SideCounts:
    """One domain's ids: on both sides, with an embedding only, with a lexical row only (+ samples)."""
    both: int = 0
    missing_lexical: int = 0            # an embedding, no lexical row
    missing_embedding: int = 0          # a lexical row, no embedding
    missing_lexical_sample: list = field(default_factory=list)
    missing_embedding_sample: list = field(default_factory=list)

    @property
    def one_sided(self) -> int:
        return self.missing_lexical + self.missing_embedding


@dataclass
class Sides:
    """The side counts of both domains, the setting applied, and the embedding length (to fill with)."""
    movies: SideCounts
    books: SideCounts
    missing_side: str
    dim: Optional[int]

    @property
    def one_sided(self) -> int:
        return self.movies.one_sided + self.books.one_sided

    def as_dict(self) -> dict:
        return {"missing_side": self.missing_side, "movies": asdict(self.movies), "books": asdict(self.books)}


def check_missing_side(value) -> str:
    if value not in MISSING_SIDE:
        raise ScoringError(f"score.missing_side must be one of {MISSING_SIDE}, got {value!r}")
    return str(value)


def _presence(movies: DataFrame, movie_lexical: DataFrame, books: DataFrame, book_lexical: DataFrame) -> DataFrame:
    """Per domain and (non-null) id: has an embedding (``d``), has a lexical row (``l``), embedding length."""
    def tagged(domain: str, df: DataFrame, dense: bool) -> DataFrame:
        size = F.when(F.col("embedding").isNotNull(), F.size("embedding")) if dense else F.lit(None)
        return df.select(F.lit(domain).alias("domain"), "id", F.lit(int(dense)).alias("d"),
                         F.lit(int(not dense)).alias("l"), size.cast("int").alias("dim"))
    parts = [tagged("movies", movies, True), tagged("movies", movie_lexical, False),
             tagged("books", books, True), tagged("books", book_lexical, False)]
    return (reduce(DataFrame.unionByName, parts).where(F.col("id").isNotNull())
            .groupBy("domain", "id").agg(F.max("d").alias("d"), F.max("l").alias("l"), F.max("dim").alias("dim")))


def count_sides(movies: DataFrame, movie_lexical: DataFrame, books: DataFrame, book_lexical: DataFrame,
                missing_side: str) -> Sides:
    """The ids on one side only, per domain: one Spark job, plus one for the samples when there are any."""
    per_id = _presence(movies, movie_lexical, books, book_lexical)
    rows = {r["domain"]: r for r in per_id.groupBy("domain").agg(
        F.count(F.when((F.col("d") == 1) & (F.col("l") == 1), 1)).alias("both"),
        F.count(F.when(F.col("l") == 0, 1)).alias("missing_lexical"),
        F.count(F.when(F.col("d") == 0, 1)).alias("missing_embedding"),
        F.max("dim").alias("dim")).collect()}
    counts = {d: SideCounts(*(int(rows[d][c]) if d in rows else 0
                              for c in ("both", "missing_lexical", "missing_embedding")))
              for d in DOMAINS}
    dims = [rows[d]["dim"] for d in rows if rows[d]["dim"] is not None]
    sides = Sides(counts["movies"], counts["books"], missing_side, max(dims) if dims else None)
    if sides.one_sided:
        _add_samples(per_id, sides)
    return sides


def _add_samples(per_id: DataFrame, sides: Sides) -> None:
    """Up to SAMPLE ids of each (domain, kind), the smallest first (one Spark job)."""
    kind = F.when(F.col("l") == 0, "missing_lexical").otherwise("missing_embedding")
    w = Window.partitionBy("domain", "kind").orderBy("id")
    picked = (per_id.where(F.col("d") != F.col("l")).withColumn("kind", kind)
              .withColumn("r", F.row_number().over(w)).where(F.col("r") <= SAMPLE)
              .orderBy("domain", "kind", "r").collect())
    for r in picked:
        getattr(getattr(sides, r["domain"]), f"{r['kind']}_sample").append(r["id"])


def describe(sides: Sides) -> str:
    """``movies: 2 with an embedding but no lexical row (e.g. m1, m2), 0 with ...; books: ...``."""
    def one(domain: str, c: SideCounts) -> str:
        parts = []
        for n, sample, what in ((c.missing_lexical, c.missing_lexical_sample, "an embedding but no lexical row"),
                                (c.missing_embedding, c.missing_embedding_sample, "a lexical row but no embedding")):
            parts.append(f"{n} with {what}" + (f" (e.g. {', '.join(map(str, sample))})" if n else ""))
        return f"{domain}: {', '.join(parts)} ({c.both} on both sides)"
    return "; ".join(one(d, getattr(sides, d)) for d in DOMAINS)


def _jobs_to_run(sides: Sides) -> list[str]:
    jobs = [_EMBED_JOB[d] for d in DOMAINS if getattr(sides, d).missing_embedding]
    if sides.movies.missing_lexical or sides.books.missing_lexical:
        jobs.append("jobs/embed_lexical.py")
    return jobs


def report_sides(sides: Sides) -> None:
    """Log the counts; refuse (``MissingSideError``) under ``fail`` when any id has one side only."""
    if not sides.one_sided:
        log.info("score hybrid: every item has both sides (%s)", describe(sides))
        return
    if sides.missing_side == "fail":
        raise MissingSideError(
            f"hybrid scoring pairs each item's embedding with its lexical row, and {sides.one_sided} id(s) have "
            f"one side only: {describe(sides)}. Run {' and '.join(_jobs_to_run(sides))} to write the missing rows, "
            "or score such items with the side they have: --conf score.missing_side=use_present")
    log.warning("score hybrid: %d id(s) have one side only, scored with the side they have "
                "(score.missing_side=use_present): %s", sides.one_sided, describe(sides))


def pair_sides(dense: DataFrame, lexical: DataFrame, sides: Sides) -> DataFrame:
    """``id, embedding, term_indices, term_weights[, dense_missing]``: each item's two rows paired by id.

    ``fail`` (nothing one-sided by then): the inner join. ``use_present``: the full outer join, a missing
    lexical row -> no terms, a missing embedding -> zeros of the embedding length with
    ``dense_missing`` true (the block builder keeps that row; a present but null or zero embedding
    stays invalid and is counted as such).
    """
    terms = lexical.select("id", "term_indices", "term_weights")
    if sides.missing_side == "fail" or not sides.one_sided:
        return dense.select("id", "embedding").join(terms, "id")
    d = dense.select("id", "embedding", F.lit(True).alias("_d"))
    j = d.join(terms.withColumn("_l", F.lit(True)), "id", "full_outer")
    no_dense, no_lex = F.col("_d").isNull(), F.col("_l").isNull()
    zeros = F.array_repeat(F.lit(0.0).cast("float"), int(sides.dim or 1))
    return j.select(
        "id", F.when(no_dense, zeros).otherwise(F.col("embedding")).alias("embedding"),
        F.when(no_lex, F.array().cast("array<int>")).otherwise(F.col("term_indices")).alias("term_indices"),
        F.when(no_lex, F.array().cast("array<float>")).otherwise(F.col("term_weights")).alias("term_weights"),
        no_dense.alias("dense_missing"))


def paired_rows(c: SideCounts, missing_side: str) -> int:
    """Rows :func:`pair_sides` yields for one domain (to size its blocks)."""
    return c.both + (c.one_sided if missing_side == "use_present" else 0)
