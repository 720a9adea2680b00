"""The block kernel against a brute force (numpy only, no Spark), with either dense screen (score.precision)."""
import numpy as np
import pytest

from lfr.score.kernel import block_topk, merge_topk, normalize_rows, score_margin, topk_local

SCREENS = ["fp32", "bf16-screen"]


def brute_force(movie_ids, mv, book_ids, bv, k, exclude=()):
    """Reference: full float64 product of the float32-normalised vectors, rank by (score desc, book_id asc)."""
    def norm(x):
        x = np.asarray(x, np.float64)
        n = np.sqrt((x * x).sum(1))
        ok = np.isfinite(n) & (n > 0)
        return (x[ok] / n[ok, None]).astype(np.float32), ok
    qn, qok = norm(mv)
    bn, bok = norm(bv)
    mids, bids = np.asarray(movie_ids)[qok], np.asarray(book_ids)[bok]
    s = (qn.astype(np.float64) @ bn.astype(np.float64).T).astype(np.float32)
    excl = set(exclude)
    out = {}
    for i, m in enumerate(mids):
        cand = [(-s[i, j], bids[j]) for j in range(len(bids)) if (m, bids[j]) not in excl]
        cand.sort()
        out[m] = [(b, -negs) for negs, b in cand[:k]]
    return out


def data_with_ties(rng, n_movies=120, n_books=150, d=24):
    mv = rng.standard_normal((n_movies, d)).astype(np.float32)
    bv = rng.standard_normal((n_books, d)).astype(np.float32)
    bv[10] = bv[3]                 # exact duplicates
    bv[77] = bv[3] * 2.0           # same direction, other length: same cosine after normalising
    bv[140] = bv[3]
    bv[20:30] = bv[5]              # a cluster of 10 identical books: ties wider than k + extra
    mv[1] = mv[0]
    mv[2:6] = bv[3]                # movies equal to a duplicated book: score 1 ties
    movie_ids = np.array([f"m{i:04d}" for i in range(n_movies)])
    book_ids = np.array([f"b{(i * 37) % n_books:04d}" for i in range(n_books)])   # ids not in row order
    return movie_ids, mv, book_ids, bv


def as_dict(mv, rk, bk, sc):
    out = {}
    for m, r, b, s in zip(mv, rk, bk, sc):
        out.setdefault(m, []).append((r, b, s))
    return {m: [(b, s) for _, b, s in sorted(v)] for m, v in out.items()}


def assert_same(got, ref):
    assert set(got) == set(ref)
    for m in ref:
        assert [b for b, _ in got[m]] == [b for b, _ in ref[m]], m
        np.testing.assert_allclose([s for _, s in got[m]], [s for _, s in ref[m]], atol=1e-6)


@pytest.mark.parametrize("precision", SCREENS)
@pytest.mark.parametrize("k,mbr,bbr", [(5, 1000, 1000), (5, 17, 23), (12, 40, 9), (200, 50, 64)])
def test_blocked_topk_equals_brute_force_with_ties(k, mbr, bbr, precision):
    rng = np.random.default_rng(7)
    movie_ids, mv, book_ids, bv = data_with_ties(rng)
    got = as_dict(*topk_local(movie_ids, mv, book_ids, bv, k, movie_block_rows=mbr, book_block_rows=bbr,
                              precision=precision))
    ref = brute_force(movie_ids, mv, book_ids, bv, k)
    assert_same(got, ref)
    # ties: movies 2..5 equal book b's 3/10/77/140 -> score 1 for all four, smallest id first
    dup_ids = sorted(book_ids[[3, 10, 77, 140]])
    if k >= 4:
        assert [b for b, _ in got["m0002"][:4]] == dup_ids
        assert len({s for _, s in got["m0002"][:4]}) == 1


@pytest.mark.parametrize("precision", SCREENS)
def test_exclusions_are_masked_before_truncation(precision):
    rng = np.random.default_rng(3)
    movie_ids, mv, book_ids, bv = data_with_ties(rng, n_movies=30)
    qn, _ = normalize_rows(mv)
    order = np.argsort(book_ids)
    bids, bn = book_ids[order], normalize_rows(bv)[0][order]
    full_r, full_c, _ = block_topk(qn, bn, 5, precision=precision)
    # exclude every book of each movie's unconstrained top-5: the answer must be the next five
    ex_r, ex_c = full_r, full_c
    r, c, s = block_topk(qn, bn, 5, exclude_rows=ex_r, exclude_cols=ex_c, precision=precision)
    excluded = {(movie_ids[i], bids[j]) for i, j in zip(ex_r, ex_c)}
    got = {}
    for i, j, sc in zip(r, c, s):
        got.setdefault(movie_ids[i], []).append((bids[j], sc))
    ref = brute_force(movie_ids, mv, book_ids, bv, 5, exclude=excluded)
    assert_same(got, ref)
    assert not excluded & {(m, b) for m, v in got.items() for b, _ in v}


@pytest.mark.parametrize("precision", SCREENS)
def test_fewer_books_than_k_and_everything_excluded(precision):
    q, _ = normalize_rows(np.eye(3, 4, dtype=np.float32))
    b, _ = normalize_rows(np.eye(2, 4, dtype=np.float32))
    r, c, s = block_topk(q, b, 10, precision=precision)
    assert len(r) == 6 and set(np.bincount(r)) == {2}
    r, c, s = block_topk(q, b, 10, exclude_rows=[0, 0], exclude_cols=[0, 1], precision=precision)
    assert 0 not in r and len(r) == 4


def test_normalize_rows_flags_zero_and_non_finite():
    x = np.array([[3, 4], [0, 0], [np.nan, 1], [np.inf, 1], [1e30, 1e30]], dtype=np.float32)
    xn, ok = normalize_rows(x)
    assert ok.tolist() == [True, False, False, False, True]
    np.testing.assert_allclose(xn[0], [0.6, 0.8], rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(xn[4]), 1.0, rtol=1e-6)
    assert not xn[1:4].any()


def test_margin_covers_float32_error():
    rng = np.random.default_rng(0)
    d = 384
    q, _ = normalize_rows(rng.standard_normal((64, d)))
    b, _ = normalize_rows(rng.standard_normal((512, d)))
    s32 = q @ b.T
    exact = (q.astype(np.float64) @ b.astype(np.float64).T)
    assert np.abs(s32 - exact).max() < score_margin(d) / 2


def test_merge_topk_orders_by_score_then_id():
    mv = np.array(["a", "a", "a", "b"])
    bk = np.array(["z", "y", "x", "q"])
    sc = np.array([0.5, 0.9, 0.5, 0.1], dtype=np.float32)
    m, r, b, s = merge_topk(mv, bk, sc, 2)
    assert list(zip(m, r, b)) == [("a", 1, "y"), ("a", 2, "x"), ("b", 1, "q")]


@pytest.mark.parametrize("precision", SCREENS)
@pytest.mark.parametrize("bbr", [1000, 16])
def test_a_cluster_of_ties_wider_than_k_goes_to_the_smallest_ids(bbr, precision):
    """25 identical books (5x k) that two movies point at exactly: every one is a candidate (the
    selection compares whole rows, it never stops at a window), and the smallest ids win."""
    rng = np.random.default_rng(11)
    k, n_tied = 5, 25
    bv = rng.standard_normal((80, 16)).astype(np.float32)
    tied_rows = rng.choice(80, n_tied, replace=False)
    bv[tied_rows] = bv[tied_rows[0]]
    mv = rng.standard_normal((6, 16)).astype(np.float32)
    mv[[1, 4]] = bv[tied_rows[0]] * 3.0            # same direction: cosine 1 with every tied book
    movie_ids = np.array([f"m{i}" for i in range(6)])
    book_ids = np.array([f"b{(i * 29) % 80:03d}" for i in range(80)])   # ids not in row order
    got = as_dict(*topk_local(movie_ids, mv, book_ids, bv, k, movie_block_rows=4, book_block_rows=bbr,
                              precision=precision))
    ref = brute_force(movie_ids, mv, book_ids, bv, k)
    assert_same(got, ref)
    smallest_tied = sorted(book_ids[tied_rows])[:k]
    for m in ("m1", "m4"):
        assert [b for b, _ in got[m]] == smallest_tied
        np.testing.assert_allclose([s for _, s in got[m]], 1.0, atol=1e-6)


def test_kernel_settings_limit_the_threads_and_restore_the_callers():
    """compute_settings(threads=1): torch and numpy's BLAS run one thread and float32 matmuls stay float32
    inside; the caller's settings are back after it, on every call (the BLAS controller is built once)."""
    import torch
    from threadpoolctl import threadpool_info

    from lfr.score.kernel import compute_settings

    def blas():
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

    before = blas(), torch.get_num_threads(), torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        for _ in range(2):
            with compute_settings(threads=1):
                assert blas() and set(blas()) == {1}
                assert torch.get_num_threads() == 1 and torch.get_float32_matmul_precision() == "highest"
            assert (blas(), torch.get_num_threads(), torch.get_float32_matmul_precision()) == (*before[:2], "high")
    finally:
        torch.set_float32_matmul_precision(before[2])


@pytest.mark.parametrize("d", [3, 8, 64, 129, 384, 768])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_rescoring_has_numpys_bits(d, dtype, monkeypatch):
    """The exact rescoring through numba's loop (:func:`lfr.score.kernel.compiled`) gives numpy's float32 bits for
    every pair: the same float64 products summed in numpy's pairwise order (dimensions below, at and above its
    128-element blocks and 8-way unrolling), cancellations rounding to 0.0 rather than -0.0 included."""
    from lfr.score import kernel as K

    assert K.compiled() is not None                       # requirements.txt installs numba: the loop must run
    rng = np.random.default_rng(d)
    q = (rng.standard_normal((50, d)) * rng.random((50, 1)) ** 6).astype(dtype)
    b = (rng.standard_normal((70, d)) * rng.random((70, 1)) ** 6).astype(dtype)
    q[2], b[7] = 0.0, -np.abs(b[7]) - 1.0                 # every product -0.0: numpy's sum is -0.0, published 0.0
    q[0], b[5] = np.r_[1.0, -1.0, 2.0 ** -30, np.zeros(d - 3)], np.r_[1.0, 1.0, 2.0 ** -30, np.zeros(d - 3)]
    if d > 8:                                             # 1 + 2^-60 - 1 in 8 lanes: lane 0 cancels, not the sum
        q[1], b[6] = 0.0, 0.0
        q[1, [0, 1, 8]], b[6, [0, 1, 8]] = [1.0, 2.0 ** -30, 1.0], [1.0, 2.0 ** -30, -1.0]
    rows, cols = rng.integers(0, 50, 20000), rng.integers(0, 70, 20000)
    rows[:70], cols[:70] = 0, np.arange(70)
    rows[70:72], cols[70:72] = [1, 2], [6, 7]
    got = K._rescore(q, b, rows, cols)
    monkeypatch.setattr(K, "compiled", lambda: None)
    want = K._rescore(q, b, rows, cols)
    assert got.dtype == want.dtype == np.float32
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
    assert got[5] == np.float32(2.0 ** -60) and got[71] == 0.0 and not np.signbit(got[got == 0]).any()
    assert d <= 8 or got[70] == np.float32(2.0 ** -60)    # a sequential sum would give 0 here
