"""Hybrid (dense + lexical) exact top-k: convex fusion of per-movie z-scores, no Spark.

For movie m and book j, with ``s_d`` the dense cosine and ``s_l`` the lexical cosine (both the
exact float32 scores of :mod:`lfr.score.kernel` and :mod:`lfr.score.sparse`)::

    z_d = (s_d - mu_d[m]) / sd_d[m]      z_l = (s_l - mu_l[m]) / sd_l[m]      over ALL scored books
    h   = alpha * z_d + (1 - alpha) * z_l  =  a[m] * s_d + b[m] * s_l + c[m]

The published score is ``h`` computed in float64 from those float32 scores and the per-movie
coefficients ``(a, b, c)``, rounded to float32. A component whose scores do not vary for a movie
(``sd = 0``, e.g. a film with no known term) contributes 0.

Exact per-movie statistics over the whole book catalog, without materialising the catalog:

* dense: ``mu_d = q . (sum_j b_j) / n`` and ``E[s_d^2] = q^T (B^T B / n) q`` -- the book side's
  first and second moments (a d-vector and a d x d Gram matrix, summed over book blocks);
* lexical: a first pass over the (movie block, book block) pairs accumulates each movie's sum and
  sum of squares (:func:`lfr.score.sparse.sparse_moments`); a vocabulary-sized Gram matrix is not
  bounded, the pass is.

Top-k, one pass over paired blocks (the dense and lexical rows of the same books): the float32
BLAS product gives approximate ``g = a * s_d + b * s_l`` (``s_l`` exact); every book within a
per-movie margin (``|a| * score_margin(d)`` for the dense error plus float32 rounding of the
combination, see :func:`hybrid_margin`) of the k-th best ``g`` is a candidate; candidates are
rescored exactly (dense in float64) and ranked by (h desc, book_id asc). As in the dense kernel,
no true top-k book can fall outside the margin, so the result is the exact top-k of ``h`` over
all books, not a re-rank of two truncated lists.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from lfr.score.kernel import (CHUNK_ELEMS, EXTRA_CANDIDATES, _rescore, compute_settings, concat_parts,
                              exclusion_index, first_k_per_group, mask_excluded, score_margin, select_candidates)
from lfr.score.sparse import _book_columns, chunk_rows, lexical_chunk

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
    e2 = np.einsum("ij,jk,ik->i", q64, gram, q64) / n
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


def hybrid_margin(coef: np.ndarray, dim: int) -> np.ndarray:
    """Per-movie candidate margin on ``g = a s_d + b s_l`` computed in float32.

    ``|a| * score_margin(d)`` covers twice the dense float32 error; ``2**-20 (|a|+|b|+|c|)``
    (16 float32 ulps of the largest term, |s| <= 1) covers the float32 rounding of ``a``, ``b``,
    the products and the sum, and the final rounding of ``h`` to float32 (the ``c`` term).
    """
    a, b, c = np.abs(coef[:, 0]), np.abs(coef[:, 1]), np.abs(coef[:, 2])
    return a * score_margin(dim) + 2.0 ** -20 * (a + b + c)


def combine(coef: np.ndarray, rows: np.ndarray, s_d: np.ndarray, s_l: np.ndarray) -> np.ndarray:
    """The published hybrid score: float64 ``a s_d + b s_l + c`` of float32 scores, rounded to float32."""
    h = coef[rows, 0] * s_d.astype(np.float64) + coef[rows, 1] * s_l.astype(np.float64) + coef[rows, 2]
    return h.astype(np.float32) + np.float32(0.0)


def hybrid_topk(
    q: np.ndarray, b: np.ndarray, qa, ba, coef: np.ndarray, k: int,
    exclude_rows: Optional[np.ndarray] = None,
    exclude_cols: Optional[np.ndarray] = None,
    threads: Optional[int] = None,
    chunk_elems: int = CHUNK_ELEMS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact top-k of the hybrid score per movie row; row i of ``q``/``qa`` is the same movie, row j
    of ``b``/``ba`` the same book (ordered by book_id). Same contract as ``block_topk``."""
    q = np.ascontiguousarray(q, dtype=np.float32)
    b = np.ascontiguousarray(b, dtype=np.float32)
    m, n = q.shape[0], b.shape[0]
    if m == 0 or n == 0 or k <= 0:
        return concat_parts([])
    if q.shape[1] != b.shape[1] or qa.shape[1] != ba.shape[1] or qa.shape[0] != m or ba.shape[0] != n:
        raise ValueError("hybrid blocks disagree in shape (dense and lexical rows must pair up)")
    kk, take = min(k, n), min(n, min(k, n) + EXTRA_CANDIDATES)
    coef = np.asarray(coef, dtype=np.float64)
    margin = hybrid_margin(coef, q.shape[1])
    coef32 = coef[:, :2].astype(np.float32)
    ex_r, ex_c = exclusion_index(exclude_rows, exclude_cols)
    bt, qa64, bt64 = np.ascontiguousarray(b.T), qa.astype(np.float64), _book_columns(ba)
    chunk = chunk_rows(m, n, chunk_elems, 20)              # float32 dense + float64/32 lexical + float32 g
    parts = []
    with compute_settings(threads) as torch:
        for r0 in range(0, m, chunk):
            r1 = min(m, r0 + chunk)
            s_l = lexical_chunk(qa64, bt64, r0, r1)
            g = q[r0:r1] @ bt
            g *= coef32[r0:r1, 0:1]
            g += coef32[r0:r1, 1:2] * s_l
            mask_excluded(g, r0, r1, ex_r, ex_c)
            rows, cols = select_candidates(torch, g, kk, take, margin[r0:r1])
            h = combine(coef, rows + r0, _rescore(q, b, rows + r0, cols), s_l[rows, cols])
            idx, _ = first_k_per_group(rows, cols, h, kk)
            parts.append((rows[idx] + r0, cols[idx], h[idx]))
    return concat_parts(parts)
