"""X-Cross evaluation mechanics (lfr.eval.xcross / xcross_report / job) on the tiny random encoder: the
runner's folds, every row and fraction, exact ranks of the fold-independent rows, resume, report."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lfr.eval.xcross import LINK_TRAINED, METHODS, candidate_books, evaluate_xcross
from lfr.settings import load_settings, with_values

LINKS = pd.DataFrame({"movie_id": ["imdb:space-odyssey-1968", "imdb:love-story-1970", "imdb:the-heist-2001",
                                   "imdb:star-war-1977", "imdb:paris-nights-1999", "imdb:paris-nights-1999"],
                      "book_id": ["goodreads:1", "goodreads:4", "goodreads:6", "goodreads:2", "goodreads:5",
                                  "goodreads:4"]})


@pytest.fixture(scope="module")
def eval_settings(tiny_encoder_dir):
    return with_values(load_settings(environ={}), {
        "model.encoder": tiny_encoder_dir, "model.precision": "fp32", "eval.folds": 2, "eval.ks": [1, 3],
        "xcross.max_length": 32, "xcross.train_max_length": 32, "xcross.adapter_steps": 2,
        "xcross.adapter_batch_size": 4, "xcross.integrator_steps": 2, "xcross.integrator_batch_size": 3,
        "xcross.min_span_words": 4})


def test_candidate_books_keep_every_linked_book(toy_books):
    some = candidate_books(toy_books, LINKS, 6, seed=1)
    assert len(some) == 6 and set(LINKS.book_id) <= set(some.id)
    assert some.id.tolist() == [i for i in toy_books.id if i in set(some.id)]  # catalog order kept
    assert candidate_books(toy_books, LINKS, None, 1) is not None and len(candidate_books(toy_books, LINKS, 99, 1)) == 8


def test_every_row_and_fraction_then_resume(toy_movies, toy_books, eval_settings, tmp_path, monkeypatch):
    from lfr.eval.metrics import pessimistic_ranks
    from lfr.eval.runner import kfold_links_by_movie
    from lfr.eval.xcross_report import write_xcross_report
    from lfr.model.xcross import build_xcross

    progress = tmp_path / "progress.jsonl"
    kw = dict(fractions=(1.0, 0.5), candidates=6, max_length=32, batch_size=4, progress_path=progress)
    ev = evaluate_xcross(toy_movies, toy_books, LINKS, eval_settings, **kw)
    assert set(ev.ranks) == {(m, 1.0) for m in METHODS} | {(m, 0.5) for m in LINK_TRAINED}
    folds = kfold_links_by_movie(LINKS, 2, eval_settings.eval.seed)   # the runner's folds, in its order
    films = [m for _, test in folds for m in sorted(test.movie_id.unique())]
    assert len(films) == 5 and all(len(r) == 5 for r in ev.ranks.values())
    assert [len(r) for r in ev.ranks[("xcross", 1.0)]] == [len(LINKS[LINKS.movie_id == m]) for m in films]

    # text_only is the plain base encoder: recompute its ranks independently
    cands = candidate_books(toy_books, LINKS, 6, eval_settings.eval.seed)
    base = build_xcross(eval_settings.xcross, eval_settings.model)     # untrained: the plain base encoder
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
    again = evaluate_xcross(toy_movies, toy_books, LINKS, eval_settings, **kw)
    assert again.ranks == ev.ranks

    paths = write_xcross_report(ev, tmp_path / "reports")
    text = open(paths["report"], encoding="utf-8").read()
    assert all(f"| {m} " in text for m in METHODS) and "Data-fraction curve" in text
    assert open(paths["curve"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert np.isfinite([r["mrr"]["value"] for r in __import__("json").load(open(paths["metrics"]))["curve"]]).all()


def test_job_glue_collects_authors_and_writes_the_report(toy_movies, toy_books, eval_settings, tmp_path, monkeypatch):
    """jobs/evaluate.py --xcross without Spark: the collection is replaced, the rest is the job's path."""
    from lfr.data import DriverInputs
    from lfr.eval.job import evaluate_xcross_job

    seen = {}

    def collect(spark, settings, use_pairs=True, book_columns=()):
        seen["book_columns"], seen["settings"] = tuple(book_columns), settings
        return DriverInputs(toy_movies, toy_books, LINKS, 0)

    monkeypatch.setattr("lfr.data.collect_driver_inputs", collect)
    settings = with_values(eval_settings, {"catalogs": {**eval_settings.catalogs, "pairs": "pairs.csv"}})
    paths = evaluate_xcross_job(None, settings, reports_dir=str(tmp_path), candidates=6, fractions=(1.0,),
                                max_length=16)
    assert seen["book_columns"] == ("authors",) and seen["settings"] is settings
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("xcross_progress-")) != []
    assert "| xcross " in open(paths["report"], encoding="utf-8").read()


def test_progress_digest_follows_the_settings_sections_and_inputs(toy_movies, toy_books, eval_settings):
    from lfr.eval.job import progress_digest

    def digest(settings=eval_settings, candidates=6, max_length=16, links=LINKS):
        return progress_digest(toy_movies, toy_books, links, settings, candidates, max_length)

    base = digest()
    assert digest() == base and digest(settings=with_values(eval_settings, {"score.k": 3})) == base   # not read
    changed = [digest(settings=with_values(eval_settings, {key: value}))
               for key, value in (("xcross.adapter_steps", 3), ("eval.seed", 14), ("model.pooling", "cls"))]
    changed += [digest(candidates=None), digest(max_length=32), digest(links=LINKS.iloc[:-1])]
    assert len({base, *changed}) == len(changed) + 1
