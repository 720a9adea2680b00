"""Compiled loops of the exact lexical product (numba), used by :mod:`lfr.score.sparse` when numba imports.

Why: scipy's CSR @ CSR writes a CSR output (a linked list per row, an index per entry) that the kernels then
densify or reduce. The lexical products the hybrid scores are often about half full (docs/BENCHMARKS.md), so a
dense float64 accumulator per row (Gustavson's algorithm without the sparse output) does the same additions with
a fraction of the memory traffic. Each entry is the same float64 sum as scipy's routine, added in the same order
(the row's terms in index order; the products of float32 weights are exact in float64), so the float32 scores
are bit-identical to scipy's (tests/test_score_hybrid_kernel.py). The statistics add the same published scores
as the scipy path, in column order rather than scipy's output order: equal to float64 rounding.

Each loop is compiled once per process on first use (about a second), single-threaded (one core per Spark task).
Without numba (an environment without it) :mod:`lfr.score.sparse` runs scipy's routine instead.
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
def weighted_moments(a_ptr, a_idx, a_val, b_ptr, b_idx, b_val, w1, w2, w3, s1, s2, acc):
    """Per row ``i`` of the product, its published scores ``v`` (float32, summed in float64) over the columns:
    ``s1[i] += sum(w1 v)``, then ``s2[i] += sum(w2 v)``, then ``s2[i] += sum(w3 v^2)``. Four partial sums per
    statistic (columns ``j`` mod 4, the last ``n mod 4`` columns into the first), added in a fixed order at the
    end: independent additions the CPU overlaps, and the same bits on every call."""
    n4 = acc.shape[0] - acc.shape[0] % 4
    for i in range(s1.shape[0]):
        _accumulate(a_ptr, a_idx, a_val, b_ptr, b_idx, b_val, i, acc)
        a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = c0 = c1 = c2 = c3 = 0.0
        for j in range(0, n4, 4):
            v0, v1 = np.float64(np.float32(acc[j])), np.float64(np.float32(acc[j + 1]))
            v2, v3 = np.float64(np.float32(acc[j + 2])), np.float64(np.float32(acc[j + 3]))
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
            v = np.float64(np.float32(acc[j]))
            a0 += w1[j] * v
            b0 += w2[j] * v
            c0 += w3[j] * (v * v)
        s1[i] += (a0 + a1) + (a2 + a3)
        s2[i] += (b0 + b1) + (b2 + b3)
        s2[i] += (c0 + c1) + (c2 + c3)
