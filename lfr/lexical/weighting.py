"""Term weighting on term counts: pure numpy/scipy, shared by the Spark job and the evaluation.

Why one function: the product (``lfr.lexical.features``, inside a Spark ``mapInPandas`` task)
and the evaluation (``lfr.eval.baselines.lexical_method``, on the driver) must weight the same
counts identically, or the evaluation would measure a different model than the one that runs.

Schemes (``weighting``):

* ``tfidf`` -- ``(1 + ln c) * idf`` with the smoothed idf ``ln((1 + N) / (1 + df)) + 1``
  (sublinear tf: a word repeated ten times is not ten times as telling);
* ``bm25`` -- BM25 document weights ``idf * c (k1 + 1) / (c + k1 (1 - b + b dl / avgdl))`` with
  ``idf = ln(1 + (N - df + 0.5) / (df + 0.5))``: tf saturates and long texts are discounted
  (Wikipedia plots are several times longer than Goodreads blurbs).

``N`` is the number of documents the model was fitted on, ``df`` a term's document frequency
there, ``dl`` the document's number of in-vocabulary tokens, ``avgdl`` its mean over the fit.
Every row is then L2-normalised so the dot product of two rows is their cosine (an empty row
stays empty).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

SCHEMES = ("tfidf", "bm25")


def idf_weights(df: np.ndarray, n_docs: int, scheme: str) -> np.ndarray:
    """Per-term idf (float64) from document frequencies over ``n_docs`` documents."""
    df = np.asarray(df, dtype=np.float64)
    if scheme == "tfidf":
        return np.log((1.0 + n_docs) / (1.0 + df)) + 1.0
    if scheme == "bm25":
        return np.log1p((n_docs - df + 0.5) / (df + 0.5))
    raise ValueError(f"lexical.weighting must be one of {SCHEMES}, got {scheme!r}")


def weight_counts(counts: sp.csr_matrix, idf: np.ndarray, scheme: str, *, k1: float, b: float,
                  avgdl: float = 1.0) -> sp.csr_matrix:
    """Weighted, L2-normalised rows (float32 CSR, sorted indices) from a CSR of term counts."""
    counts = sp.csr_matrix(counts, dtype=np.float64, copy=True)
    counts.sum_duplicates()
    counts.sort_indices()
    c = counts.data
    rows = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))
    if scheme == "tfidf":
        tf = 1.0 + np.log(c)
    elif scheme == "bm25":
        dl = np.asarray(counts.sum(axis=1)).ravel()[rows]
        tf = c * (k1 + 1.0) / (c + k1 * (1.0 - b + b * dl / max(float(avgdl), 1e-12)))
    else:
        raise ValueError(f"lexical.weighting must be one of {SCHEMES}, got {scheme!r}")
    w = tf * np.asarray(idf, dtype=np.float64)[counts.indices]
    norms = np.sqrt(np.bincount(rows, weights=w * w, minlength=counts.shape[0]))
    w = w / np.where(norms[rows] > 0, norms[rows], 1.0)
    out = sp.csr_matrix((w.astype(np.float32), counts.indices.copy(), counts.indptr.copy()), shape=counts.shape)
    out.eliminate_zeros()  # bm25 idf is > 0 and tf > 0, so only all-zero rows are affected (none)
    return out


def counts_matrix(rows: list[tuple[np.ndarray, np.ndarray]], n_terms: int) -> sp.csr_matrix:
    """CSR of term counts from per-row ``(indices, counts)`` pairs (the Spark task's batch)."""
    lengths = [len(ix) for ix, _ in rows]
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    indices = np.concatenate([np.asarray(ix, dtype=np.int64) for ix, _ in rows]) if rows else np.zeros(0, np.int64)
    data = np.concatenate([np.asarray(v, dtype=np.float64) for _, v in rows]) if rows else np.zeros(0)
    return sp.csr_matrix((data, indices, indptr), shape=(len(rows), n_terms))
