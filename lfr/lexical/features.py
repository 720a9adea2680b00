"""Lexical features with Spark: fit (vocabulary + document frequencies) and featurize catalog rows.

Pipeline: ``RegexTokenizer`` (lowercase, Unicode words of >= ``min_token_length`` chars) ->
``StopWordsRemover`` (``lfr.lexical.stopwords.ENGLISH``) -> ``CountVectorizer`` fitted on the UNION
of both catalogs' descriptions (``minDF``, ``maxDF``, ``vocabSize``) -> term counts -> the shared
weighting (``lfr.lexical.weighting``) in a ``mapInPandas`` task. Descriptions only, never titles
(the evaluation links were found by title).

Nothing of a catalog is collected to the driver: the fit brings back the vocabulary and one
document frequency per term (both vocabulary-sized), the features stay distributed.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import pandas as pd
from pyspark.ml.feature import CountVectorizer, CountVectorizerModel, RegexTokenizer, StopWordsRemover
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lfr.lexical.model import TOKEN_PATTERN, LexicalModel, check_settings
from lfr.lexical.stopwords import ENGLISH
from lfr.lexical.weighting import counts_matrix
from lfr.settings import LexicalSettings

_TERMS, _COUNTS = "_lex_terms", "_lex_counts"
FEATURE_COLUMNS = "id string, title string, term_indices array<int>, term_weights array<float>, content_hash string"


def terms(df: DataFrame, settings: LexicalSettings, text_col: str = "description") -> DataFrame:
    """``df`` plus the column ``_lex_terms`` (array<string>) of ``text_col``; a null text has no terms."""
    src = df.withColumn("_lex_text", F.coalesce(F.col(text_col), F.lit("")))
    tok = RegexTokenizer(inputCol="_lex_text", outputCol="_lex_tokens", pattern=TOKEN_PATTERN, gaps=False,
                         minTokenLength=int(settings.min_token_length), toLowercase=True)
    stop = StopWordsRemover(inputCol="_lex_tokens", outputCol=_TERMS, stopWords=list(ENGLISH), caseSensitive=False)
    return stop.transform(tok.transform(src)).drop("_lex_text", "_lex_tokens")


def fit_model(spark: SparkSession, texts: DataFrame, settings: LexicalSettings) -> LexicalModel:
    """Fit on ``texts`` (a ``description`` column; the union of both catalogs): vocabulary with
    Spark's CountVectorizer, then per-term document frequencies and the mean in-vocabulary length
    with two aggregations (vocabulary-sized results only)."""
    check_settings(settings)
    docs = terms(texts.select("description"), settings).select(_TERMS).persist()
    cv = CountVectorizer(inputCol=_TERMS, outputCol=_COUNTS, minDF=float(settings.min_df),
                         vocabSize=int(settings.vocab_size))
    if settings.max_df < 1.0:
        cv.setMaxDF(float(settings.max_df))
    vocab = list(cv.fit(docs).vocabulary)
    index = spark.createDataFrame(list(enumerate(vocab)), "term_index int, term string")
    per_term = {}
    for name, col in (("df", F.array_distinct(_TERMS)), ("tf", F.col(_TERMS))):
        counted = (docs.select(F.explode(col).alias("term")).join(F.broadcast(index), "term")
                   .groupBy("term_index").count())
        per_term[name] = {r["term_index"]: r["count"] for r in counted.collect()}   # one row per vocabulary term
    df = np.array([per_term["df"].get(i, 0) for i in range(len(vocab))], dtype=np.int64)
    total = sum(per_term["tf"].values())
    n_docs = docs.count()
    docs.unpersist()
    # Spark orders equally frequent terms arbitrarily; sort them so the version is reproducible.
    order = sorted(range(len(vocab)), key=lambda i: (-df[i], vocab[i]))
    return LexicalModel(settings, [vocab[i] for i in order], df[order], int(n_docs), total / max(n_docs, 1))


def _weigh_batches(model: LexicalModel):
    """mapInPandas body: CountVectorizer's sparse vectors (arrive as dicts) -> weighted arrays."""
    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        n = len(model.vocabulary)
        for pdf in batches:
            rows = [(np.asarray(v["indices"], dtype=np.int64), np.asarray(v["values"], dtype=np.float64))
                    for v in pdf[_COUNTS]]
            w = model.weight(counts_matrix(rows, n))
            ptr = w.indptr
            yield pd.DataFrame({
                "id": pdf["id"], "title": pdf["title"],
                "term_indices": [w.indices[ptr[i]:ptr[i + 1]].astype(np.int32) for i in range(len(rows))],
                "term_weights": [w.data[ptr[i]:ptr[i + 1]].astype(np.float32) for i in range(len(rows))],
                "content_hash": pdf["content_hash"],
            })
    return run


def featurize(df: DataFrame, model: LexicalModel) -> DataFrame:
    """``(id, title, term_indices, term_weights, content_hash)`` of ``df``'s rows (which need
    ``id, title, description, content_hash``), with ``model``'s vocabulary and weighting."""
    cvm = CountVectorizerModel.from_vocabulary(model.vocabulary, inputCol=_TERMS, outputCol=_COUNTS)
    counted = cvm.transform(terms(df.select("id", "title", "description", "content_hash"), model.settings))
    return counted.select("id", "title", _COUNTS, "content_hash").mapInPandas(_weigh_batches(model),
                                                                                FEATURE_COLUMNS)
