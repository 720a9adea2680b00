"""Hubs of the hybrid's table under each hub correction, on a pipeline's own tables (numpy, all in memory).

    spark-submit jobs/pipeline.py --steps train,embed_books,embed_movies,embed_lexical \\
        --conf paths.data_dir=../shared/data --conf paths.work_dir=/tmp/full        # then:
    .venv/bin/python bench/hub_variants.py --conf paths.work_dir=/tmp/full

What ``score_all`` would publish with ``score.method: hybrid`` (the product's ``score.alpha``, ``hub_k``,
``hub_weight``, ``fused_hub_weight``; every film against every book, k = 10), recomputed exactly in float64
from the four tables (films and books with both an embedding and a lexical row), for each correction:

* ``none``: ``alpha z(cos) + (1 - alpha) z(lexical)``, per-film z-scores over all books;
* ``csls``: the dense side ``cos - hub_weight r(book)`` (``score.hubness: csls``);
* ``csls + fused``: that hybrid ``h - fused_hub_weight r_h(book)`` (``score.fused_hub_weight``: one more pass of
  the whole hybrid kernel in the Spark job);
* ``csls + bookz``: the lexical z-scores standardised once more, per book over all films (the evaluation's
  ``hybrid_csls_bookz`` row, ``lfr.eval.baselines.lexical_book_z``: statistics of the lexical product only).

Each line: the most recommended book, the films whose top 10 hold it (and their share), the share of books in
no list, Gini and skew (``lfr.score.hubs``). The hub target: no book in more than 2% of the films' lists.
Accuracy lives in the evaluation (``jobs/evaluate.py``: the rows of the same names, paired over films).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _frames(spark, settings):
    """``(ids, unit embeddings, unit lexical CSR)`` per domain: the ids with both rows, sorted (the tie rule)."""
    from lfr.score.sparse import csr_rows

    out = []
    for emb, lex in (("movie_embeddings", "movie_lexical"), ("book_embeddings", "book_lexical")):
        e = spark.read.format("delta").load(getattr(settings.tables, emb).path).select("id", "embedding").toPandas()
        x = (spark.read.format("delta").load(getattr(settings.tables, lex).path)
             .select("id", "term_indices", "term_weights", "vocab_size").toPandas())
        ids = sorted(set(e["id"]) & set(x["id"]))
        e, x = e.set_index("id").loc[ids], x.set_index("id").loc[ids]
        vecs = np.stack(e["embedding"].to_numpy()).astype(np.float64)
        vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-30)
        lengths = x["term_indices"].map(len).to_numpy()
        offsets = np.r_[0, np.cumsum(lengths)]
        mat, valid = csr_rows(offsets, _flat(x["term_indices"]), _flat(x["term_weights"]),
                              int(x["vocab_size"].iloc[0]), require_terms=False)
        if not valid.all():
            raise SystemExit(f"{lex}: {int((~valid).sum())} invalid lexical rows")
        out.append((ids, vecs, mat.astype(np.float64)))
    return out


def _flat(column) -> np.ndarray:
    """A column of arrays, end to end."""
    return np.concatenate([np.asarray(v, dtype=np.float64) for v in column]) if len(column) else np.zeros(0)


def variants(cos: np.ndarray, lex: np.ndarray, alpha: float, hub_k: int, hub_weight: float,
             fused_weight: float) -> dict:
    """The published hybrid score matrix of each correction (module doc), films x books."""
    from lfr.eval.baselines import book_hubness, zscore_rows

    dense = cos - hub_weight * book_hubness(cos, hub_k)[None, :]
    zl = zscore_rows(lex)
    csls = alpha * zscore_rows(dense) + (1 - alpha) * zl
    return {
        "none": alpha * zscore_rows(cos) + (1 - alpha) * zl,
        f"csls {hub_weight:g}": csls,
        f"csls {hub_weight:g} + fused {fused_weight:g}": csls - fused_weight * book_hubness(csls, hub_k)[None, :],
        f"csls {hub_weight:g} + bookz": alpha * zscore_rows(dense) + (1 - alpha) * zscore_rows(zl.T).T,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--conf", action="append", default=[], help="config overrides (paths.work_dir=..., score.*)")
    a = p.parse_args(argv)
    from lfr.eval.metrics import score_hub_stats
    from lfr.settings import load_settings
    from lfr.spark import build_session

    settings = load_settings(overrides=a.conf)
    spark = build_session(settings)
    (m_ids, q, qa), (b_ids, b, ba) = _frames(spark, settings)
    spark.stop()
    cos, lex = q @ b.T, (qa @ ba.T).toarray()
    s = settings.score
    print(f"# {len(m_ids)} films x {len(b_ids)} books, alpha {s.alpha}, hub_k {s.hub_k}, top 10")
    for name, scores in variants(cos, lex, float(s.alpha), int(s.hub_k), float(s.hub_weight),
                                 float(s.fused_hub_weight)).items():
        h = score_hub_stats(scores, b_ids)
        print(f"{name:24s} most recommended {h.hub_book}: {h.max_occurrence} films ({100 * h.max_share:.1f}%); "
              f"never recommended {100 * h.never_recommended:.1f}%; Gini {h.gini:.3f}; skew {h.skew:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
