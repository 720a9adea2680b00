"""Training tests: pair rules, split, loss goes down, fine-tuning, publishing (tiny encoder, toy data)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lfr.config import ConfigError
from lfr.model import load, normalise_genres
from lfr.settings import load_settings, with_values
from lfr.train import build_pairs, data_fingerprint, split_by_movie, train, train_settings
from lfr.train.publish import publish_model

BASE = load_settings(environ={})   # conf/lfr.yaml: what the jobs run
PAIR_CFG = with_values(BASE.train, {"seed": 3, "min_shared_genres": 2, "genre_positives_per_movie": 2,
                                    "negatives_per_positive": 2})


def _shared(movies, books, m, b) -> int:
    g = lambda frame, i: set(normalise_genres(frame.set_index("id").loc[i, "genres"]))  # noqa: E731
    return len(g(movies, m) & g(books, b))


def _cfg(model_cfg, **train):
    """The paper recipe (this file's subject) on the tiny model, with ``train`` overrides."""
    values = {"recipe": "paper", "epochs": 2, "lr": 1e-2, "batch_size": 64, "val_fraction": 0.0,
              "negatives_per_positive": 2, "seed": 5, **train}
    return with_values(BASE, {"model": model_cfg, **{f"train.{k}": v for k, v in values.items()}})


def test_genre_agreement_pairs_follow_the_rule(toy_movies, toy_books):
    pairs, source = build_pairs(toy_movies, toy_books, None, PAIR_CFG)
    assert source == "genre_agreement"
    pos, neg = pairs[pairs.label == 1], pairs[pairs.label == -1]
    assert len(pos) > 0 and set(pairs["label"].unique()) <= {1, -1}
    assert all(_shared(toy_movies, toy_books, m, b) >= 2 for m, b in zip(pos.movie_id, pos.book_id))
    assert pos.groupby("movie_id").size().max() <= 2
    for m, b in zip(neg.movie_id, neg.book_id):  # enough genre-disjoint books exist in the toy data
        assert _shared(toy_movies, toy_books, m, b) == 0
    assert (neg.groupby("movie_id").size() == 2 * pos.groupby("movie_id").size()).all()
    # Deterministic and independent of input row order.
    again, _ = build_pairs(toy_movies.sample(frac=1, random_state=1), toy_books.iloc[::-1], None, PAIR_CFG)
    pd.testing.assert_frame_equal(pairs, again)


def test_known_pairs_and_movie_without_genres(toy_movies, toy_books):
    known = pd.DataFrame({"movie_id": ["imdb:no-genre-2005", "imdb:love-story-1970", "imdb:love-story-1970", "imdb:x"],
                          "book_id": ["goodreads:3", "goodreads:4", "goodreads:4", "goodreads:1"]})
    pairs, source = build_pairs(toy_movies, toy_books, known, with_values(PAIR_CFG, {"negatives_per_positive": 3}))
    assert source == "pairs"
    pos = pairs[pairs.label == 1]
    assert sorted(zip(pos.movie_id, pos.book_id)) == [("imdb:love-story-1970", "goodreads:4"),
                                                      ("imdb:no-genre-2005", "goodreads:3")]
    neg = pairs[pairs.label == -1]
    assert len(neg) == 6 and not set(zip(neg.movie_id, neg.book_id)) & set(zip(pos.movie_id, pos.book_id))
    assert neg.groupby("movie_id").book_id.nunique().eq(3).all()  # without replacement
    with pytest.raises(ValueError, match="no positive"):
        build_pairs(toy_movies, toy_books, known.iloc[3:], PAIR_CFG)


def test_split_by_movie():
    pairs = pd.DataFrame({"movie_id": [f"m{i // 4}" for i in range(40)], "book_id": [f"b{i}" for i in range(40)],
                          "label": [1, -1, -1, -1] * 10})
    tr, va = split_by_movie(pairs, 0.2, seed=1)
    assert va.movie_id.nunique() == 2 and tr.movie_id.nunique() == 8
    assert not set(tr.movie_id) & set(va.movie_id) and len(tr) + len(va) == 40
    tr2, va2 = split_by_movie(pairs, 0.2, seed=1)
    assert set(va2.movie_id) == set(va.movie_id)
    assert split_by_movie(pairs, 0.0, 1)[1].empty
    assert split_by_movie(pairs.iloc[:4], 0.5, 1)[1].empty  # one movie: it must train


def test_settings_validation():
    with pytest.raises(ConfigError, match="unknown setting 'epoch'"):
        with_values(BASE.train, {"epoch": 3})
    paper = train_settings(with_values(BASE.train, {"recipe": "paper"}))
    assert paper.lr == 2e-5 and paper.epochs == 2      # null in the yaml: train.recipes.paper's values
    with pytest.raises(TypeError, match="TrainSettings"):
        train_settings({"recipe": "paper"})


def test_training_step_lowers_loss_and_is_deterministic(toy_movies, toy_books, tiny_model_cfg):
    cfg = _cfg(tiny_model_cfg)  # one batch per epoch: epoch 2's running loss is measured after one step
    r = train(toy_movies, toy_books, None, cfg, progress=False)
    h = r.history
    assert [x["epoch"] for x in h] == [0, 1, 2]
    assert h[1]["train_loss"] == pytest.approx(h[0]["train_loss"], abs=1e-6)  # epoch 1 = loss before the step
    assert h[2]["train_loss"] < h[0]["train_loss"]
    assert r.metrics["val_loss"] is None  # val_fraction 0: no validation movies, NaN -> None
    extra = r.manifest_extra()
    assert extra["training"]["lr"] == 1e-2 and extra["data_fingerprint"]["sha256"]
    json.dumps(extra, allow_nan=False)
    again = train(toy_movies, toy_books, None, cfg, progress=False)
    args = (None, list(toy_books.description), list(toy_books.genres))
    np.testing.assert_array_equal(r.model.embed(*args), again.model.embed(*args))


def test_data_fingerprint_tracks_content(toy_movies, toy_books):
    pairs, _ = build_pairs(toy_movies, toy_books, None, PAIR_CFG)
    a = data_fingerprint(toy_movies, toy_books, pairs)
    assert a == data_fingerprint(toy_movies.iloc[::-1], toy_books, pairs)
    changed = toy_books.copy()
    changed.loc[0, "description"] = "something else"
    assert data_fingerprint(toy_movies, changed, pairs)["sha256"] != a["sha256"]


def test_finetune_last_layer_round_trip(toy_movies, toy_books, tiny_model_cfg, tmp_path):
    cfg = _cfg(with_values(tiny_model_cfg, {"freeze_encoder": False, "finetune_last_layers": 1}), epochs=1, lr=1e-2,
               val_fraction=0.3)
    r = train(toy_movies, toy_books, None, cfg, progress=False)
    from lfr.model import TextEncoder

    orig = TextEncoder(tiny_model_cfg.encoder, pooling="cls", precision="fp32")
    layers, orig_layers = r.model.text.transformer_layers(), orig.transformer_layers()
    assert len(layers) == 2
    changed = lambda a, b: any(not np.array_equal(p.detach().numpy(), q.detach().numpy())  # noqa: E731
                               for p, q in zip(a.parameters(), b.parameters()))
    assert changed(layers[1], orig_layers[1]) and not changed(layers[0], orig_layers[0])
    assert r.history[1]["val_loss"] is not None
    out = tmp_path / "ft"
    r.model.save(out, extra_manifest=r.manifest_extra())
    m = load(out)
    assert m.manifest["encoder"]["finetuned"] is True
    args = (None, list(toy_movies.description), list(toy_movies.genres))
    np.testing.assert_allclose(m.embed(*args), r.model.embed(*args), atol=1e-6)


def test_publish_is_atomic_and_keeps_previous_on_failure(tiny_model, tmp_path, monkeypatch):
    target = tmp_path / "models" / "lfr"
    v1 = publish_model(tiny_model, str(target))
    assert json.loads((target / "manifest.json").read_text())["model_version"] == v1
    v2 = publish_model(tiny_model, str(target), extra_manifest={"note": "second"})
    assert v2 != v1 and load(target).model_version == v2

    def boom(path, extra_manifest=None):
        Path(path).mkdir(parents=True)
        (Path(path) / "partial").write_text("x")
        raise RuntimeError("disk full")

    monkeypatch.setattr(tiny_model, "save", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        publish_model(tiny_model, str(target))
    assert load(target).model_version == v2
    assert sorted(p.name for p in target.parent.iterdir()) == ["lfr"]  # no temp dirs left behind


@pytest.mark.e2e
def test_default_minilm_related_texts_score_higher(toy_movies, toy_books):
    from lfr.model import build_model

    model = build_model(with_values(BASE.model, {"encoder": "default", "precision": "auto"}),
                        list(toy_movies.genres) + list(toy_books.genres))
    assert model.text.model_type == "bert" and model.text_dim == model.output_dim == 384
    assert model.text.pooling == "mean" and model.text.requested_precision == "auto"
    assert model.text.precision in ("fp32", "bf16")
    texts = ["Astronauts travel through space to a distant planet aboard a starship.",
             "A spaceship crew explores an alien world among the stars.",
             "Simple recipes for baking bread and cakes at home."]
    feats = model.encode_text(texts)
    feats = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    assert feats[0] @ feats[1] > feats[0] @ feats[2] + 0.2
    emb = model.embed(None, texts, [["Sci-Fi"], ["Science Fiction"], ["Cooking"]])
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert emb[0] @ emb[1] > emb[0] @ emb[2]


def test_paper_recipe_keeps_the_epoch_with_the_lowest_validation_loss(toy_movies, toy_books, tiny_model_cfg):
    """The validation films choose the model: the kept weights are those of the best validation epoch,
    i.e. the model a run stopped at that epoch ends with (same seed, same batches)."""
    cfg = _cfg(tiny_model_cfg, epochs=6, lr=0.2, val_fraction=0.4, recipe="paper", batch_size=4)
    r = train(toy_movies, toy_books, None, cfg, progress=False)
    losses = {h["epoch"]: h["val_loss"] for h in r.history if h["epoch"] >= 1}
    best = min(losses, key=lambda e: (losses[e], e))
    assert r.metrics["best_epoch"] == best and r.metrics["epochs_run"] == 6
    assert r.metrics["val_loss"] == pytest.approx(losses[best])
    stopped = train(toy_movies, toy_books, None, with_values(cfg, {"train.epochs": best}), progress=False)
    args = (None, list(toy_books.description), list(toy_books.genres))
    np.testing.assert_allclose(r.model.embed(*args), stopped.model.embed(*args), atol=1e-6)
    no_val = train(toy_movies, toy_books, None, _cfg(tiny_model_cfg, epochs=3), progress=False)
    assert no_val.metrics["best_epoch"] == 3          # no validation film: the last epoch
