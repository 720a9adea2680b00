"""Numba's compiled loops of the scoring kernels, used where numba imports (:func:`lfr.score.kernel.compiled`).

Every loop keeps the operations of the numpy/scipy code it replaces and their order, so the scores and the
candidates do not depend on whether numba is installed (tests run both paths, bit for bit); only the lexical
statistics add the same values in another order (below). Each loop is compiled once per process on first use
(about a second) and runs on one thread (one core per Spark task).

* The lexical product (:mod:`lfr.score.sparse`): scipy's CSR @ CSR writes a CSR output (a linked list per row, an
  index per entry) that the kernels then densify or reduce, while the lexical products the hybrid scores are
  often about half full (docs/BENCHMARKS.md). A dense float64 accumulator per row (Gustavson's algorithm without
  the sparse output) adds the same products in the same order (the row's terms in index order; the products of
  float32 weights are exact in float64): the same float32 scores. The statistics add the same published scores
  as the scipy path, in column order rather than scipy's output order: equal to float64 rounding.
* The hybrid's screened score (:func:`hybrid_rows`): the fusion arithmetic of :func:`lfr.score.hybrid._fuse`,
  float32, in the lexical product's pass over each chunk (and the bf16 screen widened there), instead of numpy's
  passes over whole chunks.
* The exact rescoring of dense candidates (:func:`lfr.score.kernel._rescore`): each pair's float64 products
  summed in numpy's pairwise order (:func:`_pairwise`), without the gathered copies of both rows.
"""
from __future__ import annotations

import numpy as np
from numba import njit

_JIT = {"nogil": True, "cache": False}


@njit(**_JIT)
def _accumulate(a_ptr, a_idx, a_val, b_ptr, b_idx, b_val, i, acc):
    """``acc[j]`` = row ``i`` of A times column ``j`` of B (``B^T`` as CSR: term -> its rows), in float64."""
    acc[:] = 0.0
    for p in range(a_ptr[i], a_ptr[i + 1]):
        w, t = a_val[p], a_idx[p]
        for q in range(b_ptr[t], b_ptr[t + 1]):
            acc[b_idx[q]] += w * b_val[q]


@njit(**_JIT)
def dense_rows(a_ptr, a_idx, a_val, b_ptr, b_idx, b_val, r0, r1, out, acc):
    """Rows ``r0:r1`` of the product rounded to float32 into ``out`` (a -0.0 comes out as 0.0, as in scipy's
    densified output, so equal scores compare equal)."""
    zero = np.float32(0.0)
    for i in range(r0, r1):
        _accumulate(a_ptr, a_idx, a_val, b_ptr, b_idx, b_val, i, acc)
        o = out[i - r0]
        for j in range(acc.shape[0]):
            o[j] = np.float32(acc[j]) + zero


@njit(**_JIT)
def hybrid_rows(a_ptr, a_idx, a_val, b_ptr, b_idx, b_val, r0, r1, g, s_l, coef, book_z, offset, sd_bits, acc):
    """Rows ``r0:r1`` of the lexical product as :func:`dense_rows` into ``s_l``, and in the same pass the hybrid's
    screened score in place of the dense one in ``g`` (float32, the operations and order of
    :func:`lfr.score.hybrid._fuse`, so the same bits): ``g a + b s_l`` per movie row (``coef`` rows: a, b, c[, e]),
    or with ``book_z`` (2 x n: P, T; 2 x 0 without) ``g a + ((s_l b) + e) P + T``; minus ``offset`` (per book; empty
    without). ``sd_bits``: the bf16 screen's chunk as its bit patterns (uint16), widened to float32 into ``g``
    first (exact: the high half of a float32); 0 x 0 when ``g`` already holds the float32 screen."""
    zero = np.float32(0.0)
    bookz, shifted, widen = book_z.shape[1] > 0, offset.shape[0] > 0, sd_bits.shape[0] > 0
    for i in range(r0, r1):
        _accumulate(a_ptr, a_idx, a_val, b_ptr, b_idx, b_val, i, acc)
        r = i - r0
        gi, si, a, b = g[r], s_l[r], coef[r, 0], coef[r, 1]
        g_bits = gi.view(np.uint32)
        e = coef[r, 3] if bookz else zero
        for j in range(acc.shape[0]):
            sl = np.float32(acc[j]) + zero
            si[j] = sl
            if widen:
                g_bits[j] = np.uint32(sd_bits[r, j]) << np.uint32(16)
            x = gi[j] * a
            if bookz:
                x = x + ((sl * b) + e) * book_z[0, j]
                x = x + book_z[1, j]
            else:
                x = x + b * sl
            if shifted:
                x = x - offset[j]
            gi[j] = x


@njit(**_JIT)
def _published(a_ptr, a_idx, a_val, b_ptr, b_idx, b_val, i, acc, v):
    """``v``: row ``i`` of the product as its published scores (float32) in float64 -- rounded in a pass of its
    own, which the CPU vectorises (inside the sums below it would not be)."""
    _accumulate(a_ptr, a_idx, a_val, b_ptr, b_idx, b_val, i, acc)
    for j in range(acc.shape[0]):
        v[j] = np.float64(np.float32(acc[j]))


@njit(**_JIT)
def weighted_moments(a_ptr, a_idx, a_val, b_ptr, b_idx, b_val, w1, w2, w3, s1, s2, acc, v):
    """Per row ``i`` of the product, its published scores ``v`` (float32, summed in float64) over the columns:
    ``s1[i] += sum(w1 v)``, then ``s2[i] += sum(w2 v)``, then ``s2[i] += sum(w3 v^2)``. Four partial sums per
    statistic (columns ``j`` mod 4, the last ``n mod 4`` columns into the first), added in a fixed order at the
    end: independent additions the CPU overlaps, and the same bits on every call."""
    n4 = acc.shape[0] - acc.shape[0] % 4
    for i in range(s1.shape[0]):
        _published(a_ptr, a_idx, a_val, b_ptr, b_idx, b_val, i, acc, v)
        a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = c0 = c1 = c2 = c3 = 0.0
        for j in range(0, n4, 4):
            v0, v1, v2, v3 = v[j], v[j + 1], v[j + 2], v[j + 3]
            a0 += w1[j] * v0
            a1 += w1[j + 1] * v1
            a2 += w1[j + 2] * v2
            a3 += w1[j + 3] * v3
            b0 += w2[j] * v0
            b1 += w2[j + 1] * v1
            b2 += w2[j + 2] * v2
            b3 += w2[j + 3] * v3
            c0 += w3[j] * (v0 * v0)
            c1 += w3[j + 1] * (v1 * v1)
            c2 += w3[j + 2] * (v2 * v2)
            c3 += w3[j + 3] * (v3 * v3)
        for j in range(n4, acc.shape[0]):           # the last columns, into the first lane
            a0 += w1[j] * v[j]
            b0 += w2[j] * v[j]
            c0 += w3[j] * (v[j] * v[j])
        s1[i] += (a0 + a1) + (a2 + a3)
        s2[i] += (b0 + b1) + (b2 + b3)
        s2[i] += (c0 + c1) + (c2 + c3)


@njit(**_JIT)
def moments(a_ptr, a_idx, a_val, b_ptr, b_idx, b_val, s1, s2, acc, v):
    """:func:`weighted_moments` with unit weights and no middle term (``s1 += sum(v)``, ``s2 += sum(v^2)``): the same
    bits, without the weights' loads and products."""
    n4 = acc.shape[0] - acc.shape[0] % 4
    for i in range(s1.shape[0]):
        _published(a_ptr, a_idx, a_val, b_ptr, b_idx, b_val, i, acc, v)
        a0 = a1 = a2 = a3 = c0 = c1 = c2 = c3 = 0.0
        for j in range(0, n4, 4):
            v0, v1, v2, v3 = v[j], v[j + 1], v[j + 2], v[j + 3]
            a0 += v0
            a1 += v1
            a2 += v2
            a3 += v3
            c0 += v0 * v0
            c1 += v1 * v1
            c2 += v2 * v2
            c3 += v3 * v3
        for j in range(n4, acc.shape[0]):
            a0 += v[j]
            c0 += v[j] * v[j]
        s1[i] += (a0 + a1) + (a2 + a3)
        s2[i] += (c0 + c1) + (c2 + c3)


@njit(**_JIT)
def _pairwise(a, lo, n):
    """``a[lo:lo + n].sum()`` as numpy adds a contiguous float64 row (its pairwise summation: 8 accumulators up
    to 128 elements, halves rounded to a multiple of 8 above), so the same bits."""
    if n < 8:
        res = 0.0
        for i in range(lo, lo + n):
            res += a[i]
        return res
    if n <= 128:
        r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
        r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
        i, whole = 8, n - n % 8
        while i < whole:
            r0 += a[lo + i]
            r1 += a[lo + i + 1]
            r2 += a[lo + i + 2]
            r3 += a[lo + i + 3]
            r4 += a[lo + i + 4]
            r5 += a[lo + i + 5]
            r6 += a[lo + i + 6]
            r7 += a[lo + i + 7]
            i += 8
        res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        for j in range(lo + i, lo + n):
            res += a[j]
        return res
    half = n // 2
    half -= half % 8
    return _pairwise(a, lo, half) + _pairwise(a, lo + half, n - half)


@njit(**_JIT)
def rescore(q, b, rows, cols, out, buf):
    """``out[t]``: the float64 dot product of ``q[rows[t]]`` and ``b[cols[t]]`` (exact products, numpy's pairwise
    sum) rounded to float32, a -0.0 as 0.0 (:func:`lfr.score.kernel._rescore`)."""
    d = q.shape[1]
    for t in range(rows.shape[0]):
        qr, br = q[rows[t]], b[cols[t]]
        for i in range(d):
            buf[i] = np.float64(qr[i]) * np.float64(br[i])
        out[t] = np.float32(_pairwise(buf, 0, d)) + np.float32(0.0)
