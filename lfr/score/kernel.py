"""Exact top-k cosine for one (movie block, book block) pair: numpy + torch, no Spark.

The Spark job (``lfr.score.blocks``) calls :func:`block_topk` once per pair of blocks;
everything here is plain arrays so it is tested directly against a brute force.

Exactness and ties
------------------
A float32 matrix product (BLAS) is fast but its rounding depends on the matrix
shapes, the library and the thread count: the same (movie, book) pair can get
scores differing in the last bits depending on which block it landed in, so two
identical book vectors are not guaranteed equal scores, and "on equal score the
smaller book_id wins" would depend on the block layout. So the kernel works in two
steps:

1. **Select candidates** with the float32 product ``S = Q @ B.T`` (numpy's BLAS, limited
   to the task's CPUs with threadpoolctl; ~1.4x faster than torch's sgemm for this shape
   on the CPUs measured) and ``torch.topk`` (~15x faster than ``np.argpartition``):
   every book whose float32 score is within
   ``2 * eps`` of the row's k-th best float32 score (``eps`` bounds the float32
   error of a dot product of unit vectors of dimension d: ``d * 2**-24`` plus
   rounding, see :func:`score_margin`). No true top-k book can be outside this
   set: if ``t`` is the k-th best float32 score and ``t*`` the k-th best exact
   score, ``t* >= t - eps`` and every true top-k book has float32 score
   ``>= t* - eps >= t - 2 eps``.
2. **Rescore exactly** the few candidates per movie in float64 (products of float32
   values are exact in float64; the sum's error is ~1e-14), round to float32 --
   the published score -- and rank by (score desc, book_id asc).

The published score is therefore the cosine of the two float32-normalised vectors
computed to float32 precision, independent of blocking, BLAS and threads; equal
vectors get bit-identical scores, and ties are broken by the smaller book_id
(Python/Arrow string order = UTF-8 byte order, the same order Spark SQL uses).
Block columns must be sorted by book_id (the block builder does this) because the
kernel breaks ties by column index.

The same selection (:func:`select_candidates`) and ranking (:func:`first_k_per_group`) serve
the lexical kernel (``lfr.score.sparse``, exact scores: margin 0) and the hybrid kernel
(``lfr.score.hybrid``, a per-movie margin).

Process-wide settings (torch's thread count and float32 matmul precision, numpy's BLAS
threads) are changed only inside :func:`compute_settings`, which restores the previous values.

Cost: the matrix product dominates (``2 m n d`` flops); ``topk(k + 8)`` and the
rescoring of ~k candidates per row add ~30% at d=384 (measured: 0.64 s vs 0.47 s for
the bare product of a 4096 x 16384 pair on one core). Memory is bounded by
``chunk_elems`` float32 scores per step (rows of ``S`` are computed in chunks).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np

#: extra candidates taken by ``topk`` beyond k; rows with more than this many scores within
#: the margin of the k-th best are rescanned in full (rare: near-duplicate clusters).
EXTRA_CANDIDATES = 8
#: float32 scores held at once per kernel call (64 MiB); bounds memory independently of block sizes.
CHUNK_ELEMS = 1 << 24
#: candidates rescored in float64 at once (bounds the gather buffer to ~32 MiB at d=384).
RESCORE_BATCH = 1 << 13


def score_margin(dim: int) -> float:
    """``2 * eps``: twice a bound on |float32 BLAS dot - float32-rounded exact dot| for unit vectors.

    float32 dot of length d, any summation order: error <= d * u * sum|x_i y_i| <= d * u
    (u = 2**-24, unit vectors; 5% slack for the normalisation's own rounding), plus half an
    ulp of the rounded exact score (<= 2**-25 below 1) -- taken generously as 2**-22.
    """
    return 2.0 * (dim * 2.0 ** -24 * 1.05 + 2.0 ** -22)


def normalize_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit-length float32 rows and a mask of the valid ones.

    Invalid rows -- any NaN/inf element, or an all-zero vector (no direction, so no
    cosine) -- come back as zeros with ``valid=False``; the job drops them (a movie
    with an invalid embedding gets no recommendations, an invalid book is never
    recommended) and reports how many. The norm is computed in float64, so huge or
    tiny (but finite, non-zero) inputs normalise fine.
    """
    x64 = np.asarray(x, dtype=np.float64)
    if x64.ndim != 2:
        raise ValueError(f"expected a 2-d array of row vectors, got shape {x64.shape}")
    with np.errstate(over="ignore", invalid="ignore"):
        norms = np.sqrt((x64 * x64).sum(axis=1))
    valid = np.isfinite(norms) & (norms > 0)
    out = np.zeros(x64.shape, dtype=np.float32)
    if valid.any():
        out[valid] = (x64[valid] / norms[valid, None]).astype(np.float32)
    return out, valid


@contextlib.contextmanager
def compute_settings(threads: Optional[int] = None) -> Iterator:
    """Scoped process-wide settings for a kernel call; yields the torch module.

    * torch float32 matmul precision ``highest``: a global 'medium'/'high' setting would let
      fp32 products run as bf16/tf32, and the candidate margin assumes true float32 products;
    * torch's and numpy BLAS's thread counts limited to the task's CPUs (Spark runs several
      tasks per executor), when ``threads`` is given.

    Every value is restored on exit, so a caller's own settings survive a kernel call.
    """
    import torch

    prev_precision, prev_threads = torch.get_float32_matmul_precision(), torch.get_num_threads()
    torch.set_float32_matmul_precision("highest")
    if threads:
        torch.set_num_threads(int(threads))
    try:
        with _blas_threads(threads):
            yield torch
    finally:
        torch.set_float32_matmul_precision(prev_precision)
        torch.set_num_threads(prev_threads)


def _blas_threads(threads: Optional[int]):
    """Limit numpy's BLAS to ``threads`` (threadpoolctl restores the previous limit on exit)."""
    if not threads:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:                      # not installed: BLAS uses its default thread count
        return contextlib.nullcontext()
    return threadpool_limits(limits=int(threads), user_api="blas")


def _rescore(q: np.ndarray, b: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """float32-rounded float64 dot products of ``q[rows]`` and ``b[cols]`` (exact to float32)."""
    out = np.empty(len(rows), dtype=np.float32)
    for s in range(0, len(rows), RESCORE_BATCH):
        r, c = rows[s:s + RESCORE_BATCH], cols[s:s + RESCORE_BATCH]
        prod = q[r].astype(np.float64) * b[c].astype(np.float64)   # exact: 24+24 bit mantissas
        out[s:s + RESCORE_BATCH] = prod.sum(axis=1).astype(np.float32)
    out += np.float32(0.0)   # -0.0 -> 0.0, so equal scores compare equal everywhere (Spark sorts too)
    return out


def first_k_per_group(groups: np.ndarray, ties: np.ndarray, scores: np.ndarray, k: int):
    """The ranking rule, in one place: per group, score desc then the smaller tie key; first k.

    Returns ``(index, pos)``: indices into the inputs of the kept entries, ordered by group and
    rank, and each one's 0-based rank within its group.
    """
    order = np.lexsort((ties, -scores, groups))
    g = groups[order]
    n = len(g)
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]]) if n else np.empty(0, np.int64)
    pos = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    keep = pos < k
    return order[keep], pos[keep]


def _first_k_per_row(rows: np.ndarray, cols: np.ndarray, scores: np.ndarray, k: int):
    idx, _ = first_k_per_group(rows, cols, scores, k)
    return rows[idx], cols[idx], scores[idx]


def exclusion_index(exclude_rows, exclude_cols) -> tuple[np.ndarray, np.ndarray]:
    """Excluded (row, col) pairs as int64 arrays sorted by row (for per-chunk slicing)."""
    ex_r = np.asarray(exclude_rows if exclude_rows is not None else [], dtype=np.int64)
    ex_c = np.asarray(exclude_cols if exclude_cols is not None else [], dtype=np.int64)
    if len(ex_r):
        o = np.argsort(ex_r, kind="stable")
        ex_r, ex_c = ex_r[o], ex_c[o]
    return ex_r, ex_c


def mask_excluded(s: np.ndarray, r0: int, r1: int, ex_r: np.ndarray, ex_c: np.ndarray) -> None:
    """Set the excluded pairs of rows ``r0:r1`` to -inf in the chunk ``s`` (in place)."""
    lo, hi = np.searchsorted(ex_r, [r0, r1])
    if hi > lo:
        s[ex_r[lo:hi] - r0, ex_c[lo:hi]] = -np.inf


def select_candidates(torch, s_np: np.ndarray, kk: int, take: int, margin) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of every finite score within ``margin`` of its row's ``kk``-th best.

    ``margin`` is a scalar or one value per row. ``take`` (>= kk) scores per row come from
    ``torch.topk``; a row whose whole window is within the margin is rescanned in full, so
    no score within the margin is ever missed, however many ties there are.
    """
    c, n = s_np.shape
    if take >= n:                                          # tiny book block: every column is a candidate
        rows, cols = np.nonzero(np.isfinite(s_np))
        return rows, cols
    vals, idx = torch.topk(torch.from_numpy(s_np), take, dim=1, largest=True, sorted=True)
    thr = (vals[:, kk - 1].numpy().astype(np.float64) - margin).astype(np.float32)
    vals_np, idx_np = vals.numpy(), idx.numpy()
    keep = (vals_np >= thr[:, None]) & np.isfinite(vals_np)
    full = vals_np[:, -1] >= thr                           # margin reaches past the topk window
    keep[full] = False
    rows, cols = np.nonzero(keep)
    cols = idx_np[rows, cols]
    if full.any():
        extra = [(np.full(len(cc), r), cc) for r in np.flatnonzero(full)
                 for cc in [np.flatnonzero((s_np[r] >= thr[r]) & np.isfinite(s_np[r]))]]
        rows = np.concatenate([rows, *[e[0] for e in extra]])
        cols = np.concatenate([cols, *[e[1] for e in extra]])
    return rows.astype(np.int64), cols.astype(np.int64)


def concat_parts(parts: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chunks' (rows, cols, scores) -> one (rows int32, cols int32, scores float32) triple."""
    if not parts:
        return np.empty(0, np.int32), np.empty(0, np.int32), np.empty(0, np.float32)
    return (np.concatenate([p[0] for p in parts]).astype(np.int32),
            np.concatenate([p[1] for p in parts]).astype(np.int32),
            np.concatenate([p[2] for p in parts]).astype(np.float32))


@dataclass(frozen=True)
class Prologue:
    """What every block-pair kernel works out first (:func:`prologue`): sizes, entries per row, the
    ``topk`` window and the excluded pairs sorted by row."""
    m: int                  # movie rows
    n: int                  # book rows
    kk: int                 # entries kept per row: min(k, n)
    take: int               # scores per row from ``torch.topk``: kk + EXTRA_CANDIDATES, at most n
    ex_r: np.ndarray        # excluded (row, col) pairs, sorted by row (:func:`exclusion_index`)
    ex_c: np.ndarray


def prologue(m: int, n: int, k: int, exclude_rows=None, exclude_cols=None,
             mismatch: Optional[str] = None) -> Optional[Prologue]:
    """The shared start of the block-pair kernels; ``None`` when there is nothing to score (an empty
    block, ``k <= 0``). ``mismatch``: the kernel's message when its blocks disagree in shape (raised
    as ``ValueError`` unless the pair is empty)."""
    if m == 0 or n == 0 or k <= 0:
        return None
    if mismatch:
        raise ValueError(mismatch)
    kk = min(k, n)
    ex_r, ex_c = exclusion_index(exclude_rows, exclude_cols)
    return Prologue(m, n, kk, min(n, kk + EXTRA_CANDIDATES), ex_r, ex_c)


def as_rows(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Dense blocks as C-contiguous float32 (views when they already are)."""
    return tuple(np.ascontiguousarray(a, dtype=np.float32) for a in arrays)


def block_topk(
    q: np.ndarray,
    b: np.ndarray,
    k: int,
    exclude_rows: Optional[np.ndarray] = None,
    exclude_cols: Optional[np.ndarray] = None,
    threads: Optional[int] = None,
    chunk_elems: int = CHUNK_ELEMS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact top-k of ``q @ b.T`` per row of ``q``; rows of both must be unit length.

    ``b``'s rows must be ordered by book_id: on equal (float32) score the smaller column
    wins. ``(exclude_rows[i], exclude_cols[i])`` pairs are never returned (masked before
    selection, so exclusion is exact). Returns ``(rows int32, cols int32, scores float32)``
    sorted by row, then rank; a row gets ``min(k, n - excluded)`` entries.
    """
    q, b = as_rows(q, b)
    p = prologue(q.shape[0], b.shape[0], k, exclude_rows, exclude_cols,
                 None if q.shape[1] == b.shape[1] else
                 f"dimension mismatch: movie block d={q.shape[1]}, book block d={b.shape[1]}")
    if p is None:
        return concat_parts([])
    margin = score_margin(q.shape[1])
    bt = np.ascontiguousarray(b.T)                             # (d, n): the fastest layout for sgemm
    chunk = max(1, min(p.m, chunk_elems // p.n))
    parts = []
    with compute_settings(threads) as torch:
        for r0 in range(0, p.m, chunk):
            r1 = min(p.m, r0 + chunk)
            s_np = q[r0:r1] @ bt                               # (c, n) float32 scores, numpy BLAS
            mask_excluded(s_np, r0, r1, p.ex_r, p.ex_c)
            rows, cols = select_candidates(torch, s_np, p.kk, p.take, margin)
            rows += r0
            parts.append(_first_k_per_row(rows, cols, _rescore(q, b, rows, cols), p.kk))
    return concat_parts(parts)


def merge_topk(
    movie_ids: np.ndarray, book_ids: np.ndarray, scores: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Merge partial top-k lists (any number per movie) into the final top-k.

    Same order as the Spark merge: per movie, score desc then book_id asc.
    Returns ``(movie_ids, ranks 1..k, book_ids, scores)``. Used by the single-process
    path (:func:`topk_local`) and the benchmark.
    """
    idx, pos = first_k_per_group(movie_ids, book_ids, scores, k)
    return movie_ids[idx], (pos + 1).astype(np.int32), book_ids[idx], scores[idx]


def topk_local(
    movie_ids, movie_vecs, book_ids, book_vecs, k: int, *,
    movie_block_rows: int, book_block_rows: int, threads: Optional[int] = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Single-process version of the job (same kernel, same results): for small catalogs and checks."""
    movie_ids = np.asarray(movie_ids, dtype=object)
    book_ids = np.asarray(book_ids, dtype=object)
    qn, qv = normalize_rows(movie_vecs)
    bn, bv = normalize_rows(book_vecs)
    movie_ids, qn = movie_ids[qv], qn[qv]
    order = np.argsort(book_ids[bv].astype(str), kind="stable")
    book_ids, bn = book_ids[bv][order], bn[bv][order]
    parts = []
    for m0 in range(0, len(qn), movie_block_rows):
        for b0 in range(0, len(bn), book_block_rows):
            r, c, s = block_topk(qn[m0:m0 + movie_block_rows], bn[b0:b0 + book_block_rows], k, threads=threads)
            parts.append((movie_ids[m0 + r], book_ids[b0 + c], s))
    if not parts:
        e = np.empty(0, dtype=object)
        return e, np.empty(0, np.int32), e, np.empty(0, np.float32)
    mv = np.concatenate([p[0] for p in parts]).astype(str)
    bk = np.concatenate([p[1] for p in parts]).astype(str)
    sc = np.concatenate([p[2] for p in parts])
    return merge_topk(mv, bk, sc, k)


def blocks_needed(rows: int, block_rows: int) -> int:
    """Number of blocks so that hash-assigned blocks rarely exceed ``block_rows``.

    Hash assignment gives binomial block sizes (sd ~ sqrt(mean)); aiming at
    ``block_rows - 4 sqrt(block_rows)`` keeps the hard cap (oversized blocks are split)
    a rare event without halving the blocks.
    """
    if rows <= 0:
        return 0
    target = max(block_rows / 2.0, block_rows - 4.0 * math.sqrt(block_rows))
    return max(1, math.ceil(rows / target))
