"""X-Cross evaluation mechanics (lfr.eval.xcross / xcross_report / job) on the tiny random encoder: the
runner's folds, every row and fraction, exact ranks of the fold-independent rows, resume, report."""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from lfr.config import load_config
from lfr.eval.xcross import LINK_TRAINED, METHODS, candidate_books, evaluate_xcross

LINKS = pd.DataFrame({"movie_id": ["imdb:space-odyssey-1968", "imdb:love-story-1970", "imdb:the-heist-2001",
                                   "imdb:star-war-1977", "imdb:paris-nights-1999", "imdb:paris-nights-1999"],
                      "book_id": ["goodreads:1", "goodreads:4", "goodreads:6", "goodreads:2", "goodreads:5",
                                  "goodreads:4"]})


@pytest.fixture(scope="module")
def eval_cfg(tiny_encoder_dir):
    cfg = copy.deepcopy(dict(load_config(environ={})))
    cfg["model"] = {**cfg["model"], "encoder": tiny_encoder_dir, "precision": "fp32"}
    cfg["eval"] = {**cfg["eval"], "folds": 2, "ks": [1, 3]}
    cfg["xcross"] = {**cfg["xcross"], "max_length": 32, "train_max_length": 32, "adapter_steps": 2,
                     "adapter_batch_size": 4, "integrator_steps": 2, "integrator_batch_size": 3, "min_span_words": 4}
    return cfg


def test_candidate_books_keep_every_linked_book(toy_books):
    some = candidate_books(toy_books, LINKS, 6, seed=1)
    assert len(some) == 6 and set(LINKS.book_id) <= set(some.id)
    assert some.id.tolist() == [i for i in toy_books.id if i in set(some.id)]  # catalog order kept
    assert candidate_books(toy_books, LINKS, None, 1) is not None and len(candidate_books(toy_books, LINKS, 99, 1)) == 8


def test_every_row_and_fraction_then_resume(toy_movies, toy_books, eval_cfg, tmp_path, monkeypatch):
    from lfr.eval.metrics import pessimistic_ranks
    from lfr.eval.runner import kfold_links_by_movie
    from lfr.eval.xcross_report import write_xcross_report
    from lfr.model.xcross import build_xcross

    progress = tmp_path / "progress.jsonl"
    kw = dict(fractions=(1.0, 0.5), candidates=6, max_length=32, batch_size=4, progress_path=progress)
    ev = evaluate_xcross(toy_movies, toy_books, LINKS, eval_cfg, **kw)
    assert set(ev.ranks) == {(m, 1.0) for m in METHODS} | {(m, 0.5) for m in LINK_TRAINED}
    folds = kfold_links_by_movie(LINKS, 2, eval_cfg["eval"]["seed"])   # the runner's folds, in its order
    films = [m for _, test in folds for m in sorted(test.movie_id.unique())]
    assert len(films) == 5 and all(len(r) == 5 for r in ev.ranks.values())
    assert [len(r) for r in ev.ranks[("xcross", 1.0)]] == [len(LINKS[LINKS.movie_id == m]) for m in films]

    # text_only is the plain base encoder: recompute its ranks independently
    cands = candidate_books(toy_books, LINKS, 6, eval_cfg["eval"]["seed"])
    base = build_xcross({"encoder": eval_cfg["model"]["encoder"], "max_length": 32, "precision": "fp32"})
    desc = toy_movies.set_index("id").loc[films, "description"].tolist()
    fv = base.embed(None, desc, None, 4, domain="film", integrate=False)
    bv = base.embed(None, list(cands.description), None, 4, domain="book", integrate=False)
    bid = cands.id.tolist()
    expected = [sorted(pessimistic_ranks(fv[i] @ bv.T, [bid.index(b) for b in LINKS[LINKS.movie_id == m].book_id])
                       .tolist()) for i, m in enumerate(films)]
    assert [sorted(r) for r in ev.ranks[("text_only", 1.0)]] == expected

    def no_training(*a, **k):
        raise AssertionError("resumed run trained a model")
    monkeypatch.setattr("lfr.eval.xcross._run_trained", no_training)
    monkeypatch.setattr("lfr.eval.xcross.fixed_embeddings", no_training)
    again = evaluate_xcross(toy_movies, toy_books, LINKS, eval_cfg, **kw)
    assert again.ranks == ev.ranks

    paths = write_xcross_report(ev, tmp_path / "reports")
    text = open(paths["report"], encoding="utf-8").read()
    assert all(f"| {m} " in text for m in METHODS) and "Data-fraction curve" in text
    assert open(paths["curve"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert np.isfinite([r["mrr"]["value"] for r in __import__("json").load(open(paths["metrics"]))["curve"]]).all()


def test_job_glue_collects_authors_and_writes_the_report(toy_movies, toy_books, eval_cfg, tmp_path, monkeypatch):
    """jobs/evaluate.py --xcross without Spark: the collection is replaced, the rest is the job's path."""
    from lfr.data import DriverInputs
    from lfr.eval.job import evaluate_xcross_job

    seen = {}

    def collect(spark, cfg, use_pairs=True, book_columns=()):
        seen["book_columns"] = tuple(book_columns)
        return DriverInputs(toy_movies, toy_books, LINKS, 0)

    monkeypatch.setattr("lfr.data.collect_driver_inputs", collect)
    cfg = {**eval_cfg, "catalogs": {**eval_cfg["catalogs"], "pairs": "pairs.csv"}}
    paths = evaluate_xcross_job(None, cfg, reports_dir=str(tmp_path), candidates=6, fractions=(1.0,), max_length=16)
    assert seen["book_columns"] == ("authors",)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("xcross_progress-")) != []
    assert "| xcross " in open(paths["report"], encoding="utf-8").read()
