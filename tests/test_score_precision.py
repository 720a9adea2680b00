"""score.precision: the bf16 screen gives exactly the fp32 path's top-k (same ids, same float32 scores), on data
built so that bf16 cannot order it; its error bound holds; the selection misses nothing (numpy + torch, no Spark).

Small shapes: where bf16 is emulated (no AVX512_BF16/AMX) its matmul is slow, and exactness needs no size."""
import numpy as np
import pytest
import scipy.sparse as sp

from lfr.score.hybrid import (
    convex_coefficients,
    dense_book_moments,
    dense_movie_stats,
    hybrid_topk,
    rrf_block_candidates,
)
from lfr.score.kernel import (
    BF16_U,
    FP32_MATMULS,
    PRECISIONS,
    Bf16Screen,
    below,
    bf16_threshold,
    block_topk,
    normalize_rows,
    resolve_score_precision,
    select_candidates,
)
from lfr.score.sparse import sparse_moments


def unit(rng, n, d):
    return normalize_rows(rng.standard_normal((n, d)))[0]


def exact32(q, b):
    """The published scores: float64 dot products of the float32 rows, rounded to float32."""
    return (q.astype(np.float64) @ b.astype(np.float64).T).astype(np.float32)


def screened(q, b):
    """What the bf16 screen computes: bf16 rows, float32 accumulation, bf16 result (as float32)."""
    import torch

    return (torch.from_numpy(q).bfloat16() @ torch.from_numpy(b).bfloat16().t()).float().numpy()


def brute_topk(q, b, k, excluded=()):
    """(rows, cols, scores) of the exact top-k per row, ranked by (score desc, column asc)."""
    s = exact32(q, b)
    for r, c in excluded:
        s[r, c] = -np.inf
    out = []
    for r in range(len(q)):
        order = sorted((-float(s[r, c]), c) for c in range(len(b)) if np.isfinite(s[r, c]))[:k]
        out += [(r, c, -neg) for neg, c in order]
    return (np.array([o[0] for o in out], np.int32), np.array([o[1] for o in out], np.int32),
            np.array([o[2] for o in out], np.float32))


def assert_identical(got, ref):
    for g, r in zip(got, ref):
        np.testing.assert_array_equal(g, r)
        assert g.dtype == r.dtype


def both(q, b, k, **kw):
    """The fp32 and bf16-screen outputs of one block pair, asserted bit-identical; returns one."""
    fp32 = block_topk(q, b, k, precision="fp32", **kw)
    bf16 = block_topk(q, b, k, precision="bf16-screen", **kw)
    assert_identical(bf16, fp32)
    return fp32


def band(rng, q, scores, d):
    """Book rows whose exact cosine with the unit row ``q`` is ``scores`` (up to float32 rounding):
    ``s q + sqrt(1 - s^2) w`` with ``w`` a random unit vector orthogonal to ``q``."""
    w = rng.standard_normal((len(scores), d))
    w -= (w @ q.astype(np.float64))[:, None] * q.astype(np.float64)
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    s = np.asarray(scores, np.float64)[:, None]
    return normalize_rows(s * q.astype(np.float64) + np.sqrt(1 - s * s) * w)[0]


def near_ties(seed=0, d=48, n_band=400, n_noise=1200, m=6, level=0.6, width=2e-3):
    """Per movie, ``n_band`` books with exact scores spread over ``width`` around ``level`` -- differences far
    below bf16's resolution there (2**-9) and its screening error -- shuffled into random background books."""
    rng = np.random.default_rng(seed)
    q = unit(rng, m, d)
    blocks = [unit(rng, n_noise, d)]
    for i in range(m):
        blocks.append(band(rng, q[i], level + width * rng.random(n_band), d))
    b = np.concatenate(blocks)
    return q, b[rng.permutation(len(b))]


@pytest.mark.parametrize("k", [1, 10, 50])
def test_near_ties_below_bf16_resolution_are_ranked_exactly(k):
    q, b = near_ties()
    s_bf16 = screened(q, b)
    ex = exact32(q, b)
    # the data is adversarial: the bf16 scores alone pick a different top-k than the exact scores
    naive = np.argsort(-s_bf16, axis=1, kind="stable")[:, :k]
    truth = np.argsort(-ex, axis=1, kind="stable")[:, :k]
    assert any(set(naive[i]) != set(truth[i]) for i in range(len(q)))
    assert_identical(both(q, b, k), brute_topk(q, b, k))


def test_a_true_top_book_that_bf16_pushes_down_is_found():
    """The exact best book of a movie with a bf16 score below k others: the margin must reach it. Planted: of a
    band of near-ties, the best book among those bf16 rounds down, every book scoring higher removed."""
    k = 5
    q, b = near_ties(seed=3, n_band=600, m=1, width=1.5e-3)
    s_bf16, ex = screened(q, b)[0], exact32(q, b)[0]
    in_band = np.flatnonzero(ex > 0.59)
    low = in_band[s_bf16[in_band] < s_bf16[in_band].max()]
    planted = low[np.argmax(ex[low])]
    keep = ex <= ex[planted]
    b, s_bf16, ex = b[keep], s_bf16[keep], ex[keep]
    best = int(np.argmax(ex))
    assert ex[best] == ex[keep.cumsum()[planted] - 1] and (s_bf16 > s_bf16[best]).sum() >= k
    r, c, s = both(q, b, k)
    assert c[0] == best and s[0] == ex[best]
    assert_identical((r, c, s), brute_topk(q, b, k))


def aligned_near_ties(seed, m=3, d=256, n_band=300, n_noise=300, level=0.3, width=2e-3, lift=4e-3):
    """The bf16 screen's worst case: movies exact in bf16 (components +-1/16), and a band of near-tie books
    whose every component sits 0.45 of a bf16 step from its rounding, on the side that moves the exact score
    the same way for the whole book (about +-3e-3: up for half the books, down for the others) while the
    screened score stays that of the rounded book. The books pushed down start ``lift`` higher: the screen
    ranks them first, the exact scores rank the others first."""
    import torch

    rng = np.random.default_rng(seed)
    q = (np.where(rng.random((m, d)) < 0.5, -1.0, 1.0) / np.sqrt(d)).astype(np.float32)   # |x| = 1 exactly
    blocks = [unit(rng, n_noise, d)]
    for i in range(m):
        side = np.where(rng.random((n_band, 1)) < 0.5, -1.0, 1.0)
        y = band(rng, q[i], level + width * rng.random(n_band) + lift * (side[:, 0] < 0), d)
        yb = torch.from_numpy(y).bfloat16().float().numpy()
        step = 2.0 ** (np.floor(np.log2(np.maximum(np.abs(yb), 2.0 ** -126))) - 7)
        blocks.append((yb + side * np.sign(q[i]) * 0.45 * step).astype(np.float32))
    b = np.concatenate(blocks)
    assert np.abs(np.linalg.norm(b, axis=1) - 1).max() < 5e-3        # unit rows within the fp32 margin's slack (5%)
    return q, b[rng.permutation(len(b))]


@pytest.mark.parametrize("k", [1, 10, 40])
def test_rounding_errors_aligned_against_the_movie(k):
    q, b = aligned_near_ties(seed=21)
    o, ex = screened(q, b), exact32(q, b)
    # adversarial: the true top-k books are screened further below the k-th best screened score than bf16's
    # relative rounding alone (the u'|o| terms) would allow -- only the measured input error term reaches them
    t = np.sort(o, axis=1)[:, -k]
    up = BF16_U / (1 - BF16_U)
    relative_only = (t - up * np.abs(t)) / (1 + up)
    lowest_true = np.array([o[i, np.argsort(-ex[i], kind="stable")[:k]].min() for i in range(len(q))])
    assert (lowest_true < relative_only).any()
    assert_identical(both(q, b, k), brute_topk(q, b, k))


def test_duplicates_and_same_direction_books_tie_on_the_smallest_column():
    rng = np.random.default_rng(5)
    q, b = near_ties(seed=5, n_band=100, n_noise=300, m=3)
    cols = rng.choice(len(b), 12, replace=False)
    b[cols] = b[cols[0]]                              # 12 identical books
    q[1] = b[cols[0]]                                 # a movie equal to them: 12 scores of (about) 1
    r, c, s = both(q, b, 8)
    row1 = c[r == 1]
    np.testing.assert_array_equal(row1, np.sort(cols)[:8])
    assert len(set(s[r == 1].tolist())) == 1
    assert_identical((r, c, s), brute_topk(q, b, 8))


@pytest.mark.parametrize("m,n,d,k,chunk", [(40, 700, 32, 7, 1 << 24), (33, 257, 16, 5, 300),
                                           (5, 3, 8, 10, 1 << 24), (1, 1, 4, 1, 1 << 24), (7, 9, 1, 4, 1 << 24),
                                           (20, 500, 24, 100, 1000)])
def test_random_blocks_k_beyond_n_and_tiny_blocks(m, n, d, k, chunk):
    rng = np.random.default_rng(m * 1000 + n)
    q, b = unit(rng, m, d), unit(rng, n, d)
    assert_identical(both(q, b, k, chunk_elems=chunk), brute_topk(q, b, k))


def test_exclusions_leave_the_next_books_in_both_paths():
    q, b = near_ties(seed=7, n_band=200, n_noise=400, m=4)
    k = 6
    r0, c0, _ = both(q, b, k)
    excluded = list(zip(r0.tolist(), c0.tolist()))
    ex_r, ex_c = np.array([e[0] for e in excluded]), np.array([e[1] for e in excluded])
    got = both(q, b, k, exclude_rows=ex_r, exclude_cols=ex_c, chunk_elems=700)
    assert_identical(got, brute_topk(q, b, k, excluded))
    assert not set(excluded) & set(zip(got[0].tolist(), got[1].tolist()))


def test_everything_excluded_but_a_few_books():
    rng = np.random.default_rng(8)
    q, b = unit(rng, 3, 8), unit(rng, 20, 8)
    ex = [(r, c) for r in range(3) for c in range(20) if c % 7]          # 3 books left per movie (k = 5)
    got = both(q, b, 5, exclude_rows=[e[0] for e in ex], exclude_cols=[e[1] for e in ex])
    assert_identical(got, brute_topk(q, b, 5, ex))
    assert np.bincount(got[0]).tolist() == [3, 3, 3]


def test_anti_aligned_movies_negative_thresholds():
    """Every score of these movies is negative (books on the opposite side): thresholds below zero, which the
    bf16 selection compares in float32, not on bit patterns."""
    rng = np.random.default_rng(9)
    q = unit(rng, 2, 12)
    b = band(rng, -q[0], 0.5 + 1e-3 * rng.random(120), 12)   # movie 0: every score about -0.5
    assert exact32(q, b)[0].max() < 0
    assert_identical(both(q, b, 9), brute_topk(q, b, 9))


# ---------------------------------------------------------------- the bound and the selection


def test_bf16_error_bound_holds_pair_by_pair():
    """|o - s| <= e + u'|o| (the dense rule) and <= error() (the hybrid's uniform bound), for every pair."""
    import torch

    rng = np.random.default_rng(2)
    for q, b in (near_ties(seed=11), aligned_near_ties(seed=4), (unit(rng, 30, 384), unit(rng, 900, 384))):
        screen = Bf16Screen(torch, q, b, len(q))
        o = screen.scores(0, len(q)).float().numpy().astype(np.float64)
        err = np.abs(o - exact32(q, b))
        up = BF16_U / (1 - BF16_U)
        assert (err <= screen.e[:, None] + up * np.abs(o)).all()
        assert (err <= screen.error(0, len(q))[:, None]).all()
        assert screen.e.max() < 2 * BF16_U                # measured norms: tighter than the worst case 2u


def test_bf16_threshold_is_monotone_and_keeps_minus_inf():
    t = np.array([-np.inf, -0.5, -1e-3, 0.0, 1e-3, 0.5, 0.99])
    e = np.full(len(t), 4e-3)
    thr = bf16_threshold(t, e)
    assert thr[0] == -np.inf and (np.diff(thr[1:]) > 0).all() and (thr[1:] < t[1:] - 2 * e[1:]).all()


def reference_selection(s32, kk, margin):
    """Brute force: every finite score >= (its row's kk-th best finite score) - margin."""
    out = set()
    for r in range(s32.shape[0]):
        fin = np.isfinite(s32[r])
        vals = np.sort(s32[r][fin])[::-1]
        t = vals[kk - 1] if len(vals) >= kk else -np.inf
        thr = np.float32(np.float64(t) - margin) if np.isfinite(t) else -np.inf
        out |= {(r, int(c)) for c in np.flatnonzero(fin & (s32[r] >= thr))}
    return out


@pytest.mark.parametrize("as_bf16", [False, True])
@pytest.mark.parametrize("shift", [0.0, -0.3])
def test_selection_misses_no_score_within_the_margin(as_bf16, shift):
    """Ties, duplicated maxima, -inf exclusions, negative rows, rows with fewer than kk finite scores; with
    ``shift`` every row is negative (hub-aware scores ``cos - w r`` mostly are) and the near-ties too."""
    import torch

    rng = np.random.default_rng(4)
    s = rng.standard_normal((12, 517)).astype(np.float32) * 0.1 + np.float32(shift)
    s[1, ::3] = 0.25                                   # a row of many exact ties at the top
    s[2] -= 5.0                                        # all negative
    s[3, 4:] = -np.inf                                 # fewer finite scores than kk
    s[4, rng.choice(517, 200, replace=False)] = -np.inf
    s[5] = 0.0
    if as_bf16:
        t = torch.from_numpy(s).bfloat16()
        s32 = t.float().numpy()
        chunk = t
    else:
        s32 = chunk = s
    for kk, margin in ((1, 0.0), (7, 0.01), (30, 0.05)):
        rows, cols = select_candidates(chunk, kk, below(margin))
        assert set(zip(rows.tolist(), cols.tolist())) == reference_selection(s32, kk, margin)


def test_bf16_keys_order_every_pattern_as_its_float_and_thresholds_round_down():
    """Exhaustive over the 65,536 bf16 patterns (NaNs aside): the int16 keys sort as the floats (-0.0 = 0.0),
    and ``key >= key(thr)`` holds exactly for the patterns ``>=`` the largest bf16 not above ``thr``."""
    import torch

    from lfr.score.kernel import _Bf16Chunk, bf16_bits_to_float32

    bits = np.arange(-(1 << 15), 1 << 15).astype(np.int16)
    f = bf16_bits_to_float32(bits)
    bits, f = bits[~np.isnan(f)], f[~np.isnan(f)]
    chunk = _Bf16Chunk(torch.from_numpy(bits[None].copy()).view(torch.bfloat16))
    keys = chunk.ordered(bits)
    o = np.argsort(f, kind="stable")
    assert (np.diff(keys[o].astype(np.int32)) >= 0).all()
    assert ((np.diff(keys[o].astype(np.int32)) == 0) == (np.diff(f[o]) == 0)).all()
    rng = np.random.default_rng(3)
    thr = np.concatenate([[-np.inf, np.inf, 0.0, -0.0, -1.0, 1.0], rng.standard_normal(300),
                          -rng.random(100) * 1e-3, f[rng.choice(len(f), 100)]]).astype(np.float32)
    for t, k in zip(thr, chunk.key(thr)):
        floor = f[f <= t].max()                       # the largest bf16 not above t
        assert ((keys >= k) == (f >= floor)).all(), t


def test_bf16_comparisons_without_the_mapping_agree_with_it_for_every_pattern():
    """``at_least`` compares the raw patterns without mapping them (the selection's hot path): over every one of the
    65,536 patterns (NaNs included) and keys of every sign (every 61st key, the zeros, +-1, the extremes and the
    infinities' keys), it equals ``ordered(raw) >= key`` on all-positive, all-negative and mixed keys."""
    import torch

    from lfr.score.kernel import _Bf16Chunk

    bits = np.arange(-(1 << 15), 1 << 15).astype(np.int16)
    keys = np.unique(np.concatenate([_Bf16Chunk.ordered(bits)[::61],
                                     _Bf16Chunk.ordered(np.array([0x7F80, -128, 0, -32768], dtype=np.int16)),
                                     np.array([-32767, -1, 0, 1, 32767], dtype=np.int16)]).astype(np.int16))
    raw = np.ascontiguousarray(np.broadcast_to(bits, (8, len(bits))))
    chunk = _Bf16Chunk(torch.from_numpy(raw).view(torch.bfloat16))
    want_of = lambda k: _Bf16Chunk.ordered(raw) >= k[:, None]            # noqa: E731
    for part in (keys[keys > 0], keys[keys < 0], keys):
        assert part.size > 100
        for k in np.array_split(part, len(part) // 8):
            k = np.resize(k, 8)
            assert np.array_equal(chunk.at_least(raw, k[:, None]), want_of(k)), k
    assert np.array_equal(chunk.at_least(raw[:, 1000:3000], keys[:8, None]), want_of(keys[:8])[:, 1000:3000])


@pytest.mark.parametrize("seed", [0, 1])
def test_all_negative_rows_group_maxima_are_the_true_maxima(seed):
    """Hub-aware rows are negative throughout: each group's representative is its float maximum."""
    import torch

    from lfr.score.kernel import _Bf16Chunk, column_groups

    rng = np.random.default_rng(seed)
    s = (rng.standard_normal((5, 1000)) * 0.05 - 0.4).astype(np.float32)
    s[1, :500] += 0.6                                    # groups of mixed sign
    s[2, ::7] = -np.inf
    t = torch.from_numpy(s).bfloat16()
    gs, g = column_groups(1000, 4)
    reps = _Bf16Chunk(t).group_reps(gs, g)
    s32 = t.float().numpy()
    want = np.stack([np.r_[[s32[:, i * gs:(i + 1) * gs].max(1) for i in range(g - 1)],
                           [s32[:, (g - 1) * gs:].max(1)]]]).squeeze(0).T
    assert np.array_equal(reps, want)


# ---------------------------------------------------------------- the fp32 screen's library


@pytest.mark.parametrize("lib", FP32_MATMULS)
def test_the_fp32_screen_is_exact_through_either_library(lib, monkeypatch):
    """Whichever library :func:`lfr.score.kernel.fp32_matmul` finds faster on a machine, numpy's BLAS or torch's,
    the fp32 screen stays within its bound pair by pair and its top-k is the brute force's, bit for bit: near
    ties, aligned rounding errors, exclusions, chunk edges; and the hybrid's fp32 path equals its bf16 path."""
    import torch

    from lfr.score import kernel

    monkeypatch.setattr(kernel, "fp32_matmul", lambda threads: lib)
    cases = (near_ties(seed=7, n_band=300, n_noise=600, m=4), aligned_near_ties(seed=21))
    for q, b in cases:
        screen = kernel.dense_screen(torch, q, b, len(q), "fp32")
        assert (screen.torch is not None) == (lib == "torch")
        err = np.abs(screen.scores(0, len(q)).astype(np.float64) - exact32(q, b))
        assert (err <= screen.eps).all()
        for k, chunk in ((1, 1 << 24), (10, len(b) * 2 + 7)):
            assert_identical(block_topk(q, b, k, precision="fp32", chunk_elems=chunk), brute_topk(q, b, k))
    q, b = cases[0]
    ex_r, ex_c = block_topk(q, b, 6, precision="fp32")[:2]
    got = block_topk(q, b, 6, exclude_rows=ex_r, exclude_cols=ex_c, precision="fp32", chunk_elems=700)
    assert_identical(got, brute_topk(q, b, 6, list(zip(ex_r.tolist(), ex_c.tolist()))))
    test_hybrid_convex_same_output_with_either_screen(0.8, 500)


def test_the_fp32_library_is_measured_once_per_thread_count(caplog):
    import logging

    from lfr.score import kernel

    kernel.fp32_matmul.cache_clear()
    with caplog.at_level(logging.INFO, logger="lfr.score.kernel"), kernel.compute_settings(1) as torch:
        first = kernel.fp32_matmul(torch.get_num_threads())
        assert kernel.fp32_matmul(1) == first
    assert first in FP32_MATMULS
    assert caplog.text.count("score kernel fp32 matmul: " + first) == 1


# ---------------------------------------------------------------- hybrid


def lexical(rng, n, vocab=30, terms=4):
    m = sp.random(n, vocab, density=terms / vocab, random_state=np.random.RandomState(int(rng.integers(1 << 30))),
                  format="csr", dtype=np.float64)
    m.data = np.abs(m.data) + 0.05
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1))).ravel()
    m = sp.diags(np.where(norms > 0, 1 / np.where(norms > 0, norms, 1), 0)) @ m
    return m.astype(np.float32).tocsr()


@pytest.mark.parametrize("alpha,chunk", [(0.8, 1 << 20), (1.0, 500), (0.5, 1 << 20)])
def test_hybrid_convex_same_output_with_either_screen(alpha, chunk):
    rng = np.random.default_rng(12)
    q, b = near_ties(seed=12, n_band=150, n_noise=500, m=5)
    qa, ba = lexical(rng, len(q)), lexical(rng, len(b))
    ba = sp.vstack([ba[40:80], ba[40:]]).tocsr()          # lexical duplicates: ties decided by the dense part
    n = len(b)
    s1, s2 = sparse_moments(qa, ba)
    coef = convex_coefficients(alpha, *dense_movie_stats(q, n, *dense_book_moments(b)), s1 / n, s2 / n - (s1 / n) ** 2)
    for k in (3, 25):
        fp32 = hybrid_topk(q, b, qa, ba, coef, k, chunk_elems=chunk, precision="fp32")
        bf16 = hybrid_topk(q, b, qa, ba, coef, k, chunk_elems=chunk, precision="bf16-screen")
        assert_identical(bf16, fp32)
        assert len(fp32[0]) == k * len(q)


def test_rrf_candidates_same_with_either_screen():
    rng = np.random.default_rng(13)
    q, b = near_ties(seed=13, n_band=120, n_noise=300, m=4)
    qa, ba = lexical(rng, len(q)), lexical(rng, len(b))
    ex_r, ex_c = np.array([0, 1, 1]), np.array([5, 6, 7])
    fp32 = rrf_block_candidates(q, b, qa, ba, 20, ex_r, ex_c, precision="fp32")
    bf16 = rrf_block_candidates(q, b, qa, ba, 20, ex_r, ex_c, precision="bf16-screen")
    assert_identical(bf16, fp32)


# ---------------------------------------------------------------- the setting


def test_auto_follows_the_encoders_bf16_rule_and_bad_values_are_refused():
    from lfr.model.text import resolve_precision

    resolved, why = resolve_score_precision("auto", "cpu")
    assert resolved == ("bf16-screen" if resolve_precision("auto")[0] == "bf16" else "fp32") and why
    assert resolve_score_precision("fp32", "cpu")[0] == "fp32"
    assert resolve_score_precision("bf16-screen", "cpu")[0] == "bf16-screen"
    assert PRECISIONS == ("auto", "fp32", "bf16-screen")
    with pytest.raises(ValueError, match="score.precision must be one of"):
        resolve_score_precision("fp16", "cpu")


def test_the_yaml_sets_the_precision_and_the_strategies_carry_it():
    from lfr.score.methods import scoring_method
    from lfr.settings import load_settings, with_values

    score = load_settings(environ={}).score
    assert score.precision in PRECISIONS
    for method, fusion in (("dense", "convex"), ("hybrid", "convex"), ("hybrid", "rrf")):
        strategy = scoring_method(with_values(score, {"method": method, "fusion": fusion, "precision": "fp32"}))
        assert strategy.precision == "fp32"
