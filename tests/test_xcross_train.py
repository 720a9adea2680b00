"""X-Cross training mechanics on the tiny random encoder: which parameters each stage moves,
the label-free positives, adapter reuse and cache, and a trained model's artifact."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lfr.config import ConfigError
from lfr.model.xcross import DOMAINS, build_xcross, load
from lfr.settings import load_settings, with_values
from lfr.train.xcross import (
    adapter_steps,
    book_view_pairs,
    film_view_pairs,
    held_aside,
    info_nce,
    span_pair,
    train,
    train_adapter,
    xcross_settings,
)

LONG = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen"


def _cfg(tiny_encoder_dir, **extra):
    """conf/lfr.yaml with the tiny encoder and a few steps per stage."""
    xcross = {"max_length": 32, "train_max_length": 32, "adapter_steps": 2, "adapter_batch_size": 4,
              "integrator_steps": 2, "integrator_batch_size": 3, "min_span_words": 4, **extra}
    return with_values(load_settings(environ={}), {"model.encoder": tiny_encoder_dir, "model.precision": "fp32",
                                                   **{f"xcross.{k}": v for k, v in xcross.items()}})


@pytest.fixture(scope="module")
def catalogs(toy_movies, toy_books):
    books = toy_books.copy()
    books["authors"] = [["A. Clarke"], ["G. Lucas"], ["F. Herbert"], ["N. Sparks"], ["N. Sparks"],
                        ["A. Clarke"], None, ["X"]]
    links = pd.DataFrame({"movie_id": ["imdb:space-odyssey-1968", "imdb:love-story-1970", "imdb:the-heist-2001",
                                       "imdb:star-war-1977", "imdb:unknown-1900"],
                          "book_id": ["goodreads:1", "goodreads:4", "goodreads:6", "goodreads:2", "goodreads:1"]})
    return toy_movies, books, links


def test_views():
    assert span_pair(LONG, 16) == (" ".join(LONG.split()[:8]), " ".join(LONG.split()[8:]))
    assert span_pair("too short", 4) is None and span_pair(None, 1) is None
    movies = pd.DataFrame({"id": ["m1", "m2", "m3", "m4"],
                           "description": [LONG, "short text", "short too", "IMDb overview.\n\nWikipedia summary."]})
    pairs, stats = film_view_pairs(movies, 16, alt_texts={"m2": "the wikipedia summary of m2"})
    assert pairs == [span_pair(LONG, 16), ("short text", "the wikipedia summary of m2"),
                     ("IMDb overview.", "Wikipedia summary.")]
    assert stats == {"film_pairs": 3, "film_second_text_pairs": 2}
    books = pd.DataFrame({"id": ["b2", "b1", "b3"], "description": ["second", "first", "other"],
                          "authors": [["Ann"], np.array(["ann"]), ["Bob"]]})
    pairs, stats = book_view_pairs(books, 16)
    assert pairs == [("first", "second")] and stats["book_same_author_pairs"] == 1


def test_info_nce_prefers_matching_rows():
    a = torch.eye(4)
    assert float(info_nce(a, a, 0.1)) < float(info_nce(a, a.flip(0), 0.1))


def test_settings_reject_unknown_keys():
    base = load_settings(environ={})
    with pytest.raises(ConfigError, match="unknown setting 'lora_rank'"):
        with_values(base, {"xcross.lora_rank": 4})
    model_s, train_s = xcross_settings(with_values(base, {"model.encoder": "/x"}))   # xcross.encoder null: model's
    assert model_s["encoder"] == "/x" and model_s["lora_r"] == base.xcross.lora_r
    assert train_s["train_max_length"] == base.xcross.train_max_length


def _state(model):
    return {n: p.detach().clone() for n, p in model.net.named_parameters()}


def test_stages_move_only_their_parameters(tiny_encoder_dir, catalogs, tmp_path):
    movies, books, links = catalogs
    cfg = _cfg(tiny_encoder_dir)
    result = train(movies, books, links, cfg)
    model, fresh = result.model, build_xcross(cfg.xcross, cfg.model)
    after, before = _state(model), _state(fresh)
    for name, value in after.items():
        if ".lora_" not in name:
            assert torch.equal(value, before[name]), f"base weight {name} changed"
    for d in DOMAINS:  # LoRA B starts at zero: a trained adapter has non-zero B
        assert any(torch.count_nonzero(p) for n, p in model.adapter_parameters(d).items() if "lora_B" in n)
    assert not model.integrator.is_identity()
    assert result.pair_stats["links_used"] == 4 and result.pair_stats["book_same_author_pairs"] == 2
    assert {r["stage"] for r in result.history} == {"adapter_film", "adapter_book", "integrator"}
    assert all(np.isfinite(r["loss"]) for r in result.history)
    version = model.save(tmp_path / "m", extra_manifest=result.manifest_extra())
    loaded = load(tmp_path / "m")
    assert loaded.model_version == version and loaded.manifest["training"]["pairs"]["links_used"] == 4
    np.testing.assert_array_equal(loaded.embed(None, list(books["description"]), None, domain="book"),
                                  model.embed(None, list(books["description"]), None, domain="book"))


def test_adapter_reuse_cache_and_no_integration_ablation(tiny_encoder_dir, catalogs, tmp_path):
    movies, books, links = catalogs
    cfg = _cfg(tiny_encoder_dir, cache_dir=str(tmp_path / "cache"))
    first = train(movies, books, links, cfg, train_integrator_stage=False)
    assert first.model.integrator.is_identity()
    assert first.pair_stats["film_adapter"] == "trained" and len(list((tmp_path / "cache").iterdir())) == 2
    second = train(movies, books, links.iloc[:2], cfg)
    reused = train(movies, books, links, cfg, adapters_from=first.model)
    assert second.pair_stats["book_adapter"] == "cache" and reused.pair_stats["film_adapter"] == "reused"
    for other in (second.model, reused.model):
        for d in DOMAINS:
            for name, p in first.model.adapter_parameters(d).items():
                assert torch.equal(p, other.adapter_parameters(d)[name])
    assert not second.model.integrator.is_identity()
    # xcross.integrator_steps: 0 is the adapters-only model: each item through its domain's adapter, one stream
    adapters_only = train(movies, books, links, with_values(cfg, {"xcross.integrator_steps": 0}))
    assert adapters_only.model.integrator.is_identity() and not adapters_only.model.use_integration("auto")
    assert adapters_only.pair_stats["film_adapter"] == "cache"


def test_held_aside_pairs_and_steps_sized_from_the_catalog():
    pairs = [(f"a{i}", f"b{i}") for i in range(20)]
    tr, val = held_aside(pairs, 0.25, seed=3)
    assert len(val) == 5 and sorted(tr + val) == sorted(pairs) and not set(tr) & set(val)
    assert held_aside(pairs, 0.25, seed=3) == (tr, val) and held_aside(pairs, 0.25, seed=4) != (tr, val)
    assert held_aside(pairs[:3], 0.25, seed=3) == (pairs[:3], [])            # 1 pair is no validation batch
    assert held_aside(pairs, 0.0, seed=3) == (pairs, [])
    assert len(held_aside(pairs, 0.25, seed=3, most=3)[1]) == 3
    s = {"adapter_steps": 50, "adapter_epochs": None, "adapter_batch_size": 16}
    assert adapter_steps(1000, s) == 50                                      # no epochs: the steps as set
    assert adapter_steps(100, {**s, "adapter_epochs": 2.0}) == 13            # 2 x 100 / 16, rounded up
    assert adapter_steps(1000, {**s, "adapter_epochs": 2.0}) == 50           # never above adapter_steps


def test_adapter_training_validates_stops_early_and_keeps_the_best(tiny_encoder_dir, catalogs, monkeypatch, caplog):
    """Validation on held-aside pairs every step; after 2 validations without a better loss it stops, and the
    adapter is the one at the best validation (the losses are scripted; the weights are the real ones)."""
    import logging

    import lfr.train.xcross as xt

    movies, _, _ = catalogs
    cfg = _cfg(tiny_encoder_dir, adapter_steps=10, adapter_val_fraction=0.3, adapter_eval_every=1,
               adapter_patience=2, adapter_lr=0.05)
    model = build_xcross(cfg.xcross, cfg.model)
    pairs = [(f"{d} first view", f"{d} second view") for d in movies["description"]] * 2
    scripted, seen = iter([1.0, 0.9, 0.8, 0.85, 0.95, 0.5]), []

    def fake_validation(m, domain, val_pairs, s):
        seen.append({n: p.detach().clone() for n, p in m.adapter_parameters(domain).items()})
        return next(scripted)

    monkeypatch.setattr(xt, "validation_loss", fake_validation)
    with caplog.at_level(logging.INFO, logger="lfr.train.xcross"):
        history = train_adapter(model, "film", pairs, xt.xcross_settings(cfg)[1], seed=1)
    assert [h["step"] for h in history] == [-1, 0, 1, 2, 3] and history[0]["val_loss"] == 1.0
    assert [h.get("val_loss") for h in history[1:]] == [0.9, 0.8, 0.85, 0.95]   # stopped: 0.5 never asked
    kept = model.adapter_parameters("film")
    assert all(torch.equal(kept[n], seen[2][n]) for n in kept)                 # the weights validated at 0.8
    assert not all(torch.equal(kept[n], seen[-1][n]) for n in kept)
    assert "stopped at step 4" in caplog.text and "val_loss before training 1.0000" in caplog.text


def test_the_train_log_shows_the_validation_curve(tiny_encoder_dir, catalogs):
    from lfr.train.job import format_xcross_history

    movies, books, links = catalogs
    cfg = _cfg(tiny_encoder_dir, adapter_val_fraction=0.5, adapter_eval_every=1, integrator_steps=1)
    result = train(movies, books, links, cfg)
    for d in DOMAINS:
        vals = [h["val_loss"] for h in result.history if h["stage"] == f"adapter_{d}" and "val_loss" in h]
        assert len(vals) == 3 and all(np.isfinite(vals))                     # before training, after steps 1, 2
        assert result.metrics[f"best_val_loss_adapter_{d}"] == min(vals)
    table = format_xcross_history(result).splitlines()
    assert table[0].split() == ["stage", "steps", "first_loss", "last_loss", "val_before", "best_val", "seconds"]
    assert table[1].split()[:2] == ["adapter_film", "2"] and table[3].split()[4:6] == ["n/a", "n/a"]


def test_subsample_links_keeps_whole_films():
    from lfr.eval.xcross import subsample_links

    links = pd.DataFrame({"movie_id": [f"m{i // 2}" for i in range(20)], "book_id": [f"b{i}" for i in range(20)]})
    half = subsample_links(links, 0.5, seed=1)
    assert half["movie_id"].nunique() == 5 and len(half) == 10
    assert half.equals(subsample_links(links, 0.5, seed=1)) and subsample_links(links, 1.0, 1) is links
    with pytest.raises(ValueError):
        subsample_links(links, 0.0, 1)
