"""Hub statistics (lfr.score.hubs): the measures on counts whose values are known by hand."""
from __future__ import annotations

import numpy as np
import pytest

from lfr.score.hubs import hub_stats, occurrence_stats


def test_even_lists_have_no_hubs():
    never, gini, skew = occurrence_stats(np.array([3, 3, 3, 3]), n_books=4)
    assert (never, skew) == (0.0, 0.0) and gini == pytest.approx(0.0, abs=1e-12)


def test_one_book_in_every_list_is_the_extreme_hub():
    never, gini, skew = occurrence_stats(np.array([5]), n_books=4)     # three books never recommended
    assert never == 0.75 and gini == pytest.approx(1 - 1 / 4)         # the largest Gini n books allow
    assert skew == pytest.approx(2 / np.sqrt(3))                      # x = (5, 0, 0, 0): skewness 2/sqrt(3)


def test_gini_of_known_counts():
    # x = (1, 2, 3, 0): G = sum_i sum_j |x_i - x_j| / (2 n^2 mean) = 20 / (2 * 16 * 1.5)
    never, gini, _ = occurrence_stats(np.array([1, 2, 3]), n_books=4)
    assert never == 0.25 and gini == pytest.approx(20 / 48)
    assert occurrence_stats(np.array([], dtype=int), n_books=3) == (1.0, 0.0, 0.0)


def test_hub_stats_counts_the_first_ranks_of_a_table(spark):
    rows = [("m1", 1, "b1"), ("m1", 2, "b2"), ("m1", 3, "b3"),
            ("m2", 1, "b1"), ("m2", 2, "b3"), ("m2", 3, "b4"),
            ("m3", 1, "b2"), ("m3", 2, "b1"), ("m3", 3, "b4")]
    recs = spark.createDataFrame(rows, "movie_id string, rank int, book_id string")
    s = hub_stats(recs, films=3, n_books=6, k=3, top=2)               # ranks 1-2: b1 x3, b2 x2, b3 x1
    assert (s.top, s.films, s.books, s.hub_book, s.max_occurrence) == (2, 3, 6, "b1", 3)
    assert s.max_share == 1.0 and s.never_recommended == pytest.approx(3 / 6)
    never, gini, skew = occurrence_stats(np.array([3, 2, 1]), 6)
    assert (s.gini, s.skew) == (pytest.approx(gini, abs=1e-6), pytest.approx(skew, abs=1e-6))
    tied = hub_stats(recs, films=3, n_books=6, k=3, top=3)            # b1 x3, b4 x2 ... and b2, b3 x2: b1 alone
    assert (tied.hub_book, tied.max_occurrence) == ("b1", 3)
    ties = spark.createDataFrame([("m1", 1, "b9"), ("m1", 2, "b3"), ("m2", 1, "b3"), ("m2", 2, "b9"),
                                  ("m3", 1, "b5")], "movie_id string, rank int, book_id string")
    assert hub_stats(ties, films=3, n_books=4, k=2).hub_book == "b3"   # b3 and b9 tie at 2: the smaller id
