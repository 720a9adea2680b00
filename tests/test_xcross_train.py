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
from lfr.train.xcross import book_view_pairs, film_view_pairs, info_nce, span_pair, train, xcross_settings

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


def test_subsample_links_keeps_whole_films():
    from lfr.eval.xcross import subsample_links

    links = pd.DataFrame({"movie_id": [f"m{i // 2}" for i in range(20)], "book_id": [f"b{i}" for i in range(20)]})
    half = subsample_links(links, 0.5, seed=1)
    assert half["movie_id"].nunique() == 5 and len(half) == 10
    assert half.equals(subsample_links(links, 0.5, seed=1)) and subsample_links(links, 1.0, 1) is links
    with pytest.raises(ValueError):
        subsample_links(links, 0.0, 1)
