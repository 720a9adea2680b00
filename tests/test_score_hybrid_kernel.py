"""Lexical (sparse) and hybrid block kernels against a brute force over all books (numpy/scipy, no Spark)."""
import numpy as np
import pytest
import scipy.sparse as sp

from lfr.score import kernel as kernel_module
from lfr.score import sparse as sparse_module
from lfr.score.hybrid import (
    book_lexical_scale,
    bookz_coefficients,
    combine,
    convex_coefficients,
    dense_book_moments,
    dense_movie_stats,
    hybrid_book_topk,
    hybrid_topk,
    moments_to_stats,
)
from lfr.score.kernel import merge_topk, normalize_rows
from lfr.score.sparse import LexicalProduct, csr_rows, sparse_book_moments, sparse_moments, sparse_topk

VOCAB = 40


def lexical_rows(rng, n, vocab=VOCAB, max_terms=6):
    """Lists of (strictly increasing indices, positive weights); a few rows are empty."""
    out = []
    for i in range(n):
        t = rng.integers(0, max_terms + 1) if i % 9 else 0
        idx = np.sort(rng.choice(vocab, size=t, replace=False)).astype(np.int32)
        out.append((idx, rng.random(t).astype(np.float32) + 0.05))
    return out


def to_csr(rows, require_terms):
    offsets = np.r_[0, np.cumsum([len(i) for i, _ in rows])]
    idx = np.concatenate([i for i, _ in rows]) if rows else np.empty(0, np.int32)
    w = np.concatenate([w for _, w in rows]) if rows else np.empty(0, np.float32)
    return csr_rows(offsets, idx, w, VOCAB, require_terms)


def catalog(seed=5, n_movies=70, n_books=90, d=12):
    rng = np.random.default_rng(seed)
    m_lex, b_lex = lexical_rows(rng, n_movies), lexical_rows(rng, n_books)
    mv = rng.standard_normal((n_movies, d)).astype(np.float32)
    bv = rng.standard_normal((n_books, d)).astype(np.float32)
    for j in (11, 40, 63)[:2 + (n_books > 63)]:  # identical books on both sides: exact ties
        b_lex[j], bv[j] = b_lex[7], bv[7]
    b_lex[20:26] = [b_lex[5]] * 6              # a lexical cluster wider than k + extra candidates
    m_lex[3], mv[3] = b_lex[7], bv[7]          # a movie equal to the duplicated book
    m_lex[4] = b_lex[5]
    movie_ids = np.array([f"m{i:03d}" for i in range(n_movies)])
    book_ids = np.array([f"b{(i * 31) % n_books:03d}" for i in range(n_books)])   # not in row order
    return movie_ids, mv, m_lex, book_ids, bv, b_lex


def ranked(ids_m, ids_b, s, k, exclude=()):
    out = {}
    for i, m in enumerate(ids_m):
        cand = sorted((-s[i, j], ids_b[j]) for j in range(len(ids_b)) if (m, ids_b[j]) not in exclude)
        out[m] = [(b, -neg) for neg, b in cand[:k]]
    return out


def brute_lexical(movie_ids, m_lex, book_ids, b_lex, k, exclude=()):
    qa, qok = to_csr(m_lex, True)
    ba, bok = to_csr(b_lex, True)
    s = (qa.toarray().astype(np.float64) @ ba.toarray().astype(np.float64).T).astype(np.float32)
    return ranked(movie_ids[qok], book_ids[bok], s, k, exclude)


def brute_hybrid(movie_ids, mv, m_lex, book_ids, bv, b_lex, k, alpha, exclude=()):
    qn, bn = normalize_rows(mv)[0], normalize_rows(bv)[0]
    return brute_hybrid_rows(movie_ids, qn, m_lex, book_ids, bn, b_lex, k, alpha, exclude)


def brute_hybrid_rows(movie_ids, qn, m_lex, book_ids, bn, b_lex, k, alpha, exclude=(), fused=(0, 0.0)):
    """The hybrid over all books from the dense rows as the kernel gets them (unit, or hub-aware augmented);
    ``fused``: ``(hub_k, score.fused_hub_weight)``, the fused correction's offsets subtracted."""
    h64, coef = hybrid_scores(qn, m_lex, bn, b_lex, alpha)
    if fused[1]:
        h64 = h64 - fused_offsets(h64.astype(np.float32), *fused).astype(np.float64)[None, :]
    return ranked(movie_ids, book_ids, h64.astype(np.float32), k, exclude)


def hybrid_scores(qn, m_lex, bn, b_lex, alpha):
    """(every pair's hybrid score in float64 before the float32 rounding, the films' coefficients)."""
    qa, _ = to_csr(m_lex, False)
    ba, _ = to_csr(b_lex, False)
    d64 = qn.astype(np.float64) @ bn.astype(np.float64).T
    l32 = (qa.toarray().astype(np.float64) @ ba.toarray().astype(np.float64).T).astype(np.float32)
    l64 = l32.astype(np.float64)
    coef = convex_coefficients(alpha, d64.mean(1), d64.var(1), l64.mean(1), l64.var(1))
    return coef[:, :1] * d64.astype(np.float32).astype(np.float64) + coef[:, 1:2] * l64 + coef[:, 2:], coef


def bookz_scores(qn, m_lex, bn, b_lex, alpha):
    """Every pair's ``score.lexical_hubness: bookz`` score in float64 before the float32 rounding: the films'
    lexical z-scores standardised per book over all films (statistics in numpy's order: last bits may differ)."""
    qa, _ = to_csr(m_lex, False)
    ba, _ = to_csr(b_lex, False)
    d64 = qn.astype(np.float64) @ bn.astype(np.float64).T
    l64 = (qa.toarray().astype(np.float64) @ ba.toarray().astype(np.float64).T).astype(np.float32).astype(np.float64)
    coef = bookz_coefficients(alpha, d64.mean(1), d64.var(1), l64.mean(1), l64.var(1))
    z = coef[:, 1:2] * l64 + coef[:, 3:4]
    book_z = book_lexical_scale(z.sum(0), (z * z).sum(0), len(qn), alpha)
    return (coef[:, :1] * d64.astype(np.float32).astype(np.float64) + book_z[:, 0] * z + coef[:, 2:3]
            + book_z[:, 1]), coef, book_z


def fused_offsets(h: np.ndarray, hub_k: int, weight: float) -> np.ndarray:
    """float32 ``weight * r_h(book)``, r_h = the mean of the book's ``hub_k`` highest (float32) scores."""
    r = np.sort(h.astype(np.float64), axis=0)[-hub_k:].mean(axis=0)
    return (weight * r).astype(np.float32)


def blocked(kernel_pairs, movie_ids, book_ids, k, mbr, bbr):
    """Run a kernel over every (movie block, book block) and merge, as the Spark job does."""
    order = np.argsort(book_ids, kind="stable")
    parts = []
    for m0 in range(0, len(movie_ids), mbr):
        for b0 in range(0, len(book_ids), bbr):
            cols_sel = order[b0:b0 + bbr]
            r, c, s = kernel_pairs(slice(m0, m0 + mbr), cols_sel)
            parts.append((movie_ids[m0 + r], book_ids[cols_sel][c], s))
    mv = np.concatenate([p[0] for p in parts])
    bk = np.concatenate([p[1] for p in parts])
    sc = np.concatenate([p[2] for p in parts])
    m, r, b, s = merge_topk(mv, bk, sc, k)
    out = {}
    for mm, bb, ss in zip(m, b, s):
        out.setdefault(mm, []).append((bb, ss))
    return out


def assert_same(got, ref):
    assert set(got) == set(ref)
    for m in ref:
        assert [b for b, _ in got[m]] == [b for b, _ in ref[m]], m
        np.testing.assert_allclose([s for _, s in got[m]], [s for _, s in ref[m]], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("k,mbr,bbr", [(5, 1000, 1000), (5, 13, 17), (12, 30, 7), (100, 25, 40)])
def test_sparse_topk_equals_brute_force_with_ties(k, mbr, bbr):
    movie_ids, _, m_lex, book_ids, _, b_lex = catalog()
    qa, qok = to_csr(m_lex, True)
    ba, bok = to_csr(b_lex, True)
    mids, bids = movie_ids[qok], book_ids[bok]
    got = blocked(lambda ms, cs: sparse_topk(qa[ms], ba[cs], k, chunk_elems=64), mids, bids, k, mbr, bbr)
    ref = brute_lexical(movie_ids, m_lex, book_ids, b_lex, k)
    assert_same(got, ref)
    dup = sorted(book_ids[[7, 11, 40, 63]])               # movie m003 equals these four books: score 1 ties
    assert [b for b, _ in got["m003"][:4]] == dup and len({s for _, s in got["m003"][:4]}) == 1
    assert "m000" not in got                               # no terms: no lexical direction, dropped


def test_sparse_exclusions_and_rows_without_matches():
    movie_ids, _, m_lex, book_ids, _, b_lex = catalog(seed=9)
    qa, qok = to_csr(m_lex, True)
    order = np.argsort(book_ids)
    ba, bok = to_csr([b_lex[j] for j in order], True)
    mids, bids = movie_ids[qok], book_ids[order][bok]
    r0, c0, _ = sparse_topk(qa, ba, 4)
    r, c, s = sparse_topk(qa, ba, 4, exclude_rows=r0, exclude_cols=c0)
    excluded = {(mids[i], bids[j]) for i, j in zip(r0, c0)}
    got = {}
    for i, j, sc in zip(r, c, s):
        got.setdefault(mids[i], []).append((bids[j], sc))
    assert_same(got, brute_lexical(movie_ids, m_lex, book_ids, b_lex, 4, exclude=excluded))
    assert any(sc == 0 for v in got.values() for _, sc in v)   # zero-score books still fill the top-k


def test_csr_rows_validates_and_normalises():
    rows = [(np.array([1, 5], np.int32), np.array([3, 4], np.float32)),   # ok -> 0.6, 0.8
            (np.array([5, 1], np.int32), np.array([1, 1], np.float32)),   # not increasing
            (np.array([2, VOCAB], np.int32), np.array([1, 1], np.float32)),  # out of vocabulary
            (np.array([], np.int32), np.array([], np.float32)),           # empty
            (np.array([3], np.int32), np.array([np.nan], np.float32))]    # not finite
    mat, ok = to_csr(rows, True)
    assert ok.tolist() == [True, False, False, False, False]
    np.testing.assert_allclose(mat.toarray()[0, [1, 5]], [0.6, 0.8], rtol=1e-6)
    _, ok = to_csr(rows, False)
    assert ok.tolist() == [True, False, False, True, False]               # hybrid keeps a term-less row


def _hybrid_kernel(qn, bn, qa, ba, book_order, bbr, alpha, k, chunk, precision):
    """The hybrid kernel over blocks, with catalog-wide stats accumulated block by block (as the job)."""
    n = bn.shape[0]
    s1, s2, bsum, gram = np.zeros(qn.shape[0]), np.zeros(qn.shape[0]), 0.0, 0.0
    for b0 in range(0, n, bbr):
        cs = book_order[b0:b0 + bbr]
        x1, x2 = sparse_moments(qa, ba[cs], chunk_elems=chunk)
        bs, g = dense_book_moments(bn[cs])
        s1, s2, bsum, gram = s1 + x1, s2 + x2, bsum + bs, gram + g
    coef = convex_coefficients(alpha, *dense_movie_stats(qn, n, bsum, gram), *moments_to_stats(s1, s2, n))
    return lambda ms, cs: hybrid_topk(qn[ms], bn[cs], qa[ms], ba[cs], coef[ms], k, chunk_elems=chunk,
                                      precision=precision)


@pytest.mark.parametrize("precision", ["fp32", "bf16-screen"])
@pytest.mark.parametrize("alpha", [0.7, 0.0, 1.0])
@pytest.mark.parametrize("k,mbr,bbr,chunk",
                         [(5, 1000, 1000, 1 << 20), (5, 13, 17, 64), (12, 30, 7, 100), (100, 25, 40, 64)])
def test_hybrid_topk_equals_brute_force_over_all_books(alpha, k, mbr, bbr, chunk, precision):
    movie_ids, mv, m_lex, book_ids, bv, b_lex = catalog()
    qn, bn = normalize_rows(mv)[0], normalize_rows(bv)[0]
    qa, _ = to_csr(m_lex, False)
    ba, _ = to_csr(b_lex, False)
    order = np.argsort(book_ids, kind="stable")
    fn = _hybrid_kernel(qn, bn, qa, ba, order, bbr, alpha, k, chunk, precision)
    got = blocked(fn, movie_ids, book_ids, k, mbr, bbr)
    ref = brute_hybrid(movie_ids, mv, m_lex, book_ids, bv, b_lex, k, alpha)
    assert_same(got, ref)
    dup = sorted(book_ids[[7, 11, 40, 63]])                # identical in both spaces: bit-identical hybrid score
    assert [b for b, _ in got["m003"][:4]] == dup and len({s for _, s in got["m003"][:4]}) == 1


@pytest.mark.parametrize("precision", ["fp32", "bf16-screen"])
@pytest.mark.parametrize("hk,k,mbr,bbr,chunk", [(3, 5, 1000, 1000, 1 << 20), (4, 12, 13, 17, 64), (10, 7, 30, 8, 100)])
def test_fused_correction_equals_brute_force(hk, k, mbr, bbr, chunk, precision):
    """``score.fused_hub_weight``: each book's top films by the hybrid score (roles swapped, coefficients per
    column), then the main pass with the books' offsets, both against the brute force over all pairs."""
    movie_ids, mv, m_lex, book_ids, bv, b_lex = catalog(seed=11)
    qn, bn = normalize_rows(mv)[0], normalize_rows(bv)[0]
    qa, _ = to_csr(m_lex, False)
    ba, _ = to_csr(b_lex, False)
    h64, coef = hybrid_scores(qn, m_lex, bn, b_lex, 0.8)
    h = h64.astype(np.float32)
    tops = blocked(lambda bs, fs: hybrid_book_topk(bn[bs], qn[fs], ba[bs], qa[fs], coef[fs], hk, chunk_elems=chunk,
                                                   precision=precision), book_ids, movie_ids, hk, bbr, mbr)
    assert_same(tops, ranked(book_ids, movie_ids, h.T, hk))
    off = fused_offsets(h, hk, 0.5)
    np.testing.assert_allclose([0.5 * np.mean(np.float64([x for _, x in tops[b]])) for b in book_ids], off, rtol=1e-6)

    def main_pass(offset):
        return blocked(lambda ms, cs: hybrid_topk(qn[ms], bn[cs], qa[ms], ba[cs], coef[ms], k, chunk_elems=chunk,
                                                  precision=precision, book_offset=offset(cs)),
                       movie_ids, book_ids, k, mbr, bbr)

    got = main_pass(lambda cs: off[cs])
    assert_same(got, brute_hybrid_rows(movie_ids, qn, m_lex, book_ids, bn, b_lex, k, 0.8, fused=(hk, 0.5)))
    assert got != main_pass(lambda cs: None)


@pytest.mark.parametrize("precision", ["fp32", "bf16-screen"])
@pytest.mark.parametrize("k,mbr,bbr,chunk", [(5, 1000, 1000, 1 << 20), (12, 13, 17, 64), (7, 30, 8, 100)])
def test_bookz_equals_brute_force(k, mbr, bbr, chunk, precision):
    """``score.lexical_hubness: bookz``: each book's statistics of the films' lexical z-scores summed over movie
    blocks (:func:`sparse_book_moments`), its ``(P, T)`` standardising them per book, and the main pass with them,
    against the brute force over all pairs (the same float64 formula: the same bits, ties included)."""
    movie_ids, mv, m_lex, book_ids, bv, b_lex = catalog(seed=7)
    qn, bn = normalize_rows(mv)[0], normalize_rows(bv)[0]
    qa, _ = to_csr(m_lex, False)
    ba, _ = to_csr(b_lex, False)
    alpha, n_films = 0.7, len(movie_ids)
    _, coef, _ = bookz_scores(qn, m_lex, bn, b_lex, alpha)
    d64 = qn.astype(np.float64) @ bn.astype(np.float64).T
    l64 = (qa.toarray().astype(np.float64) @ ba.toarray().astype(np.float64).T).astype(np.float32).astype(np.float64)
    z = coef[:, 1:2] * l64 + coef[:, 3:4]                      # each film's lexical z-score (0: no terms)
    np.testing.assert_allclose(z[coef[:, 1] > 0].mean(1), 0.0, atol=1e-9)
    s1, s2 = np.zeros(len(book_ids)), np.zeros(len(book_ids))
    for m0 in range(0, n_films, mbr):                          # summed over movie blocks, as the job
        x1, x2 = sparse_book_moments(qa[m0:m0 + mbr], ba, coef[m0:m0 + mbr, 1], coef[m0:m0 + mbr, 3], chunk)
        s1, s2 = s1 + x1, s2 + x2
    np.testing.assert_allclose(s1, z.sum(0), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(s2, (z * z).sum(0), rtol=1e-10)
    book_z = book_lexical_scale(s1, s2, n_films, alpha)
    zb = (z - z.mean(0)) / z.std(0)
    np.testing.assert_allclose(book_z[:, :1].T * z + book_z[:, 1:].T, (1 - alpha) * zb, atol=1e-9)
    h = (coef[:, :1] * d64.astype(np.float32).astype(np.float64) + book_z[:, 0] * (coef[:, 1:2] * l64 + coef[:, 3:4])
         + coef[:, 2:3] + book_z[:, 1]).astype(np.float32)
    got = blocked(lambda ms, cs: hybrid_topk(qn[ms], bn[cs], qa[ms], ba[cs], coef[ms], k, chunk_elems=chunk,
                                             precision=precision, book_z=book_z[cs]), movie_ids, book_ids, k, mbr, bbr)
    assert_same(got, ranked(movie_ids, book_ids, h, k))
    dup = sorted(book_ids[[7, 11, 40, 63]])                # identical books: identical (P, T), bit-identical score
    assert [b for b, _ in got["m003"][:4]] == dup and len({s for _, s in got["m003"][:4]}) == 1
    plain = brute_hybrid_rows(movie_ids, qn, m_lex, book_ids, bn, b_lex, k, alpha)
    assert any([b for b, _ in got[m]] != [b for b, _ in plain[m]] for m in movie_ids)


def test_hybrid_is_not_a_rerank_of_truncated_lists():
    """A book outside both single-method top-k lists can win the hybrid: the kernel must find it."""
    qn = normalize_rows(np.array([[1.0, 0.0, 0.0]]))[0]
    bv = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.9, 0.436, 0.0], [0.0, 0.0, 1.0]])
    bn = normalize_rows(bv)[0]
    b_lex = [(np.array([0]), np.array([0.0])), (np.array([0]), np.array([1.0])),
             (np.array([0, 1]), np.array([0.9, 0.436])), (np.array([1]), np.array([1.0]))]
    b_lex[0] = (np.array([1], np.int32), np.array([1.0], np.float32))
    qa, _ = to_csr([(np.array([0], np.int32), np.array([1.0], np.float32))], False)
    ba, _ = to_csr([(i.astype(np.int32), w.astype(np.float32)) for i, w in b_lex], False)
    # dense top-1 is book 0, lexical top-1 is book 1; book 2 is second in both and first in the hybrid
    l64 = (qa @ ba.T).toarray()[0]
    d64 = (qn.astype(np.float64) @ bn.astype(np.float64).T)[0]
    assert np.argmax(d64) == 0 and np.argmax(l64) == 1
    coef = convex_coefficients(0.5, [d64.mean()], [d64.var()], [l64.mean()], [l64.var()])
    r, c, s = hybrid_topk(qn, bn, qa, ba, coef, 1, precision="fp32")
    assert c.tolist() == [2]
    np.testing.assert_allclose(s, combine(coef, np.array([0]), np.float32(d64[2:3]), np.float32(l64[2:3])))


def _lexical_path(path, monkeypatch):
    """``jit``: numba's compiled loops (requirements.txt installs numba: they must run); ``scipy``: scipy's routine,
    as in an environment without numba."""
    if path == "jit":
        assert kernel_module.compiled() is not None
    else:
        monkeypatch.setattr(kernel_module, "compiled", lambda: None)


@pytest.mark.parametrize("path", ["jit", "scipy"])
@pytest.mark.parametrize("chunk", [1 << 20, 40, 7])
def test_sparse_moments_are_the_sums_of_the_published_scores_per_movie(chunk, path, monkeypatch):
    """Sum and sum of squares of each movie's float32 scores over the block, whatever the chunking; a movie
    without terms, or sharing none with the books, gets 0 (as does every row of a chunk without entries)."""
    _lexical_path(path, monkeypatch)
    rng = np.random.default_rng(5)
    dense = (rng.random((9, VOCAB)) < 0.2) * rng.random((9, VOCAB))
    dense[[2, 6, 7]] = 0.0                                     # three movies without terms, two of them adjacent
    dense[4] = 0.0
    dense[4, VOCAB - 1] = 1.0                                  # a term no book has
    books = (rng.random((11, VOCAB)) < 0.3) * rng.random((11, VOCAB))
    books[:, VOCAB - 1] = 0.0
    qa, ba = sp.csr_matrix(dense.astype(np.float32)), sp.csr_matrix(books.astype(np.float32))
    s1, s2 = sparse_moments(qa, ba, chunk_elems=chunk)
    scores = (qa.toarray().astype(np.float64) @ ba.toarray().astype(np.float64).T).astype(np.float32)
    np.testing.assert_allclose(s1, scores.astype(np.float64).sum(axis=1), rtol=1e-12)
    np.testing.assert_allclose(s2, (scores.astype(np.float64) ** 2).sum(axis=1), rtol=1e-12)
    assert s1[[2, 4, 6, 7]].tolist() == [0.0] * 4 and s2[[2, 4, 6, 7]].tolist() == [0.0] * 4
    assert (s1[[0, 1, 3, 5, 8]] > 0).all()


@pytest.mark.parametrize("path", ["jit", "routine", "public"])
def test_lexical_product_has_the_bits_of_scipys_product_in_any_chunking(path, monkeypatch):
    """The scores (dense float32) and the product (CSR float64) of every chunk are those of ``qa @ ba.T`` bit for
    bit, through numba's loops (``jit``: the scores), scipy's routine and its reused buffers, or the public
    operator, and a chunk read after others is not disturbed by their buffers."""
    _lexical_path("jit" if path == "jit" else "scipy", monkeypatch)
    if path == "public":
        monkeypatch.setattr(sparse_module, "_csr_matmat", lambda: None)
    else:
        assert sparse_module._csr_matmat() is not None            # this scipy has the routine: the fast path runs
    rng = np.random.default_rng(11)
    dense = (rng.random((13, VOCAB)) < 0.3) * rng.random((13, VOCAB))
    dense[[0, 5, 6]] = 0.0                                     # movies without terms, at the start and adjacent
    books = (rng.random((17, VOCAB)) < 0.4) * rng.random((17, VOCAB))
    qa, ba = sp.csr_matrix(dense.astype(np.float32)), sp.csr_matrix(books.astype(np.float32))
    ref = (qa.astype(np.float64) @ ba.astype(np.float64).T.tocsr())
    want = ref.toarray().astype(np.float32)
    for step in (1, 2, 5, 13):
        lex = LexicalProduct(qa, ba)
        got = {}
        for r0 in range(0, 13, step):
            r1 = min(13, r0 + step)
            indptr, values = lex.product(r0, r1)
            part = ref[r0:r1]
            assert np.array_equal(np.diff(indptr), np.diff(part.indptr))
            assert np.array_equal(values.view(np.uint64), part.data.view(np.uint64))
            got[r0] = lex.scores(r0, r1).copy()
        for r0, s in got.items():
            assert s.dtype == np.float32 and np.array_equal(s.view(np.uint32), want[r0:r0 + len(s)].view(np.uint32))
    empty = LexicalProduct(qa, ba[:0])
    assert empty.scores(0, 13).shape == (13, 0)


def test_compiled_loops_give_scipys_scores_and_statistics():
    """On a product with many shared terms (about half full, as the bench's): the compiled loops' float32 scores are
    scipy's bit for bit, including exact zeros and -0.0-free ties, and both statistics passes agree with scipy's
    to float64 rounding (only the order of the additions differs)."""
    rng = np.random.default_rng(23)
    vocab = 300
    qa = sp.random(70, vocab, density=0.08, random_state=rng, dtype=np.float32, format="csr")
    ba = sp.random(90, vocab, density=0.05, random_state=rng, dtype=np.float32, format="csr")
    qa.data -= 0.3                                             # negative weights: sums that cancel
    qa, ba = qa.tolil(), ba.tolil()
    ba[5], ba[6], ba[7] = ba[4], ba[4], 0.0                    # identical books (identical bits), a book without terms
    qa[0], ba[8] = 0.0, 0.0                                    # one entry whose float32 value depends on the order:
    qa[0, :3], ba[8, :3] = [1.0, 1.0, 2.0 ** -30], [1.0, -1.0, 2.0 ** -30]   # (1 - 1) + 2^-60, not 2^-60 - 1 + 1
    qa, ba = qa.tocsr(), ba.tocsr()
    b, e = rng.random(70), rng.random(70) - 0.5
    assert kernel_module.compiled() is not None
    jit = LexicalProduct(qa, ba)
    got, j1, jb = jit.scores(0, 70).copy(), sparse_moments(qa, ba), sparse_book_moments(qa, ba, b, e)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kernel_module, "compiled", lambda: None)
        ref = LexicalProduct(qa, ba)
        assert ref.jit is None and jit.jit is not None
        want, r1, rb = ref.scores(0, 70).copy(), sparse_moments(qa, ba), sparse_book_moments(qa, ba, b, e)
    assert 0.3 < (want != 0).mean() < 0.9 and (want < 0).any()
    assert want[0, 8] == np.float32(2.0 ** -60) and np.array_equal(got.view(np.uint32), want.view(np.uint32))
    assert not np.signbit(got[got == 0]).any() and np.array_equal(got[:, 5], got[:, 6])
    for x, y in zip(j1 + jb, r1 + rb):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-12)
    plain, unit = (np.zeros(70), np.zeros(70)), (np.zeros(70), np.zeros(70))
    jit.row_moments(*plain)                                    # the unweighted loop: the unit weights' bits
    jit.row_moments(*unit, weights=(np.ones(90), np.zeros(90), np.ones(90)))
    assert all(np.array_equal(x.view(np.uint64), y.view(np.uint64)) for x, y in zip(plain, unit))


@pytest.mark.parametrize("precision", ["fp32", "bf16-screen"])
@pytest.mark.parametrize("bookz,offset", [(False, False), (True, False), (False, True), (True, True)])
def test_compiled_fusion_gives_numpys_screened_scores(bookz, offset, precision, monkeypatch):
    """The hybrid's screened score and lexical scores per chunk through numba's one pass
    (:func:`lfr.score.jit.hybrid_rows`) are numpy's (:func:`lfr.score.hybrid._fuse`) bit for bit, in every form
    (convex, bookz, with the fused correction's offsets), whatever the chunking."""
    from lfr.score.hybrid import _fused_chunks

    rng = np.random.default_rng(31)
    movie_ids, mv, m_lex, book_ids, bv, b_lex = catalog(seed=3)
    qn, bn = normalize_rows(mv)[0], normalize_rows(bv)[0]
    qa, ba = to_csr(m_lex, False)[0], to_csr(b_lex, False)[0]
    coef32 = (rng.standard_normal((len(qn), 4)) * 3).astype(np.float32)
    bz32 = rng.standard_normal((2, len(bn))).astype(np.float32) if bookz else None
    off = rng.standard_normal(len(bn)).astype(np.float32) if offset else None

    def chunks(chunk):
        return [(r0, g.copy(), s_l.copy()) for _, r0, _, g, s_l in
                _fused_chunks(qn, bn, qa, ba, 1, chunk, precision, coef32, bz32, off)]

    assert kernel_module.compiled() is not None
    jit = [chunks(c) for c in (7, 1000)]
    monkeypatch.setattr(kernel_module, "compiled", lambda: None)
    for got, want in zip(jit, [chunks(c) for c in (7, 1000)]):
        assert len(got) == len(want) and [r for r, _, _ in got] == [r for r, _, _ in want]
        for (_, g1, s1), (_, g2, s2) in zip(got, want):
            assert np.array_equal(s1.view(np.uint32), s2.view(np.uint32))
            assert np.array_equal(g1.view(np.uint32), g2.view(np.uint32))


def test_coefficients_drop_a_constant_component():
    coef = convex_coefficients(0.7, [0.5], [0.04], [0.0], [0.0])   # no lexical signal for this movie
    np.testing.assert_allclose(coef, [[0.7 / 0.2, 0.0, -0.7 / 0.2 * 0.5]])
    m = sp.csr_matrix(np.eye(3, VOCAB, dtype=np.float32))
    s1, s2 = sparse_moments(m, m)
    np.testing.assert_allclose(s1, [1, 1, 1])
    np.testing.assert_allclose(s2, [1, 1, 1])


# ---------------------------------------------------------------- reciprocal rank fusion


def brute_rrf(movie_ids, mv, m_lex, book_ids, bv, b_lex, k, rrf_k, exclude=(), normalize=True):
    """RRF over all books: competition ranks ('min', ties share the best) of the exact float32 scores
    (``normalize=False``: the dense rows as the kernel gets them, e.g. hub-aware augmented)."""
    from scipy.stats import rankdata

    qa, _ = to_csr(m_lex, False)
    ba, _ = to_csr(b_lex, False)
    qn, bn = (normalize_rows(mv)[0], normalize_rows(bv)[0]) if normalize else (mv, bv)
    d32 = (qn.astype(np.float64) @ bn.astype(np.float64).T).astype(np.float32)
    l32 = (qa.toarray().astype(np.float64) @ ba.toarray().astype(np.float64).T).astype(np.float32)
    out = {}
    for i, m in enumerate(movie_ids):
        keep = np.array([(m, b) not in exclude for b in book_ids])
        rd = rankdata(-d32[i, keep].astype(np.float64), method="min")
        rl = rankdata(-l32[i, keep].astype(np.float64), method="min")
        f = np.full(len(book_ids), -np.inf, np.float32)
        f[keep] = (1.0 / (rrf_k + rd) + 1.0 / (rrf_k + rl)).astype(np.float32)
        out.update(ranked([m], book_ids[keep], f[None, keep], k))
    return out


def blocked_rrf(qn, bn, qa, ba, movie_ids, book_ids, k, rrf_k, mbr, bbr, first_n, chunk=1 << 20, exclude=(),
                precision="fp32"):
    """The job's RRF plan in plain Python: block candidates, per-movie proof, unproven movies retried with 4n."""
    from lfr.score.hybrid import rrf_block_candidates, rrf_fuse

    order = np.argsort(book_ids, kind="stable")
    todo, n_top, out, rounds = list(range(len(movie_ids))), first_n, {}, 0
    while todo:
        rounds += 1
        rows_of = {i: [] for i in todo}
        for m0 in range(0, len(todo), mbr):
            ms = np.array(todo[m0:m0 + mbr])
            for b0 in range(0, len(book_ids), bbr):
                cs = order[b0:b0 + bbr]
                ex = [(r, c) for r, mi in enumerate(ms) for c, j in enumerate(cs)
                      if (movie_ids[mi], book_ids[j]) in exclude]
                ex_r, ex_c = (np.array([e[0] for e in ex]), np.array([e[1] for e in ex])) if ex else (None, None)
                r, c, sd, sl = rrf_block_candidates(qn[ms], bn[cs], qa[ms], ba[cs], n_top, ex_r, ex_c,
                                                    chunk_elems=chunk, precision=precision)
                for rr, cc, x, y in zip(r, c, sd, sl):
                    rows_of[ms[rr]].append((book_ids[cs[cc]], x, y))
        complete = n_top >= len(book_ids)
        left = []
        for i, rows in rows_of.items():
            res = rrf_fuse(np.array([b for b, _, _ in rows]), np.array([x for _, x, _ in rows]),
                           np.array([y for _, _, y in rows]), k, n_top, rrf_k, complete)
            if res is None:
                left.append(i)
            else:
                out[movie_ids[i]] = list(zip(res[0], res[1]))
        assert not (left and complete)
        todo, n_top = left, min(4 * n_top, len(book_ids))
    return out, rounds


@pytest.mark.parametrize("precision", ["fp32", "bf16-screen"])
@pytest.mark.parametrize("k,mbr,bbr,first_n,rrf_k,chunk", [(5, 1000, 1000, 100, 60, 1 << 20), (5, 13, 17, 5, 60, 64),
                                                            (12, 30, 7, 12, 1, 1 << 20), (3, 25, 40, 3, 0, 256),
                                                            (100, 25, 40, 100, 60, 1 << 20)])
def test_rrf_equals_brute_force_over_all_books_with_ties(k, mbr, bbr, first_n, rrf_k, chunk, precision):
    movie_ids, mv, m_lex, book_ids, bv, b_lex = catalog()
    qn, bn = normalize_rows(mv)[0], normalize_rows(bv)[0]
    qa, _ = to_csr(m_lex, False)
    ba, _ = to_csr(b_lex, False)
    got, rounds = blocked_rrf(qn, bn, qa, ba, movie_ids, book_ids, k, rrf_k, mbr, bbr, first_n, chunk=chunk,
                              precision=precision)
    assert_same(got, brute_rrf(movie_ids, mv, m_lex, book_ids, bv, b_lex, k, rrf_k))
    dup = sorted(book_ids[[7, 11, 40, 63]])[:k]            # identical in both spaces: one shared rank pair
    assert [b for b, _ in got["m003"][:4]] == dup and len({s for _, s in got["m003"][:4]}) == 1
    if first_n == 3:
        assert rounds > 1                                  # a small first n is not enough for every movie


def test_rrf_exclusions_and_term_less_movies():
    movie_ids, mv, m_lex, book_ids, bv, b_lex = catalog(seed=9)
    qn, bn = normalize_rows(mv)[0], normalize_rows(bv)[0]
    qa, _ = to_csr(m_lex, False)
    ba, _ = to_csr(b_lex, False)
    first, _ = blocked_rrf(qn, bn, qa, ba, movie_ids, book_ids, 4, 60, 1000, 1000, 100)
    excluded = {(m, b) for m, v in first.items() for b, _ in v[:2]}
    got, _ = blocked_rrf(qn, bn, qa, ba, movie_ids, book_ids, 4, 60, 20, 30, 4, exclude=excluded)
    assert_same(got, brute_rrf(movie_ids, mv, m_lex, book_ids, bv, b_lex, 4, 60, exclude=excluded))
    assert not excluded & {(m, b) for m, v in got.items() for b, _ in v}
    assert len(m_lex[0][0]) == 0 and len(got["m000"]) == 4  # no terms: every lexical rank is 1, dense decides


def test_rrf_fuse_refuses_what_it_cannot_prove():
    from lfr.score.hybrid import rrf_fuse

    ids = np.array(["a", "b", "c", "d"])
    s_d = np.array([0.9, 0.8, 0.1, 0.0], np.float32)      # dense list (n=2): a, b
    s_l = np.array([0.1, 0.0, 0.9, 0.8], np.float32)      # lexical list (n=2): c, d -- no book in both
    assert rrf_fuse(ids, s_d, s_l, 1, 2, 60) is None      # every candidate has one rank unknown
    books, scores = rrf_fuse(ids, s_d, s_l, 1, 2, 60, complete=True)
    assert books.tolist() == ["a"] and scores.dtype == np.float32   # ranks (1, 3) == (3, 1): tie -> smaller id
    np.testing.assert_allclose(scores, [1 / 61 + 1 / 63], rtol=1e-6)
    books, scores = rrf_fuse(ids, s_d, s_l, 3, 2, 60, complete=True)
    assert books.tolist() == ["a", "c", "b"] and scores[0] == scores[1]   # b (2, 4) ties d (4, 2): smaller id
    tied = np.array([0.5, 0.5, 0.5, 0.1], np.float32)     # competition ranks: a, b, c share dense rank 1
    books, scores = rrf_fuse(ids, tied, s_l, 1, 4, 60, complete=True)
    assert books.tolist() == ["c"]
    np.testing.assert_allclose(scores, [1 / 61 + 1 / 61], rtol=1e-6)
