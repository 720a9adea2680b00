"""Hub-aware evaluation rows (``_csls``) and the per-method hub statistics (numpy/pandas, no Spark)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from lfr.eval import run_evaluation, write_report
from lfr.eval.baselines import (
    Method,
    book_hubness,
    csls_method,
    hybrid_methods,
    l2_normalize,
    lexical_book_z,
    method_scores,
    zscore_rows,
)
from lfr.eval.metrics import occurrence_counts, score_hub_stats
from lfr.eval.runner import HUB_COLUMNS
from lfr.settings import load_settings, with_values


def _vector_method(name: str, vectors: dict[str, np.ndarray]) -> Method:
    """A dense method whose (row-normalised) vectors are looked up by id."""
    def embed(movies, books):
        return tuple(np.stack([vectors[i] for i in f["id"]]) for f in (movies, books))

    return Method(name, name, embed)


def _catalog(films: np.ndarray, books: np.ndarray):
    movies = pd.DataFrame({"id": [f"m{i}" for i in range(len(films))]})
    book_frame = pd.DataFrame({"id": [f"b{j}" for j in range(len(books))]})
    vectors = {**dict(zip(movies["id"], films)), **dict(zip(book_frame["id"], books))}
    return movies, book_frame, _vector_method("dense", vectors)


def test_r_book_and_the_csls_score_equal_a_brute_force():
    rng = np.random.default_rng(5)
    films, books = l2_normalize(rng.normal(size=(7, 6))), l2_normalize(rng.normal(size=(5, 6)))
    movies, book_frame, dense = _catalog(films, books)
    cos = films @ books.T
    r = [np.mean(sorted(cos[:, j])[-3:]) for j in range(5)]          # each book's 3 nearest of ALL 7 films
    np.testing.assert_allclose(book_hubness(cos, 3), r, atol=1e-7)
    np.testing.assert_allclose(book_hubness(cos, 50), cos.mean(axis=0), atol=1e-7)   # hub_k capped at the films
    some = movies.iloc[[2, 5]].reset_index(drop=True)                 # scoring two films: r still from all 7
    got = method_scores(csls_method(dense, movies, 3, 0.5), some, book_frame)
    want = [[cos[i, j] - 0.5 * r[j] for j in range(5)] for i in (2, 5)]
    np.testing.assert_allclose(got, want, atol=1e-6)
    # hub_weight 0.5 ranks each film's books as CSLS 2 cos - r(film) - r(book) (r(film): its 3 nearest books)
    r_film = np.sort(cos, axis=1)[:, -3:].mean(axis=1)
    csls = 2 * cos - r_film[:, None] - np.array(r)[None, :]
    full = method_scores(csls_method(dense, movies, 3, 0.5), movies, book_frame)
    np.testing.assert_array_equal(np.argsort(-full, axis=1), np.argsort(-csls, axis=1))
    np.testing.assert_allclose(method_scores(csls_method(dense, movies, 3, 0.0), some, book_frame), cos[[2, 5]],
                               atol=1e-6)
    method = csls_method(dense, movies, 3, 1.0)
    assert method.name == "dense_csls" and method.info == {"dense": "dense", "hub_k": 3, "hub_weight": 1.0}


def test_the_fused_row_corrects_a_fused_score_by_its_own_r_book():
    """``score.fused_hub_weight`` in the evaluation: csls of any score (here a stand-in for the hybrid's),
    r(book) from that score over ALL films, in its units."""
    rng = np.random.default_rng(8)
    films, books = l2_normalize(rng.normal(size=(6, 4))), l2_normalize(rng.normal(size=(5, 4)))
    movies, book_frame, dense = _catalog(films, books)
    fused = Method("hybrid_csls", "h", score=lambda m, b: 3.0 * method_scores(dense, m, b) + 1.0)
    h = 3.0 * films @ books.T + 1.0
    r = [np.mean(sorted(h[:, j])[-2:]) for j in range(5)]
    method = csls_method(fused, movies, 2, 0.25, suffix="_fused")
    got = method_scores(method, movies.iloc[[1, 4]].reset_index(drop=True), book_frame)
    np.testing.assert_allclose(got, h[[1, 4]] - 0.25 * np.array(r)[None, :], atol=1e-6)
    assert method.name == "hybrid_csls_fused" and method.info["hub_weight"] == 0.25


def test_the_bookz_row_standardises_the_lexical_z_scores_per_book_over_all_films():
    """``lexical_book_z``: each film's lexical z-scores (over the books), then per book minus its mean over ALL
    films of the catalog, over its spread there (a constant column: 0); the hybrid row fuses them as they are."""
    rng = np.random.default_rng(3)
    movies = pd.DataFrame({"id": [f"m{i}" for i in range(7)]})
    books = pd.DataFrame({"id": [f"b{j}" for j in range(5)]})
    lex = rng.random((7, 5))
    lex[:, 3] = lex[:, 3] * 0 + lex[:, 0]                    # book 3 equals book 0 for every film
    lex[2] = 0.0                                             # a film without terms: z = 0 everywhere
    table = {m: row for m, row in zip(movies["id"], lex)}
    lexical = Method("lexical", "", score=lambda m, b: np.stack([table[i] for i in m["id"]]))
    got = lexical_book_z(lexical, movies).score(movies.iloc[[4, 0]], books)
    z = zscore_rows(lex)
    want = (z - z.mean(axis=0)) / z.std(axis=0)
    np.testing.assert_allclose(got, want[[4, 0]], atol=1e-12)
    full = lexical_book_z(lexical, movies).score(movies, books)
    np.testing.assert_allclose(full.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(full.std(axis=0), 1.0, atol=1e-12)
    np.testing.assert_allclose(full[:, 3], full[:, 0], atol=1e-12)
    const = Method("lexical", "", score=lambda m, b: np.tile([0.5, 0.1, 0.9], (len(m), 1)))
    assert (lexical_book_z(const, movies).score(movies, books.iloc[:3]) == 0.0).all()   # columns that do not vary
    dense = Method("dense", "", score=lambda m, b: rng.random((len(m), len(b))))
    links = pd.DataFrame({"movie_id": ["m1"], "book_id": ["b2"]})
    row = hybrid_methods(dense, lexical_book_z(lexical, movies), movies, books, links, grid=(0.0,), z_lexical=False)[0]
    np.testing.assert_allclose(row.score(movies, books), full, atol=1e-12)    # alpha 0: the lexical half as it is


def test_occurrence_counts_equal_a_stable_sort_and_give_ties_to_the_smaller_column():
    rng = np.random.default_rng(2)
    s = rng.integers(0, 4, size=(30, 12)).astype(float)             # many ties
    s[3] = 1.0                                                       # a film whose books all tie
    s[4, 0] = np.nan                                                 # NaN is the worst score
    first = np.argsort(-np.nan_to_num(s, nan=-np.inf), axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(occurrence_counts(s, 5), np.bincount(first.ravel(), minlength=12))
    assert occurrence_counts(s, 5).sum() == 30 * 5
    assert occurrence_counts(np.ones((2, 3)), 10).tolist() == [2, 2, 2]     # top capped at the books


def test_score_hub_stats_are_the_scoring_jobs_statistics():
    from lfr.score.hubs import occurrence_stats

    s = np.array([[3.0, 2, 1, 0], [3, 1, 2, 0], [1, 3, 2, 0]])
    h = score_hub_stats(s, ["a", "b", "c", "d"], top=2)              # counts a 2, b 2, c 2, d 0
    never, gini, skew = occurrence_stats(np.array([2, 2, 2, 0]), 4)
    assert (h.top, h.films, h.books, h.max_occurrence, h.hub_book) == (2, 3, 4, 2, "a")
    assert h.max_share == pytest.approx(2 / 3, abs=1e-6) and h.never_recommended == 0.25 == never
    assert h.gini == pytest.approx(gini, abs=1e-6) and h.gini == pytest.approx(0.25)
    assert h.skew == pytest.approx(skew, abs=1e-6) and h.skew < 0


def test_a_planted_hub_fills_the_plain_lists_and_csls_removes_it():
    """Films and books share a direction; a book at the films' centroid is the nearest book of nearly every
    film. Its r(book) is the highest of all books, so the hub-aware score pushes it out of the lists."""
    rng = np.random.default_rng(0)
    shared = np.eye(64)[0]
    films = l2_normalize(shared + rng.normal(size=(200, 64)) / 8.0)
    books = l2_normalize(shared + rng.normal(size=(300, 64)) / 8.0)
    books[0] = l2_normalize(films.mean(axis=0, keepdims=True))[0]
    movies, book_frame, dense = _catalog(films, books)
    ids = book_frame["id"].tolist()
    plain = score_hub_stats(method_scores(dense, movies, book_frame), ids)
    half, full = (score_hub_stats(method_scores(csls_method(dense, movies, 10, w), movies, book_frame), ids)
                  for w in (0.5, 1.0))
    assert plain.hub_book == "b0" and plain.max_share >= 0.95 and plain.skew > 5
    hub = {w: int(occurrence_counts(method_scores(csls_method(dense, movies, 10, w), movies, book_frame))[0])
           for w in (0.5, 1.0)}
    assert hub[0.5] < 0.8 * plain.max_occurrence and hub[1.0] <= 5          # of 200 films
    assert full.max_share <= 0.1 and full.gini < half.gini < plain.gini
    assert full.never_recommended < plain.never_recommended


@pytest.fixture()
def hub_settings(tiny_model_cfg, tmp_path):
    settings = load_settings(overrides=[f"paths.work_dir={tmp_path}", "eval.ks=[1, 3, 100]"], environ={})
    return with_values(settings, {"eval": dataclasses.replace(settings.eval, folds=2, distilbert_path=None),
                                  "model": tiny_model_cfg, "train.epochs": 2, "train.lr": 0.01,
                                  "train.val_fraction": 0.0, "score.hub_k": 3, "score.hub_weight": 1.0})


WORDS = "spaceship love crime paris empire desert robbery students galaxy romance vault planet".split()
GENRES = [["Science Fiction"], ["Romance"], ["Crime", "Thriller"], ["Adventure"]]


@pytest.fixture()
def hub_books(toy_books) -> pd.DataFrame:
    """The toy books + 12 unlinked ones: more books than a top-10 list holds, so the lists can differ."""
    extra = pd.DataFrame({"id": [f"goodreads:x{i}" for i in range(12)], "title": [f"Extra {i}" for i in range(12)],
                          "description": [" ".join(WORDS[i:] + WORDS[:i][:3]) for i in range(12)],
                          "genres": [GENRES[i % 4] for i in range(12)]})
    return pd.concat([toy_books, extra.reindex(columns=toy_books.columns)], ignore_index=True)


LINKS = pd.DataFrame([("imdb:space-odyssey-1968", "goodreads:1"), ("imdb:star-war-1977", "goodreads:2"),
                      ("imdb:love-story-1970", "goodreads:4"), ("imdb:paris-nights-1999", "goodreads:5"),
                      ("imdb:the-heist-2001", "goodreads:6")], columns=["movie_id", "book_id"])


def test_tiny_run_reports_every_methods_hubs_and_csls_against_plain(hub_settings, toy_movies, hub_books, tmp_path):
    """Also eval.adapters: the label-free adapters (trained once, no link) as one more dense side: its own
    row, its hybrid and their hub-aware rows, each paired against its plain row; films through the film
    adapter, books through the book adapter. eval.xcross: the same rows for X-Cross integrated, its
    integrators trained per fold on that fold's links over those adapters, its hybrids tuned on theirs."""
    from lfr.eval.baselines import adapters_method, text_method
    from lfr.eval.runner import default_build, eval_model_settings, genre_corpus
    from lfr.train.xcross import train as train_xcross

    xcross = {"max_length": 32, "train_max_length": 32, "adapter_steps": 2, "adapter_batch_size": 4,
              "min_span_words": 4, "integrator_steps": 2, "integrator_batch_size": 2}
    settings = with_values(hub_settings, {"score.fused_hub_weight": 0.5, "eval.adapters": True, "eval.xcross": True,
                                          **{f"xcross.{k}": v for k, v in xcross.items()}})
    result = run_evaluation(toy_movies, hub_books, LINKS, settings)
    table = result.table()
    adapter_rows = ["adapters_only", "hybrid_adapters_only", "adapters_only_csls", "hybrid_adapters_only_csls",
                    "hybrid_adapters_only_csls_fused", "hybrid_adapters_only_csls_bookz"]
    xcross_rows = [name.replace("adapters_only", "xcross") for name in adapter_rows]
    assert table["method"].tolist()[-17:] == ["text_only_csls", "lightfusionrec_csls", "hybrid_csls",
                                              "hybrid_csls_fused", "hybrid_csls_bookz", *adapter_rows, *xcross_rows]
    for fold in result.setup["fold_sizes"]:          # alpha tuned with the adapters the fold's X-Cross started from
        assert fold["hybrid_xcross"]["tuned_with"] == "adapters_only", fold
        assert fold["hybrid_xcross_csls"]["tuned_with"] == "adapters_only_csls", fold
    trained = result.setup["training"]["xcross"]
    assert [t["metrics"]["links"] for t in trained] == [f["train_links"] for f in result.setup["fold_sizes"]]
    assert all(t["metrics"]["integrator_steps"] == 2 for t in trained)
    assert list(table.columns[-len(HUB_COLUMNS):]) == HUB_COLUMNS and table["hub_max_share"].notna().all()
    hubs = result.setup["hubs"]
    assert (hubs["films"], hubs["books"], hubs["hub_k"], hubs["hub_weight"]) == (6, 20, 3, 1.0)
    # text-only reads no link: both folds' lists are the frozen encoder's over all 6 films, as computed here
    base = default_build(eval_model_settings(hub_settings), genre_corpus(toy_movies, hub_books))
    want = score_hub_stats(method_scores(text_method(base, batch_size=8), toy_movies, hub_books),
                           hub_books["id"].tolist())
    assert hubs["per_fold"]["text_only"] == [want.as_dict()] * 2 and want.gini > 0
    row = next(r for r in result.rows if r["method"] == "text_only")
    assert (row["hub_max_occurrence"], row["hub_book"]) == (want.max_occurrence, want.hub_book)
    assert row["hub_title"] == dict(zip(hub_books["id"], hub_books["title"]))[want.hub_book]
    for r in result.rows:                                         # the row's figures: the mean over the 2 folds
        per_fold = hubs["per_fold"][r["method"]]
        assert len(per_fold) == 2 and all(h["films"] == 6 and h["books"] == 20 for h in per_fold)
        assert r["hub_gini"] == pytest.approx(np.mean([h["gini"] for h in per_fold]), abs=1e-6), r["method"]
        assert r["hub_max_share"] == pytest.approx(r["hub_max_occurrence"] / 6, abs=1e-5)
    assert set(result.setup["csls_vs_plain"]) == {"text_only_csls", "lightfusionrec_csls", "hybrid_csls",
                                                  "hybrid_csls_fused", "hybrid_csls_bookz",
                                                  "hybrid_csls_bookz vs hybrid_csls_fused",
                                                  *adapter_rows[2:], *xcross_rows[2:],
                                                  *(f"{r} vs {r[:-len('_bookz')]}_fused" for r in (adapter_rows[-1],
                                                                                                  xcross_rows[-1]))}
    assert any(n.startswith("adapters_only: label-free domain adapters") for n in result.notes)
    model = train_xcross(toy_movies, hub_books, None, settings, train_integrator_stage=False).model
    films, books = adapters_method(model, 8).embed(toy_movies, hub_books)
    texts = list(toy_movies["description"])
    np.testing.assert_allclose(films, model.embed(None, texts, None, domain="film"), atol=1e-6)
    assert not np.allclose(films, model.embed(None, texts, None, domain="book"), atol=1e-4)   # routed, not shared
    np.testing.assert_allclose(books, model.embed(None, list(hub_books["description"]), None, domain="book"),
                               atol=1e-6)
    assert any(n.startswith("hybrid_csls - hybrid (hub-aware - plain)") for n in result.notes)
    assert any(n.startswith("hybrid_csls_fused - hybrid_csls (hub-aware - plain)") for n in result.notes)
    assert any(n.startswith("hybrid_csls_bookz - hybrid_csls_fused (the two corrections") for n in result.notes)
    bookz = [f["hybrid_csls_bookz"] for f in result.setup["fold_sizes"]]
    assert all(f["tuned_with"] == "text_only_csls" and f["dense"] == "lightfusionrec_csls" for f in bookz)
    assert hubs["fused_hub_weight"] == 0.5
    assert all(f["hybrid_csls"]["tuned_with"] == "text_only_csls" for f in result.setup["fold_sizes"])
    paths = write_report(result, tmp_path / "reports")
    md = open(paths["report"], encoding="utf-8").read()
    section = md.split("## Hubs", 1)[1].split("\n## ", 1)[0]
    assert all(f"| {m} |" in section for m in table["method"])
    data = json.load(open(paths["json"], encoding="utf-8"))
    assert [h["method"] for h in data["hubs"]] == table["method"].tolist()


def test_csls_rows_with_hub_weight_0_equal_their_plain_rows(hub_settings, toy_movies, hub_books, tiny_model):
    settings = with_values(hub_settings, {"score.hub_weight": 0.0, "score.hub_k": 10, "score.fused_hub_weight": 0.0})
    result = run_evaluation(toy_movies, hub_books, LINKS, settings, trained_model=tiny_model)
    for name in ("text_only", "lightfusionrec", "hybrid"):
        assert result.ranks[f"{name}_csls"] == result.ranks[name], name
        assert all(d["diff"] == 0.0 for d in result.setup["csls_vs_plain"][f"{name}_csls"].values())
    assert "hybrid_csls_fused" not in result.ranks            # score.fused_hub_weight: 0: no row

