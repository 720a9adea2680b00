"""Metric functions against hand-computed cases (pure numpy, no Spark, no model)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lfr.eval.metrics import (
    confidence_error_metrics,
    pessimistic_ranks,
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
    assert (stats.n_links, stats.n_duplicates, stats.n_missing_movie, stats.n_missing_book, stats.n_used) == (5, 1, 1, 1, 3)
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
