"""score.hubness csls in the kernels (numpy + torch, no Spark): the hub-aware score is a dot product of augmented
rows, so the dense and hybrid kernels give its exact top-k at either precision, near-ties included."""
import numpy as np
import pytest

from lfr.score.hubs import augment, book_column, film_column
from lfr.score.hybrid import hybrid_topk
from lfr.score.kernel import block_topk, norm_scale, normalize_rows
from lfr.settings import load_settings
from tests.test_score_hybrid_kernel import blocked, brute_hybrid_rows, catalog, to_csr
from tests.test_score_precision import assert_identical, both, brute_topk, exact32, near_ties


def hub_r(q, b, hub_k):
    """r(book): the mean of its ``hub_k`` best exact float32 cosines with the films, added in ascending order
    in float64 (as the job's ``aggregate(array_sort(...))``)."""
    cos = exact32(q, b)
    top = -np.sort(-cos, axis=0)[:hub_k]
    return np.array([sum(sorted(float(x) for x in top[:, j])) / len(top) for j in range(b.shape[0])])


def hub_rows(q, b, hub_k=10, weight=0.5):
    r = hub_r(q, b, hub_k)
    return augment(q, film_column(q)), augment(b, book_column(r, weight)), r


def test_the_augmented_dot_is_cosine_minus_the_weighted_hub_score():
    rng = np.random.default_rng(0)
    q, b = normalize_rows(rng.standard_normal((30, 16)))[0], normalize_rows(rng.standard_normal((50, 16)))[0]
    q[4] = 0.0                                                          # a film without a dense part
    qa, ba, r = hub_rows(q, b, hub_k=5, weight=0.5)
    cos = q.astype(np.float64) @ b.astype(np.float64).T
    assert np.abs(r - np.sort(cos, axis=0)[-5:].mean(axis=0)).max() < 1e-6
    s = qa.astype(np.float64) @ ba.astype(np.float64).T
    films = np.arange(30) != 4
    np.testing.assert_allclose(s[films], (cos - 0.5 * r[None, :])[films], atol=1e-7)
    assert (s[4] == 0).all()                                            # [0, 0]: dense score 0, as without hubness
    assert 1.0 < norm_scale(qa, ba) <= 2.0                              # the margin's scale: sqrt(2) x sqrt(1 + r^2/4)


@pytest.mark.parametrize("k", [1, 10])
@pytest.mark.parametrize("weight", [0.5, 1.0])
def test_near_ties_of_the_hub_aware_score_are_ranked_exactly_at_both_precisions(k, weight):
    """Books of a band of near-tie cosines get near-tie hub scores as well: the published order is decided below
    bf16's resolution on both terms; fp32 and bf16-screen agree bit for bit and equal the brute force."""
    q, b = near_ties(seed=5, n_band=300, n_noise=600, m=4)
    rng = np.random.default_rng(1)
    r = 0.4 + 2e-3 * rng.random(len(b))                                 # near-tie r(book)
    qa, ba = augment(q, film_column(q)), augment(b, book_column(r, weight))
    got = both(qa, ba, k, chunk_elems=qa.shape[0] * 257)                # several chunks per block
    assert_identical(got, brute_topk(qa, ba, k))
    plain = brute_topk(q, b, k)
    assert any(set(got[1][got[0] == i]) != set(plain[1][plain[0] == i]) for i in range(len(q)))   # it re-ranks


def test_identical_books_keep_bit_identical_hub_aware_scores_and_id_order():
    rng = np.random.default_rng(2)
    q, b = normalize_rows(rng.standard_normal((20, 12)))[0], normalize_rows(rng.standard_normal((40, 12)))[0]
    b[[9, 17, 30]] = b[3]
    qa, ba, r = hub_rows(q, b, hub_k=4, weight=1.0)
    assert len({r[j] for j in (3, 9, 17, 30)}) == 1                     # equal books: equal r, equal offsets
    rows, cols, scores = block_topk(qa, ba, 40, precision="fp32")
    first = [c for rr, c in zip(rows, cols) if rr == 0 and c in (3, 9, 17, 30)]
    assert first == [3, 9, 17, 30]
    assert len({s for rr, c, s in zip(rows, cols, scores) if rr == 0 and c in (3, 9, 17, 30)}) == 1


@pytest.mark.parametrize("precision", ["fp32", "bf16-screen"])
def test_hybrid_kernel_on_hub_aware_rows_equals_brute_force(precision):
    """The hybrid's z-scores of the hub-aware dense score come from the augmented rows' moments (exact), and its
    top-k over blocks equals the brute force of ``alpha z(cos - w r) + (1 - alpha) z(lexical)``."""
    from lfr.score.hybrid import convex_coefficients, dense_book_moments, dense_movie_stats, moments_to_stats
    from lfr.score.sparse import sparse_moments

    movie_ids, mv, m_lex, book_ids, bv, b_lex = catalog(seed=9)
    qn, bn = normalize_rows(mv)[0], normalize_rows(bv)[0]
    qa_d, ba_d, _ = hub_rows(qn, bn, hub_k=6, weight=0.5)
    qa, _ = to_csr(m_lex, False)
    ba, _ = to_csr(b_lex, False)
    alpha, k = float(load_settings(environ={}).score.alpha), 7
    bsum, gram = dense_book_moments(ba_d)
    mu_d, var_d = dense_movie_stats(qa_d, len(bn), bsum, gram)
    s1, s2 = sparse_moments(qa, ba)
    coef = convex_coefficients(alpha, mu_d, var_d, *moments_to_stats(s1, s2, len(bn)))

    def pairs(rs, cs):
        return hybrid_topk(qa_d[rs], ba_d[cs], qa[rs], ba[cs], coef[rs], k, precision=precision)

    got = blocked(pairs, movie_ids, book_ids, k, 25, 40)
    ref = brute_hybrid_rows(movie_ids, qa_d, m_lex, book_ids, ba_d, b_lex, k, alpha)
    assert set(got) == set(ref)
    for m in ref:
        assert [b for b, _ in got[m]] == [b for b, _ in ref[m]], m
        np.testing.assert_allclose([s for _, s in got[m]], [s for _, s in ref[m]], rtol=1e-6, atol=1e-6)
