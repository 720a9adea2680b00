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

Where numba imports, :class:`LexicalProduct` runs the compiled loops of :mod:`lfr.score.jit` instead of
scipy's routine: the same float64 sums in the same order (the same float32 scores, bit for bit), without a sparse
output; the statistics' sums then differ from the scipy path's only by float64 rounding (their order of addition).

Memory per call: the movie block is multiplied ``chunk`` rows at a time (:class:`LexicalProduct`); a
chunk's product is held as CSR (12 bytes per stored pair, at most ``chunk x n``) and densified into
one reused ``chunk x n`` float32 array, so memory is bounded by the block sizes, never by the catalogs.
"""
from __future__ import annotations

import functools
import logging
from typing import Iterator, Optional

import numpy as np

from lfr.score import kernel as kernel_module
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

log = logging.getLogger(__name__)


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


@functools.lru_cache(maxsize=None)
def _csr_matmat():
    """scipy's ``csr_matmat``, the routine behind its public CSR @ CSR, or None: a scipy without it (a private
    name), or one where it does not give the public product's bits on a small case (checked once per process)."""
    import scipy.sparse as sp

    try:
        from scipy.sparse._sparsetools import csr_matmat

        a = sp.csr_matrix(np.array([[0.5, 0, 0.25, 0], [0, 0, 0, 0], [0.125, 0.75, 0, 1.0]]))
        b = sp.csr_matrix(np.array([[1.0, 0, 0.5], [0, 0.25, 0], [0.5, 0, 0], [0, 1.0, 0.75]]))
        indptr, indices, data = np.empty(4, np.int32), np.empty(12, np.int32), np.empty(12)
        csr_matmat(3, 3, a.indptr.astype(np.int32), a.indices.astype(np.int32), a.data,
                   b.indptr.astype(np.int32), b.indices.astype(np.int32), b.data, indptr, indices, data)
        ours = sp.csr_matrix((data[:indptr[-1]], indices[:indptr[-1]], indptr), shape=(3, 3)).toarray()
        if not np.array_equal(ours, (a @ b).toarray()):
            raise ValueError("differs from the public product")
        return csr_matmat
    except Exception as exc:                              # any failure: the public product, a little slower
        log.info("lexical product through scipy's public API (csr_matmat unavailable: %s)", exc)
        return None


class LexicalProduct:
    """Exact lexical scores of a movie block against one book block, a chunk of movie rows at a time.

    The product is float64 (module doc) through scipy's own routine (:func:`_csr_matmat`, so the same bits as
    ``qa @ ba.T``), without what the public operator adds per call: a symbolic pass over the same postings to
    size the output (about a quarter of its time) and fresh output arrays. The output goes into buffers that
    grow to the largest chunk's bound (each row: the lengths of its terms' postings, at most ``n``, so never
    more than the public operator allocates), and :meth:`scores` fills one reused dense chunk; the arrays
    returned are valid until the next call. Where numba imports (:attr:`jit`), :meth:`scores` and
    :meth:`row_moments` run its compiled loops instead (module doc), and only :meth:`product` uses scipy."""

    def __init__(self, qa, ba):
        self.qa64, self.bt64, self.m, self.n = qa.astype(np.float64), _book_columns(ba), qa.shape[0], ba.shape[0]
        self.matmat, self.jit = _csr_matmat(), kernel_module.compiled()
        nnz_bound = min(qa.shape[0] * self.n, self.qa64.nnz * max(self.n, 1))
        small = max(nnz_bound, self.qa64.nnz, self.bt64.nnz) < np.iinfo(np.int32).max
        self.idx = np.int32 if small and self.jit is None else np.int64       # the loops run faster on int64
        if self.matmat is not None or self.jit is not None:     # one index type for scipy's routine and the loops
            self.a_ptr, self.a_idx = self.qa64.indptr.astype(self.idx), self.qa64.indices.astype(self.idx)
            self.b_ptr, self.b_idx = self.bt64.indptr.astype(self.idx), self.bt64.indices.astype(self.idx)
            self.operands = (self.a_ptr, self.a_idx, self.qa64.data, self.b_ptr, self.b_idx, self.bt64.data)
            self.postings = np.diff(self.bt64.indptr).astype(np.int64)       # books per term
        self.c_idx, self.c_val, self.dense = np.empty(0, self.idx), np.empty(0), np.empty((0, self.n), np.float32)
        self.acc = np.empty(self.n) if self.jit is not None else None

    def product(self, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``r0:r1`` of the float64 product as CSR ``(indptr, values)`` (the columns in :attr:`c_idx`)."""
        if self.matmat is None:
            p = self.qa64[r0:r1] @ self.bt64
            self.c_idx = p.indices
            return p.indptr, p.data
        lo, hi = self.a_ptr[r0], self.a_ptr[r1]
        a_ptr, a_idx = self.a_ptr[r0:r1 + 1] - lo, self.a_idx[lo:hi]
        rows = np.repeat(np.arange(r1 - r0), np.diff(a_ptr))
        bound = int(np.minimum(np.bincount(rows, self.postings[a_idx], minlength=r1 - r0), self.n).sum())
        if len(self.c_val) < bound:
            self.c_idx, self.c_val = np.empty(bound, self.idx), np.empty(bound)
        indptr = np.empty(r1 - r0 + 1, self.idx)
        self.matmat(r1 - r0, self.n, a_ptr, a_idx, self.qa64.data[lo:hi], self.b_ptr, self.b_idx, self.bt64.data,
                    indptr, self.c_idx, self.c_val)
        return indptr, self.c_val[:indptr[-1]]

    def published(self, chunk: int) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
        """``(r0, r1, indptr, values)`` of every row of the product, ``chunk`` rows at a time, as CSR whose values
        are the published (float32) scores in float64: what the statistics passes sum (columns in :attr:`c_idx`)."""
        for r0 in range(0, self.m, chunk):
            r1 = min(self.m, r0 + chunk)
            indptr, values = self.product(r0, r1)
            yield r0, r1, indptr, values.astype(np.float32).astype(np.float64)

    def row_moments(self, s1: np.ndarray, s2: np.ndarray, weights: Optional[tuple] = None) -> None:
        """Compiled loops only (:attr:`jit`): per row, ``s1 += sum(v)``, ``s2 += sum(v^2)`` over the columns, ``v``
        the published (float32) scores; with ``weights`` ``(w1, w2, w3)`` per column, ``s1 += sum(w1 v)``, ``s2 +=
        sum(w2 v) + sum(w3 v^2)`` (:func:`lfr.score.jit.moments`, :func:`lfr.score.jit.weighted_moments`)."""
        v = np.empty(self.n)
        if weights is None:
            self.jit.moments(*self.operands, s1, s2, self.acc, v)
        else:
            w = [np.ascontiguousarray(x, dtype=np.float64) for x in weights]
            self.jit.weighted_moments(*self.operands, *w, s1, s2, self.acc, v)

    def buffer(self, rows: int) -> np.ndarray:
        """The reused dense float32 chunk (``rows x n``) that :meth:`scores` fills."""
        if self.dense.shape[0] < rows:
            self.dense = np.empty((rows, self.n), np.float32)
        return self.dense[:rows]

    def scores(self, r0: int, r1: int) -> np.ndarray:
        """Exact float32 scores of movie rows ``r0:r1`` against every book of the block (dense, reused buffer).

        The float64 product's stored entries are rounded to float32 before the dense array is filled: the same
        values as rounding the dense float64 array, with half its memory traffic (the product is often half full)."""
        import scipy.sparse as sp

        s = self.buffer(r1 - r0)
        if self.jit is not None:
            self.jit.dense_rows(*self.operands, r0, r1, s, self.acc)
            return s
        indptr, values = self.product(r0, r1)
        # toarray zeroes ``s`` and adds the stored entries into it: a -0.0 comes out as 0.0 (equal scores compare equal)
        sp.csr_matrix((values.astype(np.float32), self.c_idx[:len(values)], indptr), shape=s.shape).toarray(out=s)
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
    product = LexicalProduct(qa, ba)
    chunk = chunk_rows(p.m, p.n, chunk_elems, 12)          # float64 product + its float32 copy
    parts = []
    with compute_settings(threads):
        for r0 in range(0, p.m, chunk):
            r1 = min(p.m, r0 + chunk)
            s = product.scores(r0, r1)
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
    product = LexicalProduct(qa, ba)
    if product.jit is not None:
        product.row_moments(s1, s2)
        return s1, s2
    # worst case: a dense product, 12+ bytes per entry
    for r0, _, indptr, v in product.published(chunk_rows(m, n, chunk_elems, 16)):
        rows = np.flatnonzero(np.diff(indptr))             # rows with a stored entry, each a run of v
        if len(rows):                                      # (reduceat: a sum per run, no index per entry)
            s1[r0 + rows] = np.add.reduceat(v, indptr[rows])
            s2[r0 + rows] = np.add.reduceat(np.square(v, out=v), indptr[rows])
    return s1, s2


def sparse_book_moments(qa, ba, b, e, chunk_elems: int = CHUNK_ELEMS) -> tuple[np.ndarray, np.ndarray]:
    """Per BOOK row of ``ba``: (sum, sum of squares) over the movie rows of ``qa`` of ``z = b[m] s + e[m]``, ``s``
    the exact (float32) score: each film's lexical z-score (``score.lexical_hubness: bookz``).

    Summed over all movie blocks this gives each book's mean and spread of the z-scores over ALL films. A film
    that shares no term with the book has ``s = 0``, so ``z = e[m]``: those add the block's ``sum(e)`` and
    ``sum(e^2)`` to every book, and only the product's stored entries are visited, for what they add on top
    (``b s`` and ``b^2 s^2 + 2 b e s``). The product runs with the books as its rows (the same float64 bits: each
    entry is the same sum in the same term order), so each book's entries are one CSR row, and the three sums are
    CSR matrix-vector products with per-film weights (each row added in film order): the same book gets the same
    sums in any block and chunk."""
    import scipy.sparse as sp

    m, n = qa.shape[0], ba.shape[0]
    b, e = np.asarray(b, dtype=np.float64), np.asarray(e, dtype=np.float64)
    s1, s2 = np.full(n, e.sum()), np.full(n, (e * e).sum())
    if m == 0 or n == 0:
        return s1, s2
    product = LexicalProduct(ba, qa)                       # rows: books, columns: films
    cross, square = 2.0 * b * e, b * b
    if product.jit is not None:
        product.row_moments(s1, s2, (b, cross, square))
        return s1, s2
    for r0, r1, indptr, v in product.published(chunk_rows(n, m, chunk_elems, 16)):   # 12+ bytes per entry at worst
        scores = sp.csr_matrix((v, product.c_idx[:len(v)], indptr), shape=(r1 - r0, m))
        s1[r0:r1] += scores @ b
        s2[r0:r1] += scores @ cross
        np.square(scores.data, out=scores.data)            # s -> s^2
        s2[r0:r1] += scores @ square
    return s1, s2
