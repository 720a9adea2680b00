"""Exact blocked top-k cosine scoring: every movie -> its k most similar books (docs/CONTRACTS.md).

* :func:`score_recommendations` -- DataFrames in, Delta table ``recommendations`` out (one atomic commit).
* :func:`run_score` -- the job: tables from the config, exclusions/filters, SQL registration + view.
* :func:`register_recommendations` / :func:`create_view` -- SQL registration (per session with the
  in-memory catalog; ``jobs/sql.py`` calls it before running queries).
* :mod:`lfr.score.kernel` -- the per-block-pair kernel (numpy/torch), usable without Spark.
"""
from lfr.score.job import (
    ModelVersionMismatch,
    ScoreResult,
    ScoringError,
    check_inputs,
    create_view,
    load_exclusions,
    register_recommendations,
    run_score,
    score_recommendations,
)
from lfr.score.kernel import block_topk, normalize_rows, topk_local

__all__ = [
    "ModelVersionMismatch", "ScoreResult", "ScoringError", "block_topk", "check_inputs", "create_view",
    "load_exclusions", "normalize_rows", "register_recommendations", "run_score", "score_recommendations",
    "topk_local",
]
