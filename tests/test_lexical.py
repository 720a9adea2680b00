"""Lexical model without Spark: weighting vs a brute-force reference, driver fit, persistence, versions."""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import scipy.sparse as sp

from lfr.config import ConfigError
from lfr.lexical import LexicalModel, LexicalSettings, idf_weights, tokenize, weight_counts
from lfr.settings import load_settings, with_values

BASE = load_settings().lexical          # conf/lfr.yaml's lexical section: the only defaults
MIN = BASE.min_token_length


def lex(**values) -> LexicalSettings:
    """The yaml's lexical settings with ``values`` changed."""
    return with_values(BASE, values)


DOCS = [
    "Harry Potter goes to Hogwarts, Hogwarts again and again.",
    "The Corleone family rules; Michael Corleone returns.",
    "A boy wizard at Hogwarts school.",
    "Amélie lives in Paris. Paris! Paris?",
    None,
    "the and of",          # only stop words: no terms
    "Michael rules the school of wizards in Paris",
]


def _brute(counts: list[dict], df: dict, n: int, scheme: str, k1: float, b: float, avgdl: float) -> list[dict]:
    """Textbook formulas, one term at a time."""
    out = []
    for doc in counts:
        dl = sum(doc.values())
        w = {}
        for t, c in doc.items():
            if scheme == "tfidf":
                w[t] = (1 + math.log(c)) * (math.log((1 + n) / (1 + df[t])) + 1)
            else:
                idf = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
                w[t] = idf * c * (k1 + 1) / (c + k1 * (1 - b + b * dl / avgdl))
        norm = math.sqrt(sum(v * v for v in w.values()))
        out.append({t: v / norm for t, v in w.items()} if norm > 0 else {})
    return out


@pytest.mark.parametrize("scheme", ["tfidf", "bm25"])
def test_weighting_equals_brute_force(scheme):
    rng = np.random.default_rng(0)
    n_terms, n_docs = 12, 9
    dense = rng.integers(0, 4, size=(n_docs, n_terms)) * (rng.random((n_docs, n_terms)) < 0.4)
    dense[3] = 0                                               # an empty document
    df = np.maximum((dense > 0).sum(axis=0), 1) + 2            # as if fitted on a larger corpus
    n, k1, b, avgdl = 20, 1.2, 0.75, 3.7
    got = weight_counts(sp.csr_matrix(dense), idf_weights(df, n, scheme), scheme, k1=k1, b=b, avgdl=avgdl)
    counts = [{j: int(c) for j, c in enumerate(row) if c} for row in dense]
    ref = _brute(counts, dict(enumerate(df)), n, scheme, k1, b, avgdl)
    for i, expected in enumerate(ref):
        row = got.getrow(i)
        assert dict(zip(row.indices.tolist(), row.data.tolist())) == pytest.approx(expected, rel=1e-6)
        assert np.all(np.diff(row.indices) > 0)
    assert got.getrow(3).nnz == 0
    norms = np.sqrt(np.asarray(got.multiply(got).sum(axis=1)).ravel())
    np.testing.assert_allclose(norms[norms > 0], 1.0, rtol=1e-6)


def test_tokenize_lowercases_and_drops_stop_words_and_short_tokens():
    assert tokenize("The Corleone family, Amélie's l'amour: a B 42!", MIN) == ["corleone", "family", "amélie", "amour",
                                                                              "42"]
    assert tokenize(None, MIN) == [] and tokenize("", MIN) == []


def test_fit_texts_vocabulary_rules_and_features():
    s = lex(weighting="bm25", min_df=2)
    m = LexicalModel.fit_texts(DOCS, s)
    docs = [set(tokenize(d, MIN)) for d in DOCS]
    expected = {t for t in set().union(*docs) if sum(t in d for d in docs) >= 2}
    assert set(m.vocabulary) == expected and "hogwarts" in expected and "amélie" not in expected
    assert m.n_docs == len(DOCS)
    assert m.df.tolist() == [sum(t in d for d in docs) for t in m.vocabulary]
    in_vocab = sum(1 for d in DOCS for t in tokenize(d, MIN) if t in expected)
    assert m.avgdl == pytest.approx(in_vocab / len(DOCS))
    x = m.transform(DOCS)
    assert x.shape == (len(DOCS), len(m.vocabulary))
    assert x.getrow(4).nnz == 0 and x.getrow(5).nnz == 0      # None and stop words only
    cos = (x @ x.T).toarray()
    assert cos[0, 2] > 0 and cos[0, 1] == 0                   # Hogwarts shared, nothing with Corleone
    # max_df as a fraction drops terms in more than that share of the documents
    assert "hogwarts" not in LexicalModel.fit_texts(DOCS, lex(min_df=1, max_df=0.25)).vocabulary


def test_save_load_roundtrip_and_versions(tmp_path):
    s = lex(weighting="tfidf", min_df=1)
    m = LexicalModel.fit_texts(DOCS, s)
    loaded = LexicalModel.load(m.save(str(tmp_path / "m")))
    assert loaded.version == m.version and loaded.vocabulary == m.vocabulary
    assert loaded.settings == s and isinstance(loaded.settings, LexicalSettings)   # model.json round-trips
    np.testing.assert_array_equal(np.load(tmp_path / "m" / "idf.npy"), m.idf)
    # another vocabulary, other weighting, other idf -> other versions
    assert LexicalModel.fit_texts(DOCS[:4], s).version != m.version
    assert LexicalModel.fit_texts(DOCS, lex(weighting="bm25", min_df=1)).version != m.version
    assert LexicalModel.fit_texts(DOCS + ["hogwarts"], s).version != m.version
    assert LexicalModel.fit_texts(list(DOCS), s).version == m.version   # deterministic


def test_load_refuses_a_tampered_model(tmp_path):
    m = LexicalModel.fit_texts(DOCS, lex(min_df=1))
    folder = m.save(str(tmp_path / "m"))
    df = m.df.copy()
    df[0] += 1
    np.save(tmp_path / "m" / "df.npy", df)
    with pytest.raises(ValueError, match="corrupt"):
        LexicalModel.load(folder)


def test_settings_come_from_the_yaml_and_are_checked():
    assert isinstance(BASE, LexicalSettings) and BASE.weighting == "bm25" and BASE.min_df == 2
    assert load_settings(overrides=["lexical.weighting=tfidf", "lexical.min_df=3"]).lexical == lex(weighting="tfidf",
                                                                                                   min_df=3)
    with pytest.raises(ConfigError, match="lexical.weighting"):
        LexicalModel.fit_texts(DOCS, lex(weighting="bm26"))
    with pytest.raises(ConfigError, match="mindf"):
        load_settings(overrides=["lexical.mindf=3"])


def test_counts_ignore_unknown_terms():
    m = LexicalModel.fit_texts(["alpha beta", "beta gamma"], lex(min_df=1))
    c = m.counts(["beta beta delta"])
    assert c.nnz == 1 and c[0, m.index["beta"]] == 2
    assert Counter(tokenize("beta beta delta", MIN)) == Counter({"beta": 2, "delta": 1})
