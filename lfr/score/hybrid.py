"""Hybrid (dense + lexical) exact top-k: convex fusion of per-movie z-scores, no Spark.

For movie m and book j, with ``s_d`` the dense cosine and ``s_l`` the lexical cosine (both the
exact float32 scores of :mod:`lfr.score.kernel` and :mod:`lfr.score.sparse`)::

    z_d = (s_d - mu_d[m]) / sd_d[m]      z_l = (s_l - mu_l[m]) / sd_l[m]      over ALL scored books
    h   = alpha * z_d + (1 - alpha) * z_l  =  a[m] * s_d + b[m] * s_l + c[m]

The published score is ``h`` computed in float64 from those float32 scores and the per-movie
coefficients ``(a, b, c)``, rounded to float32. A component whose scores do not vary for a movie
(``sd = 0``, e.g. a film with no known term) contributes 0.

``score.lexical_hubness: bookz`` standardises ``z_l`` once more, per book over ALL scored movies (its lexical
hubs: books whose z-scores are high for many films)::

    h = alpha * z_d + (1 - alpha) * (z_l - M[j]) / S[j]  =  a[m] s_d + c[m] + P[j] (b[m] s_l + e[m]) + T[j]

with the movies' ``(a, b, c, e)`` (:func:`bookz_coefficients`) and the books' ``(P, T)``
(:func:`book_lexical_scale`, from each book's sums of ``z_l`` over the movies: one more pass,
:func:`lfr.score.sparse.sparse_book_moments`). A book whose ``z_l`` do not vary gets ``P = T = 0``.

Exact per-movie statistics over the whole book catalog, without materialising the catalog:

* dense: ``mu_d = q . (sum_j b_j) / n`` and ``E[s_d^2] = q^T (B^T B / n) q`` -- the book side's
  first and second moments (a d-vector and a d x d Gram matrix, summed over book blocks);
* lexical: a first pass over the (movie block, book block) pairs accumulates each movie's sum and
  sum of squares (:func:`lfr.score.sparse.sparse_moments`); a vocabulary-sized Gram matrix is not
  bounded, the pass is.

Top-k, one pass over paired blocks (the dense and lexical rows of the same books): the dense
screen of ``score.precision`` (:func:`lfr.score.kernel.dense_screen`: float32 BLAS or bf16) gives
approximate ``g = a * s_d + b * s_l`` (``s_l`` exact); every book within a per-movie margin
(``2 |a|`` times the screen's per-movie dense error plus float32 rounding of the combination, see
:func:`hybrid_margin`) of the k-th best ``g`` is a candidate; candidates are rescored exactly (dense
in float64) and ranked by (h desc, book_id asc). As in the dense kernel, no true top-k book can fall
outside the margin, so the result is the exact top-k of ``h`` over all books, not a re-rank of two
truncated lists, and it does not depend on the screen.
"""
from __future__ import annotations

from typing import Iterator, Optional

import numpy as np

from lfr.score.kernel import (
    CHUNK_ELEMS,
    _rescore,
    as_rows,
    below,
    compute_settings,
    concat_parts,
    dense_screen,
    first_k_per_group,
    mask_excluded,
    prologue,
    select_candidates,
)
from lfr.score.sparse import LexicalProduct, chunk_rows

#: a per-movie variance at or below this is treated as zero (the component is constant for that movie)
VAR_EPS = 1e-12


def dense_book_moments(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sum of rows, Gram matrix ``B^T B``) of a block of unit rows, in float64 (summed over blocks)."""
    b64 = np.asarray(b, dtype=np.float64)
    return b64.sum(axis=0), b64.T @ b64


def dense_movie_stats(q: np.ndarray, n: int, book_sum: np.ndarray, gram: np.ndarray):
    """(mean, variance) of each movie's dense scores over ``n`` books, from the book moments."""
    q64 = np.asarray(q, dtype=np.float64)
    mu = q64 @ book_sum / n
    e2 = np.einsum("ij,ij->i", q64 @ gram, q64) / n        # BLAS; a three-operand einsum runs as a plain loop
    return mu, np.maximum(e2 - mu * mu, 0.0)


def moments_to_stats(s1: np.ndarray, s2: np.ndarray, n: int):
    """(mean, variance) from per-movie sums and sums of squares over ``n`` books."""
    mu = np.asarray(s1, dtype=np.float64) / n
    return mu, np.maximum(np.asarray(s2, dtype=np.float64) / n - mu * mu, 0.0)


def convex_coefficients(alpha: float, mu_d, var_d, mu_l, var_l) -> np.ndarray:
    """Per movie ``(a, b, c)`` with ``h = a s_d + b s_l + c = alpha z_d + (1 - alpha) z_l`` (m x 3 float64)."""
    var_d, var_l = np.asarray(var_d, np.float64), np.asarray(var_l, np.float64)
    a = np.where(var_d > VAR_EPS, alpha / np.sqrt(np.maximum(var_d, VAR_EPS)), 0.0)
    b = np.where(var_l > VAR_EPS, (1.0 - alpha) / np.sqrt(np.maximum(var_l, VAR_EPS)), 0.0)
    c = -(a * np.asarray(mu_d, np.float64) + b * np.asarray(mu_l, np.float64))
    return np.stack([a, b, c], axis=1)


def bookz_coefficients(alpha: float, mu_d, var_d, mu_l, var_l) -> np.ndarray:
    """Per movie ``(a, b, c, e)`` of ``score.lexical_hubness: bookz`` (m x 4 float64)::

        h = a s_d + c + P_j (b s_l + e) + T_j

    ``a s_d + c = alpha z_d`` and ``b s_l + e = z_l`` (the film's lexical z-score; 0 for a film whose lexical
    scores do not vary); ``P_j``, ``T_j`` (:func:`book_lexical_scale`) standardise ``z_l`` per book over all films
    and weigh it ``1 - alpha``."""
    var_d, var_l = np.asarray(var_d, np.float64), np.asarray(var_l, np.float64)
    a = np.where(var_d > VAR_EPS, alpha / np.sqrt(np.maximum(var_d, VAR_EPS)), 0.0)
    b = np.where(var_l > VAR_EPS, 1.0 / np.sqrt(np.maximum(var_l, VAR_EPS)), 0.0)
    return np.stack([a, b, -a * np.asarray(mu_d, np.float64), -b * np.asarray(mu_l, np.float64)], axis=1)


def book_lexical_scale(s1: np.ndarray, s2: np.ndarray, n_films: int, alpha: float) -> np.ndarray:
    """Per book ``(P, T)`` (n x 2 float64): ``P (z_l - M) / S``-style standardisation of the films' lexical
    z-scores, from their sum ``s1`` and sum of squares ``s2`` over all ``n_films`` films
    (:func:`lfr.score.sparse.sparse_book_moments`): ``P = (1 - alpha) / S``, ``T = -P M``; a book whose column does
    not vary gets ``P = T = 0``."""
    mu, var = moments_to_stats(s1, s2, n_films)
    scale = np.where(var > VAR_EPS, (1.0 - alpha) / np.sqrt(np.maximum(var, VAR_EPS)), 0.0)
    return np.stack([scale, -scale * mu], axis=1)


def hybrid_margin(coef: np.ndarray, dense_error: np.ndarray, dense_max=1.0, offset_max: float = 0.0,
                  scale_max: Optional[float] = None, shift_max: float = 0.0) -> np.ndarray:
    """Per-movie candidate margin on ``g = a s_d + b s_l`` computed in float32 from the screened ``s_d``.

    ``2 |a| dense_error`` covers twice the dense screen's error (``dense_error``: per movie, its bound on
    |screened - published| for every book, :meth:`lfr.score.kernel.Fp32Screen.error` /
    :meth:`~lfr.score.kernel.Bf16Screen.error`); ``2**-20 (|a| dense_max + |b| + |c|)`` (16 float32 ulps of
    the largest term: ``|s_d| <= dense_max``, the screen's :meth:`~lfr.score.kernel.Fp32Screen.magnitude`,
    above 1 for the hub-aware score; ``|s_l| <= 1``) covers the float32 rounding of ``a``, ``b``, the
    products and the sum, and the final rounding of ``h`` to float32 (the ``c`` term). ``offset_max``: the
    largest per-book offset subtracted in float32 too (``score.fused_hub_weight``), one more term.
    ``scale_max``, ``shift_max`` (``score.lexical_hubness: bookz``): the largest ``|P_j|`` and ``|T_j|`` of the
    block; the lexical term is then ``P_j (b s_l + e)`` (:func:`bookz_coefficients`), five more float32
    roundings, so the bound doubles (32 ulps of the sum of the terms' magnitudes).
    """
    a, b, c = np.abs(coef[:, 0]), np.abs(coef[:, 1]), np.abs(coef[:, 2])
    if scale_max is None:
        return 2.0 * a * dense_error + 2.0 ** -20 * (a * np.maximum(dense_max, 1.0) + b + c + offset_max)
    terms = a * np.maximum(dense_max, 1.0) + scale_max * (b + np.abs(coef[:, 3])) + c + shift_max + offset_max
    return 2.0 * a * dense_error + 2.0 ** -19 * terms


def combine(coef: np.ndarray, rows: np.ndarray, s_d: np.ndarray, s_l: np.ndarray,
            offset: Optional[np.ndarray] = None, book_z: Optional[np.ndarray] = None) -> np.ndarray:
    """The published hybrid score: float64 ``a s_d + b s_l + c`` of float32 scores, rounded to float32
    (``offset``: per pair, subtracted before the rounding: the book's ``score.fused_hub_weight`` correction;
    ``book_z``: per pair the book's ``(P, T)``, ``score.lexical_hubness: bookz``: ``a s_d + P (b s_l + e) + c + T``)."""
    if book_z is None:
        h = coef[rows, 0] * s_d.astype(np.float64) + coef[rows, 1] * s_l.astype(np.float64) + coef[rows, 2]
    else:
        lexical = book_z[:, 0] * (coef[rows, 1] * s_l.astype(np.float64) + coef[rows, 3])
        h = coef[rows, 0] * s_d.astype(np.float64) + lexical + coef[rows, 2] + book_z[:, 1]
    if offset is not None:
        h -= offset
    return h.astype(np.float32) + np.float32(0.0)


def hybrid_topk(
    q: np.ndarray, b: np.ndarray, qa, ba, coef: np.ndarray, k: int,
    exclude_rows: Optional[np.ndarray] = None,
    exclude_cols: Optional[np.ndarray] = None,
    threads: Optional[int] = None,
    chunk_elems: int = CHUNK_ELEMS,
    *,
    precision: str,
    book_offset: Optional[np.ndarray] = None,
    book_z: Optional[np.ndarray] = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact top-k of the hybrid score per movie row; row i of ``q``/``qa`` is the same movie, row j
    of ``b``/``ba`` the same book (ordered by book_id). Same contract as ``block_topk`` (``precision``:
    the dense screen, ``score.precision``). ``book_offset``: float32 per book, subtracted from its score
    (``score.fused_hub_weight`` times the book's :func:`hybrid_book_topk` mean; None: 0). ``book_z``: per book
    ``(P, T)`` (n x 2, :func:`book_lexical_scale`) with ``coef`` from :func:`bookz_coefficients`
    (``score.lexical_hubness: bookz``)."""
    q, b = as_rows(q, b)
    paired = (q.shape[1] == b.shape[1] and qa.shape[1] == ba.shape[1] and qa.shape[0] == q.shape[0]
              and ba.shape[0] == b.shape[0])
    p = prologue(q.shape[0], b.shape[0], k, exclude_rows, exclude_cols,
                 None if paired else "hybrid blocks disagree in shape (dense and lexical rows must pair up)")
    if p is None:
        return concat_parts([])
    coef = np.asarray(coef, dtype=np.float64)
    coef32 = coef.astype(np.float32)
    off = None if book_offset is None else np.asarray(book_offset, dtype=np.float32)
    off_max = float(np.abs(off).max(initial=0.0)) if off is not None else 0.0
    bz = None if book_z is None else np.asarray(book_z, dtype=np.float64).reshape(-1, 2)
    bz32 = None if bz is None else np.ascontiguousarray(bz.T, dtype=np.float32)     # 2 x books, C order
    bz_max = (None, 0.0) if bz is None else tuple(float(np.abs(bz[:, i]).max(initial=0.0)) for i in (0, 1))
    parts = []
    # 20 bytes per pair: float32 dense + float64/32 lexical + float32 g
    for screen, r0, r1, g, s_l in _fused_chunks(q, b, qa, ba, threads, chunk_rows(p.m, p.n, chunk_elems, 20),
                                                precision, coef32, bz32, off):
        mask_excluded(g, r0, r1, p.ex_r, p.ex_c)
        margin = hybrid_margin(coef[r0:r1], screen.error(r0, r1), screen.magnitude(r0, r1), off_max, *bz_max)
        rows, cols = select_candidates(g, p.kk, below(margin))
        h = combine(coef, rows + r0, _rescore(q, b, rows + r0, cols), s_l[rows, cols],
                    None if off is None else off[cols].astype(np.float64), None if bz is None else bz[cols])
        idx, _ = first_k_per_group(rows, cols, h, p.kk)
        parts.append((rows[idx] + r0, cols[idx], h[idx]))
    return concat_parts(parts)


def hybrid_book_topk(
    b: np.ndarray, q: np.ndarray, ba, qa, coef: np.ndarray, k: int,
    threads: Optional[int] = None,
    chunk_elems: int = CHUNK_ELEMS,
    *,
    precision: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The roles swapped: per BOOK row of ``b``/``ba``, its exact top-``k`` films of ``q``/``qa`` by the
    hybrid score ``h`` (``coef``: the films' coefficients, one row per film), for the book's statistic of
    ``score.fused_hub_weight``. Returns ``(book rows, film cols, h)``; ``h`` as :func:`combine` computes it
    (float64 from the exact float32 dense and lexical scores, rounded once).

    The coefficients vary along the columns here, so ``c`` enters the screened ``g`` and the margin takes
    the largest ``|a|``, ``|b|``, ``|c|`` of the block's films: a bound for every column of the row."""
    b, q = as_rows(b, q)
    paired = (q.shape[1] == b.shape[1] and qa.shape[1] == ba.shape[1] and qa.shape[0] == q.shape[0]
              and ba.shape[0] == b.shape[0] and len(coef) == q.shape[0])
    p = prologue(b.shape[0], q.shape[0], k, None, None,
                 None if paired else "hybrid blocks disagree in shape (dense, lexical rows and coefficients)")
    if p is None:
        return concat_parts([])
    coef = np.asarray(coef, dtype=np.float64)
    # 3 x films, C order: astype keeps the transpose's layout, and a strided row broadcast is ~4x slower
    coef32 = np.ascontiguousarray(coef.T, dtype=np.float32)
    widest = np.abs(coef).max(axis=0)[None, :]             # one row: hybrid_margin broadcasts it over the chunk
    parts = []
    for screen, r0, r1, s_d, s_l in _chunk_scores(b, q, ba, qa, threads, chunk_rows(p.m, p.n, chunk_elems, 20),
                                                  precision):
        g = screen.float32(s_d)
        g *= coef32[0:1]
        g += coef32[1:2] * s_l
        g += coef32[2:3]
        margin = hybrid_margin(widest, screen.error(r0, r1), screen.magnitude(r0, r1))
        rows, cols = select_candidates(g, p.kk, below(margin))
        h = combine(coef, cols, _rescore(b, q, rows + r0, cols), s_l[rows, cols])
        idx, _ = first_k_per_group(rows, cols, h, p.kk)
        parts.append((rows[idx] + r0, cols[idx], h[idx]))
    return concat_parts(parts)


def _fuse(g: np.ndarray, s_l: np.ndarray, coef32: np.ndarray, bz32: Optional[np.ndarray],
          off: Optional[np.ndarray]) -> None:
    """The screened hybrid score in place of the screened dense one, float32 (the candidate margin covers its
    rounding): ``g a + b s_l`` per movie row (``coef32`` rows: a, b, c[, e]), or with ``bz32`` (2 x books: P, T)
    ``g a + P (s_l b + e) + T``; minus ``off`` per book. :func:`lfr.score.jit.hybrid_rows` does the same operations
    in the same order."""
    g *= coef32[:, 0:1]
    if bz32 is None:
        g += coef32[:, 1:2] * s_l
    else:                                               # P_j (b s_l + e) + T_j
        lexical = s_l * coef32[:, 1:2]
        lexical += coef32[:, 3:4]
        lexical *= bz32[0:1]
        g += lexical
        g += bz32[1:2]
    if off is not None:
        g -= off[None, :]


def _fused_chunks(q: np.ndarray, b: np.ndarray, qa, ba, threads: Optional[int], chunk: int, precision: str,
                  coef32: np.ndarray, bz32: Optional[np.ndarray], off: Optional[np.ndarray]) -> Iterator:
    """``(screen, r0, r1, screened hybrid scores g, exact lexical scores)`` of the movie rows ``r0:r1`` (as
    :func:`_chunk_scores`; ``g`` by :func:`_fuse`), in one pass over each chunk with numba's loop
    (:func:`lfr.score.jit.hybrid_rows`) where it imports."""
    lexical = LexicalProduct(qa, ba)
    if lexical.jit is None:
        for screen, r0, r1, s_d, s_l in _chunk_scores(q, b, qa, ba, threads, chunk, precision, lexical):
            g = screen.float32(s_d)
            _fuse(g, s_l, coef32[r0:r1], bz32, off)
            yield screen, r0, r1, g, s_l
        return
    no_book, no_bits = np.empty((2, 0), np.float32), np.empty((0, 0), np.uint16)
    g_buf = np.empty((0, 0), np.float32)
    with compute_settings(threads) as torch:
        screen = dense_screen(torch, q, b, chunk, precision)
        for r0 in range(0, q.shape[0], chunk):
            r1 = min(q.shape[0], r0 + chunk)
            s_d = screen.scores(r0, r1)
            bits = screen.bf16_bits(s_d)
            if bits is None:
                g = s_d
            else:                                       # widened inside the loop, into one reused buffer
                g_buf = g_buf if g_buf.shape[0] >= r1 - r0 else np.empty((r1 - r0, s_d.shape[1]), np.float32)
                g = g_buf[:r1 - r0]
            s_l = lexical.buffer(r1 - r0)
            lexical.jit.hybrid_rows(*lexical.operands, r0, r1, g, s_l, coef32[r0:r1],
                                    no_book if bz32 is None else bz32, no_book[0] if off is None else off,
                                    no_bits if bits is None else bits, lexical.acc)
            yield screen, r0, r1, g, s_l


def _chunk_scores(q: np.ndarray, b: np.ndarray, qa, ba, threads: Optional[int], chunk: int,
                  precision: str, lexical: Optional[LexicalProduct] = None) -> Iterator:
    """``(screen, r0, r1, screened dense scores, lexical scores)`` of the movie rows ``r0:r1``, ``chunk`` rows
    at a time, so a task's memory depends on the block sizes only (``screen``: the dense screen of
    ``precision``, :func:`lfr.score.kernel.dense_screen`; its chunk buffer is reused by the next chunk;
    ``lexical``: the product of ``qa`` and ``ba`` when the caller has built it)."""
    lexical = LexicalProduct(qa, ba) if lexical is None else lexical
    with compute_settings(threads) as torch:
        screen = dense_screen(torch, q, b, chunk, precision)
        for r0 in range(0, q.shape[0], chunk):
            r1 = min(q.shape[0], r0 + chunk)
            yield screen, r0, r1, screen.scores(r0, r1), lexical.scores(r0, r1)


# ---------------------------------------------------------------- reciprocal rank fusion (score.fusion: rrf)
#
# RRF(m, j) = 1 / (rrf_k + r_d(j)) + 1 / (rrf_k + r_l(j)), r = the book's rank among ALL scored books of the
# movie by that method, competition ranking ("min": 1 + the number of books with a strictly higher score, so
# tied books share a rank -- as the evaluation's rrf_fusion). Ranks are global, so no block can fuse alone:
#
# 1. each (movie block, book block) task emits, per movie, the union of its top-n books by dense and its
#    top-n by lexical (exact float32 scores, the dense/lexical kernels' own selection), each with BOTH exact
#    scores (:func:`rrf_block_candidates`);
# 2. per movie, the union over the book blocks holds the global top-n of each method (a book outside its
#    block's top-n has n books of that block ranked before it). :func:`rrf_fuse` then knows r(j) exactly
#    for every emitted book whose score is >= the n-th score of the global list (every strictly better
#    book is in the list), and only a lower bound (n + 1, or the n-th entry's rank for an unseen book) for
#    the others. The top-k among books with both ranks exact is THE exact top-k when its k-th fused score
#    is strictly above every other book's upper bound; else the movie is retried with a larger n (the job
#    grows n until every movie passes; n >= the number of books makes every rank exact).


def rrf_block_candidates(
    q: np.ndarray, b: np.ndarray, qa, ba, n_top: int,
    exclude_rows: Optional[np.ndarray] = None,
    exclude_cols: Optional[np.ndarray] = None,
    threads: Optional[int] = None,
    chunk_elems: int = CHUNK_ELEMS,
    *,
    precision: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per movie row: the union of the block's top-``n_top`` books by dense and by lexical score.

    Returns ``(rows int32, cols int32, dense float32, lexical float32)``: both exact scores of every
    emitted pair (the same bits as :func:`lfr.score.kernel.block_topk` / :func:`lfr.score.sparse.sparse_topk`
    give it in any block); excluded pairs are never emitted nor ranked. ``b``/``ba`` ordered by book_id.
    ``precision``: the dense screen (``score.precision``; the output does not depend on it).
    """
    q, b = as_rows(q, b)
    p = prologue(q.shape[0], b.shape[0], n_top, exclude_rows, exclude_cols)
    if p is None:
        e = np.empty(0, np.float32)
        return np.empty(0, np.int32), np.empty(0, np.int32), e, e
    n = p.n
    parts = []
    # 16 bytes per pair: float32 dense + float64/32 lexical
    for screen, r0, r1, g, s_l in _chunk_scores(q, b, qa, ba, threads, chunk_rows(p.m, n, chunk_elems, 16),
                                                precision):
        mask_excluded(g, r0, r1, p.ex_r, p.ex_c)
        mask_excluded(s_l, r0, r1, p.ex_r, p.ex_c)
        rows, cols = select_candidates(g, p.kk, screen.threshold(r0, r1))
        s_d = _rescore(q, b, rows + r0, cols)
        idx, _ = first_k_per_group(rows, cols, s_d, p.kk)
        d_rows, d_cols = rows[idx], cols[idx]
        rows, cols = select_candidates(s_l, p.kk, below(0.0))
        idx, _ = first_k_per_group(rows, cols, s_l[rows, cols], p.kk)
        key = np.unique(np.r_[d_rows * n + d_cols, rows[idx] * n + cols[idx]])   # union, sorted by row
        u_rows, u_cols = key // n, key % n
        parts.append((u_rows + r0, u_cols, _rescore(q, b, u_rows + r0, u_cols), s_l[u_rows, u_cols]))
    if not parts:
        e = np.empty(0, np.float32)
        return np.empty(0, np.int32), np.empty(0, np.int32), e, e
    return (np.concatenate([p[0] for p in parts]).astype(np.int32),
            np.concatenate([p[1] for p in parts]).astype(np.int32),
            np.concatenate([p[2] for p in parts]).astype(np.float32),
            np.concatenate([p[3] for p in parts]).astype(np.float32))


def _list_ranks(scores: np.ndarray, book_ids: np.ndarray, n_top: int, complete: bool):
    """Competition ranks from one method's global top-``n_top`` list of a movie's emitted books.

    Returns ``(rank float64 per book, exact bool per book, lower bound of an unseen book's rank)``."""
    order = np.lexsort((book_ids, -scores.astype(np.float64)))
    top = scores[order[:n_top]] if not complete else scores[order]
    desc = -top.astype(np.float64)                        # ascending, for searchsorted
    better = np.searchsorted(desc, -scores.astype(np.float64), side="left")   # list entries strictly better
    if complete or len(top) < n_top:
        return better + 1.0, np.ones(len(scores), bool), np.inf
    last = top[-1]
    exact = scores >= last
    rank = np.where(exact, better + 1.0, float(n_top + 1))
    return rank, exact, float(np.searchsorted(desc, -np.float64(last), side="left") + 1)


def rrf_fuse(book_ids: np.ndarray, s_d: np.ndarray, s_l: np.ndarray, k: int, n_top: int, rrf_k: int,
             complete: bool = False) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """One movie: the exact RRF top-k ``(book_ids, float32 scores)`` ranked by (score desc, book_id asc), or
    ``None`` when ``n_top`` was too small to prove it (retry with a larger one).

    Inputs: every book the blocks emitted for the movie (:func:`rrf_block_candidates`), once each.
    ``complete``: the inputs are ALL the movie's books (``n_top`` >= the books scored), so every rank is exact.
    The published score is the float64 sum rounded to float32; the proof compares float32 values (rounding
    is monotone, so an upper bound stays one)."""
    book_ids = np.asarray(book_ids).astype(str)
    s_d, s_l = np.asarray(s_d, np.float32), np.asarray(s_l, np.float32)
    if len(book_ids) == 0:
        return book_ids, np.empty(0, np.float32)
    r_d, x_d, u_d = _list_ranks(s_d, book_ids, n_top, complete)
    r_l, x_l, u_l = _list_ranks(s_l, book_ids, n_top, complete)
    fused = (1.0 / (rrf_k + r_d) + 1.0 / (rrf_k + r_l)).astype(np.float32)    # an upper bound where inexact
    exact = x_d & x_l
    unseen = 1.0 / (rrf_k + u_d) + 1.0 / (rrf_k + u_l) if np.isfinite(u_d) and np.isfinite(u_l) else 0.0
    bound = max(np.float32(unseen), fused[~exact].max(initial=np.float32(0.0)))
    idx = np.flatnonzero(exact)
    idx = idx[np.lexsort((book_ids[idx], -fused[idx].astype(np.float64)))][:k]
    proven = (not (~exact).any() and not unseen) or (len(idx) == k and fused[idx[-1]] > bound)
    return (book_ids[idx], fused[idx]) if proven else None
