"""Exact top-k for lexical (sparse) rows: one (movie block, book block) pair, scipy.sparse, no Spark.

Rows are TF-IDF/BM25 vectors stored as CSR (``lfr.lexical`` writes ``term_indices`` strictly
increasing and ``term_weights`` L2-normalised; :func:`csr_rows` re-normalises them in float64 so
a dot product is a cosine whatever the writer's rounding).

Exactness: the product is computed in **float64** (``scipy.sparse`` CSR @ CSR). Products of
float32 weights are exact in float64, and scipy accumulates entry (i, j) in the order of movie
row i's term indices, which does not depend on the blocking; the float64 sum is then rounded to
float32 -- the published score. So, unlike the dense kernel, no candidate margin is needed: the
float32 scores are final, the same pair gets the same bits in any block, identical book rows
get identical scores, and ties go to the smaller book_id (column order, the block builder sorts
by id). Books sharing no term with a movie score 0 and still compete for the top-k (a movie
with fewer than k matching books gets the smallest-id zero-score books after them), exactly as
a dense brute force over all books would rank them.

Memory per call: the movie block is multiplied ``chunk`` rows at a time, and each chunk's
product is held as a dense ``chunk x n`` float64 array (``chunk_elems / 2`` elements), so memory
is bounded by the block sizes, never by the catalogs.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from lfr.score.kernel import (
    CHUNK_ELEMS,
    below,
    compute_settings,
    concat_parts,
    first_k_per_group,
    mask_excluded,
    prologue,
    select_candidates,
)


def csr_rows(offsets: np.ndarray, indices: np.ndarray, weights: np.ndarray, vocab_size: int,
             require_terms: bool) -> tuple["object", np.ndarray]:
    """Arrow-style list columns -> (CSR matrix of the valid rows, float32 unit rows; valid mask).

    A row is invalid (dropped and counted by the caller) when its indices are not strictly
    increasing inside ``[0, vocab_size)``, lengths disagree, a weight is not finite, or -- with
    ``require_terms`` (lexical-only scoring: no terms, no direction) -- it is empty or all-zero.
    """
    import scipy.sparse as sp

    offsets = np.asarray(offsets, dtype=np.int64)
    indices = np.asarray(indices, dtype=np.int64)
    w = np.asarray(weights, dtype=np.float64)
    n = len(offsets) - 1
    lengths = np.diff(offsets)
    row_of = np.repeat(np.arange(n), lengths)
    bad = np.zeros(n, dtype=bool)
    if len(indices) != offsets[-1] or len(w) != offsets[-1]:
        raise ValueError("term_indices and term_weights must have the same lengths")
    inc = np.r_[True, (indices[1:] > indices[:-1]) | (row_of[1:] != row_of[:-1])] if len(indices) else np.zeros(0, bool)
    entry_bad = ~inc | (indices < 0) | (indices >= vocab_size) | ~np.isfinite(w)
    bad[row_of[entry_bad]] = True
    norms = np.sqrt(np.bincount(row_of, weights=np.where(entry_bad, 0.0, w * w), minlength=n))
    if require_terms:
        bad |= norms <= 0
    valid = ~bad
    scale = np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 0.0)
    keep_entry = valid[row_of] if len(row_of) else np.zeros(0, bool)
    data = (w[keep_entry] * scale[row_of[keep_entry]]).astype(np.float32)
    indptr = np.r_[0, np.cumsum(lengths[valid])].astype(np.int64)
    mat = sp.csr_matrix((data, indices[keep_entry].astype(np.int32), indptr), shape=(int(valid.sum()), vocab_size))
    return mat, valid


def _book_columns(ba):
    """The book block transposed (vocab x n) in float64, built once per call."""
    return ba.astype(np.float64).T.tocsr()


def lexical_chunk(qa64, bt64, r0: int, r1: int) -> np.ndarray:
    """Exact float32 scores of movie rows ``r0:r1`` against every book of the block (dense array).

    The float64 product's stored entries are rounded to float32 before the dense array is filled: the same
    values as rounding the dense float64 array, with half its memory traffic (the product is often half full)."""
    p = qa64[r0:r1] @ bt64
    p.data = p.data.astype(np.float32)
    s = p.toarray()
    s += np.float32(0.0)                                   # -0.0 -> 0.0 (equal scores compare equal)
    return s


def chunk_rows(m: int, n: int, chunk_elems: int, bytes_per_elem: int) -> int:
    """Rows per chunk so that ``rows x n`` elements of ``bytes_per_elem`` fit ``4 * chunk_elems`` bytes."""
    return max(1, min(m, (4 * chunk_elems) // (bytes_per_elem * max(n, 1))))


def sparse_topk(
    qa, ba, k: int,
    exclude_rows: Optional[np.ndarray] = None,
    exclude_cols: Optional[np.ndarray] = None,
    threads: Optional[int] = None,
    chunk_elems: int = CHUNK_ELEMS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact top-k of ``qa @ ba.T`` per movie row (CSR inputs, unit rows; ``ba`` ordered by book_id).

    Same contract as :func:`lfr.score.kernel.block_topk`: excluded pairs masked before the cut,
    ``(rows int32, cols int32, scores float32)`` sorted by row then rank, ties to the smaller column.
    """
    p = prologue(qa.shape[0], ba.shape[0], k, exclude_rows, exclude_cols,
                 None if qa.shape[1] == ba.shape[1] else
                 f"vocabulary mismatch: movie block {qa.shape[1]} terms, book block {ba.shape[1]}")
    if p is None:
        return concat_parts([])
    qa64, bt64 = qa.astype(np.float64), _book_columns(ba)
    chunk = chunk_rows(p.m, p.n, chunk_elems, 12)          # float64 product + its float32 copy
    parts = []
    with compute_settings(threads):
        for r0 in range(0, p.m, chunk):
            r1 = min(p.m, r0 + chunk)
            s = lexical_chunk(qa64, bt64, r0, r1)
            mask_excluded(s, r0, r1, p.ex_r, p.ex_c)
            rows, cols = select_candidates(s, p.kk, below(0.0))
            sc = s[rows, cols]
            idx, _ = first_k_per_group(rows, cols, sc, p.kk)
            parts.append((rows[idx] + r0, cols[idx], sc[idx]))
    return concat_parts(parts)


def sparse_moments(qa, ba, chunk_elems: int = CHUNK_ELEMS) -> tuple[np.ndarray, np.ndarray]:
    """Per movie row: (sum, sum of squares) of its exact scores against every book of the block.

    Summed over all book blocks this gives each movie's mean and variance over the whole book
    catalog (the hybrid's z-score normalisation). Zero scores add nothing, so only the sparse
    product's stored entries are visited.
    """
    m, n = qa.shape[0], ba.shape[0]
    s1, s2 = np.zeros(m), np.zeros(m)
    if m == 0 or n == 0:
        return s1, s2
    qa64, bt64 = qa.astype(np.float64), _book_columns(ba)
    chunk = chunk_rows(m, n, chunk_elems, 16)              # worst case: a dense product, 12+ bytes per entry
    for r0 in range(0, m, chunk):
        r1 = min(m, r0 + chunk)
        s = (qa64[r0:r1] @ bt64).tocsr()
        v = s.data.astype(np.float32).astype(np.float64)   # the published (float32) scores
        rows = np.flatnonzero(np.diff(s.indptr))           # rows with a stored entry, each a run of v
        if len(rows):                                      # (reduceat: a sum per run, no index per entry)
            s1[r0 + rows] = np.add.reduceat(v, s.indptr[rows])
            s2[r0 + rows] = np.add.reduceat(np.square(v, out=v), s.indptr[rows])
    return s1, s2
