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

1. **Screen**: an approximate score ``o`` for every pair with a proven bound on
   ``|o - s|`` (``s`` the published score, below), and **select** every book whose
   screened score can still be in the row's top k. Two screens (``score.precision``):

   * ``fp32``: the float32 BLAS product ``Q @ B.T`` (numpy's BLAS or torch's, whichever is faster on the
     machine, :func:`fp32_matmul`; limited to the task's CPUs). ``|o - s| <= eps`` for every pair, ``eps =
     score_margin(d) / 2`` (``d * 2**-24`` plus rounding, see :func:`score_margin`; any summation order);
   * ``bf16-screen``: torch's bf16 matmul of bf16 copies of the unit rows (float32
     accumulation, bf16 result; faster than float32 where the CPU has native bf16,
     docs/BENCHMARKS.md). Its bound is per movie row and wider (:class:`Bf16Screen`: the inputs' rounding
     to bf16 measured as norms, the float32 accumulation, the rounding of the result).

   ``auto`` picks ``bf16-screen`` where bf16 is native (:func:`resolve_score_precision`).
   Candidates: with ``t`` the row's k-th best screened score and ``t*`` its k-th best
   exact score, the k books screened ``>= t`` have ``s >= t - eps``, so ``t* >= t - eps``,
   and every true top-k book (``s >= t*``) has ``o >= t* - eps >= t - 2 eps``: the
   candidates are every ``o >= t - 2 eps`` (the bf16 screen's threshold has the same
   argument with its own error, :func:`bf16_threshold`). Both screens therefore yield
   the same top-k, by construction.
2. **Rescore exactly** the few candidates per movie in float64 (products of float32
   values are exact in float64; the sum's error is ~1e-14), round to float32 --
   the published score -- and rank by (score desc, book_id asc).

The published score is therefore the cosine of the two float32-normalised vectors
computed to float32 precision, independent of blocking, BLAS, threads and screen;
equal vectors get bit-identical scores, and ties are broken by the smaller book_id
(Python/Arrow string order = UTF-8 byte order, the same order Spark SQL uses).
Block columns must be sorted by book_id (the block builder does this) because the
kernel breaks ties by column index.

Selection without a sort of the row (:func:`select_candidates`): a lower bound of each row's
k-th best comes from the maxima of ``max(64, 8k)`` column groups (one vectorised pass over the
chunk: the k-th largest of k distinct elements of the row is <= the row's k-th largest); only
the groups whose maximum reaches the threshold of that bound are read to collect a small
superset of the candidates, in which the exact k-th best is found (every top-k score is in it),
and the superset is cut to the threshold of the exact k-th best. No row is ever rescanned,
however many ties or however wide the margin.

The same selection and ranking (:func:`first_k_per_group`) serve the lexical kernel
(``lfr.score.sparse``, exact scores: margin 0) and the hybrid kernel (``lfr.score.hybrid``,
a per-movie margin from the dense screen's error, :meth:`Fp32Screen.error`).

Device (:func:`kernel_device`): the screens' matrix products run on the task's GPU (``cuda:<address>`` from
Spark's task resources) when torch sees CUDA, else on the CPU; every chunk comes back to the host for the
selection and the float64 rescoring, so the top-k does not depend on the device either.

Process-wide settings (torch's thread count and float32 matmul precision, numpy's BLAS
threads, CUDA's reduced-precision bf16 reductions) are changed only inside :func:`compute_settings`, which
restores the previous values.

Cost: the matrix product dominates (``2 m n d`` flops); docs/BENCHMARKS.md has the measured
shares of the product, the selection and the rescoring. Memory is bounded by ``chunk_elems``
float32 scores per step (rows of ``S`` are computed in chunks into one reused buffer).
"""
from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Union

import numpy as np

log = logging.getLogger(__name__)

#: ``score.precision`` values; ``auto`` is resolved per machine by :func:`resolve_score_precision`.
PRECISIONS = ("auto", "fp32", "bf16-screen")
#: the libraries that can compute the float32 screen on a CPU (:func:`fp32_matmul`)
FP32_MATMULS = ("numpy", "torch")
#: float32 scores held at once per kernel call (64 MiB); bounds memory independently of block sizes.
CHUNK_ELEMS = 1 << 24
#: candidates rescored in float64 at once: the float64 product buffer (3 MiB at d=384) stays in cache.
RESCORE_BATCH = 1 << 10
#: column groups per row (at least this many, and at least ``GROUPS_PER_ENTRY`` per kept entry) whose
#: maxima bound the row's k-th best score from below (:func:`kth_lower_bound`).
GROUPS = 64
GROUPS_PER_ENTRY = 8
#: unit roundoff of bfloat16 (8 significant bits, round to nearest even)
BF16_U = 2.0 ** -8

#: a threshold rule: each row's k-th best screened score -> the lowest screened score that can still be in its
#: top k (float64 arrays; non-decreasing, ``-inf`` -> ``-inf``)
Threshold = Callable[[np.ndarray], np.ndarray]


def score_margin(dim: int, scale: float = 1.0) -> float:
    """``2 * eps``: twice a bound on |float32 BLAS dot - float32-rounded exact dot| for rows whose norms
    multiply to at most ``scale`` (1: unit vectors).

    float32 dot of length d, any summation order: error <= d * u * sum|x_i y_i| <= d * u * |x| |y|
    (u = 2**-24; 5% slack for the normalisation's own rounding), plus half an ulp of the rounded
    exact score (<= 2**-25 |x| |y|) -- taken generously as 2**-22 |x| |y|. ``scale`` is above 1 for the
    hub-aware rows (:func:`lfr.score.hubs.augment`: a unit row plus one column).
    """
    return 2.0 * scale * (dim * 2.0 ** -24 * 1.05 + 2.0 ** -22)


def max_norm(x: np.ndarray) -> float:
    """An upper bound of the largest row norm of ``x`` (float64 sums of squares, 2**-40 relative slack)."""
    if not len(x):
        return 0.0
    return float(np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64).max()) * (1.0 + 2.0 ** -40))


def norm_scale(q: np.ndarray, b: np.ndarray) -> float:
    """``max(1, max|q_i| max|b_j|)``: the ``scale`` of :func:`score_margin` for a block pair (1 for unit rows,
    so plain cosine blocks keep the unit-vector margin)."""
    return max(1.0, max_norm(q) * max_norm(b))


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
      fp32 products run as bf16/tf32, and the candidate margin assumes true float32 products; on CUDA
      also no reduced-precision reductions in bf16 matmuls (the bf16 bound assumes float32 accumulation);
    * torch's and numpy BLAS's thread counts limited to the task's CPUs (Spark runs several
      tasks per executor), when ``threads`` is given.

    Every value is restored on exit, so a caller's own settings survive a kernel call.
    """
    import torch

    prev_precision, prev_threads = torch.get_float32_matmul_precision(), torch.get_num_threads()
    prev_reduction = torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction
    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
    if threads:
        torch.set_num_threads(int(threads))
    try:
        with _blas_threads(threads):
            yield torch
    finally:
        torch.set_float32_matmul_precision(prev_precision)
        torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = prev_reduction
        torch.set_num_threads(prev_threads)


def _blas_threads(threads: Optional[int]):
    """Limit numpy's BLAS to ``threads`` (threadpoolctl restores the previous limit on exit)."""
    controller = _blas_controller() if threads else None
    if controller is None:
        return contextlib.nullcontext()
    return controller.limit(limits=int(threads), user_api="blas")


@functools.lru_cache(maxsize=1)
def _blas_controller():
    """The process's one ``threadpoolctl.ThreadpoolController`` (None without threadpoolctl: BLAS keeps its
    default thread count). Building one walks every shared library the process has loaded, a few hundred
    once torch is imported: once per worker, not once per kernel call. numpy's BLAS is loaded with numpy,
    before the first call."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


@functools.lru_cache(maxsize=None)
def compiled():
    """:mod:`lfr.score.jit` (numba's compiled loops, the same bits as the numpy/scipy code), or None where numba
    does not import: the kernels then run numpy and scipy."""
    try:
        from lfr.score import jit
        return jit
    except ImportError as exc:                            # numba absent (or unusable here): numpy / scipy, slower
        log.info("score kernels without compiled loops (numba unavailable: %s)", exc)
        return None


def _rescore(q: np.ndarray, b: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """float32-rounded float64 dot products of ``q[rows]`` and ``b[cols]`` (exact to float32).

    Each product is exact in float64 (24+24 bit mantissas) and each row's sum is numpy's pairwise
    sum over the d products, so a pair gets the same bits in any batch. Small batches into one
    reused buffer keep the float64 products in cache; with numba (:func:`compiled`) one loop does the same
    without gathering the rows."""
    out = np.empty(len(rows), dtype=np.float32)
    jit = compiled()
    if jit is not None:
        jit.rescore(q, b, rows, cols, out, np.empty(q.shape[1]))
        return out
    buf = np.empty((min(len(rows), RESCORE_BATCH), q.shape[1]), dtype=np.float64)
    for s in range(0, len(rows), RESCORE_BATCH):
        r, c = rows[s:s + RESCORE_BATCH], cols[s:s + RESCORE_BATCH]
        prod = buf[:len(r)]
        np.multiply(np.take(q, r, axis=0), np.take(b, c, axis=0), out=prod, dtype=np.float64)
        out[s:s + RESCORE_BATCH] = prod.sum(axis=1)
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


def mask_excluded(s, r0: int, r1: int, ex_r: np.ndarray, ex_c: np.ndarray) -> None:
    """Set the excluded pairs of rows ``r0:r1`` to -inf in the chunk ``s`` (in place; float32 array or bf16
    tensor)."""
    lo, hi = np.searchsorted(ex_r, [r0, r1])
    if hi > lo:
        chunk = _chunk(s)
        chunk.values[ex_r[lo:hi] - r0, ex_c[lo:hi]] = chunk.minus_inf


# ---------------------------------------------------------------- selection


class _Float32Chunk:
    """A chunk of float32 scores (numpy), as the selection reads it: group maxima are true maxima."""
    minus_inf = np.float32(-np.inf)

    def __init__(self, s: np.ndarray):
        self.values = s

    def group_reps(self, gs: int, g: int) -> np.ndarray:
        """One score per column group (its maximum; the last group runs to the row's end), float32."""
        return np.maximum.reduceat(self.values, np.arange(g) * gs, axis=1)

    def key(self, thr: np.ndarray) -> np.ndarray:
        """Per row the value :meth:`at_least` compares raw scores with (float32: the threshold itself)."""
        return thr

    @staticmethod
    def at_least(raw: np.ndarray, key: np.ndarray) -> np.ndarray:
        """``raw >= key``, elementwise (broadcast)."""
        return raw >= key

    def floats(self, raw: np.ndarray) -> np.ndarray:
        return raw


class _Bf16Chunk:
    """A chunk of bf16 scores (a torch tensor), read through its int16 bit patterns (numpy, no copy).

    bf16 is sign + magnitude: as int16, non-negative scores sort in float order, negative ones (sign bit set,
    ``-32768 + magnitude``) in reverse. So a group's true maximum is its int16 maximum when that is
    non-negative and its int16 minimum (the smallest magnitude) when every score of the group is negative;
    and comparisons with a threshold follow :meth:`ordered`, which maps negative patterns to
    ``-magnitude`` (``-0.0`` and ``0.0`` alike), an order-preserving int16 key (:meth:`at_least` compares
    without mapping where it can). Scores can be negative in whole rows: hub-aware scores (``cos - w r``)
    are, for most films."""
    minus_inf = np.int16(-128)                                # 0xFF80

    def __init__(self, t):
        import torch

        self.values = t.view(torch.int16).numpy()

    def group_reps(self, gs: int, g: int) -> np.ndarray:
        starts = np.arange(g) * gs
        hi = np.maximum.reduceat(self.values, starts, axis=1)
        negative = hi < 0
        if negative.any():                                    # all-negative groups: the smallest magnitude
            hi = np.where(negative, np.minimum.reduceat(self.values, starts, axis=1), hi)
        return bf16_bits_to_float32(hi)

    def key(self, thr: np.ndarray) -> np.ndarray:
        """``thr`` (float32) rounded down to bf16, as an :meth:`ordered` key: truncating the low 16 bits
        rounds toward zero, so a negative ``thr`` with bits dropped takes one more unit of magnitude."""
        b = np.ascontiguousarray(thr, dtype=np.float32).view(np.int32)
        hi = (b >> 16).astype(np.int16)
        hi += ((b < 0) & ((b & 0xFFFF) != 0)).astype(np.int16)
        return self.ordered(hi)

    @staticmethod
    def ordered(raw: np.ndarray) -> np.ndarray:
        return np.where(raw < 0, (raw ^ np.int16(0x7FFF)) + np.int16(1), raw).astype(np.int16, copy=False)

    @staticmethod
    def at_least(raw: np.ndarray, key: np.ndarray) -> np.ndarray:
        """``ordered(raw) >= key`` (``key``: :meth:`key` values, broadcast) as one range test on the raw patterns
        read as uint16, without mapping them: a pattern ``u`` passes iff ``lo <= u <= hi``, where a positive
        key passes the non-negative patterns from ``key`` up (``[key, 32767]``), a negative one (``-magnitude``)
        every non-negative pattern and the negative ones (``32768 + magnitude``) up to its magnitude
        (``[0, 32768 - key]``), a zero key the non-negative patterns and ``-0.0`` (``[0, 32768]``). Below ``lo``,
        ``u - lo`` wraps around, so ``u - lo <= hi - lo`` is the whole test."""
        k = key.astype(np.int32)
        lo = np.where(k > 0, k, 0)
        hi = np.where(k > 0, 32767, 32768 - k)
        return raw.view(np.uint16) - lo.astype(np.uint16) <= (hi - lo).astype(np.uint16)

    def floats(self, raw: np.ndarray) -> np.ndarray:
        return bf16_bits_to_float32(raw)


def bf16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """bf16 bit patterns (int16) -> the same values as float32 (exact: bf16 is float32's top half)."""
    return (bits.astype(np.int32) << 16).view(np.float32)


def _chunk(s) -> Union[_Float32Chunk, _Bf16Chunk]:
    return _Float32Chunk(s) if isinstance(s, np.ndarray) else _Bf16Chunk(s)


def below(margin) -> Threshold:
    """The threshold rule 'within ``margin`` of the k-th best' (a scalar or one value per row)."""
    return lambda t: t - margin


def floor32(x: np.ndarray) -> np.ndarray:
    """float64 -> the largest float32 not above it (a threshold rounded so that it never drops a candidate)."""
    x32 = x.astype(np.float32)
    return np.where(x32 > x, np.nextafter(x32, np.float32(-np.inf)), x32)


def flat_nonzero(mask: np.ndarray) -> np.ndarray:
    """``np.flatnonzero`` of a sparse C-contiguous bool mask, scanning 8 bytes at a time (uint64 words)."""
    flat = mask.reshape(-1)
    n8 = len(flat) // 8 * 8
    words = np.flatnonzero(flat[:n8].view(np.uint64))
    idx = (words[:, None] * 8 + np.arange(8)).reshape(-1)
    idx = idx[flat[idx]]
    if n8 < len(flat):
        idx = np.concatenate([idx, n8 + np.flatnonzero(flat[n8:])])
    return idx


def column_groups(n: int, kk: int) -> tuple[int, int]:
    """``(size, count)`` of the column groups of a row of ``n`` scores: at least ``max(64, 8 kk)`` groups (all
    ``n`` columns when fewer), of one size, the last one also holding the ``n mod size`` remaining columns."""
    gs = max(1, n // max(GROUPS, GROUPS_PER_ENTRY * kk))
    return gs, n // gs


def kth_per_row(rows: np.ndarray, vals: np.ndarray, kk: int, c: int) -> np.ndarray:
    """Per row ``0..c-1``, the ``kk``-th largest of its entries in ``(rows, vals)`` (``-inf`` with fewer)."""
    order = np.lexsort((-vals, rows))
    counts = np.bincount(rows, minlength=c)
    starts = np.cumsum(counts) - counts
    t = np.full(c, -np.inf)
    ok = counts >= kk
    t[ok] = vals[order[starts[ok] + kk - 1]]
    return t


def _at_least(chunk, thr: np.ndarray, reps: np.ndarray, gs: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of every score ``>= thr`` of its row: in the groups whose maximum reaches ``thr`` (a
    strided view, no copy of the chunk) and in the remaining columns after the last whole group."""
    v = chunk.values
    c, n = v.shape
    g = reps.shape[1]
    key = chunk.key(thr)
    hr, hg = np.nonzero(reps >= thr[:, None])
    groups = np.lib.stride_tricks.as_strided(v, (c, g, gs), (v.strides[0], gs * v.itemsize, v.itemsize))
    flat = flat_nonzero(chunk.at_least(groups[hr, hg], key[hr, None]))
    i, j = flat // gs, flat % gs
    rows, cols = [hr[i]], [hg[i] * gs + j]
    if g * gs < n:
        tr, tc = np.nonzero(chunk.at_least(v[:, g * gs:], key[:, None]))
        rows.append(tr)
        cols.append(tc + g * gs)
    return np.concatenate(rows), np.concatenate(cols)


def select_candidates(s, kk: int, threshold: Threshold) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of every finite score ``>= threshold(its row's kk-th best score)``.

    ``s``: a chunk of scores, float32 array or bf16 tensor, excluded pairs at -inf; ``threshold``
    non-decreasing. The maxima of the row's column groups (:func:`column_groups`: one vectorised pass) are
    ``g >= kk`` distinct elements of the row, so their ``kk``-th largest is a lower bound of the row's
    ``kk``-th best, and close to it (the top scores rarely share a group). Every score ``>=`` the threshold
    of that bound -- a superset of the candidates, found in the groups whose maximum reaches it -- holds
    the row's top ``kk``, so the exact ``kk``-th best is found in it, and its threshold cuts the superset to
    the candidates. Rows with fewer than ``kk`` finite scores keep all of them."""
    chunk = _chunk(s)
    c, n = chunk.values.shape
    gs, g = column_groups(n, kk)
    reps = chunk.group_reps(gs, g)
    lower = np.partition(reps, g - kk, axis=1)[:, g - kk].astype(np.float64)
    rows, cols = _at_least(chunk, floor32(threshold(lower)), reps, gs)
    vals = chunk.floats(chunk.values[rows, cols])
    fin = np.isfinite(vals)
    rows, cols, vals = rows[fin], cols[fin], vals[fin]
    keep = vals >= floor32(threshold(kth_per_row(rows, vals, kk, c)))[rows]
    return rows[keep], cols[keep]


# ---------------------------------------------------------------- screens (score.precision)


@functools.lru_cache(maxsize=None)
def resolve_score_precision(requested: str, device: str) -> tuple[str, str]:
    """``(fp32 | bf16-screen, why)`` for a ``score.precision`` value on ``device`` (``cpu`` or ``cuda``).

    ``auto``: ``bf16-screen`` where bf16 matmuls are native -- a CUDA device with bf16, or a CPU for which
    ``model.precision: auto`` picks bf16 (:func:`lfr.model.text.resolve_precision`: AVX512_BF16 or AMX-BF16,
    not capped); emulated bf16 is slower than float32, so ``fp32`` elsewhere. Explicit values win. Either
    way the top-k is the same; only the speed differs. Logged once per process and value."""
    if requested not in PRECISIONS:
        raise ValueError(f"score.precision must be one of {PRECISIONS}, got {requested!r}")
    if requested != "auto":
        resolved, why = requested, f"score.precision={requested} (explicit)"
    elif device == "cuda":
        import torch

        native = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        resolved = "bf16-screen" if native else "fp32"
        why = f"auto: CUDA device {'with' if native else 'without'} bf16"
    else:
        from lfr.model.text import resolve_precision

        model_precision, why = resolve_precision("auto")
        resolved = "bf16-screen" if model_precision == "bf16" else "fp32"
    log.info("score kernel precision %s (%s)", resolved, why)
    return resolved, why


class Fp32Screen:
    """float32 BLAS scores (into one reused chunk buffer) through numpy's BLAS, or through torch's (``torch``
    given: :func:`fp32_matmul` found it faster here); every pair within ``score_margin(d, scale) / 2`` of its
    published score (``scale``: :func:`norm_scale`, 1 for unit rows) either way."""

    def __init__(self, q: np.ndarray, b: np.ndarray, chunk_rows: int, torch=None):
        self.q, self.bt = q, b.T                 # numpy hands BLAS the transposed view: no copy
        self.buf = np.empty((chunk_rows, b.shape[0]), dtype=np.float32)
        self.scale = norm_scale(q, b)
        self.eps = score_margin(q.shape[1], self.scale) / 2.0
        self.torch = torch
        if torch is not None:                    # views of the same memory, written by torch.mm
            self.qt, self.btt, self.buft = torch.from_numpy(q), torch.from_numpy(b).t(), torch.from_numpy(self.buf)

    def scores(self, r0: int, r1: int) -> np.ndarray:
        out = self.buf[:r1 - r0]
        if self.torch is None:
            np.matmul(self.q[r0:r1], self.bt, out=out)
        else:
            self.torch.mm(self.qt[r0:r1], self.btt, out=self.buft[:r1 - r0])
        return out

    def float32(self, s) -> np.ndarray:
        return s

    def bf16_bits(self, s) -> None:
        """A float32 screen has no bf16 bit patterns (:meth:`Bf16Screen.bf16_bits`)."""
        return None

    def error(self, r0: int, r1: int) -> np.ndarray:
        """Per movie row, a bound on |screened - published| for every book of the block."""
        return np.full(r1 - r0, self.eps)

    def threshold(self, r0: int, r1: int) -> Threshold:
        return below(2.0 * self.eps)

    def magnitude(self, r0: int, r1: int) -> np.ndarray:
        """Per movie row, a bound on |published score| over the block (|x| |y|, plus the error)."""
        return np.full(r1 - r0, self.scale + self.eps)


class TorchFp32Screen(Fp32Screen):
    """The float32 screen through torch on ``device`` (a GPU: ``cuda:<address>``): the same bound as
    :class:`Fp32Screen` (float32 products and accumulation, in any order; TF32 is off under
    :func:`compute_settings`), each chunk copied back to the host for the selection."""

    def __init__(self, torch, q: np.ndarray, b: np.ndarray, chunk_rows: int, device: str):
        super().__init__(q, b, chunk_rows)
        self.qd = torch.from_numpy(q).to(device)
        self.btd = torch.from_numpy(b).to(device).t().contiguous()
        self.out = torch.empty((chunk_rows, b.shape[0]), dtype=torch.float32, device=device)
        self.host = torch.from_numpy(self.buf)
        self.mm = torch.mm

    def scores(self, r0: int, r1: int) -> np.ndarray:
        out = self.out[:r1 - r0]
        self.mm(self.qd[r0:r1], self.btd, out=out)
        self.host[:r1 - r0].copy_(out)
        return self.buf[:r1 - r0]


class Bf16Screen:
    """bf16 scores: torch's matmul of bf16 copies of the unit rows (converted once per block pair), float32
    accumulation, bf16 result, into one reused chunk buffer.

    The error of a screened score ``o`` against the published score ``s`` (``x``, ``y``: the float32 unit
    rows; ``x~ = bf16(x)``; ``dx = x - x~``, exact in float32; ``f``: the float32 sum before the result's
    rounding):

    * inputs: ``x.y - x~.y~ = x~.dy + dx.y~ + dx.dy``, so (Cauchy-Schwarz) ``|x.y - x~.y~| <= |x~| |dy| +
      |dx| |y~| + |dx| |dy|``, with the norms measured per movie row and as maxima over the book block.
      The worst case is ``|dx| <= u |x|`` (u = 2**-8, the bf16 unit roundoff, so ``2u + u**2`` for unit
      rows); the measured norms are about half that (half as many candidates to rescore), and they hold
      whatever rounding the conversion uses;
    * accumulation: products of bf16 values are exact in float32, and a float32 sum of d terms in any order
      (AVX512-BF16 / AMX dot products, a blocked GEMM) errs by at most ``gamma_d sum|x~_i y~_i| <=
      gamma_d |x~| |y~|``, ``gamma_d = d 2**-24 / (1 - d 2**-24)``; denormals flushed to zero add at most
      ``3 d 2**-126``. (A GPU port must keep float32 accumulation: no reduced-precision reductions.)
    * the published score is the float64 sum (error ~d 2**-53) rounded to float32 (<= 2**-24 |s|): with the
      denormal terms and bf16's absolute rounding below its normal range (2**-134), all within
      ``2**-22 max(1, |x~| |y~|)`` (rows are unit, or a unit row plus one column for the hub-aware score);

    so ``|f - s| <= e`` for every book of the block (``e`` per movie row: the three terms from upper bounds
    of the norms, :func:`_bf16_rows`, times ``1 + 2**-20`` for the float64 arithmetic). The result is
    rounded to bf16 (to nearest): ``|o - f| <= u |f|``, so ``|f| <= |o| / (1 - u)`` and ``|o - s| <= e +
    u' |o|``, ``u' = u / (1 - u)`` -- relative to the screened score, which :func:`bf16_threshold` turns
    into the candidate rule. The
    hybrid, which mixes the dense score with the lexical one, takes the uniform ``e + u |f|max``
    (:meth:`error`, ``|f| <= (1 + gamma_d) |x~| |y~|``).
    """

    def __init__(self, torch, q: np.ndarray, b: np.ndarray, chunk_rows: int, device: str = "cpu"):
        qb, nx, dx = _bf16_rows(torch, q)
        bb, ny, dy = _bf16_rows(torch, b)
        self.qb = qb.to(device)
        self.bbt = bb.t().contiguous().to(device)             # (d, n): the faster layout for the bf16 matmul
        self.buf = torch.empty((chunk_rows, b.shape[0]), dtype=torch.bfloat16)
        self.out = self.buf if device == "cpu" else torch.empty_like(self.buf, device=device)
        self.mm = torch.mm
        ny, dy = ny.max(), dy.max()
        d = q.shape[1]
        gamma = d * 2.0 ** -24 / (1.0 - d * 2.0 ** -24)
        slack = 1.0 + 2.0 ** -20
        self.e = slack * (nx * dy + dx * ny + dx * dy + gamma * nx * ny) + 2.0 ** -22 * np.maximum(1.0, nx * ny)
        self.f_max = slack * (1.0 + gamma) * nx * ny

    def scores(self, r0: int, r1: int):
        out = self.out[:r1 - r0]
        self.mm(self.qb[r0:r1], self.bbt, out=out)
        if out is not self.buf[:r1 - r0]:
            self.buf[:r1 - r0].copy_(out)                     # the selection reads the chunk on the host
        return self.buf[:r1 - r0]

    def float32(self, s) -> np.ndarray:
        return s.float().numpy()

    def bf16_bits(self, s) -> np.ndarray:
        """The chunk's bf16 scores as their bit patterns (uint16, no copy): the high half of each float32."""
        import torch

        return s.view(torch.int16).numpy().view(np.uint16)

    def error(self, r0: int, r1: int) -> np.ndarray:
        """Per movie row, a bound on |screened - published| for every book of the block."""
        return self.e[r0:r1] + BF16_U * self.f_max[r0:r1]

    def threshold(self, r0: int, r1: int) -> Threshold:
        e = self.e[r0:r1]
        return lambda t: bf16_threshold(t, e)

    def magnitude(self, r0: int, r1: int) -> np.ndarray:
        """Per movie row, a bound on |published score| over the block (``|f| + e``)."""
        return self.f_max[r0:r1] + self.e[r0:r1]


def _bf16_rows(torch, x: np.ndarray, rows: int = 2048):
    """``(bf16 copy of x, |bf16(x)|, |x - bf16(x)|)``: the copy as a torch tensor, upper bounds of the two norms
    per row (float64), ``rows`` rows at a time so that the temporaries stay in cache. ``x - bf16(x)`` is exact
    in float32; a float32 norm of d terms errs by less than ``(d + 2) 2**-24`` relative (the squares, the
    sum in any order, the root), so the computed norms are inflated by twice that, plus 2**-60 (underflow)."""
    xt = torch.from_numpy(x)
    xb = torch.empty(x.shape, dtype=torch.bfloat16)
    norms = np.empty((2, len(x)), dtype=np.float32)
    for r0 in range(0, len(x), rows):
        part, part_b = xt[r0:r0 + rows], xb[r0:r0 + rows]
        part_b.copy_(part)
        norms[0, r0:r0 + rows] = torch.linalg.vector_norm(part_b, dim=1, dtype=torch.float32).numpy()
        norms[1, r0:r0 + rows] = torch.linalg.vector_norm(part - part_b, dim=1).numpy()
    inflate = 1.0 + (x.shape[1] + 2) * 2.0 ** -23
    return xb, norms[0].astype(np.float64) * inflate + 2.0 ** -60, norms[1].astype(np.float64) * inflate + 2.0 ** -60


def bf16_threshold(t: np.ndarray, e: np.ndarray) -> np.ndarray:
    """The bf16 screen's candidate rule: the lowest screened score a true top-k book can have, from the row's
    k-th best screened score ``t`` and its error ``e`` (:class:`Bf16Screen`: ``|o - s| <= e + u' |o|``).

    The k books screened ``>= t`` have ``s >= o - u'|o| - e >= t - u'|t| - e`` (``o - u'|o|`` increases with
    ``o``), so the k-th best exact score ``t* >= t - u'|t| - e``; a true top-k book has ``s >= t*``, so
    ``o + u'|o| >= s - e >= t - u'|t| - 2e =: v`` and, ``o + u'|o|`` increasing, ``o >= v / (1 + u')``
    (``v >= 0``) or ``v / (1 - u')`` (``v < 0``). Non-decreasing in ``t``; ``-inf`` stays ``-inf``.
    """
    up = BF16_U / (1.0 - BF16_U)
    t = np.asarray(t, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        v = t - up * np.abs(t) - 2.0 * e
        thr = np.where(v >= 0, v / (1.0 + up), v / (1.0 - up))
    return np.where(np.isfinite(t), thr, -np.inf)


Screen = Union[Fp32Screen, Bf16Screen]


def dense_screen(torch, q: np.ndarray, b: np.ndarray, chunk_rows: int, precision: str,
                 device: Optional[str] = None) -> Screen:
    """The screen of ``score.precision`` for one block pair, on ``device`` (default :func:`kernel_device`: the
    task's GPU where torch sees CUDA, else the CPU; ``auto`` resolved for that device)."""
    device = device or kernel_device()
    resolved, _ = resolve_score_precision(precision, "cuda" if device.startswith("cuda") else "cpu")
    if resolved == "bf16-screen":
        return Bf16Screen(torch, q, b, chunk_rows, device)
    if device != "cpu":
        return TorchFp32Screen(torch, q, b, chunk_rows, device)
    return Fp32Screen(q, b, chunk_rows, torch if fp32_matmul(torch.get_num_threads()) == "torch" else None)


@functools.lru_cache(maxsize=None)
def fp32_matmul(threads: int) -> str:
    """The faster float32 matmul on this CPU with ``threads`` threads, ``numpy`` or ``torch``: measured once per
    process (and thread count) on a screen-shaped product of 1.6 GFLOP, the best of six calls per library (about
    a tenth of a second on one core). Which one wins depends on the CPU, the thread count and the libraries'
    builds (docs/BENCHMARKS.md, docs/OPERATIONS.md). The top-k does not depend on it: both multiply and add in
    float32, in some order, within the same bound. Call it under :func:`compute_settings` (the thread limits apply
    to both)."""
    import torch

    rng = np.random.default_rng(0)
    q, b = rng.standard_normal((256, 384), dtype=np.float32), rng.standard_normal((8192, 384), dtype=np.float32)
    out = np.empty((len(q), len(b)), dtype=np.float32)
    qt, bt, outt = torch.from_numpy(q), torch.from_numpy(b).t(), torch.from_numpy(out)
    runs = {"numpy": lambda: np.matmul(q, b.T, out=out), "torch": lambda: torch.mm(qt, bt, out=outt)}
    best = dict.fromkeys(runs, math.inf)
    # each library's calls in a row: the other pool's idle threads, still spinning, slow down the first ones
    for _ in range(2):
        for name, run in runs.items():
            for _ in range(3):
                t0 = time.perf_counter()
                run()
                best[name] = min(best[name], time.perf_counter() - t0)
    choice = min(FP32_MATMULS, key=best.get)
    log.info("score kernel fp32 matmul: %s (%d thread(s); numpy %.1f ms, torch %.1f ms on 256 x 384 x 8192)",
             choice, threads, 1e3 * best["numpy"], 1e3 * best["torch"])
    return choice


def task_gpus() -> list[str]:
    """The GPU addresses Spark assigned to the running task (``spark.task.resource.gpu.amount``), or []."""
    try:
        from pyspark import TaskContext
    except ImportError:
        return []
    ctx = TaskContext.get()
    gpu = ctx.resources().get("gpu") if ctx is not None else None
    return list(gpu.addresses) if gpu is not None else []


def kernel_device() -> str:
    """``cuda:<address>`` of the task's first assigned GPU (``cuda`` when Spark assigned none) where torch sees
    CUDA; ``cpu`` otherwise -- also when Spark assigned a GPU that torch cannot use (warned once per process:
    a CPU-only torch, no driver), so a GPU profile on CPU executors is slow, never wrong."""
    import torch

    gpus = task_gpus()
    if torch.cuda.is_available():
        device = f"cuda:{gpus[0]}" if gpus else "cuda"
        _note_device(device, f"task GPU addresses {gpus}" if gpus else "no GPU assigned by Spark")
        return device
    if gpus:
        _note_device("cpu", f"this task was assigned GPU(s) {gpus} but torch {torch.__version__} sees no CUDA "
                            "device; falling back to CPU", warn=True)
    return "cpu"


@functools.lru_cache(maxsize=None)
def _note_device(device: str, why: str, warn: bool = False) -> None:
    (log.warning if warn else log.info)("score kernel on %s (%s)", device, why)


def concat_parts(parts: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chunks' (rows, cols, scores) -> one (rows int32, cols int32, scores float32) triple."""
    if not parts:
        return np.empty(0, np.int32), np.empty(0, np.int32), np.empty(0, np.float32)
    return (np.concatenate([p[0] for p in parts]).astype(np.int32),
            np.concatenate([p[1] for p in parts]).astype(np.int32),
            np.concatenate([p[2] for p in parts]).astype(np.float32))


@dataclass(frozen=True)
class Prologue:
    """What every block-pair kernel works out first (:func:`prologue`): sizes, entries per row and the
    excluded pairs sorted by row."""
    m: int                  # movie rows
    n: int                  # book rows
    kk: int                 # entries kept per row: min(k, n)
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
    ex_r, ex_c = exclusion_index(exclude_rows, exclude_cols)
    return Prologue(m, n, min(k, n), ex_r, ex_c)


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
    *,
    precision: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact top-k of ``q @ b.T`` per row of ``q``; rows of both must be unit length.

    ``b``'s rows must be ordered by book_id: on equal (float32) score the smaller column
    wins. ``(exclude_rows[i], exclude_cols[i])`` pairs are never returned (masked before
    selection, so exclusion is exact). ``precision``: ``score.precision``, the screen (the
    result does not depend on it). Returns ``(rows int32, cols int32, scores float32)``
    sorted by row, then rank; a row gets ``min(k, n - excluded)`` entries.
    """
    q, b = as_rows(q, b)
    p = prologue(q.shape[0], b.shape[0], k, exclude_rows, exclude_cols,
                 None if q.shape[1] == b.shape[1] else
                 f"dimension mismatch: movie block d={q.shape[1]}, book block d={b.shape[1]}")
    if p is None:
        return concat_parts([])
    chunk = max(1, min(p.m, chunk_elems // p.n))
    parts = []
    with compute_settings(threads) as torch:
        screen = dense_screen(torch, q, b, chunk, precision)
        for r0 in range(0, p.m, chunk):
            r1 = min(p.m, r0 + chunk)
            s = screen.scores(r0, r1)
            mask_excluded(s, r0, r1, p.ex_r, p.ex_c)
            rows, cols = select_candidates(s, p.kk, screen.threshold(r0, r1))
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
    movie_block_rows: int, book_block_rows: int, precision: str, threads: Optional[int] = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Single-process version of the job (same kernel, same results): for small catalogs and checks.
    ``precision``: ``score.precision`` (:func:`block_topk`)."""
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
            r, c, s = block_topk(qn[m0:m0 + movie_block_rows], bn[b0:b0 + book_block_rows], k, threads=threads,
                                 precision=precision)
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
