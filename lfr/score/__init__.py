"""Exact blocked top-k cosine scoring: every movie -> its k most similar books (docs/CONTRACTS.md).

* :func:`score_recommendations` -- DataFrames in, Delta table ``recommendations`` out (one atomic commit).
* :func:`run_score` -- the job: tables from the typed ``Settings``, exclusions/filters, SQL registration + view.
* :func:`register_recommendations` / :func:`create_view` -- SQL registration (per session with the
  in-memory catalog; ``jobs/sql.py`` calls it before running queries).
* ``score.method`` (one strategy each, :mod:`lfr.score.methods`, built by :func:`scoring_method`): ``dense``
  (embedding cosine), ``lexical`` (TF-IDF/BM25 cosine, :mod:`lfr.score.sparse`) or ``hybrid``
  (``score.fusion``: convex fusion of per-movie z-scores, :mod:`lfr.score.hybrid`, or reciprocal rank
  fusion over global ranks, :mod:`lfr.score.rrf`);
  every one an exact top-k over all books, recorded per run in the table (``method``, ``method_params``).
* :mod:`lfr.score.sides` -- the hybrid's ids with one side only: counted, refused or scored (``score.missing_side``).
* :mod:`lfr.score.kernel` -- the per-block-pair kernel (numpy/torch), usable without Spark.
"""
from lfr.score.checks import ModelVersionMismatch, ScoringError, check_inputs, check_lexical_inputs
from lfr.score.job import ScoreResult, ShrinkRefused, load_exclusions, run_score, score_recommendations
from lfr.score.kernel import block_topk, normalize_rows, topk_local
from lfr.score.methods import ScoringMethod, scoring_method
from lfr.score.sides import MissingSideError
from lfr.score.view import create_view, register_recommendations

__all__ = [
    "MissingSideError", "ModelVersionMismatch", "ScoreResult", "ScoringError", "ScoringMethod", "ShrinkRefused",
    "block_topk", "check_inputs", "check_lexical_inputs", "create_view", "load_exclusions", "normalize_rows",
    "register_recommendations", "run_score", "score_recommendations", "scoring_method", "topk_local",
]
