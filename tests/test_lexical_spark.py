"""Lexical features in Spark: same terms/model/weights as the driver path; incremental Delta tables."""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from lfr.lexical import LEXICAL_SCHEMA, LexicalModel, tokenize
from lfr.lexical.features import featurize, fit_model, terms
from lfr.lexical.stopwords import ENGLISH
from lfr.settings import load_settings, with_values
from lfr.spark.guards import ShrinkRefused

BASE = load_settings().lexical          # conf/lfr.yaml's lexical section

TRICKY = ["Harry Potter goes to Hogwarts, HOGWARTS!", "Amélie's café: l'amour, naïve façade", "don't I x y 42 007",
          "tabs\tand\nnewlines — dashes–and_underscores", "Ünïcödé ŒUVRE straße İstanbul", "", None]


def _sample_texts() -> list[str | None]:
    here = os.path.join(os.path.dirname(__file__), "..", "data", "sample")
    books = pd.read_csv(os.path.join(here, "books_goodreads.csv"))
    movies = pd.read_csv(os.path.join(here, "movies_imdb_top1000.csv"))
    return TRICKY + books["Description"].dropna().tolist()[:300] + movies["Overview"].dropna().tolist()[:200]


def _catalog(spark, rows):
    from lfr.data.schema import CATALOG_SCHEMA

    def row(i, t, d):  # every other column of the (evolving) catalog schema: empty/null
        values = {"id": i, "title": t, "description": d, "genres": [], "source": "test"}
        return tuple(values.get(f.name, [] if not f.nullable else None) for f in CATALOG_SCHEMA.fields)

    return spark.createDataFrame([row(*r) for r in rows], CATALOG_SCHEMA)


def test_spark_stop_words_are_the_shipped_list(spark):
    from pyspark.ml.feature import StopWordsRemover

    assert tuple(StopWordsRemover.loadDefaultStopWords("english")) == ENGLISH


def test_spark_terms_equal_driver_tokenizer(spark):
    texts = _sample_texts()
    df = spark.createDataFrame(list(enumerate(texts)), "i int, description string")
    got = {r["i"]: list(r["_lex_terms"]) for r in terms(df, BASE).collect()}
    for i, t in enumerate(texts):
        assert got[i] == tokenize(t, BASE.min_token_length), t


def test_spark_fit_and_features_equal_driver(spark):
    texts = [t for t in _sample_texts() if t is not None] + [None]
    s = with_values(BASE, {"weighting": "bm25", "min_df": 2})
    df = spark.createDataFrame([(str(i), f"t{i}", t, "h") for i, t in enumerate(texts)],
                               "id string, title string, description string, content_hash string")
    model = fit_model(spark, df, s)
    ref = LexicalModel.fit_texts(texts, s)
    assert model.vocabulary == ref.vocabulary and model.df.tolist() == ref.df.tolist()
    assert model.n_docs == ref.n_docs and model.avgdl == pytest.approx(ref.avgdl, rel=1e-12)
    assert model.version == ref.version
    rows = {r["id"]: r for r in featurize(df.repartition(3), model).collect()}
    x = ref.transform(texts)
    for i in range(len(texts)):
        r = rows[str(i)]
        row = x.getrow(i)
        assert list(r["term_indices"]) == row.indices.tolist()
        np.testing.assert_allclose(r["term_weights"], row.data, rtol=1e-6)


def _settings(tmp_path, *overrides):
    return load_settings(overrides=[f"paths.work_dir={tmp_path / 'work'}", f"paths.warehouse={tmp_path / 'wh'}",
                                    "tables.database=lfr_lex_test", "lexical.weighting=bm25", "lexical.min_df=1",
                                    *overrides])


def _commits(spark, path) -> int:
    from delta.tables import DeltaTable

    return DeltaTable.forPath(spark, path).history().count()


def _table(spark, path) -> dict:
    return {r["id"]: r for r in spark.read.format("delta").load(path).collect()}


def test_incremental_pipeline(spark, tmp_path):
    from lfr.lexical.pipeline import CatalogTableMissing, lexicalize
    from lfr.spark.delta import write_table

    cfg = _settings(tmp_path)
    with pytest.raises(CatalogTableMissing, match="embed_movies"):
        lexicalize(spark, cfg)
    movies = [("m1", "HP", "A wizard boy at Hogwarts school"), ("m2", "GF", "The Corleone family"),
              ("m3", "X", "Paris in spring")]
    books = [("b1", "HP book", "Hogwarts and a wizard"), ("b2", "GF book", "Corleone crime family saga"),
             ("b3", "Y", "Spring gardens")]
    write_table(_catalog(spark, movies), cfg.tables.movies.path, mode="overwrite")
    write_table(_catalog(spark, books), cfg.tables.books.path, mode="overwrite")
    mpath, bpath = cfg.tables.movie_lexical.path, cfg.tables.book_lexical.path

    first = lexicalize(spark, cfg)
    assert first.refitted and first.domains["movies"]["featurized"] == 3
    t = spark.read.format("delta").load(mpath)
    assert [f.name for f in t.schema.fields] == [f.name for f in LEXICAL_SCHEMA.fields]
    before = _table(spark, mpath)
    assert {r["lexical_version"] for r in before.values()} == {first.lexical_version}
    assert spark.sql("SELECT count(*) FROM lfr_lex_test.book_lexical").first()[0] == 3

    # rerun, nothing changed: same model reused, no commit on either table
    commits = (_commits(spark, mpath), _commits(spark, bpath))
    again = lexicalize(spark, cfg)
    assert not again.refitted and again.lexical_version == first.lexical_version
    assert (_commits(spark, mpath), _commits(spark, bpath)) == commits
    assert again.domains["movies"] == {"featurized": 0, "deleted": 0, "unchanged": 3, "table_written": False}

    # one description changed, one film gone: only that row recomputed, the other deleted, one commit
    movies2 = [("m1", "HP", "A wizard boy at Hogwarts school"), ("m2", "GF", "The Corleone family crime saga")]
    write_table(_catalog(spark, movies2), cfg.tables.movies.path, mode="overwrite")
    with pytest.raises(ShrinkRefused, match="movie_lexical: 3 rows before, 2 after, 1 deleted"):
        lexicalize(spark, cfg)                                  # a third of the table: the guards refuse ...
    assert _commits(spark, mpath) == commits[0]
    third = lexicalize(spark, with_values(cfg, {"guards.allow_deletes": True}))   # ... until it is accepted
    assert third.domains["movies"] == {"featurized": 1, "deleted": 1, "unchanged": 1, "table_written": True}
    assert _commits(spark, mpath) == commits[0] + 1 and _commits(spark, bpath) == commits[1]
    after = _table(spark, mpath)
    assert set(after) == {"m1", "m2"}
    assert after["m1"]["computed_at"] == before["m1"]["computed_at"]
    assert after["m2"]["computed_at"] > before["m2"]["computed_at"]
    assert list(after["m2"]["term_indices"]) != list(before["m2"]["term_indices"])

    # a refit on the changed catalogs is a new vocabulary -> new version -> every row recomputed
    fourth = lexicalize(spark, cfg, refit=True)
    assert fourth.refitted and fourth.lexical_version != first.lexical_version
    assert fourth.domains["books"]["featurized"] == 3 and fourth.domains["movies"]["featurized"] == 2
    assert {r["lexical_version"] for r in _table(spark, bpath).values()} == {fourth.lexical_version}
    pointer = json.load(open(os.path.join(cfg.paths.work_dir, "lexical", "current.json")))
    assert pointer["version"] == fourth.lexical_version
    # changed settings refit without --refit
    tfidf = _settings(tmp_path, "lexical.weighting=tfidf")
    fifth = lexicalize(spark, tfidf)
    assert fifth.refitted and fifth.lexical_version != fourth.lexical_version

    # a feature table of an older schema: an error naming --full, which rewrites it
    from lfr.spark.delta import TableSchemaError

    old = spark.read.format("delta").load(mpath).drop("vocab_size")
    write_table(old, mpath, mode="overwrite", overwrite_schema=True)
    with pytest.raises(TableSchemaError, match=r"(?s)movie_lexical.*missing column 'vocab_size'.*--full"):
        lexicalize(spark, tfidf)
    sixth = lexicalize(spark, tfidf, full=True)
    assert sixth.domains["movies"] == {"featurized": 2, "deleted": 0, "unchanged": 0, "table_written": True}
    assert [f.name for f in spark.read.format("delta").load(mpath).schema.fields] == LEXICAL_SCHEMA.names
