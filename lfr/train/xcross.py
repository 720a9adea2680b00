"""X-Cross training: (1) each domain adapter label-free on its own catalog, (2) the integrator on
the movie->book links with the base encoder and both adapters frozen.

Stage 1 (per domain, InfoNCE with in-batch negatives): positives are two views of one item --
two spans of one description (first and second half of its words), the two texts of a film
found in both movie sources (the catalog merges them into one description; or ``alt_texts``:
id -> another text), and for books two different books by the same (first) author. No link is used, so the
adapters are the same for every CV fold: they are cached on disk by a digest of their inputs
(``xcross.cache_dir``) and can be passed in (``adapters_from``).

Stage 2: a batch of links (one per film and per book, so no in-batch negative is a true match)
is embedded by the integrated model -- films by the film stream, books by the book stream --
and only the integrator's parameters get InfoNCE gradients.

Cheap on purpose (2 shared CPU cores): few steps, ``train_max_length`` 128 tokens. ``model.precision``
is the run's, as for LightFusionRec (bf16 autocast where it resolves to bf16, else fp32).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from safetensors.torch import load_file as load_safetensors
from safetensors.torch import save_file as save_safetensors

from lfr.model.xcross import (
    DOMAINS,
    MODEL_KEYS,
    NOT_SAVED,
    XCrossModel,
    build_xcross,
    trainable,
    xcross_model_settings,
)
from lfr.settings import Settings

log = logging.getLogger(__name__)

#: How ``lfr.data`` joins the texts of a film merged from two sources (see lfr/data/catalog.py).
MERGED_TEXT_SEPARATOR = "\n\n"

#: The ``xcross`` section's training keys (values: conf/lfr.yaml).
TRAIN_KEYS = ("train_max_length", "adapter_steps", "adapter_epochs", "adapter_batch_size", "adapter_lr",
              "adapter_val_fraction", "adapter_val_max", "adapter_eval_every", "adapter_patience", "integrator_steps",
              "integrator_batch_size", "integrator_lr", "temperature", "min_span_words", "cache_dir")
#: what a trained adapter depends on among them (its cache key)
ADAPTER_TRAIN_KEYS = ("train_max_length", "adapter_steps", "adapter_epochs", "adapter_batch_size", "adapter_lr",
                      "adapter_val_fraction", "adapter_val_max", "adapter_eval_every", "adapter_patience",
                      "temperature", "min_span_words")


def xcross_settings(settings: Settings) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(model settings, training settings)`` of X-Cross: the model keys of ``lfr.model.xcross``
    (the encoder defaults to ``model.encoder``, the precision is ``model.precision``: one key for
    both model kinds) and the ``xcross`` section's ``TRAIN_KEYS``."""
    return (xcross_model_settings(settings.xcross, settings.model),
            {k: getattr(settings.xcross, k) for k in TRAIN_KEYS})


@dataclass
class XCrossTrainResult:
    model: XCrossModel
    history: list[dict] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    pair_stats: dict = field(default_factory=dict)
    seconds: float = 0.0
    stage_seconds: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)

    def manifest_extra(self) -> dict:
        return {"training": {"settings": self.settings, "pairs": self.pair_stats, "metrics": self.metrics,
                             "seconds": round(self.seconds, 1),
                             "stage_seconds": {k: round(v, 1) for k, v in self.stage_seconds.items()}}}


# --------------------------------------------------------------------------- views


def _text(value) -> str:
    return value.strip() if isinstance(value, str) else ""


def span_pair(text: str, min_words: int) -> tuple[str, str] | None:
    """(first half, second half) of the words of ``text``; None when it has fewer than ``min_words``."""
    words = _text(text).split()
    if len(words) < int(min_words):
        return None
    mid = len(words) // 2
    return " ".join(words[:mid]), " ".join(words[mid:])


def film_view_pairs(movies: pd.DataFrame, min_words: int, alt_texts: Mapping[str, str] | None = None
                    ) -> tuple[list[tuple[str, str]], dict]:
    """Positive pairs for the film adapter: two texts of the same film when there are two -- the
    catalog merges a film found in both movie sources into one item whose description is
    "<IMDb overview>\\n\\n<Wikipedia summary>", or ``alt_texts`` gives one -- else two spans of
    the description."""
    alt = dict(alt_texts or {})
    pairs, n_alt = [], 0
    for mid, desc in zip(movies["id"].astype(str), movies["description"]):
        first, _, rest = _text(desc).partition(MERGED_TEXT_SEPARATOR)
        other = _text(alt.get(mid)) or rest.strip()
        if first and other and other != first:
            pairs.append((first, other))
            n_alt += 1
        elif (span := span_pair(desc, min_words)) is not None:
            pairs.append(span)
    return pairs, {"film_pairs": len(pairs), "film_second_text_pairs": n_alt}


def book_view_pairs(books: pd.DataFrame, min_words: int) -> tuple[list[tuple[str, str]], dict]:
    """Positive pairs for the book adapter: consecutive books of the same first author (sorted by
    id), plus two spans of every description."""
    pairs: list[tuple[str, str]] = []
    by_author: dict[str, list[str]] = {}
    authors = books["authors"] if "authors" in books else [None] * len(books)
    for bid, desc, auth in sorted(zip(books["id"].astype(str), books["description"], authors), key=lambda r: r[0]):
        first = auth[0] if isinstance(auth, (list, tuple, np.ndarray)) and len(auth) else None
        if _text(desc) and isinstance(first, str) and first.strip():
            by_author.setdefault(first.strip().lower(), []).append(_text(desc))
    for descs in by_author.values():
        pairs += [(a, b) for a, b in zip(descs, descs[1:]) if a != b]
    n_author = len(pairs)
    pairs += [s for s in (span_pair(d, min_words) for d in books["description"]) if s is not None]
    return pairs, {"book_pairs": len(pairs), "book_same_author_pairs": n_author}


# --------------------------------------------------------------------------- losses and stages


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE: row i of ``a`` matches row i of ``b``; every other row is a negative."""
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / float(temperature)
    target = torch.arange(len(a))
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def held_aside(pairs: Sequence, fraction: float, seed: int, most: Optional[int] = None) -> tuple[list, list]:
    """``(training pairs, validation pairs)``: a seeded ``fraction`` of the pairs (at most ``most``) held aside
    (none when that leaves fewer than 2 on either side: a validation batch needs 2 rows, and so does training)."""
    n_val = int(round(float(fraction) * len(pairs)))
    n_val = min(n_val, int(most)) if most is not None else n_val
    if n_val < 2 or len(pairs) - n_val < 2:
        return list(pairs), []
    order = np.random.default_rng(seed).permutation(len(pairs))
    return [pairs[i] for i in sorted(order[n_val:])], [pairs[i] for i in sorted(order[:n_val])]


def adapter_steps(n_train: int, s: Mapping[str, Any]) -> int:
    """Steps of one adapter: ``adapter_epochs`` passes over its ``n_train`` training pairs (rounded up) when
    set, never more than ``adapter_steps``; else ``adapter_steps``."""
    cap = int(s["adapter_steps"])
    if s.get("adapter_epochs") is None:
        return cap
    return max(1, min(cap, math.ceil(float(s["adapter_epochs"]) * n_train / int(s["adapter_batch_size"]))))


def validation_loss(model: XCrossModel, domain: str, pairs: Sequence[tuple[str, str]], s: Mapping[str, Any]) -> float:
    """Mean InfoNCE over the held-aside pairs in fixed batches (no gradient): the same batches every time,
    so successive values compare."""
    size, losses, weights = int(s["adapter_batch_size"]), [], []
    with torch.no_grad():
        for i in range(0, len(pairs), size):
            batch = pairs[i:i + size]
            if len(batch) < 2:
                continue
            a = model.forward([p[0] for p in batch], domain, integrate=False, max_length=s["train_max_length"])
            b = model.forward([p[1] for p in batch], domain, integrate=False, max_length=s["train_max_length"])
            losses.append(float(info_nce(a, b, s["temperature"])))
            weights.append(len(batch))
    return float(np.average(losses, weights=weights))


class _EarlyStop:
    """The best validation loss so far, a copy of the adapter at it, and how many validations since."""

    def __init__(self, params: Mapping[str, torch.nn.Parameter], patience: int):
        self.params, self.patience = params, int(patience)
        self.best, self.state, self.since = float("inf"), None, 0

    def update(self, loss: float) -> bool:
        """Record a validation loss; True when training should stop."""
        if loss < self.best:
            self.best, self.since = loss, 0
            self.state = {n: p.detach().clone() for n, p in self.params.items()}
        else:
            self.since += 1
        return self.patience > 0 and self.since >= self.patience

    def restore(self) -> None:
        if self.state is not None:
            with torch.no_grad():
                for n, p in self.params.items():
                    p.copy_(self.state[n])


def train_adapter(model: XCrossModel, domain: str, pairs: Sequence[tuple[str, str]], s: Mapping[str, Any],
                  seed: int) -> list[dict]:
    """Stage 1 for one domain: only that adapter's LoRA weights move. With ``adapter_val_fraction`` a seeded
    share of the pairs is held aside: its InfoNCE (``val_loss`` in the history, logged: the loss curve) every
    ``adapter_eval_every`` steps, early stopping after ``adapter_patience`` validations without a better one,
    and the adapter at the best validation loss is the one kept."""
    history: list[dict] = []
    stage = f"adapter_{domain}"
    train_pairs, val_pairs = held_aside(pairs, s.get("adapter_val_fraction") or 0.0, seed, s.get("adapter_val_max"))
    if len(train_pairs) < 2:
        log.warning("xcross: %d positive pairs for the %s adapter: left untrained", len(pairs), domain)
        return history
    steps, every = adapter_steps(len(train_pairs), s), max(1, int(s.get("adapter_eval_every") or 1))
    rng = np.random.default_rng(seed)
    params = model.adapter_parameters(domain)
    stop = _EarlyStop(params, s.get("adapter_patience") or 0)
    if val_pairs:
        stop.update(validation_loss(model, domain, val_pairs, s))
        history.append({"stage": stage, "step": -1, "loss": float("nan"), "val_loss": stop.best})
        log.info("xcross %s: %d training / %d held-aside pairs, up to %d steps; val_loss before training %.4f",
                 stage, len(train_pairs), len(val_pairs), steps, stop.best)
    with trainable(params.values()) as trained:
        opt = torch.optim.AdamW(trained, lr=float(s["adapter_lr"]))
        for step in range(steps):
            idx = rng.choice(len(train_pairs), size=min(int(s["adapter_batch_size"]), len(train_pairs)),
                             replace=False)
            a = model.forward([train_pairs[i][0] for i in idx], domain, integrate=False,
                              max_length=s["train_max_length"])
            b = model.forward([train_pairs[i][1] for i in idx], domain, integrate=False,
                              max_length=s["train_max_length"])
            loss = info_nce(a, b, s["temperature"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            history.append({"stage": stage, "step": step, "loss": loss.item()})
            if val_pairs and ((step + 1) % every == 0 or step + 1 == steps):
                val = validation_loss(model, domain, val_pairs, s)
                history[-1]["val_loss"] = val
                log.info("xcross %s step %d/%d: loss %.4f, val_loss %.4f", stage, step + 1, steps, loss.item(), val)
                if stop.update(val):
                    log.info("xcross %s: no better val_loss in %d validations: stopped at step %d", stage,
                             stop.patience, step + 1)
                    break
            elif not val_pairs:
                _log_step(history)
    if val_pairs:
        stop.restore()
        log.info("xcross %s: kept the adapter at val_loss %.4f", stage, stop.best)
    _log_stage([h for h in history if h["step"] >= 0])
    return history


def link_texts(movies: pd.DataFrame, books: pd.DataFrame, links: pd.DataFrame | None
               ) -> list[tuple[str, str, str, str]]:
    """``(movie_id, book_id, film text, book text)`` of the links whose ends are in the catalogs."""
    if links is None or len(links) == 0:
        return []
    mt = dict(zip(movies["id"].astype(str), movies["description"].map(_text)))
    bt = dict(zip(books["id"].astype(str), books["description"].map(_text)))
    out = []
    for m, b in links[["movie_id", "book_id"]].astype(str).drop_duplicates().itertuples(index=False):
        if m in mt and b in bt:
            out.append((m, b, mt[m], bt[b]))
    return out


def _link_batch(pairs, size: int, rng) -> list[int]:
    """Up to ``size`` links, at most one per film and per book (no false in-batch negatives)."""
    seen_m, seen_b, out = set(), set(), []
    for i in rng.permutation(len(pairs)):
        m, b = pairs[i][0], pairs[i][1]
        if m not in seen_m and b not in seen_b:
            seen_m.add(m), seen_b.add(b), out.append(int(i))
            if len(out) == size:
                break
    return out


def train_integrator(model: XCrossModel, pairs: Sequence[tuple[str, str, str, str]], s: Mapping[str, Any],
                     seed: int) -> list[dict]:
    """Stage 2: only the integrator moves; films through the film stream, books the book stream."""
    history: list[dict] = []
    if len(pairs) < 2:
        log.warning("xcross: %d usable links: the integrator stays the identity", len(pairs))
        return history
    rng = np.random.default_rng(seed)
    with trainable(model.integrator.parameters()) as params:
        opt = torch.optim.AdamW(params, lr=float(s["integrator_lr"]), weight_decay=0.0)
        for step in range(int(s["integrator_steps"])):
            idx = _link_batch(pairs, int(s["integrator_batch_size"]), rng)
            if len(idx) < 2:
                break
            f = model.forward([pairs[i][2] for i in idx], "film", integrate=True, max_length=s["train_max_length"])
            b = model.forward([pairs[i][3] for i in idx], "book", integrate=True, max_length=s["train_max_length"])
            loss = info_nce(f, b, s["temperature"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            history.append({"stage": "integrator", "step": step, "loss": loss.item(), "batch": len(idx)})
            _log_step(history)
    _log_stage(history)
    return history


def _log_step(history: list[dict], every: int = 10) -> None:
    if len(history) % every == 0:
        log.info("xcross %s step %d: loss %.3f", history[-1]["stage"], len(history), history[-1]["loss"])


def _log_stage(history: list[dict]) -> None:
    if history:
        first, last = history[0], history[-1]
        log.info("xcross %s: %d steps, loss %.3f -> %.3f", first["stage"], len(history), first["loss"], last["loss"])


# --------------------------------------------------------------------------- adapter cache


def adapter_key(model: XCrossModel, domain: str, pairs, s: Mapping[str, Any]) -> str:
    """Digest of everything a trained adapter depends on (encoder weights, settings, its pairs)."""
    h = hashlib.sha256()
    enc = Path(model.folder) / "model.safetensors"
    h.update(json.dumps({"domain": domain, "encoder_bytes": enc.stat().st_size if enc.is_file() else None,
                         "model": {k: model.settings[k] for k in MODEL_KEYS if k not in NOT_SAVED},
                         "precision": model.precision,
                         "train": {k: s.get(k) for k in ADAPTER_TRAIN_KEYS}},
                        sort_keys=True, default=str).encode())
    h.update(str(model.name).encode())
    for a, b in pairs:
        h.update(a.encode("utf-8") + b"\x00" + b.encode("utf-8") + b"\x01")
    return h.hexdigest()[:24]


def _cached_adapter(model: XCrossModel, domain: str, pairs, s, seed: int) -> tuple[list[dict], bool]:
    cache = s.get("cache_dir")
    file = Path(cache) / f"xcross-adapter-{domain}-{adapter_key(model, domain, pairs, s)}-{seed}.safetensors" \
        if cache else None
    params = model.adapter_parameters(domain)
    if file is not None and file.is_file():
        state = load_safetensors(str(file))
        if set(state) == set(params):
            with torch.no_grad():
                for name, p in params.items():
                    p.copy_(state[name])
            log.info("xcross: %s adapter from cache %s", domain, file.name)
            return [], True
    history = train_adapter(model, domain, pairs, s, seed)
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_suffix(".tmp")
        save_safetensors({n: p.detach().contiguous().clone() for n, p in params.items()}, str(tmp))
        tmp.replace(file)
    return history, False


# --------------------------------------------------------------------------- entry point


def train(movies: pd.DataFrame, books: pd.DataFrame, links: pd.DataFrame | None, settings: Settings,
          *, alt_texts: Mapping[str, str] | None = None, adapters_from: XCrossModel | None = None,
          train_integrator_stage: bool = True, progress: bool = False) -> XCrossTrainResult:
    """Train X-Cross on pandas catalogs (``id, description``; books may have ``authors``) and links
    (``movie_id, book_id``), with the ``xcross`` and ``model`` sections of ``settings``.
    ``adapters_from``: reuse that model's adapters (stage 1 skipped);
    ``train_integrator_stage=False``: stop after stage 1 (the "no integration" ablation)."""
    del progress  # accepted for parity with lfr.train.train; this trainer logs per stage
    model_s, s = xcross_settings(settings)
    seed = int(model_s["seed"])
    started = time.time()
    model = build_xcross(settings.xcross, settings.model)
    torch.manual_seed(seed)
    history: list[dict] = []
    stats: dict[str, Any] = {}
    stage_seconds: dict[str, float] = {}
    film_pairs, fstats = film_view_pairs(movies, s["min_span_words"], alt_texts)
    book_pairs, bstats = book_view_pairs(books, s["min_span_words"])
    stats.update(fstats, **bstats)
    for i, (domain, pairs) in enumerate((("film", film_pairs), ("book", book_pairs))):
        t0 = time.time()
        if adapters_from is not None:
            src = adapters_from.adapter_parameters(domain)
            with torch.no_grad():
                for name, p in model.adapter_parameters(domain).items():
                    p.copy_(src[name])
            stats[f"{domain}_adapter"] = "reused"
        else:
            h, hit = _cached_adapter(model, domain, pairs, s, seed + i)
            history += h
            stats[f"{domain}_adapter"] = "cache" if hit else "trained"
        stage_seconds[f"adapter_{domain}"] = time.time() - t0
    link_pairs = link_texts(movies, books, links)
    stats["links_used"] = len(link_pairs)
    if train_integrator_stage:
        t0 = time.time()
        history += train_integrator(model, link_pairs, s, seed + len(DOMAINS))
        stage_seconds["integrator"] = time.time() - t0
    metrics = {f"final_loss_{stage}": [r["loss"] for r in history if r["stage"] == stage][-1]
               for stage in dict.fromkeys(r["stage"] for r in history)}
    metrics.update({f"best_val_loss_{stage}": min(r["val_loss"] for r in history if r["stage"] == stage
                                                  and "val_loss" in r)
                    for stage in dict.fromkeys(r["stage"] for r in history if "val_loss" in r)})
    return XCrossTrainResult(model=model, history=history, settings={**model_s, **s},
                             pair_stats=stats, seconds=time.time() - started, stage_seconds=stage_seconds,
                             metrics=metrics)
