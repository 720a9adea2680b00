"""Scoring methods as strategies: one object per ``score.method`` (and ``score.fusion`` for the hybrid).

A strategy owns everything that differs between methods, so the job (:mod:`lfr.score.job`) never asks
which method it runs::

    method = scoring_method(settings.score)      # the one dispatch: (method, fusion) -> strategy
    method.tables                                # the input tables it reads
    inputs = method.prepare(frames, settings.score)   # filters, version checks, what its blocks carry
    top = method.topk(blocks, k, kernel, cached) # its kernel over every block pair -> top-k per movie (lazy)
    method.params()                              # what the table records per run (``method_params``)

=================  =====================  ==========================================================
strategy           ``(method, fusion)``   block-pair kernel
=================  =====================  ==========================================================
:class:`Dense`     ``(dense, -)``         :func:`lfr.score.kernel.block_topk` (embedding cosine)
:class:`Lexical`   ``(lexical, -)``       :func:`lfr.score.sparse.sparse_topk` (lexical cosine)
:class:`Convex`    ``(hybrid, convex)``   :func:`lfr.score.hybrid.hybrid_topk` after the per-movie statistics
:class:`Rrf`       ``(hybrid, rrf)``      :func:`lfr.score.hybrid.rrf_block_candidates`, fused by :mod:`lfr.score.rrf`
=================  =====================  ==========================================================

Every kernel takes the decoded :class:`lfr.score.blocks.BlockPair` (decoded once per pair by
``iter_block_pairs``); every strategy is built from :class:`lfr.settings.ScoreSettings` only. The dense
kernels also take ``score.precision`` (the dense screen, resolved on each worker: ``auto`` follows the
worker's CPU); it changes their speed, never their output, so it is not a recorded method parameter.
"""
from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import partial
from typing import Callable, ClassVar, Optional

from pyspark import StorageLevel
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame

from lfr.config import ConfigError
from lfr.score.blocks import (
    CANDIDATE_SCHEMA,
    BlockPair,
    Blocks,
    BlockSpec,
    book_z_frame,
    dense_moments,
    lexical_book_moments,
    lexical_moments,
    map_pairs,
    merge_candidates,
    with_book_z,
    with_coefficients,
)
from lfr.score.checks import (
    EMBEDDING_COLUMNS,
    LEXICAL_COLUMNS,
    ScoringError,
    check_hybrid_inputs,
    check_inputs,
    check_lexical_inputs,
    require_columns,
)
from lfr.score.hubs import Hubness, apply_fused_hubness
from lfr.score.kernel import PRECISIONS
from lfr.score.sides import Sides, check_missing_side, count_sides, pair_sides, paired_rows, report_sides
from lfr.settings import ScoreSettings

log = logging.getLogger(__name__)

METHODS = ("dense", "lexical", "hybrid")
FUSIONS = ("convex", "rrf")
#: ``score.lexical_hubness`` values (convex hybrid): none = the lexical z-score per film as it is; bookz = it
#: standardised once more per book over all films (docs/RESULTS.md#hubs-scorehubness)
LEXICAL_HUBNESS = ("none", "bookz")


@dataclass(frozen=True)
class Frames:
    """The input tables of a run; a method reads the ones it needs (the others may be None)."""
    movies: Optional[DataFrame]             # embeddings
    books: Optional[DataFrame]
    movie_lexical: Optional[DataFrame]      # lexical features
    book_lexical: Optional[DataFrame]


@dataclass
class Inputs:
    """Checked inputs of one run: rows to block (id + features) and their versions."""
    movies: DataFrame
    books: DataFrame
    model_version: Optional[str]
    lexical_version: Optional[str]
    vocab_size: Optional[int]
    movie_rows: int
    book_rows: int
    spec: BlockSpec                  # what a block carries (lfr.score.blocks)
    sides: Optional[Sides] = None    # hybrid: the ids with one side only (lfr.score.sides)


def _filtered(df: DataFrame, predicate: Optional[str], what: str) -> DataFrame:
    """``df`` filtered by the SQL ``predicate`` (None: unchanged), or an error naming the input it fails on."""
    if not predicate:
        return df
    try:
        return df.filter(predicate)
    except AnalysisException as exc:
        raise ScoringError(f"filter {predicate!r} cannot be evaluated on the {what} (columns {df.columns}): "
                           f"{str(exc).splitlines()[0]}") from exc


def _sides(movies: Optional[DataFrame], books: Optional[DataFrame], score: ScoreSettings, kind: str,
           columns: tuple) -> tuple[DataFrame, DataFrame]:
    """Both domains' tables of one kind, required, filtered (``score.movie_filter`` / ``book_filter``: every
    table a method reads, so the hybrid never counts an item a filter removes as one-sided) and narrowed."""
    m = _filtered(require_columns(movies, f"movie {kind}"), score.movie_filter, f"movie {kind}")
    b = _filtered(require_columns(books, f"book {kind}"), score.book_filter, f"book {kind}")
    return m.select(*columns), b.select(*columns)


class ScoringMethod(ABC):
    """One scoring method: its input tables, what its blocks carry, its block-pair kernel, how candidates
    become the top-k, and the parameters the table records. Built by :func:`scoring_method`."""
    name: ClassVar[str]
    reads_dense: ClassVar[bool]
    reads_lexical: ClassVar[bool]

    @classmethod
    def from_settings(cls, score: ScoreSettings) -> "ScoringMethod":
        return cls()

    @property
    def tables(self) -> tuple[str, ...]:
        """The ``tables.*`` keys the method reads."""
        return ((("movie_embeddings", "book_embeddings") if self.reads_dense else ())
                + (("movie_lexical", "book_lexical") if self.reads_lexical else ()))

    def params(self) -> dict:
        """The method's settings as recorded per run (``method_params``)."""
        return self.recorded({"score": "cosine"})

    @property
    def hub(self) -> Optional[Hubness]:
        """``score.hubness`` as the method applies it to its dense score (:mod:`lfr.score.hubs`); None: no dense
        score (lexical) or off."""
        hub = getattr(self, "hubness", None)
        return hub if hub is not None and hub.active else None

    def recorded(self, params: dict) -> dict:
        """``params`` plus the hub-aware score's settings when it is on."""
        return {**params, **(self.hub.params() if self.hub else {})}

    def params_json(self) -> str:
        return json.dumps(self.params(), sort_keys=True)

    @abstractmethod
    def prepare(self, frames: Frames, score: ScoreSettings) -> Inputs:
        """Filters, version checks (one Spark job) and the rows to block."""

    @abstractmethod
    def pair_kernel(self, pair: BlockPair, n: int, kernel: Optional[Callable]) -> tuple:
        """Worker side: the method's kernel (or ``kernel``, its stand-in) on one block pair, ``n`` per movie."""

    def movie_blocks(self, blocks: Blocks, cached: list) -> DataFrame:
        """The movie blocks the kernel reads (the hybrid adds its per-movie coefficients)."""
        return blocks.movies

    def topk(self, blocks: Blocks, k: int, kernel: Optional[Callable], cached: list) -> DataFrame:
        """The kernel over every block pair, merged into ``movie_id, rank, book_id, score`` (lazy). Blocks it
        caches on the way are appended to ``cached`` for the caller to release."""
        pairs = blocks.pairs(self.movie_blocks(blocks, cached))
        cands = map_pairs(pairs, partial(self.pair_kernel, n=k, kernel=kernel), blocks.dim, blocks.vocab,
                          CANDIDATE_SCHEMA)
        return merge_candidates(cands, k, rows=blocks.ms.rows * blocks.bs.blocks * min(k, blocks.bs.largest))


@dataclass(frozen=True)
class Dense(ScoringMethod):
    """``score.method: dense``: the cosine of the embeddings (:mod:`lfr.score.kernel`), hub-aware with
    ``score.hubness`` (:mod:`lfr.score.hubs`)."""
    precision: str
    hubness: Hubness
    name: ClassVar[str] = "dense"
    reads_dense: ClassVar[bool] = True
    reads_lexical: ClassVar[bool] = False

    @classmethod
    def from_settings(cls, score: ScoreSettings) -> "Dense":
        return cls(precision=score.precision, hubness=Hubness.from_settings(score))

    def prepare(self, frames: Frames, score: ScoreSettings) -> Inputs:
        movies, books = _sides(frames.movies, frames.books, score, "embeddings", EMBEDDING_COLUMNS)
        mv, m_rows, b_rows = check_inputs(movies, books)
        return Inputs(movies, books, mv, None, None, m_rows, b_rows, BlockSpec(True, None, False))

    def pair_kernel(self, pair: BlockPair, n: int, kernel: Optional[Callable]) -> tuple:
        from lfr.score.kernel import block_topk

        return (kernel or block_topk)(pair.q, pair.b, n, precision=self.precision, **pair.kernel_args)


@dataclass(frozen=True)
class Lexical(ScoringMethod):
    """``score.method: lexical``: the cosine of the lexical rows (:mod:`lfr.score.sparse`)."""
    name: ClassVar[str] = "lexical"
    reads_dense: ClassVar[bool] = False
    reads_lexical: ClassVar[bool] = True

    def prepare(self, frames: Frames, score: ScoreSettings) -> Inputs:
        ml, bl = _sides(frames.movie_lexical, frames.book_lexical, score, "lexical features", LEXICAL_COLUMNS)
        lv, vocab, m_rows, b_rows = check_lexical_inputs(ml, bl)
        return Inputs(ml, bl, None, lv, vocab, m_rows, b_rows, BlockSpec(False, vocab, False))

    def pair_kernel(self, pair: BlockPair, n: int, kernel: Optional[Callable]) -> tuple:
        from lfr.score.sparse import sparse_topk

        return (kernel or sparse_topk)(pair.qa, pair.ba, n, **pair.kernel_args)


@dataclass(frozen=True)
class Hybrid(ScoringMethod):
    """``score.method: hybrid``: both sides of every item, paired by id (:mod:`lfr.score.sides`); the dense
    side hub-aware with ``score.hubness``."""
    missing_side: str
    precision: str
    hubness: Hubness
    name: ClassVar[str] = "hybrid"
    reads_dense: ClassVar[bool] = True
    reads_lexical: ClassVar[bool] = True

    def prepare(self, frames: Frames, score: ScoreSettings) -> Inputs:
        """One check job over the four tables, the ids with one side only counted, then refused or kept
        (``score.missing_side``), each item's two rows paired by id."""
        movies, books = _sides(frames.movies, frames.books, score, "embeddings", EMBEDDING_COLUMNS)
        ml, bl = _sides(frames.movie_lexical, frames.book_lexical, score, "lexical features", LEXICAL_COLUMNS)
        ((mv, _, _), (lv, vocab, _, _)), sides = _checked_and_counted(movies, books, ml, bl, self.missing_side)
        report_sides(sides)
        fill = self.missing_side == "use_present" and sides.one_sided > 0
        return Inputs(pair_sides(movies, ml, sides), pair_sides(books, bl, sides), mv, lv, vocab,
                      paired_rows(sides.movies, self.missing_side), paired_rows(sides.books, self.missing_side),
                      BlockSpec(True, vocab, fill), sides)


def _checked_and_counted(movies: DataFrame, books: DataFrame, ml: DataFrame, bl: DataFrame, missing_side: str):
    """``check_hybrid_inputs`` and ``count_sides`` at once: two small queries over the same four tables, each a
    few short Spark jobs whose scheduling gaps the other one's tasks fill (docs/BENCHMARKS.md). The count runs in a
    thread that inherits the job group (``lfr.spark.progress``); the check's refusal wins over the count's error."""
    from pyspark import InheritableThread

    counted: dict = {}

    def count() -> None:
        try:
            counted["sides"] = count_sides(movies, ml, books, bl, missing_side)
        except BaseException as exc:          # re-raised below, in the caller's thread
            counted["error"] = exc

    thread = InheritableThread(target=count, name="hybrid sides")
    thread.start()
    try:
        checked = check_hybrid_inputs(movies, books, ml, bl)
    finally:
        thread.join()
    if "error" in counted:
        raise counted["error"]
    return checked, counted["sides"]


@dataclass(frozen=True)
class Convex(Hybrid):
    """``fusion: convex``: ``alpha z(dense) + (1 - alpha) z(lexical)``, z-scores per movie over all books
    (:mod:`lfr.score.hybrid`)."""
    alpha: float
    fused_hub_weight: float
    lexical_hubness: str = "none"

    @classmethod
    def from_settings(cls, score: ScoreSettings) -> "Convex":
        return cls(missing_side=score.missing_side, precision=score.precision, hubness=Hubness.from_settings(score),
                   alpha=float(score.alpha), fused_hub_weight=float(score.fused_hub_weight),
                   lexical_hubness=score.lexical_hubness)

    @property
    def bookz(self) -> bool:
        return self.lexical_hubness == "bookz"

    def params(self) -> dict:
        fused = ({"fused_hub_weight": self.fused_hub_weight, "hub_k": self.hubness.k,
                  "fused_score": "h - fused_hub_weight * r_h(book), r_h = mean of the book's hub_k highest h"}
                 if self.fused_hub_weight > 0 else {})
        bookz = ({"lexical_hubness": "bookz", "lexical_score": "the movie's lexical z-score, standardised per book "
                  "over all scored movies"} if self.bookz else {})
        return self.recorded({"fusion": "convex", "alpha": float(self.alpha),
                              "normalisation": "z-score per movie over all scored books", **fused, **bookz})

    def movie_blocks(self, blocks: Blocks, cached: list) -> DataFrame:
        """Each movie's statistics over all books (lexical moments pass + the book side's dense moments),
        its fusion coefficients stored in its block (cached); with ``score.lexical_hubness: bookz`` the books'
        ``(P, T)`` after one more pass of the lexical product (:meth:`_book_z`), with ``score.fused_hub_weight``
        the books' offsets after one more pass of the hybrid kernel (:func:`lfr.score.hubs.apply_fused_hubness`)."""
        lex = lexical_moments(blocks.pairs(), blocks.vocab)
        book_sum, gram = dense_moments(blocks.books, blocks.dim)
        movie_blocks = with_coefficients(blocks.movies, lex, float(self.alpha), blocks.bs.rows, book_sum, gram,
                                         blocks.dim, self.bookz).persist(StorageLevel.MEMORY_AND_DISK)
        cached.append(movie_blocks)
        if self.bookz:
            self._book_z(blocks, movie_blocks, cached)
        if self.fused_hub_weight > 0:
            apply_fused_hubness(blocks, movie_blocks, self.hubness.k, self.fused_hub_weight, self.precision)
            cached.append(blocks.books)
        return movie_blocks

    def _book_z(self, blocks: Blocks, movie_blocks: DataFrame, cached: list) -> None:
        """``score.lexical_hubness: bookz``: one more pass of the lexical product (each book's statistics of the films'
        lexical z-scores, :func:`lfr.score.blocks.lexical_book_moments`), then the book blocks replaced by ones
        carrying each book's ``(P, T)`` (cached; the old ones released); ``book_id, lexical_scale, lexical_shift``
        joins ``blocks.book_stats`` (``tables.book_hubs``)."""
        stats = lexical_book_moments(blocks.pairs(movie_blocks), blocks.vocab)
        books = with_book_z(blocks.books, stats, blocks.ms.rows, float(self.alpha))
        books = books.persist(StorageLevel.MEMORY_AND_DISK)
        books.count()
        blocks.books.unpersist()
        blocks.books = books
        cached.append(books)
        per_book = book_z_frame(books).persist(StorageLevel.MEMORY_AND_DISK)
        per_book.count()                   # now, while its blocks are cached: the job releases them before book_hubs
        blocks.book_stats.append(per_book)

    def pair_kernel(self, pair: BlockPair, n: int, kernel: Optional[Callable]) -> tuple:
        from lfr.score.hybrid import hybrid_topk

        extra = {"book_offset": pair.b_offset} if pair.b_offset is not None else {}
        if pair.b_z is not None:
            extra["book_z"] = pair.b_z
        return (kernel or hybrid_topk)(pair.q, pair.b, pair.qa, pair.ba, pair.coef, n, precision=self.precision,
                                       **pair.kernel_args, **extra)


@dataclass(frozen=True)
class Rrf(Hybrid):
    """``fusion: rrf``: ``1/(rrf_k + r_dense) + 1/(rrf_k + r_lexical)`` over global competition ranks
    (:mod:`lfr.score.rrf`: rounds of candidates, a per-movie proof, retries with more candidates)."""
    rrf_k: int

    @classmethod
    def from_settings(cls, score: ScoreSettings) -> "Rrf":
        return cls(missing_side=score.missing_side, precision=score.precision, hubness=Hubness.from_settings(score),
                   rrf_k=int(score.rrf_k))

    def params(self) -> dict:
        return self.recorded({"fusion": "rrf", "rrf_k": int(self.rrf_k),
                              "ranks": "competition ranks per method over all scored books (ties share the best)"})

    def pair_kernel(self, pair: BlockPair, n: int, kernel: Optional[Callable]) -> tuple:
        """Per movie row: the block's top-``n`` books by dense and by lexical, with both exact scores."""
        from lfr.score.hybrid import rrf_block_candidates

        return (kernel or rrf_block_candidates)(pair.q, pair.b, pair.qa, pair.ba, n, precision=self.precision,
                                                **pair.kernel_args)

    def topk(self, blocks: Blocks, k: int, kernel: Optional[Callable], cached: list) -> DataFrame:
        from lfr.score.rrf import RRF_CANDIDATE_SCHEMA, rrf_topk

        def candidates_of(movie_blocks: DataFrame, n_top: int) -> DataFrame:
            return map_pairs(blocks.pairs(movie_blocks), partial(self.pair_kernel, n=n_top, kernel=kernel),
                             blocks.dim, blocks.vocab, RRF_CANDIDATE_SCHEMA)

        merged, info = rrf_topk(blocks.movies, candidates_of, blocks.rebuild, k=k, rrf_k=int(self.rrf_k),
                                n_books=blocks.bs.rows, cached=cached)
        log.info("score rrf: exact top-%d proven in %d round(s) (%d movie(s) retried, last n=%d)", k,
                 info["rounds"], info["retried"], info["n_top"])
        return merged


#: the one dispatch: ``(score.method, score.fusion)`` (fusion only for the hybrid) -> strategy
STRATEGIES: dict[tuple[str, Optional[str]], type[ScoringMethod]] = {
    ("dense", None): Dense, ("lexical", None): Lexical, ("hybrid", "convex"): Convex, ("hybrid", "rrf"): Rrf,
}


def scoring_method(score: ScoreSettings) -> ScoringMethod:
    """The strategy of ``score.method`` / ``score.fusion`` with its settings; bad values are a ``ConfigError``
    naming the key (exit code 2)."""
    if score.method not in METHODS:
        raise ConfigError(f"score.method must be one of {METHODS}, got {score.method!r}")
    if score.fusion not in FUSIONS:
        raise ConfigError(f"score.fusion must be one of {FUSIONS}, got {score.fusion!r}")
    if score.precision not in PRECISIONS:
        raise ConfigError(f"score.precision must be one of {PRECISIONS}, got {score.precision!r}")
    if not 0.0 <= float(score.alpha) <= 1.0:
        raise ConfigError(f"score.alpha must be in [0, 1], got {score.alpha}")
    for key in ("k", "movie_block_rows", "book_block_rows"):
        if int(getattr(score, key)) <= 0:
            raise ConfigError(f"score.{key} must be positive, got {getattr(score, key)}")
    check_missing_side(score.missing_side)
    hub = Hubness.from_settings(score)
    if hub.active and score.method == "lexical":
        log.info("score.hubness=%s applies to dense scores: score.method=lexical scores without it", hub.kind)
    if not 0.0 <= float(score.fused_hub_weight) < float("inf"):
        raise ConfigError(f"score.fused_hub_weight must be >= 0, got {score.fused_hub_weight}")
    if score.lexical_hubness not in LEXICAL_HUBNESS:
        raise ConfigError(f"score.lexical_hubness must be one of {LEXICAL_HUBNESS}, got {score.lexical_hubness!r}")
    if score.lexical_hubness != "none" and float(score.fused_hub_weight) > 0:
        raise ConfigError("score.lexical_hubness and score.fused_hub_weight are two corrections of the same hubs: "
                          f"set one (score.lexical_hubness={score.lexical_hubness!r}, "
                          f"score.fused_hub_weight={score.fused_hub_weight})")
    if score.lexical_hubness != "none" and (score.method, score.fusion) != ("hybrid", "convex"):
        log.info("score.lexical_hubness applies to the convex hybrid: score.method=%s (fusion %s) scores without it",
                 score.method, score.fusion)
    if float(score.fused_hub_weight) > 0 and (score.method, score.fusion) != ("hybrid", "convex"):
        log.info("score.fused_hub_weight applies to the convex hybrid: score.method=%s (fusion %s) scores without it",
                 score.method, score.fusion)
    return STRATEGIES[(score.method, score.fusion if score.method == "hybrid" else None)].from_settings(score)
