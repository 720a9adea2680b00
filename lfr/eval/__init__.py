"""Offline evaluation of LightFusionRec against baselines on ground-truth movie->book links.

* ``lfr.eval.metrics``   -- pure-numpy ranking metrics (Recall@k, MRR, nDCG@k) and MAE/RMSE on the
  most confident predictions; link resolution with missing-item counts.
* ``lfr.eval.baselines`` -- the ablation's methods (TF-IDF, genre-only, text-only, untrained and
  trained fusion, DistilBERT), all producing cosine scores.
* ``lfr.eval.runner``    -- the protocol: held-out split by movie, training on the rest, scoring;
  once per text protocol (``open`` / ``strict``).
* ``lfr.eval.masking``   -- the strict protocol: links' titles and author names removed from the texts.
* ``lfr.eval.report``    -- ``report.md`` + ``metrics.png`` + ``metrics.json``.
* ``lfr.eval.xcross``    -- X-Cross's rows, ablations and data-fraction curve on the runner's folds;
  ``lfr.eval.xcross_report`` writes ``xcross_report.md`` next to the main report.
* ``lfr.eval.job``       -- the Spark side of both (``jobs/evaluate.py [--xcross]``).
"""
from lfr.eval.metrics import (  # noqa: F401
    LinkStats,
    confidence_error_metrics,
    pessimistic_ranks,
    ranking_metrics,
    resolve_links,
)
from lfr.eval.report import format_tables, write_report  # noqa: F401
from lfr.eval.runner import EvalResult, build_eval_pairs, run_evaluation, run_protocols, split_links_by_movie  # noqa: F401
