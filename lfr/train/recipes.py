"""``train.recipe: contrastive`` from catalogs to a ``TrainResult`` (the objective is in
``lfr.train.contrastive``; the paper recipe stays in ``lfr.train.trainer``).

Features: the frozen encoder runs once over the linked films, EVERY book (hard negatives are mined
from, and validation ranks against, the whole catalog) and the label-free texts. Encodings are
memoised per process under the encoder's settings and a digest of the texts, so the k folds of an
evaluation encode the catalog once, not k times.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from lfr.model import LightFusionModel, build_model
from lfr.settings import ModelSettings, TrainSettings
from lfr.train.contrastive import Feats, fit_contrastive, span_pairs
from lfr.train.pairs import build_pairs
from lfr.train.result import TrainResult, data_fingerprint, finite

log = logging.getLogger(__name__)

CONTRASTIVE_KEYS = ("recipe", "epochs", "lr", "weight_decay", "batch_size", "temperature", "hard_negatives",
                    "hard_negative_skip", "patience", "pretrain_epochs", "span_pairs", "span_min_chars",
                    "val_books", "val_fraction", "seed")
_MEMO: "OrderedDict[tuple, np.ndarray]" = OrderedDict()
_MEMO_ENTRIES = 8


def encode_memo(model: LightFusionModel, texts: Sequence[str]) -> np.ndarray:
    """``model.encode_text(texts)``, memoised per process (frozen encoder only)."""
    enc = model.text
    key = (enc.folder, enc.pooling, enc.max_length, enc.precision, enc.chunking, enc.chunk_overlap,
           enc.chunk_pooling, hashlib.sha256("\x00".join(texts).encode("utf-8")).hexdigest())
    if key not in _MEMO:
        _MEMO[key] = model.encode_text(list(texts))
        while len(_MEMO) > _MEMO_ENTRIES:
            _MEMO.popitem(last=False)
    _MEMO.move_to_end(key)
    return _MEMO[key]


def features(model: LightFusionModel, frame: pd.DataFrame) -> Feats:
    texts = model.texts(list(frame["title"]), list(frame["description"]))
    return Feats(torch.from_numpy(encode_memo(model, texts)),
                 torch.from_numpy(model.genre_vectors(list(frame["genres"]))[0]))


def label_free_pairs(model: LightFusionModel, movies: pd.DataFrame, books: pd.DataFrame,
                     extra_pairs: pd.DataFrame | None, s: TrainSettings) -> tuple[Feats, Feats] | None:
    """Given pairs (``text_a, text_b[, genres_a, genres_b]``) + up to ``train.span_pairs`` halves of long
    descriptions (seeded sample; each half keeps its item's genres)."""
    rows: list[tuple[str, str, Any, Any]] = []
    if extra_pairs is not None and len(extra_pairs):
        ga = extra_pairs["genres_a"] if "genres_a" in extra_pairs else [None] * len(extra_pairs)
        gb = extra_pairs["genres_b"] if "genres_b" in extra_pairs else [None] * len(extra_pairs)
        rows += list(zip(extra_pairs["text_a"], extra_pairs["text_b"], ga, gb))
    if int(s.span_pairs) > 0:
        both = pd.concat([movies[["description", "genres"]], books[["description", "genres"]]], ignore_index=True)
        spans = []
        for desc, genres in zip(both["description"], both["genres"]):
            spans += [(a, b, genres, genres) for a, b in span_pairs([desc], int(s.span_min_chars))]
        rng = np.random.default_rng(int(s.seed))
        keep = rng.permutation(len(spans))[: int(s.span_pairs)]
        rows += [spans[i] for i in sorted(keep)]
    if not rows:
        return None
    a = Feats(torch.from_numpy(encode_memo(model, [r[0] for r in rows])),
              torch.from_numpy(model.genre_vectors([r[2] for r in rows])[0]))
    b = Feats(torch.from_numpy(encode_memo(model, [r[1] for r in rows])),
              torch.from_numpy(model.genre_vectors([r[3] for r in rows])[0]))
    return a, b


def split_links(links: pd.DataFrame, val_fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validation films held out by film, the same rule as the paper recipe (``split_by_movie``)."""
    from lfr.train.pairs import split_by_movie

    return split_by_movie(links.assign(label=1), val_fraction, seed)


def train_contrastive(movies: pd.DataFrame, books: pd.DataFrame, positives: pd.DataFrame | None,
                      s: TrainSettings, mcfg: ModelSettings, extra_pairs: pd.DataFrame | None,
                      started: float):
    pairs, source = build_pairs(movies, books, positives, dataclasses.replace(s, negatives_per_positive=0))
    links = pairs[pairs["label"] > 0][["movie_id", "book_id"]].reset_index(drop=True)
    model = build_model(mcfg, list(movies["genres"]) + list(books["genres"]))
    if not bool(mcfg.freeze_encoder):
        raise ValueError("train.recipe=contrastive trains the head on frozen features (model.freeze_encoder: true)")
    t0 = time.time()
    film_ids = sorted(links["movie_id"].unique())
    mf = features(model, movies.set_index("id").loc[film_ids].reset_index())
    bf = features(model, books)
    extra = label_free_pairs(model, movies, books, extra_pairs, s)
    feature_seconds = time.time() - t0
    m_row = {m: i for i, m in enumerate(film_ids)}
    b_row = {b: j for j, b in enumerate(books["id"])}
    tr, va = split_links(links, float(s.val_fraction), int(s.seed))
    rows = lambda f: np.array([[m_row[m], b_row[b]] for m, b in zip(f["movie_id"], f["book_id"])],  # noqa: E731
                              dtype=np.int64).reshape(-1, 2)
    history, best_epoch = fit_contrastive(model.head, mf, bf, rows(tr), rows(va), s, extra)
    first, best = history[0], next(h for h in history if h["epoch"] == best_epoch)
    metrics = {"val_mrr": best["val_mrr"], "initial_val_mrr": first["val_mrr"], "best_epoch": best_epoch,
               "epochs_run": history[-1]["epoch"]}
    pair_stats = {"positive_source": source, "train_links": len(tr), "train_movies": int(tr["movie_id"].nunique()),
                  "val_links": len(va), "val_movies": int(va["movie_id"].nunique()),
                  "label_free_pairs": 0 if extra is None else len(extra[0])}
    log.info("contrastive training: %s; best epoch %d (val MRR %.4f, init %.4f)", pair_stats, best_epoch,
             best["val_mrr"] if best["val_mrr"] is not None else float("nan"), first["val_mrr"])
    settings = {**{k: getattr(s, k) for k in CONTRASTIVE_KEYS}, "freeze_encoder": True, "optimizer": "AdamW",
                "loss": "InfoNCE (in-batch + mined hard negatives)", "feature_seconds": round(feature_seconds, 2)}
    split = pd.concat([tr.assign(split="train"), va.assign(split="val")], ignore_index=True)
    return TrainResult(model=model, history=finite(history), metrics=finite(metrics), pair_stats=pair_stats,
                       data_fingerprint=data_fingerprint(movies, books, split), settings=settings,
                       seconds=time.time() - started, pairs=split)
