"""The ablation runner end to end on the toy catalogs and the tiny encoder (no Spark)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from lfr.eval import format_tables, run_evaluation, write_report
from lfr.eval.baselines import FeatureCache, l2_normalize, tfidf_method
from lfr.settings import load_settings, with_values

LINKS = pd.DataFrame(
    [("imdb:space-odyssey-1968", "goodreads:1"), ("imdb:star-war-1977", "goodreads:2"),
     ("imdb:love-story-1970", "goodreads:4"), ("imdb:paris-nights-1999", "goodreads:5"),
     ("imdb:the-heist-2001", "goodreads:6"), ("imdb:the-heist-2001", "goodreads:404"),   # book missing
     ("imdb:missing-1900", "goodreads:1"), ("imdb:star-war-1977", "goodreads:2")],       # movie missing, dup
    columns=["movie_id", "book_id"],
)
ALL_METHODS = ["tfidf", "lexical", "genre_only", "text_only", "fusion_untrained", "lightfusionrec",
               "distilbert_text_only", "lightfusionrec_distilbert", "hybrid_text_only", "hybrid_rrf_text_only",
               "hybrid", "hybrid_rrf", "text_only_csls", "lightfusionrec_csls", "hybrid_csls",
               "hybrid_csls_bookz"]


@pytest.fixture()
def eval_settings(tiny_model_cfg, tiny_encoder_dir, tmp_path):
    settings = load_settings(overrides=[f"paths.work_dir={tmp_path}", "eval.ks=[1, 3, 100]",
                                        "eval.negatives_per_positive=2"], environ={})
    return with_values(settings, {
        "eval.folds": 2, "eval.holdout_fraction": 0.4, "eval.distilbert_path": tiny_encoder_dir,
        "model": tiny_model_cfg,                            # conf/lfr.yaml's model section on the tiny encoder
        "train.epochs": 2, "train.lr": 0.01, "train.val_fraction": 0.0,
    })


def test_runner_end_to_end_every_method_and_report(eval_settings, tiny_encoder_dir, toy_movies, toy_books, tmp_path):
    from lfr.eval.runner import default_train
    from lfr.settings import ModelSettings, Settings

    calls, built = [], []

    def spy_train(movies, books, train_links, settings):   # the real trainer (lfr.train), spied on
        assert isinstance(settings, Settings) and settings.model.include_title is False
        assert settings.train == eval_settings.train and settings.eval == eval_settings.eval
        calls.append((settings.model.encoder, settings.model.pooling, train_links.copy()))
        return default_train(movies, books, train_links, settings)

    def spy_build(model, corpus):                           # the real builder (lfr.model), spied on
        from lfr.eval.runner import default_build

        assert isinstance(model, ModelSettings) and model.include_title is False
        built.append((model.encoder, model.pooling))
        return default_build(model, corpus)

    result = run_evaluation(toy_movies, toy_books, LINKS, eval_settings, train_fn=spy_train, build_fn=spy_build,
                            n_unresolved_pairs=1)
    table = result.table()
    assert table["method"].tolist() == ALL_METHODS
    s = result.setup
    assert s["links"] == {"n_links": 7, "n_duplicates": 1, "n_missing_movie": 1, "n_missing_book": 1, "n_used": 5}
    # 2-fold cross-validation by film: each of the 5 linked films is evaluated exactly once
    assert s["folds"] == 2 and s["n_test_movies"] == 5 and s["n_books_catalog"] == 8
    assert sorted(s["test_movie_ids"]) == sorted(set(LINKS.movie_id) - {"imdb:missing-1900"})
    sizes = [f["test_movies"] for f in s["fold_sizes"]]      # 5 films in 2 folds: 3 + 2, in either order
    assert sorted(sizes) == [2, 3] and result.per_movie.groupby("fold")["movie"].nunique().tolist() == sizes
    assert s["n_eval_pairs"] == s["n_test_links"] * 3 == 15
    # two trainings per fold (the configured encoder, DistilBERT); a fold's films never reach its trainer
    assert len(calls) == 4
    configured = (eval_settings.model.encoder, eval_settings.model.pooling)
    assert [c[:2] for c in calls] == [configured, (tiny_encoder_dir, "cls")] * 2
    assert built == [configured, (tiny_encoder_dir, "cls")]                 # the untrained models, built once
    fold_films = result.per_movie.groupby("fold")["movie"].apply(set)
    id_of = dict(zip(toy_movies.title, toy_movies.id))
    for i, (_, _, links) in enumerate(calls):
        held_out = {id_of[t] for t in fold_films[i // 2]}
        assert held_out.isdisjoint(links["movie_id"]) and len(links) == 5 - len(held_out)
    assert set(s["training"]) == {"lightfusionrec", "lightfusionrec_distilbert"}
    assert ([r["pairs"]["train_movies"] + r["pairs"]["val_movies"] for r in s["training"]["lightfusionrec"]]
            == [5 - n for n in sizes])
    for row in result.rows:
        assert row["n_evaluated"] == 5 and row["n_empty"] == 0 and row["n_books"] == 8
        for col in [*result.ranking_columns, *result.error_columns]:
            assert np.isfinite(row[col]), (row["method"], col)
        ranks = result.per_movie[row["method"]]                      # each film has one usable link: its rank
        assert row["recall@3"] == pytest.approx((ranks <= 3).mean()) and row["mrr"] == pytest.approx((1 / ranks).mean())
        assert 0.0 <= row["recall@1"] <= row["recall@3"] <= 1.0
        assert 1.0 / 8 <= row["mrr"] <= 1.0
    assert list(result.per_movie.columns) == ["movie", "book(s)", "fold", *ALL_METHODS]

    paths = write_report(result, tmp_path / "reports")
    md = open(paths["report"], encoding="utf-8").read()
    for name in ALL_METHODS:
        assert f"| {name} |" in md
    assert "pessimistic" in md and "metrics.png" in md
    with open(paths["plot"], "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    data = json.load(open(paths["json"], encoding="utf-8"))
    assert [m["method"] for m in data["methods"]] == ALL_METHODS
    assert data["setup"]["n_unresolved_pairs"] == 1
    printed = format_tables(result)
    assert "lightfusionrec_distilbert" in printed and "mae@20%" in printed

    # deterministic: the same inputs give the same folds, pairs and numbers (seeded split, pairs,
    # FastText, head init and trainer)
    again = run_evaluation(toy_movies, toy_books, LINKS, eval_settings, train_fn=default_train)
    assert again.setup["test_movie_ids"] == s["test_movie_ids"]
    for a, b in zip(result.rows, again.rows):
        for col in ("mrr", "ndcg@10", "mae@50%", "rmse@80%"):
            assert a[col] == pytest.approx(b[col], abs=1e-6), (a["method"], col)


def test_distilbert_rows_skipped_with_note(eval_settings, toy_movies, toy_books, tiny_model):
    # one held-out split (40% of 5 films), no DistilBERT folder (with_values skips None: replace sets it)
    settings = with_values(eval_settings, {"eval": dataclasses.replace(eval_settings.eval, folds=1,
                                                                       distilbert_path=None)})
    result = run_evaluation(toy_movies, toy_books, LINKS, settings, trained_model=tiny_model)
    assert result.table()["method"].tolist() == [m for m in ALL_METHODS if "distilbert" not in m]
    assert result.setup["n_test_movies"] == 2 and result.setup["fold_sizes"][0]["train_movies"] == 3
    assert any("DistilBERT rows skipped" in n for n in result.notes)
    assert any("may have" in n for n in result.notes)           # a given artifact is flagged


def test_runtime_onnx_rows_embed_with_the_export(eval_settings, toy_movies, toy_books, tiny_artifact):
    """model.runtime=onnx: the text-only and LightFusionRec rows embed with the ONNX export, the ranks of
    torch fp32 (the tiny encoder's parity is ~1e-7); int8 is measured the same way (bench/eval)."""
    from lfr.model import load

    settings = with_values(eval_settings, {"eval": dataclasses.replace(eval_settings.eval, folds=1,
                                                                       distilbert_path=None)})
    rows = ["text_only", "lightfusionrec", "hybrid"]
    torch_run = run_evaluation(toy_movies, toy_books, LINKS, settings, trained_model=load(tiny_artifact))
    onnx_settings = with_values(settings, {"model.runtime": "onnx"})
    onnx_run = run_evaluation(toy_movies, toy_books, LINKS, onnx_settings, trained_model=load(tiny_artifact))
    pick = lambda r: r.table().set_index("method").loc[rows].drop(columns="label", errors="ignore")  # noqa: E731
    pd.testing.assert_frame_equal(pick(onnx_run), pick(torch_run))
    assert any("model.runtime=onnx" in n for n in onnx_run.notes)
    assert not any("model.runtime=onnx" in n for n in torch_run.notes)


def test_tfidf_and_cache_units(tiny_model, toy_movies, toy_books):
    corpus = list(toy_movies["description"].fillna("")) + list(toy_books["description"])
    m, b = tfidf_method(corpus).embed(toy_movies, toy_books)
    s = (m @ b.T).toarray()
    assert s.shape == (6, 8) and np.all(s <= 1.0 + 1e-6)
    assert s[0].argmax() == 0 and s[0, 0] > 0      # "Jupiter" is the only shared content word
    assert np.all(s[5] == 0)                        # no description: zero vector, cosine 0
    cache = FeatureCache()
    texts = ["a b", "c"]
    first = cache.text_features(tiny_model, texts)
    second = cache.text_features(tiny_model, list(texts))
    assert cache.hits == 1 and first is second
    z = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert np.allclose(z, [[0.6, 0.8], [0.0, 0.0]])


def _planted(toy_movies, toy_books):
    """The heist film names its novel; the novel's only words shared with the film are its title and author;
    the love-story book names its film."""
    movies, books = toy_movies.copy(), toy_books.copy()
    heist = movies.index[movies.id == "imdb:the-heist-2001"][0]
    movies.at[heist, "description"] = "A gang plans a job. Based on the novel Zorblax Quintet by Mirabel Quog."
    vault = books.index[books.id == "goodreads:6"][0]
    books.at[vault, "title"] = "Zorblax Quintet (Quintet, #1)"
    books.at[vault, "description"] = "Zorblax Quintet, the classic by Mirabel Quog: thieves break into a bank vault."
    books["authors"] = [["Mirabel Quog"] if i == vault else None for i in range(len(books))]
    first_love = books.index[books.id == "goodreads:4"][0]
    books.at[first_love, "description"] = "Filmed as Love Story: a tender romance between two students."
    return movies, books


def test_strict_protocol_masks_what_every_method_and_the_trainer_read(eval_settings, toy_movies, toy_books,
                                                                      monkeypatch):
    """Open: TF-IDF finds the planted novel by its title alone. Strict: every text any method featurizes and
    every text the trainer gets is masked, so the title-only match is gone."""
    from lfr.eval import baselines, run_protocols
    from lfr.eval.runner import default_train

    movies, books = _planted(toy_movies, toy_books)
    read: dict[str, list[str]] = {}
    protocol = {"now": None}
    real_descriptions = baselines.descriptions

    def spy_descriptions(frame):                    # every method reads its texts through this
        texts = real_descriptions(frame)
        read.setdefault(protocol["now"], []).extend(texts)
        return texts

    def spy_train(m, b, train_links, settings):
        read.setdefault(protocol["now"], []).extend(list(m["description"].fillna("")) + list(b["description"]))
        return default_train(m, b, train_links, settings)

    monkeypatch.setattr(baselines, "descriptions", spy_descriptions)
    settings = with_values(eval_settings, {"eval": dataclasses.replace(eval_settings.eval, distilbert_path=None)})
    results = {}
    for p in ("open", "strict"):
        protocol["now"] = p
        results.update(run_protocols(movies, books, LINKS, with_values(settings, {"eval.protocols": [p]}),
                                     train_fn=spy_train))
    leaks = ("zorblax", "quog", "love story")
    assert all(any(w in t.lower() for t in read["open"]) for w in leaks)
    assert not [t for t in read["strict"] if "love story" in t.lower()]
    # the novel's title and author stay only in the novel's own text (no film text names them any more)
    assert not [t for t in read["strict"] if ("zorblax" in t.lower() or "quog" in t.lower()) and "thieves" not in t]
    assert any("A gang plans a job. Based on the novel by ." == t for t in read["strict"])
    rank = {p: dict(zip(r.per_movie["movie"], r.per_movie["tfidf"])) for p, r in results.items()}
    assert rank["open"]["The Heist"] == 1 and rank["strict"]["The Heist"] > 1
    assert results["strict"].setup["text_protocol"] == "strict" and results["open"].setup["masking"] is None
    assert results["strict"].setup["masking"]["films_masked"] >= 1
    assert results["open"].setup["test_movie_ids"] == results["strict"].setup["test_movie_ids"]
