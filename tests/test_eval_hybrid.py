"""Evaluation rows lexical / hybrid / hybrid_rrf: fusion formulas, alpha tuned on training links only."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lfr.eval import baselines
from lfr.eval.baselines import (
    FeatureCache,
    Method,
    convex_fusion,
    hybrid_methods,
    lexical_method,
    method_scores,
    rrf_fusion,
    standard_methods,
    tune_alpha,
    zscore_rows,
)


def test_zscore_convex_and_rrf_equal_brute_force():
    rng = np.random.default_rng(1)
    d, lex = rng.normal(size=(3, 7)), rng.normal(size=(3, 7))
    lex[2] = 0.25                     # a film with no lexical signal: that side contributes 0
    d[1, 3] = d[1, 5]                 # a tie in the dense ranking
    z = zscore_rows(d)
    for i in range(3):
        np.testing.assert_allclose(z[i], (d[i] - d[i].mean()) / d[i].std())
    np.testing.assert_array_equal(zscore_rows(lex)[2], 0.0)
    np.testing.assert_allclose(convex_fusion(d, lex, 0.3), 0.3 * z + 0.7 * zscore_rows(lex))
    r = rrf_fusion(d, lex, k=60)
    for i in range(3):
        for j in range(7):
            rank_d = 1 + int((d[i] > d[i, j]).sum())     # ties share the best rank
            rank_l = 1 + int((lex[i] > lex[i, j]).sum())
            assert r[i, j] == pytest.approx(1 / (60 + rank_d) + 1 / (60 + rank_l))


def _table_method(name: str, table: dict) -> Method:
    """A method whose scores are looked up per (movie id, book id)."""
    return Method(name, name, score=lambda m, b: np.array([[table[(i, j)] for j in b["id"]] for i in m["id"]]))


def _conflicting_catalog():
    """Training films (t*) are found by the lexical scores only, test films (e*) by the dense ones."""
    books = pd.DataFrame({"id": [f"b{j}" for j in range(6)], "description": [f"book {j}" for j in range(6)],
                          "genres": [[]] * 6})
    movies = pd.DataFrame({"id": ["t0", "t1", "t2", "e0", "e1"], "description": ["film"] * 5, "genres": [[]] * 5})
    target = {"t0": "b0", "t1": "b1", "t2": "b2", "e0": "b3", "e1": "b4"}
    rng = np.random.default_rng(7)
    dense, lex = {}, {}
    for m in movies["id"]:
        for b in books["id"]:
            dense[(m, b)], lex[(m, b)] = rng.uniform(0, 0.5), rng.uniform(0, 0.5)
        good, bad = (lex, dense) if m.startswith("t") else (dense, lex)
        good[(m, target[m])] = 1.0
        bad[(m, target[m])] = -1.0
    links = pd.DataFrame({"movie_id": list(target), "book_id": list(target.values())})
    return movies, books, links, _table_method("dense", dense), _table_method("lexical", lex)


def test_alpha_is_tuned_on_training_links_only():
    movies, books, links, dense, lex = _conflicting_catalog()
    train = links[links["movie_id"].str.startswith("t")]
    test = links[links["movie_id"].str.startswith("e")]
    hybrid, rrf = hybrid_methods(dense, lex, movies, books, train)
    assert hybrid.info["alpha"] < 0.5 and hybrid.info["tuned_on_films"] == 3   # lexical wins on t*
    # the films being scored would have picked the opposite weight: they played no part
    oracle, _ = hybrid_methods(dense, lex, movies, books, test)
    assert oracle.info["alpha"] > 0.5
    eval_movies = movies[movies["id"].str.startswith("e")].reset_index(drop=True)
    s = method_scores(hybrid, eval_movies, books)
    np.testing.assert_allclose(s, convex_fusion(method_scores(dense, eval_movies, books),
                                                method_scores(lex, eval_movies, books), hybrid.info["alpha"]))
    assert rrf.name == "hybrid_rrf" and method_scores(rrf, eval_movies, books).shape == (2, 6)


def test_alpha_of_a_trained_dense_side_is_tuned_with_the_frozen_scores():
    """A model trained on the training films' links ranks them perfectly (its scores there are
    optimistic): tuning on them would pick all-dense. tune_dense tunes with the frozen scores."""
    movies, books, links, frozen, lex = _conflicting_catalog()
    train = links[links["movie_id"].str.startswith("t")]
    memorised = {(m, b): float(b == t) for m, t in zip(links["movie_id"], links["book_id"]) for b in books["id"]}
    trained = _table_method("trained", memorised)
    naive, _ = hybrid_methods(trained, lex, movies, books, train)
    assert naive.info["alpha"] >= 0.5 and naive.info["tuning_mrr"] == pytest.approx(1.0)
    hybrid, _ = hybrid_methods(trained, lex, movies, books, train, tune_dense=frozen)
    reference, _ = hybrid_methods(frozen, lex, movies, books, train)
    assert hybrid.info["alpha"] == reference.info["alpha"] < 0.5
    assert hybrid.info["dense"] == "trained" and hybrid.info["tuned_with"] == "dense"
    eval_movies = movies[movies["id"].str.startswith("e")].reset_index(drop=True)
    np.testing.assert_allclose(method_scores(hybrid, eval_movies, books),
                               convex_fusion(method_scores(trained, eval_movies, books),
                                             method_scores(lex, eval_movies, books), hybrid.info["alpha"]))


def test_tune_alpha_picks_the_best_mrr_and_breaks_ties_towards_half():
    d = np.array([[0.9, 0.1, 0.2], [0.1, 0.2, 0.9]])
    lex = np.array([[0.1, 0.9, 0.2], [0.9, 0.2, 0.1]])
    alpha, curve = tune_alpha(d, lex, [np.array([0]), np.array([2])], grid=[0.0, 0.25, 0.5, 0.75, 1.0])
    assert curve[1.0] == 1.0 and curve[0.0] < 1.0 and alpha == max(curve, key=lambda a: (curve[a], -abs(a - .5)))
    alpha, _ = tune_alpha(d, d, [np.array([0]), np.array([2])], grid=[0.0, 0.5, 1.0])   # every alpha ties
    assert alpha == 0.5


def test_lexical_method_is_the_product_model():
    from lfr.lexical import LexicalModel
    from lfr.settings import load_settings, with_values

    movies = pd.DataFrame({"id": ["m0", "m1"], "description": ["The wizard of Hogwarts", "Corleone crime family"]})
    books = pd.DataFrame({"id": ["b0", "b1", "b2"],
                          "description": ["Hogwarts wizard school", "A crime family: the Corleone", None]})
    corpus = baselines.descriptions(movies) + baselines.descriptions(books)
    s = with_values(load_settings().lexical, {"weighting": "tfidf", "min_df": 1})
    method = lexical_method(corpus, s)
    model = LexicalModel.fit_texts(corpus, s)
    expected = (model.transform(corpus[:2]) @ model.transform(corpus[2:]).T).toarray()
    np.testing.assert_allclose(method_scores(method, movies, books), expected, rtol=1e-6)
    assert method.info["lexical_version"] == model.version
    assert np.argmax(expected, axis=1).tolist() == [0, 1]


class _FakeModel:
    """Just enough of LightFusionModel for standard_methods: hashed bag-of-words 'encoder'."""

    def __init__(self, shift: float = 0.0):
        self.shift = shift

    def encode_text(self, texts, batch_size=64):
        out = np.zeros((len(texts), 16), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in str(t).lower().split():
                out[i, hash(w) % 16] += 1.0
        return out + self.shift

    def genre_vectors(self, genres):
        return np.zeros((len(genres), 4), dtype=np.float32), np.zeros(len(genres), dtype=bool)

    def embed_features(self, text, gvec):
        return text


def test_standard_methods_add_fusion_rows_on_the_trained_model_else_text_only():
    movies, books, links, _, _ = _conflicting_catalog()
    corpus = ["alpha beta gamma", "beta gamma delta"]
    from lfr.settings import load_settings

    lex = lexical_method(corpus, load_settings().lexical)
    base = _FakeModel()
    rows = standard_methods(corpus, base, None, batch_size=8, lexical=lex, train_links=links,
                            catalog=(movies, books))
    names = [m.name for m in rows]
    assert names == ["tfidf", "lexical", "genre_only", "text_only", "fusion_untrained", "hybrid", "hybrid_rrf"]
    assert rows[-2].info["dense"] == "text_only"
    rows = standard_methods(corpus, base, _FakeModel(0.5), batch_size=8, lexical=lex, train_links=links,
                            catalog=(movies, books))
    assert [m.name for m in rows][-5:] == ["lightfusionrec", "hybrid_text_only", "hybrid_rrf_text_only", "hybrid",
                                           "hybrid_rrf"]
    assert rows[-4].info["dense"] == "text_only" and rows[-3].info["dense"] == "text_only"
    assert rows[-2].info["dense"] == "lightfusionrec" and rows[-1].info["dense"] == "lightfusionrec"
    assert rows[-2].info["tuned_with"] == "text_only"      # not the model trained on those films
    # each convex row equals its formula on its own dense side
    eval_movies = movies.iloc[:2]
    dense_scores = {m.name: method_scores(m, eval_movies, books) for m in rows if m.name in ("text_only",
                                                                                            "lightfusionrec")}
    lex_scores = method_scores(lex, eval_movies, books)
    for row, dense in ((rows[-4], "text_only"), (rows[-2], "lightfusionrec")):
        np.testing.assert_allclose(method_scores(row, eval_movies, books),
                                   convex_fusion(dense_scores[dense], lex_scores, row.info["alpha"]))
    assert [m.name for m in standard_methods(corpus, base, None, batch_size=8, lexical=lex)][-1] == "fusion_untrained"


class _Enc:
    def __init__(self, chunking):
        self.folder, self.pooling, self.max_length, self.precision = "enc", "mean", 8, "fp32"
        self.chunking, self.chunk_overlap, self.chunk_pooling, self.finetuned = chunking, 0, "mean", False


class _ChunkModel(_FakeModel):
    """Features depend on the encoder's chunking, as the real TextEncoder's do."""

    def __init__(self, chunking):
        super().__init__(1.0 if chunking == "on" else 0.0)
        self.text = _Enc(chunking)


def test_feature_cache_keeps_chunked_and_truncated_features_apart():
    cache, texts = FeatureCache(), ["a b c", "d e"]
    off = cache.text_features(_ChunkModel("off"), texts)
    on = cache.text_features(_ChunkModel("on"), texts)
    assert not np.allclose(off, on) and cache.hits == 0
    np.testing.assert_array_equal(cache.text_features(_ChunkModel("on"), texts), on)
    assert cache.hits == 1


def test_fusion_differences_against_the_best_single_method():
    from lfr.eval.runner import fusion_differences
    from lfr.settings import load_settings, with_values

    ev = load_settings(environ={}).eval
    ranks = {"a": [[1], [5], [2]], "b": [[3], [3], [3]], "hybrid": [[1], [1], [1]]}
    rows = [{"method": "a", "mrr": (1 + 1 / 5 + 1 / 2) / 3}, {"method": "b", "mrr": 1 / 3},
            {"method": "hybrid", "mrr": 1.0}]
    out, lines = fusion_differences(rows, ranks, with_values(ev, {"ks": [1, 10], "seed": 13}))
    assert out["best_single"] == "a" and set(out) == {"best_single", "hybrid"}
    assert out["hybrid"]["recall@1"]["diff"] == pytest.approx(2 / 3)
    assert out["hybrid"]["mrr"]["diff"] == pytest.approx(1.0 - rows[0]["mrr"])
    assert out["hybrid"]["recall@10"]["diff"] == 0.0 and out["hybrid"]["recall@10"]["within_noise"]
    assert len(lines) == 1 and lines[0].startswith("hybrid - a ")
    assert fusion_differences(rows[:2], ranks, with_values(ev, {"ks": [1]})) == ({}, [])
