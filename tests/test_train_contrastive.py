"""Contrastive recipe mechanics: hard-negative mining, masking, selection, label-free pairs (tiny model)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from lfr.config import ConfigError
from lfr.model import ResidualHead
from lfr.settings import load_settings, with_values
from lfr.train import train, train_settings
from lfr.train.contrastive import Feats, _info_nce_links, fit_contrastive, mine_hard_negatives, span_pairs

LINKS = pd.DataFrame({"movie_id": ["imdb:space-odyssey-1968", "imdb:star-war-1977", "imdb:love-story-1970",
                                   "imdb:paris-nights-1999", "imdb:the-heist-2001"],
                      "book_id": ["goodreads:1", "goodreads:2", "goodreads:4", "goodreads:5", "goodreads:6"]})


BASE = load_settings(environ={})


def _cfg(model_cfg, **train_kw):
    values = {"recipe": "contrastive", "batch_size": 4, "val_fraction": 0.0, "hard_negatives": 2,
              "hard_negative_skip": 1, "epochs": 5, "lr": 1e-2, "pretrain_epochs": 2, "seed": 3, **train_kw}
    return with_values(BASE, {"model": model_cfg, **{f"train.{k}": v for k, v in values.items()}})


def _train(**values):
    return train_settings(with_values(BASE.train, values))


def test_recipe_defaults():
    """A null epochs / lr / weight_decay takes the recipe's entry in conf/lfr.yaml's train.recipes."""
    assert BASE.train.recipe == "contrastive" and BASE.train.lr is None
    assert _train().lr == 1e-3 and _train().epochs == 100
    assert _train(recipe="paper").lr == 2e-5 and _train(recipe="paper").epochs == 2
    assert _train(recipe="contrastive", lr=0.5).lr == 0.5
    with pytest.raises(ValueError, match="train.recipe"):
        _train(recipe="triplet")
    with pytest.raises(ValueError, match="no entry for the recipe 'paper'"):
        _train(recipe="paper", recipes={"contrastive": BASE.train.recipes["contrastive"]})
    with pytest.raises(ConfigError, match="recipes"):      # every recipe entry names all three
        load_settings(environ={}, overrides=["train.recipes.paper={lr: 1.0e-3}"])


def test_hard_negatives_skip_the_top_and_the_links():
    books = torch.eye(6)
    movie = torch.tensor([[1.0, 0.9, 0.8, 0.7, 0.6, 0.5]])  # text-only ranking: book 0, 1, 2, 3, 4, 5
    hard = mine_hard_negatives(movie, books, {0: {1}}, n_hard=2, skip=1)
    assert hard[0].tolist() == [2, 3]  # book 1 is the link (never a negative), book 0 is skipped
    assert mine_hard_negatives(movie, books, {0: {1}}, n_hard=0, skip=1) == {}


def test_other_links_of_a_film_are_masked_not_negatives():
    head = ResidualHead(4, 2, seed=0)
    movies = Feats(torch.tensor([[1.0, 0, 0, 0]]), torch.zeros(1, 2))
    books = Feats(torch.tensor([[1.0, 0.1, 0, 0], [1.0, 0, 0.1, 0], [0, 1.0, 0, 0]]), torch.zeros(3, 2))
    batch = np.array([[0, 0], [0, 1]])
    masked = _info_nce_links(head, movies, books, batch, {0: {0, 1}}, {0: torch.tensor([2])}, tau=0.1)
    e = torch.nn.functional.normalize(books.text, dim=-1) @ torch.nn.functional.normalize(movies.text, dim=-1)[0]
    expect = -torch.log_softmax(e[[0, 2]] / 0.1, 0)[0] * 0.5 - torch.log_softmax(e[[1, 2]] / 0.1, 0)[0] * 0.5
    assert float(masked.detach()) == pytest.approx(float(expect), rel=1e-5)


def test_span_pairs():
    text = "First sentence here. " * 20 + "Second half starts. " * 20
    (a, b), = span_pairs([text, "too short.", None], min_chars=100)
    assert a and b and a + " " + b == text.strip() and abs(len(a) - len(b)) < 40
    assert span_pairs(["x" * 1000], min_chars=100) == []  # no sentence end: no split


def test_contrastive_training_runs_selects_and_is_deterministic(toy_movies, toy_books, tiny_model_cfg):
    extra = pd.DataFrame({"text_a": ["A gang plans a robbery.", "Two students fall in love."],
                          "text_b": ["Thieves break into a vault.", "A tender romance between students."]})
    r = train(toy_movies, toy_books, LINKS, _cfg(tiny_model_cfg), progress=False, extra_pairs=extra)
    h = r.history
    assert [x["stage"] for x in h[:4]] == ["init", "label_free", "label_free", "links"] and len(h) == 8
    assert r.pair_stats["label_free_pairs"] == 2 and r.settings["recipe"] == "contrastive"
    assert r.model.head.kind == "residual" and r.model.head.delta.weight.abs().max() > 0  # it learned
    assert h[-1]["train_loss"] < h[3]["train_loss"]
    again = train(toy_movies, toy_books, LINKS, _cfg(tiny_model_cfg), progress=False, extra_pairs=extra)
    args = (None, list(toy_books.description), list(toy_books.genres))
    np.testing.assert_array_equal(r.model.embed(*args), again.model.embed(*args))


def test_validation_selection_keeps_the_best_epoch():
    gen = torch.Generator().manual_seed(0)
    movies = Feats(torch.randn(12, 8, generator=gen), torch.randn(12, 3, generator=gen))
    books = Feats(torch.randn(30, 8, generator=gen), torch.randn(30, 3, generator=gen))
    links = np.array([[i, i] for i in range(12)])
    s = with_values(BASE.train, {"seed": 1, "temperature": 0.1, "hard_negatives": 3, "hard_negative_skip": 0,
                                 "lr": 0.05, "weight_decay": 0.0, "batch_size": 4, "epochs": 15, "patience": 3,
                                 "pretrain_epochs": 0})
    s = dataclasses.replace(s, val_books=None)   # with_values skips None: every book is a validation candidate
    head = ResidualHead(8, 3, seed=0)
    history, best = fit_contrastive(head, movies, books, links[:9], links[9:], s)
    mrr = [x["val_mrr"] for x in history]
    assert history[best]["val_mrr"] == max(mrr)
    assert len(history) - 1 - best <= 3 or len(history) == 16  # stopped after `patience` epochs without gain
    # The kept head is the one of the best epoch: replaying the same run up to it gives the same weights.
    replay = ResidualHead(8, 3, seed=0)
    replay_s = with_values(s, {"epochs": max(best, 1), "patience": 99})
    fit_contrastive(replay, movies, books, links[:9], links[9:], replay_s)
    if best > 0:
        for p, q in zip(head.state_dict().values(), replay.state_dict().values()):
            torch.testing.assert_close(p, q)
    else:
        assert not head.delta.weight.any()  # nothing beat the untrained (text-only) head: it is kept
