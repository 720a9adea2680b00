"""X-Cross on the unchanged pipeline (model.kind xcross): the train job's path publishes an X-Cross
artifact, the Spark embedding UDF embeds each catalog with its domain's stream, scoring ranks it.

Tiny random DistilBERT (tests/fixtures_model.py): only equalities and plumbing are asserted."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lfr.embed import embed_catalog
from lfr.model.artifact import read_manifest
from lfr.settings import load_settings, with_values

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi".split()


def _text(i: int, topic: str) -> str:
    return f"{topic} story number {i}: " + " ".join(WORDS[(i + j) % len(WORDS)] for j in range(10))


@pytest.fixture(scope="module")
def job_cfg(tmp_path_factory, tiny_encoder_dir):
    tmp = tmp_path_factory.mktemp("xcross_pipeline")
    movies = pd.DataFrame({"id": [f"m{i}" for i in range(6)], "title": [f"Film {i}" for i in range(6)],
                           "description": [_text(i, "film") for i in range(6)], "genres": "Drama", "year": 2000})
    books = pd.DataFrame({"id": [f"b{i}" for i in range(8)], "title": [f"Book {i}" for i in range(8)],
                          "description": [_text(i, "book") for i in range(8)], "genres": "Fiction",
                          "authors": ["Ann Author" if i < 4 else f"Writer {i}" for i in range(8)]})
    movies.to_csv(tmp / "movies.csv", index=False)
    books.to_csv(tmp / "books.csv", index=False)
    (tmp / "pairs.csv").write_text("movie_id,book_id\n" + "".join(f"m{i},b{i}\n" for i in range(5)))
    cfg = load_settings(environ={}, overrides=[
        f'catalogs.movies=[{{reader: generic, path: "{tmp / "movies.csv"}"}}]',
        f'catalogs.books=[{{reader: generic, path: "{tmp / "books.csv"}"}}]',
        f"catalogs.pairs={tmp / 'pairs.csv'}",
        f"paths.warehouse={tmp / 'wh'}", "tables.database=lfr_test_xcross",
        "model.kind=xcross", f"model.encoder={tiny_encoder_dir}", "model.precision=fp32",
        "xcross.max_length=32", "xcross.train_max_length=32", "xcross.adapter_steps=2",
        "xcross.adapter_batch_size=4", "xcross.integrator_steps=3", "xcross.integrator_batch_size=4",
        "xcross.integrator_lr=1e-2", "xcross.min_span_words=4"])
    return cfg, tmp


def _embed(spark, cfg, domain: str, model_dir: str) -> pd.DataFrame:
    run = with_values(cfg, {"paths.model_dir": model_dir, "embed.batch_size": 3, "embed.partitions": 2,
                            "embed.ship_model": "archive", "embed.delete_missing": True})
    stats = embed_catalog(spark, run, domain)
    assert stats.embedded == stats.valid > 0
    path = getattr(cfg.tables, f"{domain[:-1]}_embeddings").path
    return spark.read.format("delta").load(path).toPandas().sort_values("id").reset_index(drop=True)


def test_xcross_trains_embeds_and_scores_on_the_pipeline(spark, job_cfg):
    from lfr.model import XCrossModel, load
    from lfr.score import score_recommendations
    from lfr.spark.guards import Guards
    from lfr.train.job import run_training

    cfg, tmp = job_cfg
    model_dir = str(tmp / "model")
    result, version = run_training(spark, cfg, model_dir=model_dir, progress=False)
    manifest = read_manifest(model_dir)
    assert manifest["kind"] == "xcross" and manifest["model_version"] == version and manifest["inputs_key"]
    stats = manifest["training"]["pairs"]
    assert stats["links_used"] == 5 and stats["book_same_author_pairs"] == 3  # authors reached the trainer
    assert run_training(spark, cfg, model_dir=model_dir, progress=False) == (None, version)  # idempotent

    model = load(model_dir)  # lfr.model.load dispatches on the manifest's kind
    assert isinstance(model, XCrossModel) and model.model_version == version
    assert not model.integrator.is_identity()  # trained: the UDF runs both streams and the integrators

    movies = _embed(spark, cfg, "movies", model_dir)
    books = _embed(spark, cfg, "books", model_dir)
    assert set(movies.model_version) == set(books.model_version) == {version}
    mv, bv = np.stack(movies.embedding.to_list()), np.stack(books.embedding.to_list())
    by_id = lambda frame: pd.read_csv(tmp / f"{frame}.csv").set_index("id")  # noqa: E731
    m_src, b_src = by_id("movies").loc[movies.id], by_id("books").loc[books.id]
    film = model.embed(list(m_src.title), list(m_src.description), None, 64, domain="film")
    book = model.embed(list(b_src.title), list(b_src.description), None, 64, domain="book")
    np.testing.assert_allclose(mv, film, atol=1e-5)
    np.testing.assert_allclose(bv, book, atol=1e-5)
    wrong = model.embed(list(b_src.title), list(b_src.description), None, 64, domain="film")
    assert np.abs(bv - wrong).max() > 1e-3  # the domain matters: books were not embedded as films

    out = str(tmp / "recs")
    scoring = load_settings(overrides=["score.method=dense", "score.k=3", "score.hubness=none"], environ={})
    score_recommendations(spark, spark.createDataFrame(movies[["id", "embedding", "model_version"]]),
                          spark.createDataFrame(books[["id", "embedding", "model_version"]]), out,
                          settings=scoring.score, guards=Guards.from_settings(scoring.guards))
    recs = spark.read.format("delta").load(out).toPandas()
    assert set(recs.model_version) == {version}
    for i, mid in enumerate(movies.id):
        got = recs[recs.movie_id == mid].sort_values("rank")
        expected = books.id[np.argsort(-(bv @ mv[i]), kind="stable")[:3]].tolist()
        assert got.book_id.tolist() == expected, mid
        np.testing.assert_allclose(got.score, np.sort(bv @ mv[i])[::-1][:3], atol=1e-5)


def test_the_train_job_collects_a_bounded_sample_with_every_link(spark, job_cfg, caplog):
    """xcross.adapter_max_items: the X-Cross train job collects at most that many items of a larger catalog
    (plus the links' films and books) and logs it; the books keep their authors (the adapter's pairs)."""
    from lfr.train.job import collect_inputs

    cfg, _ = job_cfg
    bounded = with_values(cfg, {"xcross.adapter_max_items": 2})
    movies, books, links = collect_inputs(spark, bounded)
    assert len(links) == 5 and set(links.movie_id) <= set(movies.id) and set(links.book_id) <= set(books.id)
    assert len(movies) <= 2 + 5 and len(books) <= 2 + 5
    with caplog.at_level("INFO", logger="lfr.data.driver"):
        movies, books, links = collect_inputs(spark, bounded, use_pairs=False)
    assert links is None and len(movies) == len(books) == 2
    assert "authors" in books and list(movies.id) == sorted(movies.id)
    assert "movies: a bounded sample of 2 of 6 valid rows" in caplog.text
    assert "books: a bounded sample of 2 of 8 valid rows" in caplog.text
    full_movies, full_books, _ = collect_inputs(spark, cfg)          # the default bound: these catalogs fit
    assert len(full_movies) == 6 and len(full_books) == 8


def test_model_kind_is_checked(job_cfg):
    from lfr.train.job import inputs_key, model_kind

    cfg, _ = job_cfg
    assert model_kind(cfg) == "xcross" and model_kind(load_settings(environ={})) == "lightfusionrec"
    with pytest.raises(ValueError, match="model.kind"):
        model_kind(with_values(cfg, {"model.kind": "xcros"}))
    frames = (pd.DataFrame({"id": ["m"]}), pd.DataFrame({"id": ["b"]}), None)
    changed = with_values(cfg, {"xcross.integrator_steps": 4})
    assert inputs_key(*frames, cfg) != inputs_key(*frames, changed)  # X-Cross settings retrain
    plain = with_values(cfg, {"model.kind": "lightfusionrec"})
    assert inputs_key(*frames, plain) == inputs_key(*frames, with_values(plain, {"xcross": changed.xcross}))
