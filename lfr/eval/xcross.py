"""X-Cross in the project's evaluation: its own rows and ablations (``evaluate_xcross``), and
``run_evaluation``'s ``train_fn`` hook (``make_train_fn``).

``evaluate_xcross`` uses the runner's link resolution and fold splitter (the same films in the
same folds as ``jobs/evaluate.py``) and its metrics and bootstrap intervals, and adds:

* ``xcross`` -- domain adapters + integrators, the integrators trained on the fold's links;
* ``adapters_only`` -- no integration: each item through its own domain's label-free adapter;
* ``film_adapter_only`` / ``book_adapter_only`` -- one source adapter for films and books;
* ``lora_target`` -- target-only LoRA: one adapter trained on the fold's links (same steps,
  batch and texts as the integrators), no domain adapters, no integration (the paper's baseline);
* ``text_only`` -- the frozen base encoder (the reference of the paired differences);

and the data-efficiency curve: the link-trained methods on 25/50/75/100% of each fold's training
films (``subsample_links``). Fold-independent rows are embedded once. Every (method, fraction,
fold) result is appended to a progress file, so an interrupted run resumes where it stopped.

The ``train_fn`` hook (older path, kept for ``bench/xcross_sample.py``):

The runner embeds a fold's films and the book catalog through ``model.embed(titles,
descriptions, genres, batch_size)`` without saying which catalog a call is for, and X-Cross needs
the item's domain. ``CatalogRouter`` answers it: each call is one catalog (the films of a fold,
or the books), so the call is routed to the film stream when most of its descriptions are film
descriptions, else to the book stream. (A ``domain`` argument in the runner's embed call would
make this unnecessary.)

The adapters are label-free (they never see a link), so they are trained once and reused by
every fold; only the integrator is trained per fold, on that fold's training links.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from lfr.model.xcross import XCrossModel, build_xcross
from lfr.settings import Settings, with_values
from lfr.train.xcross import XCrossTrainResult, link_texts, train, train_adapter, xcross_settings

log = logging.getLogger(__name__)

METHODS = {
    "text_only": "frozen base encoder (no adapter, no integration), cosine",
    "xcross": "X-Cross: label-free domain adapters + layer-wise integrators trained on the fold's links",
    "adapters_only": "no integration: each item through its own domain's label-free adapter",
    "film_adapter_only": "one source adapter: films and books through the film adapter",
    "book_adapter_only": "one source adapter: films and books through the book adapter",
    "lora_target": "target-only LoRA: one adapter trained on the fold's links (same steps/batch), no integration",
}
LINK_TRAINED = ("xcross", "lora_target")


class CatalogRouter:
    """``embed`` of one whole catalog at a time, routed to that catalog's domain stream."""

    def __init__(self, model: XCrossModel, film_descriptions, integrate: bool | str = "auto"):
        self.model, self.integrate = model, integrate
        self.film_texts = {d for d in film_descriptions if isinstance(d, str) and d}
        self.model_version, self.output_dim, self.kind = model.model_version, model.output_dim, model.kind

    def domain_of(self, descriptions) -> str:
        texts = [d for d in descriptions if isinstance(d, str) and d]
        films = sum(d in self.film_texts for d in texts)
        return "film" if texts and 2 * films > len(texts) else "book"

    def embed(self, titles, descriptions, genres=None, batch_size: int = 64) -> np.ndarray:
        return self.model.embed(titles, descriptions, genres, batch_size, domain=self.domain_of(descriptions),
                                integrate=self.integrate)


def subsample_links(links: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """The links of ``round(fraction * films)`` films (at least 2), drawn with ``seed``: the
    paper's data-efficiency curve trains on 25/50/75/100% of the target data."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"link fraction must be in (0, 1], got {fraction}")
    films = np.array(sorted(links["movie_id"].astype(str).unique()))
    if fraction == 1.0 or len(films) <= 2:
        return links
    keep = np.random.default_rng(int(seed)).permutation(films)[:max(2, int(round(fraction * len(films))))]
    return links[links["movie_id"].astype(str).isin(set(keep))].reset_index(drop=True)


def make_train_fn(*, integrate_stage: bool = True, alt_texts: Mapping[str, str] | None = None,
                  xcross_values: Mapping[str, Any] | None = None, link_fraction: float = 1.0,
                  seed: int | None = None) -> Callable:
    """A ``train_fn(movies, books, train_links, settings)`` for ``run_evaluation``: trains the adapters
    on the first call and reuses them, trains the integrator per fold (``integrate_stage=False``:
    the adapters-only ablation) on ``link_fraction`` of the fold's training films' links (drawn with
    ``seed``; None: ``eval.seed``), returns an ``XCrossTrainResult`` whose ``model`` is routed.
    ``xcross_values``: changes to the ``xcross`` section (``{"adapter_steps": 20}``)."""
    state: dict[str, XCrossModel] = {}

    def train_fn(movies: pd.DataFrame, books: pd.DataFrame, train_links: pd.DataFrame, settings: Settings):
        train_links = subsample_links(train_links, link_fraction, settings.eval.seed if seed is None else seed)
        settings = with_values(settings, {f"xcross.{k}": v for k, v in (xcross_values or {}).items()})
        result: XCrossTrainResult = train(movies, books, train_links, settings, alt_texts=alt_texts,
                                          adapters_from=state.get("adapters"), train_integrator_stage=integrate_stage)
        state.setdefault("adapters", result.model)
        router = CatalogRouter(result.model, movies["description"], integrate=True if integrate_stage else False)
        return replace(result, model=router)

    return train_fn


# --------------------------------------------------------------------------- evaluate_xcross


@dataclass
class XCrossEvaluation:
    """Per (method, fraction): pooled per-film ranks of its relevant books (all folds)."""
    ranks: dict[tuple[str, float], list[list[int]]]
    setup: dict
    descriptions: dict = field(default_factory=lambda: dict(METHODS))


def candidate_books(books: pd.DataFrame, links: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """The books every film is ranked against: all of them (``n`` None), else every linked book
    plus ``n - linked`` others drawn with ``seed`` (a cheaper, easier task: say so when quoting)."""
    if n is None or n >= len(books):
        return books.reset_index(drop=True)
    linked = set(links["book_id"].astype(str))
    ids = books["id"].astype(str)
    others = np.random.default_rng(int(seed)).permutation(np.flatnonzero(~ids.isin(linked).to_numpy()))
    keep = np.sort(np.concatenate([np.flatnonzero(ids.isin(linked).to_numpy()), others[:max(0, n - len(linked))]]))
    return books.iloc[keep].reset_index(drop=True)


def _embed(model: XCrossModel, frame: pd.DataFrame, domain: str, integrate: bool, batch_size: int) -> np.ndarray:
    return model.embed(None, list(frame["description"]), None, batch_size, domain=domain, integrate=integrate)


def fixed_embeddings(adapted: XCrossModel, base: XCrossModel, films: pd.DataFrame, books: pd.DataFrame,
                     batch_size: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``(film matrix, book matrix)`` of the fold-independent rows, each stream embedded once."""
    def emb(model, frame, domain):
        return _embed(model, frame, domain, False, batch_size)

    film_f, book_b = emb(adapted, films, "film"), emb(adapted, books, "book")
    film_b, book_f = emb(adapted, films, "book"), emb(adapted, books, "film")
    return {"text_only": (emb(base, films, "film"), emb(base, books, "film")),
            "adapters_only": (film_f, book_b), "film_adapter_only": (film_f, book_f),
            "book_adapter_only": (film_b, book_b)}


def train_lora_target(movies: pd.DataFrame, books: pd.DataFrame, links: pd.DataFrame, settings: Settings,
                      seed: int) -> XCrossModel:
    """The paper's LoRA baseline on our task: ONE adapter (the 'book' slot, starting as a no-op) trained
    with InfoNCE on (film text, book text) of the links, as many steps and rows as the integrators
    (``settings.xcross``, ``settings.model``)."""
    _, s = xcross_settings(settings)
    model = build_xcross(settings.xcross, settings.model)
    pairs = [(f, b) for _, _, f, b in link_texts(movies, books, links)]
    budget = {**s, "adapter_steps": s["integrator_steps"], "adapter_batch_size": s["integrator_batch_size"],
              "adapter_epochs": None, "adapter_val_fraction": 0.0}      # the integrators' budget, no links held aside
    train_adapter(model, "book", pairs, budget, seed)
    return model


def _fold_ranks(film_m: np.ndarray, book_m: np.ndarray, test_links: pd.DataFrame, film_ids: list[str],
                book_ids: list[str]) -> list[list[int]]:
    from lfr.eval.metrics import ranking_metrics, resolve_links

    rel, _ = resolve_links(zip(test_links["movie_id"], test_links["book_id"]), film_ids, book_ids)
    return ranking_metrics(film_m @ book_m.T, rel, return_ranks=True)["ranks"]


class _Progress:
    """(method, fraction, fold) -> ranks, appended to a JSON-lines file as they are computed."""

    def __init__(self, path: str | Path | None):
        self.path, self.done = (Path(path) if path else None), {}
        if self.path is not None and self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                r = json.loads(line)
                self.done[(r["method"], float(r["fraction"]), int(r["fold"]))] = r

    def has(self, method: str, fraction: float, fold: int) -> bool:
        return (method, float(fraction), int(fold)) in self.done

    def add(self, method: str, fraction: float, fold: int, ranks, film_ids, **info) -> None:
        rec = {"method": method, "fraction": float(fraction), "fold": int(fold), "film_ids": list(film_ids),
               "ranks": [list(map(int, r)) for r in ranks], **info}
        self.done[(method, float(fraction), int(fold))] = rec
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec) + "\n")
        log.info("xcross eval %s @%g fold %d done %s", method, fraction, fold, info)


FIXED = ("text_only", "adapters_only", "film_adapter_only", "book_adapter_only")


@dataclass
class _Run:
    """What every phase of ``evaluate_xcross`` shares."""
    movies: pd.DataFrame
    books: pd.DataFrame          # the candidate books
    films: pd.DataFrame          # the linked films
    splits: list
    settings: Settings           # per-fold training settings (max_length applied)
    max_length: int | None
    batch_size: int
    seed: int
    progress: _Progress

    def test_ids(self, test_links: pd.DataFrame) -> list[str]:
        return sorted(test_links["movie_id"].astype(str).unique())

    def ranks(self, film_m, book_m, test_links) -> list[list[int]]:
        return _fold_ranks(film_m, book_m, test_links, self.test_ids(test_links), self.books["id"].astype(str).tolist())

    def at_length(self, model: XCrossModel) -> XCrossModel:
        if self.max_length:
            model.settings["max_length"] = int(self.max_length)
        return model


def _run_fixed(run: _Run, adapted: XCrossModel, base: XCrossModel) -> None:
    """The fold-independent rows: every stream embedded once, ranked per fold."""
    todo = [(n, f) for n in FIXED for f in range(len(run.splits)) if not run.progress.has(n, 1.0, f)]
    if not todo:
        return
    t0 = time.time()
    fixed = fixed_embeddings(run.at_length(adapted), run.at_length(base), run.films, run.books, run.batch_size)
    seconds = round(time.time() - t0, 1)
    pos = {m: i for i, m in enumerate(run.films["id"].astype(str))}
    for name, f in todo:
        test = run.splits[f][1]
        ids = run.test_ids(test)
        film_m, book_m = fixed[name]
        run.progress.add(name, 1.0, f, run.ranks(film_m[[pos[m] for m in ids]], book_m, test), ids,
                         embed_seconds_all_rows=seconds)


def _run_trained(run: _Run, name: str, fraction: float, f: int, adapted: XCrossModel) -> None:
    """One link-trained model (xcross | lora_target) on ``fraction`` of fold ``f``'s training films."""
    train_links, test = run.splits[f]
    sub = subsample_links(train_links, fraction, run.seed)
    ids = run.test_ids(test)
    films = run.movies.set_index(run.movies["id"].astype(str)).loc[ids].reset_index(drop=True)
    t0 = time.time()
    if name == "xcross":
        model, domains, integrate = train(run.movies, run.books, sub, run.settings, adapters_from=adapted).model, \
            ("film", "book"), True
    else:
        model, domains, integrate = train_lora_target(run.movies, run.books, sub, run.settings, run.seed + f), \
            ("book", "book"), False
    t1 = time.time()
    film_m = _embed(run.at_length(model), films, domains[0], integrate, run.batch_size)
    book_m = _embed(model, run.books, domains[1], integrate, run.batch_size)
    run.progress.add(name, fraction, f, run.ranks(film_m, book_m, test), ids, train_links=int(len(sub)),
                     train_films=int(sub["movie_id"].nunique()), train_seconds=round(t1 - t0, 1),
                     embed_seconds=round(time.time() - t1, 1))


def evaluate_xcross(movies: pd.DataFrame, books: pd.DataFrame, links: pd.DataFrame, settings: Settings, *,
                    fractions: Sequence[float] = (1.0, 0.25, 0.5, 0.75), candidates: int | None = None,
                    max_length: int | None = None, batch_size: int | None = None,
                    methods: Sequence[str] = tuple(METHODS),
                    progress_path: str | Path | None = None) -> XCrossEvaluation:
    """X-Cross, its ablations and the data-fraction curve under the runner's folds (module doc).

    ``settings``: ``eval`` (folds, seed, ks), ``xcross`` and ``model``; the label-free adapters are
    trained (or read from ``xcross.cache_dir``) with them as they are. ``max_length``: tokens per item
    for every embedding and for the per-fold training (None: ``xcross.max_length``). ``candidates``:
    rank against this many books (all linked ones + random others; None: the whole catalog).
    ``batch_size``: items per forward pass (None: ``embed.batch_size``)."""
    from lfr.eval.runner import build_splits, check_eval, resolve_usable_links

    ev = check_eval(settings.eval)
    movies, books = movies.reset_index(drop=True), books.reset_index(drop=True)
    usable, stats = resolve_usable_links(links, movies["id"].astype(str).tolist(), books["id"].astype(str).tolist())
    splits, protocol = build_splits(usable, ev)
    fold_settings = with_values(settings, {"xcross.max_length": max_length or None,
                                           "xcross.train_max_length": max_length or None})
    cands = candidate_books(books, usable, candidates, ev.seed)
    films = movies[movies["id"].astype(str).isin(set(usable["movie_id"]))].reset_index(drop=True)
    run = _Run(movies, cands, films, splits, fold_settings, max_length,
               settings.embed.batch_size if batch_size is None else batch_size, ev.seed, _Progress(progress_path))
    t0 = time.time()
    adapted = train(movies, books, None, settings, train_integrator_stage=False).model  # stage 1 only (cached)
    log.info("xcross eval: label-free adapters ready in %.1fs", time.time() - t0)
    if any(m in FIXED for m in methods):
        _run_fixed(run, adapted, build_xcross(fold_settings.xcross, fold_settings.model))
    for fraction in fractions:
        for f in range(len(splits)):
            for name in (m for m in LINK_TRAINED if m in methods):
                if not run.progress.has(name, fraction, f):
                    _run_trained(run, name, float(fraction), f, adapted)
    setup = {"protocol": protocol, "folds": len(splits), "seed": ev.seed, "ks": list(ev.ks),
             "n_links_usable": int(len(usable)), "n_linked_films": int(len(films)), "n_books_catalog": len(books),
             "n_candidate_books": int(len(cands)), "max_length": max_length, "links": stats.as_dict(),
             "xcross": fold_settings.xcross.as_dict(), "fractions": [float(q) for q in fractions]}
    return XCrossEvaluation(ranks=collect_ranks(run.progress.done, len(splits)), setup=setup)


def collect_ranks(done: Mapping[tuple, dict], folds: int) -> dict[tuple[str, float], list[list[int]]]:
    """Pooled per-film ranks of every (method, fraction) whose folds are all done (fold order)."""
    out: dict[tuple[str, float], list[list[int]]] = {}
    for method, fraction in sorted({(m, q) for m, q, _ in done}):
        parts = [done.get((method, fraction, f)) for f in range(folds)]
        if all(p is not None for p in parts):
            out[(method, fraction)] = [r for p in parts for r in p["ranks"]]
    return out
