"""Metric functions against hand-computed cases (pure numpy, no Spark, no model)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lfr.eval.metrics import (
    bootstrap_interval,
    confidence_error_metrics,
    paired_difference,
    per_film_metrics,
    pessimistic_ranks,
    ranking_intervals,
    ranking_metrics,
    resolve_links,
)
from lfr.eval.runner import build_eval_pairs, kfold_links_by_movie, split_links_by_movie


def test_single_relevant_hand_computed():
    # film 0: relevant book 2 is the best -> rank 1; film 1: relevant book 0 is 3rd -> rank 3
    scores = np.array([[0.1, 0.2, 0.9, 0.3],
                       [0.5, 0.9, 0.1, 0.8]])
    out = ranking_metrics(scores, [[2], [0]], ks=[1, 2, 3])
    assert out["recall@1"] == pytest.approx(0.5)
    assert out["recall@2"] == pytest.approx(0.5)
    assert out["recall@3"] == pytest.approx(1.0)
    assert out["mrr"] == pytest.approx((1 + 1 / 3) / 2)
    assert out["ndcg@10"] == pytest.approx((1 + 1 / math.log2(4)) / 2)   # 1/log2(3+1) = 0.5
    assert out["median_rank"] == pytest.approx(2.0)
    assert (out["n_evaluated"], out["n_empty"], out["n_books"]) == (2, 0, 4)


def test_multiple_relevant_books():
    # relevant books 1 and 3 with ranks 2 and 4 (order: 0, 1, 2, 3, 4)
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5]])
    out = ranking_metrics(scores, [[1, 3]], ks=[1, 2, 4], ndcg_k=10)
    assert out["recall@1"] == 0.0
    assert out["recall@2"] == pytest.approx(0.5)
    assert out["recall@4"] == pytest.approx(1.0)
    assert out["mrr"] == pytest.approx(0.5)                                   # best rank 2
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 / math.log2(2) + 1 / math.log2(3)
    assert out["ndcg@10"] == pytest.approx(dcg / idcg)
    # nDCG cut-off: with k=3 only rank 2 counts, ideal has both in the top 3
    out3 = ranking_metrics(scores, [[1, 3]], ks=[1], ndcg_k=3)
    assert out3["ndcg@3"] == pytest.approx((1 / math.log2(3)) / idcg)
    # duplicates in the relevant list are counted once
    assert ranking_metrics(scores, [[1, 3, 3]], ks=[2])["recall@2"] == pytest.approx(0.5)


def test_ties_are_pessimistic():
    # relevant book 0 tied with two others at the top -> rank 3, not 1
    row = np.array([0.5, 0.5, 0.5, 0.1])
    assert pessimistic_ranks(row, [0]).tolist() == [3]
    out = ranking_metrics(row[None, :], [[0]], ks=[1, 3])
    assert out["recall@1"] == 0.0 and out["recall@3"] == 1.0
    assert out["mrr"] == pytest.approx(1 / 3)
    # a constant scorer ranks every relevant book last
    const = np.zeros((1, 6))
    assert ranking_metrics(const, [[2]], ks=[1, 5])["mrr"] == pytest.approx(1 / 6)
    assert ranking_metrics(const, [[2]], ks=[5])["recall@5"] == 0.0
    # two relevant books tied with each other both get the pessimistic rank
    assert pessimistic_ranks(np.array([0.9, 0.9, 0.1]), [0, 1]).tolist() == [2, 2]
    # NaN scores count as worst
    assert pessimistic_ranks(np.array([np.nan, 0.2, 0.1]), [0]).tolist() == [3]


def test_empty_ground_truth_excluded_and_counted():
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.3]])
    out = ranking_metrics(scores, [[0], [], []], ks=[1])
    assert out["n_evaluated"] == 1 and out["n_empty"] == 2
    assert out["recall@1"] == 1.0 and out["mrr"] == 1.0
    none = ranking_metrics(scores, [[], [], []], ks=[1])
    assert none["n_evaluated"] == 0 and none["n_empty"] == 3
    assert math.isnan(none["recall@1"]) and math.isnan(none["mrr"]) and math.isnan(none["median_rank"])


def test_k_larger_than_catalog_and_validation():
    scores = np.array([[0.1, 0.2, 0.3]])
    assert ranking_metrics(scores, [[0]], ks=[100])["recall@100"] == 1.0
    with pytest.raises(ValueError):
        ranking_metrics(scores, [[0], [1]])
    with pytest.raises(IndexError):
        ranking_metrics(scores, [[5]])


def test_resolve_links_counts_missing_and_duplicates():
    links = [("m1", "b1"), ("m1", "b2"), ("m1", "b1"), ("m2", "bX"), ("mX", "b1"), ("m3", "b2")]
    relevant, stats = resolve_links(links, ["m1", "m2", "m3"], ["b1", "b2", "b3"])
    assert [r.tolist() for r in relevant] == [[0, 1], [], [1]]
    assert ((stats.n_links, stats.n_duplicates, stats.n_missing_movie, stats.n_missing_book, stats.n_used)
            == (5, 1, 1, 1, 3))
    assert ("m2", "bX", "book not in catalog") in stats.missing
    # film m2 has only a missing book: empty ground truth, excluded from the averages
    scores = np.array([[0.9, 0.8, 0.1], [0.1, 0.2, 0.3], [0.1, 0.9, 0.3]])
    out = ranking_metrics(scores, relevant, ks=[1])
    assert out["n_evaluated"] == 2 and out["n_empty"] == 1
    assert out["recall@1"] == pytest.approx((0.5 + 1.0) / 2)


def test_confidence_error_metrics_hand_computed():
    # cos:      0.9  -0.4  0.6  0.2  0.5  1.3
    # p=clip:   0.9   0.0  0.6  0.2  0.5  1.0
    # label:    1     0    0    1    1    1   (-1 means negative too)
    # |p-0.5|:  0.4   0.5  0.1  0.3  0.0  0.5
    # order (stable, most confident first): idx 1 (0.5), 5 (0.5), 0 (0.4), 3 (0.3), 2 (0.1), 4 (0.0)
    # errors p-y: 1: 0.0, 5: 0.0, 0: -0.1, 3: -0.8, 2: 0.6, 4: -0.5
    cos = np.array([0.9, -0.4, 0.6, 0.2, 0.5, 1.3])
    labels = np.array([1, -1, 0, 1, 1, 1])
    out = confidence_error_metrics(cos, labels, fractions=[0.2, 0.5, 0.8])
    # top 20%: ceil(1.2) = 2 pairs -> idx 1, 5 -> errors 0, 0
    assert out["mae@20%"] == pytest.approx(0.0) and out["rmse@20%"] == pytest.approx(0.0)
    # top 50%: 3 pairs -> 0, 0, 0.1
    assert out["mae@50%"] == pytest.approx(0.1 / 3)
    assert out["rmse@50%"] == pytest.approx(math.sqrt(0.01 / 3))
    # top 80%: ceil(4.8) = 5 pairs -> 0, 0, 0.1, 0.8, 0.6
    assert out["mae@80%"] == pytest.approx(1.5 / 5)
    assert out["rmse@80%"] == pytest.approx(math.sqrt((0.01 + 0.64 + 0.36) / 5))
    assert out["mae@all"] == pytest.approx(2.0 / 6)
    assert out["n_pairs"] == 6
    empty = confidence_error_metrics(np.zeros(0), np.zeros(0))
    assert empty["n_pairs"] == 0 and math.isnan(empty["mae@20%"])
    with pytest.raises(ValueError):
        confidence_error_metrics(np.zeros(2), np.zeros(3))


def test_split_by_movie_is_seeded_and_disjoint():
    links = pd.DataFrame({"movie_id": [f"m{i // 2}" for i in range(20)] + ["m0"],
                          "book_id": [f"b{i}" for i in range(21)]})
    train, test = split_links_by_movie(links, 0.3, seed=7)
    train2, test2 = split_links_by_movie(links.sample(frac=1.0, random_state=1), 0.3, seed=7)
    assert set(test.movie_id) == set(test2.movie_id)
    assert set(train.movie_id).isdisjoint(test.movie_id)
    assert test.movie_id.nunique() == 3 and len(train) + len(test) == len(links)
    # every link of a held-out film is held out
    assert all((links.movie_id == m).sum() == (test.movie_id == m).sum() for m in test.movie_id.unique())
    one = pd.DataFrame({"movie_id": ["a", "b"], "book_id": ["x", "y"]})
    tr, te = split_links_by_movie(one, 0.9, seed=1)
    assert len(tr) == 1 and len(te) == 1


def test_kfold_by_movie_covers_every_film_once():
    links = pd.DataFrame({"movie_id": [f"m{i // 2}" for i in range(20)] + ["m0"],
                          "book_id": [f"b{i}" for i in range(21)]})
    folds = kfold_links_by_movie(links, 3, seed=5)
    tests = [set(te.movie_id) for _, te in folds]
    assert sorted(len(t) for t in tests) == [3, 3, 4]
    assert set().union(*tests) == set(links.movie_id) and sum(len(t) for t in tests) == 10
    for train, test in folds:
        assert set(train.movie_id).isdisjoint(test.movie_id) and len(train) + len(test) == len(links)
    assert len(kfold_links_by_movie(links.head(4), 10, seed=5)) == 2      # capped at the number of films


def test_eval_pairs_negatives_exclude_relevant():
    relevant = [np.array([0, 3]), np.array([], dtype=int), np.array([5])]
    pairs = build_eval_pairs(relevant, n_books=8, negatives_per_positive=2, seed=3)
    assert pairs.label.sum() == 3 and (pairs.label == 0).sum() == 6
    for i, rel in enumerate(relevant):
        neg = pairs[(pairs.movie_row == i) & (pairs.label == 0)].book_col
        assert not set(neg) & set(rel.tolist())
        assert neg.is_unique
    again = build_eval_pairs(relevant, n_books=8, negatives_per_positive=2, seed=3)
    pd.testing.assert_frame_equal(pairs, again)


def _random_scores(seed: int, n_films: int = 40, n_books: int = 60):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(n_films, n_books))
    relevant = [rng.choice(n_books, size=1 + (i % 3 == 0), replace=False) for i in range(n_films)]
    relevant[5] = np.array([], dtype=int)          # a film without links: excluded everywhere
    return scores, relevant


def test_per_film_metrics_mean_is_ranking_metrics():
    # films with one and with two links: Recall@k and nDCG need every rank, not only the best
    scores, relevant = _random_scores(3)
    out = ranking_metrics(scores, relevant, ks=[1, 10, 30], ndcg_k=10, return_ranks=True)
    per = per_film_metrics(out["ranks"], ks=[1, 10, 30], ndcg_k=10)
    assert set(per) == {"recall@1", "recall@10", "recall@30", "mrr", "ndcg@10"}
    assert np.isnan(per["mrr"][5]) and np.isnan(per["recall@10"]).sum() == 1
    for name, values in per.items():
        assert np.nanmean(values) == pytest.approx(out[name]), name
    # hand-computed film: ranks 2 and 4 -> recall@1 0, recall@10 1, RR 1/2
    hand = per_film_metrics([[2, 4]], ks=[1, 10], ndcg_k=10)
    assert (hand["recall@1"][0], hand["recall@10"][0], hand["mrr"][0]) == (0.0, 1.0, 0.5)


def test_bootstrap_interval_contains_estimate_and_is_seeded():
    values = np.r_[np.ones(20), np.zeros(45), [np.nan]]        # R@10 of 65 films, one without links
    mean, lo, hi = bootstrap_interval(values, n_resamples=2000, seed=13)
    assert mean == pytest.approx(20 / 65)
    assert lo < mean < hi and 0.0 <= lo and hi <= 1.0
    assert hi - lo > 0.15   # 65 films: the interval is wide (this is the point of computing it)
    assert bootstrap_interval(values, 2000, seed=13) == (mean, lo, hi)
    rr = 1.0 / np.random.default_rng(0).integers(1, 500, size=65)     # reciprocal ranks: continuous values
    assert bootstrap_interval(rr, 2000, seed=13) == bootstrap_interval(rr, 2000, seed=13)
    assert bootstrap_interval(rr, 2000, seed=13)[1:] != bootstrap_interval(rr, 2000, seed=14)[1:]
    assert all(math.isnan(x) for x in bootstrap_interval([np.nan, np.nan], seed=1))
    constant = bootstrap_interval(np.full(10, 0.25), 500, seed=1)
    assert constant == (0.25, 0.25, 0.25)


def test_paired_difference_of_a_method_with_itself_is_exactly_zero():
    scores, relevant = _random_scores(4)
    ranks = ranking_metrics(scores, relevant, ks=[10], return_ranks=True)["ranks"]
    per = per_film_metrics(ranks, ks=[10])
    same = paired_difference(per["mrr"], per["mrr"], seed=13)
    assert (same["diff"], same["lo"], same["hi"], same["within_noise"]) == (0.0, 0.0, 0.0, True)
    assert same["n_films"] == 39


def test_paired_difference_detects_a_real_gap_and_flags_noise():
    a = np.r_[np.ones(30), np.zeros(10)]
    better = paired_difference(a, np.zeros(40), seed=2)
    assert better["diff"] == pytest.approx(0.75) and better["lo"] > 0 and not better["within_noise"]
    # one film of 40 differs: an interval that crosses 0, i.e. noise
    b = a.copy()
    b[0] = 0.0
    tiny = paired_difference(a, b, seed=2)
    assert tiny["diff"] == pytest.approx(1 / 40) and tiny["lo"] <= 0.0 <= tiny["hi"] and tiny["within_noise"]
    with pytest.raises(ValueError):
        paired_difference(np.zeros(3), np.zeros(4), seed=1)


def test_ranking_intervals_per_method_and_against_reference():
    scores, relevant = _random_scores(5)
    perfect = np.zeros_like(scores)
    for i, rel in enumerate(relevant):
        perfect[i, rel] = 1.0 + np.arange(len(rel))     # every link on top (no ties: ties rank pessimistically)
    ranks = {m: ranking_metrics(s, relevant, ks=[1, 10], return_ranks=True)["ranks"]
             for m, s in (("text_only", scores), ("oracle", perfect))}
    out = ranking_intervals(ranks, reference="text_only", ks=[1, 10], ndcg_k=10, n_resamples=500, seed=7)
    assert out["metrics"] == ["recall@1", "recall@10", "mrr", "ndcg@10"] and out["reference"] == "text_only"
    point = ranking_metrics(scores, relevant, ks=[1, 10])
    for name in out["metrics"]:
        iv = out["methods"]["text_only"][name]
        assert iv["value"] == pytest.approx(point[name]) and iv["lo"] <= iv["value"] <= iv["hi"]
        assert out["paired"]["text_only"][name]["diff"] == 0.0
        if name != "recall@1":   # a film with two links has only one in its top 1
            assert out["methods"]["oracle"][name] == {"value": 1.0, "lo": 1.0, "hi": 1.0}
    assert out["paired"]["oracle"]["mrr"]["lo"] > 0 and not out["paired"]["oracle"]["mrr"]["within_noise"]
    assert ranking_intervals(ranks, reference="text_only", ks=[1, 10], n_resamples=500, seed=7) == out
    assert ranking_intervals(ranks, reference=None, ks=[1], seed=7)["paired"] == {}
    with pytest.raises(KeyError):
        ranking_intervals(ranks, reference="missing", seed=7)
