"""The evaluation protocol: held-out films, labelled pairs, every method, one table.

Protocol (``run_evaluation``):

1. **Links -> catalog.** The ground-truth (movie_id, book_id) links are resolved against the
   valid catalogs; duplicates and links whose movie or book is not in the catalog are dropped and
   counted (``LinkStats``; the job also counts pair-file rows ``read_pairs`` could not resolve).
2. **Held out by movie.** With ``eval.folds = k >= 2`` (default 3): k-fold cross-validation by
   film -- the linked films are shuffled with ``eval.seed`` and dealt into k folds; for each fold
   a fusion model is trained on the links of the *other* folds' films and evaluates the fold's
   films. Every linked film is thus evaluated exactly once, by a model that never saw any of its
   links. With ``eval.folds = 1``: one split, ``eval.holdout_fraction`` of the films held out.
   All of a film's links go to the same side.
3. **Ranking**: for each held-out film, every method scores the FULL book catalog by cosine; the
   per-film results of all folds are pooled and ``lfr.eval.metrics.ranking_metrics`` averages them
   over films.
4. **Error metrics**: the held-out links (label 1) plus ``eval.negatives_per_positive`` random
   non-linked books per link (label 0, seeded) -> MAE/RMSE on the most confident 20/50/80%
   (``lfr.eval.metrics.confidence_error_metrics``).

5. **Hubs**: every method (a fold's trained one included) also ranks every film of the catalog against
   every book; the k-occurrence statistics of those top-10 lists (``lfr.score.hubs``: the share of films
   the most recommended book reaches, books never recommended, Gini, skew) are averaged over the folds
   (``HUB_COLUMNS``), and each hub-aware ``_csls`` row is compared with its plain row, paired over films.

Methods that do not learn from links (TF-IDF, genre-only, text-only, untrained fusion) give the
same scores whichever fold a film is in. Unsupervised parts see the whole catalogs (TF-IDF
vocabulary and idf, the FastText genre model): descriptions and genre labels, never links.
Titles are never embedded.

Text protocols (``eval.protocols``, ``run_protocols``): ``open`` reads the descriptions as given;
``strict`` first removes, from every linked film's text, its book's title and author and, from every
linked book's text, its film's title (``lfr.eval.masking``). The masking happens once, right after
phase 1 and before any method is fitted or any model trained, so TF-IDF, BM25, the encoders, the
trainer and the hybrids all read the same masked catalogs. The descriptions can name the answer
(the links were found by title, and merged film texts say "based on the novel X by Y"); strict
measures what a method finds without being told.
"""
from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from lfr.eval import baselines
from lfr.eval.masking import check_protocols, mask_catalogs
from lfr.eval.metrics import (
    HUB_TOP,
    confidence_error_metrics,
    paired_difference,
    per_film_metrics,
    ranking_metrics,
    resolve_links,
    score_hub_stats,
)
from lfr.settings import EvalSettings, ModelSettings, Settings, with_values

log = logging.getLogger(__name__)

NDCG_K = 10
#: per method, over every film of the catalog and every book, the mean over folds (``fold_hubs``)
HUB_COLUMNS = ["hub_max_occurrence", "hub_max_share", "hub_book", "hub_title", "hub_never_recommended", "hub_gini",
               "hub_skew"]
TRAINED_LABEL = "LightFusionRec: fusion trained on the training links"

#: ``train_fn(movies, books, train_links, settings) -> model | TrainResult`` (``settings.model`` is the row's model)
TrainFn = Callable[[pd.DataFrame, pd.DataFrame, pd.DataFrame, Settings], object]
#: ``build_fn(model_settings, genre_corpus) -> model`` (an untrained model of the ``model`` section given)
BuildFn = Callable[[ModelSettings, list], object]


@dataclass
class EvalResult:
    rows: list[dict]                       # one per method: name, description, metrics, seconds
    setup: dict                            # split sizes, seeds, link stats, settings
    per_movie: pd.DataFrame                # held-out film x method: best rank of its linked book(s)
    notes: list[str] = field(default_factory=list)
    ranking_columns: list[str] = field(default_factory=list)
    error_columns: list[str] = field(default_factory=list)
    ranks: dict = field(default_factory=dict)   # method -> per held-out film: ranks of its linked books (intervals)
    hub_columns: list[str] = field(default_factory=list)   # k-occurrence statistics over all films (``HUB_COLUMNS``)

    def table(self) -> pd.DataFrame:
        cols = ["method", *self.ranking_columns, "n_evaluated", *self.error_columns, *self.hub_columns]
        return pd.DataFrame([{c: r.get(c) for c in cols} for r in self.rows], columns=cols)


def check_eval(ev: EvalSettings) -> EvalSettings:
    """``ev`` (the ``eval`` section) after the checks its types cannot express: ``folds >= 1`` and
    ``protocols`` distinct known names (``ValueError`` otherwise)."""
    if ev.folds < 1:
        raise ValueError(f"eval.folds must be >= 1, got {ev.folds}")
    check_protocols(ev.protocols)
    return ev


# --------------------------------------------------------------------------- split and pairs


def _shuffled_films(links: pd.DataFrame, seed: int) -> np.ndarray:
    films = np.array(sorted(links["movie_id"].unique()))
    return films[np.random.default_rng(int(seed)).permutation(len(films))]


def split_links_by_movie(
    links: pd.DataFrame, holdout_fraction: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(train_links, test_links)``: films (with all their links) held out at random (seeded).

    Deterministic for a given set of links and seed (films are sorted before shuffling).
    ``round(fraction * n_films)`` films are held out, at least 1, and at least one film stays in
    training when there are two or more.
    """
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(f"eval.holdout_fraction must be in (0, 1), got {holdout_fraction}")
    films = _shuffled_films(links, seed)
    if len(films) == 0:
        return links.iloc[0:0].copy(), links.iloc[0:0].copy()
    n_test = max(1, int(round(holdout_fraction * len(films))))
    if len(films) >= 2:
        n_test = min(n_test, len(films) - 1)
    is_test = links["movie_id"].isin(set(films[:n_test]))
    return links[~is_test].reset_index(drop=True), links[is_test].reset_index(drop=True)


def kfold_links_by_movie(links: pd.DataFrame, folds: int, seed: int) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """k ``(train_links, test_links)`` splits; every film is in exactly one test fold (seeded).

    Films are shuffled (sorted first, so row order does not matter) and dealt round-robin, so fold
    sizes differ by at most one. ``folds`` is capped at the number of films.
    """
    films = _shuffled_films(links, seed)
    k = max(1, min(int(folds), len(films)))
    out = []
    for f in range(k):
        is_test = links["movie_id"].isin(set(films[f::k]))
        out.append((links[~is_test].reset_index(drop=True), links[is_test].reset_index(drop=True)))
    return out


def build_eval_pairs(
    relevant: Sequence[np.ndarray], n_books: int, negatives_per_positive: int, seed: int
) -> pd.DataFrame:
    """Labelled pairs over the score matrix: ``(movie_row, book_col, label)`` in seeded random order.

    Every relevant (film, book) gives a positive (label 1) and ``negatives_per_positive`` books
    drawn without replacement among the books not relevant to that film (label 0; fewer when the
    catalog is too small). The rows are then shuffled with the same generator, which also fixes
    the tie-break of the confidence ranking.
    """
    rng = np.random.default_rng(int(seed))
    rows: list[tuple[int, int, int]] = []
    for i, rel in enumerate(relevant):
        if len(rel) == 0:
            continue
        rows += [(i, int(j), 1) for j in rel]
        candidates = np.setdiff1d(np.arange(n_books), rel)
        n_neg = min(len(candidates), int(negatives_per_positive) * len(rel))
        if n_neg:
            rows += [(i, int(j), 0) for j in rng.choice(candidates, size=n_neg, replace=False)]
    pairs = pd.DataFrame(rows, columns=["movie_row", "book_col", "label"])
    return pairs.iloc[rng.permutation(len(pairs))].reset_index(drop=True)


# --------------------------------------------------------------------------- scoring


def method_row(
    name: str,
    description: str,
    scores: np.ndarray,
    relevant: Sequence[np.ndarray],
    pairs: pd.DataFrame,
    ks: Sequence[int],
    fractions: Sequence[float],
    ndcg_k: int = NDCG_K,
) -> tuple[dict, list]:
    """Table row (ranking + error metrics) of one method's pooled score matrix, and per-film ranks."""
    rank = ranking_metrics(scores, relevant, ks=ks, ndcg_k=ndcg_k, return_ranks=True)
    mi, bj = pairs["movie_row"].to_numpy(), pairs["book_col"].to_numpy()
    errors = confidence_error_metrics(scores[mi, bj] if len(pairs) else np.zeros(0), pairs["label"].to_numpy(),
                                      fractions)
    ranks = rank.pop("ranks")
    return {"method": name, "description": description, **rank, **errors}, ranks


# --------------------------------------------------------------------------- models


def eval_model_settings(settings: Settings, **changes) -> ModelSettings:
    """The model settings for evaluation: ``settings.model`` with titles forced off and ``changes``
    (e.g. ``encoder=..., pooling="cls"`` for the DistilBERT rows) applied."""
    return with_values(settings.model, {"include_title": False, **changes})


def genre_corpus(movies: pd.DataFrame, books: pd.DataFrame) -> list[list[str]]:
    return baselines.genre_lists(movies) + baselines.genre_lists(books)


def default_build(model: ModelSettings, corpus: list[list[str]]):
    """``lfr.model.build_model``: an untrained LightFusionRec of the ``model`` section ``model``."""
    from lfr.model import build_model

    return build_model(model, corpus)


def default_train(movies: pd.DataFrame, books: pd.DataFrame, train_links: pd.DataFrame, settings: Settings):
    """Train LightFusionRec with ``lfr.train.train`` (``settings.model``, ``settings.train``) on the
    training links only (a ``TrainResult``)."""
    from lfr.train import train

    return train(movies, books, train_links, settings, progress=False)


def _unwrap_trained(out) -> tuple[object, dict]:
    """``train_fn`` may return a model or a ``TrainResult`` (model + metrics): the model and a
    summary of the training run."""
    model = getattr(out, "model", None)
    if model is None:
        return out, {}
    keep = ("epochs", "lr", "batch_size", "margin", "negatives_per_positive", "val_fraction", "seed", "freeze_encoder")
    return model, {
        "metrics": getattr(out, "metrics", None),
        "pairs": getattr(out, "pair_stats", None),
        "settings": {k: v for k, v in (getattr(out, "settings", None) or {}).items() if k in keep},
        "seconds": round(float(getattr(out, "seconds", 0.0)), 1),
    }


@dataclass
class _Models:
    """The methods' models that do not depend on the split (built once per evaluation)."""
    model: ModelSettings             # the configured encoder's rows (titles off)
    base: object                     # untrained fusion (text-only and genre-only rows come from it)
    tfidf: object
    trained_label: str
    trained_model: object = None     # a given artifact, used in every fold
    db_model: ModelSettings | None = None   # DistilBERT rows, when eval.distilbert_path is a folder
    db_base: object = None
    lexical: object = None           # the product's lexical features (lfr.lexical); + hybrid rows per fold
    adapters: object = None          # eval.adapters or eval.xcross: the adapters_only Method (label-free: one for
                                     # every fold; its model in ``adapter_model``)
    adapter_model: object = None


@dataclass
class _Folds:
    """Per-fold outputs, pooled over the folds."""
    scores: dict = field(default_factory=dict)          # method -> [score matrix per fold]
    descriptions: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    eval_frames: list = field(default_factory=list)     # held-out films per fold (with a ``fold`` column)
    relevant: list = field(default_factory=list)        # per held-out film: the linked books' columns
    info: list = field(default_factory=list)
    training: dict = field(default_factory=dict)
    train_seconds: float = 0.0
    hubs: dict = field(default_factory=dict)            # method -> [HubStats per fold] (all films x all books)
    hub_seconds: float = 0.0


def resolve_usable_links(links: pd.DataFrame, movie_ids: list[str], book_ids: list[str]):
    """Phase 1: ``(usable links, LinkStats)``: distinct links whose movie and book are in the catalogs."""
    link_pairs = list(zip(links["movie_id"].astype(str), links["book_id"].astype(str)))
    _, stats = resolve_links(link_pairs, movie_ids, book_ids)
    known_m, known_b = set(movie_ids), set(book_ids)
    usable = (pd.DataFrame(link_pairs, columns=["movie_id", "book_id"]).drop_duplicates()
              .loc[lambda d: d["movie_id"].isin(known_m) & d["book_id"].isin(known_b)].reset_index(drop=True))
    if usable.empty:
        raise ValueError("no ground-truth link resolves to the catalogs: nothing to evaluate")
    return usable, stats


def build_splits(usable: pd.DataFrame, ev: EvalSettings) -> tuple[list, str]:
    """Phase 2: the ``(train_links, test_links)`` splits by film (``ev``: the ``eval`` section) and
    the protocol's description."""
    if ev.folds >= 2:
        splits = kfold_links_by_movie(usable, ev.folds, ev.seed)
        return splits, f"{len(splits)}-fold cross-validation by film (every linked film held out once)"
    splits = [split_links_by_movie(usable, float(ev.holdout_fraction), ev.seed)]
    return splits, f"one held-out split by film (fraction {ev.holdout_fraction})"


def _build_models(movies, books, settings: Settings, build_fn: BuildFn, trained_model,
                  trained_label: str | None, notes: list[str]) -> _Models:
    started, corpus = time.time(), genre_corpus(movies, books)
    model = eval_model_settings(settings)
    models = _Models(model=model, base=build_fn(model, corpus),
                     tfidf=baselines.tfidf_method(baselines.descriptions(movies) + baselines.descriptions(books)),
                     lexical=baselines.lexical_method(baselines.descriptions(movies) + baselines.descriptions(books),
                                                      settings.lexical),
                     trained_label=trained_label or TRAINED_LABEL, trained_model=trained_model)
    db_path = settings.eval.distilbert_path
    if db_path and Path(str(db_path)).is_dir():
        models.db_model = eval_model_settings(settings, encoder=str(db_path), pooling="cls")
        models.db_base = build_fn(models.db_model, corpus)
    elif db_path:
        notes.append(f"DistilBERT rows skipped: eval.distilbert_path={db_path} is not a folder.")
    else:
        notes.append("DistilBERT rows skipped: set eval.distilbert_path to a local distilbert-base-uncased "
                     "folder (nothing is downloaded).")
    if settings.model.runtime != "torch":
        models.base = runtime_view(models.base, settings.model)
        notes.append(f"model.runtime={settings.model.runtime}, model.quantize={settings.model.quantize}: the "
                     "LightFusionRec and text-only rows embed with the encoder's ONNX export (training and the "
                     "DistilBERT and adapter rows run torch).")
    if settings.eval.adapters or settings.eval.xcross:
        models.adapter_model = _adapters(movies, books, settings, notes)
        models.adapters = baselines.adapters_method(models.adapter_model, settings.embed.batch_size)
    if trained_model is not None:
        models.trained_label = trained_label or "LightFusionRec: given artifact (may have seen held-out links)"
        notes.append("The trained row uses a given artifact, not one trained per split: it may have been "
                     "trained on the held-out links, so its numbers can be optimistic.")
    log.info("eval: base models in %.1fs", time.time() - started)
    return models


def runtime_view(model, settings: ModelSettings):
    """``model`` embedding its texts as the executors do under ``settings.runtime``: with ``onnx``, a
    LightFusionRec model's frozen encoder is swapped for its ONNX export (``settings.quantize``), the
    head and genre vectors unchanged, so the rows measure exactly what the runtime changes."""
    if settings.runtime == "torch" or model is None or not hasattr(model, "text"):
        return model
    from lfr.model.export import onnx_text_view

    if hasattr(model.text, "onnx_folder"):
        return model
    view = copy.copy(model)   # the caller's model keeps its torch encoder
    view.text = onnx_text_view(model.text, settings.quantize)
    return view


def _adapters(movies, books, settings: Settings, notes: list[str]):
    """``eval.adapters`` / ``eval.xcross``: the label-free domain adapters (``lfr.train.xcross``, stage 1 only,
    ``xcross`` settings; ``xcross.cache_dir`` reuses them) trained on the catalogs as this protocol gives them
    (an ``XCrossModel``, integrators the identity). No link is read, so one model serves every fold."""
    from lfr.train.xcross import train as train_xcross

    t0 = time.time()
    result = train_xcross(movies, books, None, settings, train_integrator_stage=False)
    notes.append(f"adapters_only: label-free domain adapters, {result.pair_stats.get('film_pairs')} film and "
                 f"{result.pair_stats.get('book_pairs')} book pairs, {result.pair_stats.get('film_adapter')} / "
                 f"{result.pair_stats.get('book_adapter')}, {time.time() - t0:.0f}s; "
                 f"{settings.xcross.max_length}-token windows ({settings.model.chunking} chunking), "
                 f"{settings.xcross.train_max_length} tokens while training.")
    return result.model


def _train_fold(movies, books, train_links, settings: Settings, models: _Models, train_fn: TrainFn, acc: _Folds):
    """The fold's trained models: ``(lightfusionrec, lightfusionrec_distilbert or None, xcross Method or None)``."""
    def fit(model_settings: ModelSettings, key: str):
        fold_settings = with_values(settings, {"model": model_settings})
        model, info = _unwrap_trained(train_fn(movies, books, train_links, fold_settings))
        if info:
            acc.training.setdefault(key, []).append(info)
        return model

    t0 = time.time()
    trained = models.trained_model if models.trained_model is not None else fit(models.model, "lightfusionrec")
    trained = runtime_view(trained, settings.model)
    db_trained = fit(models.db_model, "lightfusionrec_distilbert") if models.db_model is not None else None
    xcross = _fold_xcross(movies, books, train_links, settings, models, acc) if settings.eval.xcross else None
    acc.train_seconds += time.time() - t0
    return trained, db_trained, xcross


def _fold_xcross(movies, books, train_links, settings: Settings, models: _Models, acc: _Folds):
    """``eval.xcross``: the integrators trained on the fold's training links on top of the shared label-free
    adapters (copied, never retrained); ``(xcross Method, the adapters' Method)`` for ``standard_methods``."""
    from lfr.train.xcross import train as train_xcross

    result = train_xcross(movies, books, train_links, settings, adapters_from=models.adapter_model)
    losses = [h["loss"] for h in result.history if h["stage"] == "integrator"]
    acc.training.setdefault("xcross", []).append(
        {"metrics": {"links": result.pair_stats.get("links_used"), "integrator_steps": len(losses),
                     "integrator_loss": [losses[0], losses[-1]] if losses else None},
         "settings": {k: result.settings[k] for k in ("integrator_batch_size", "integrator_lr", "train_max_length")},
         "seconds": round(float(result.stage_seconds.get("integrator", 0.0)), 1)})
    return baselines.xcross_method(result.model, settings.embed.batch_size), models.adapters


def run_fold(f: int, split, movies, books, settings: Settings, models: _Models, train_fn: TrainFn, acc: _Folds, *,
             cache) -> None:
    """Phase 3, one fold: train on the other films' links, score the fold's films against every book."""
    train_links, test_links = split
    t0 = time.time()
    m_pos = {m: i for i, m in enumerate(movies["id"].astype(str))}
    book_ids = books["id"].astype(str).tolist()
    test_ids = sorted(test_links["movie_id"].unique())
    eval_movies = movies.iloc[[m_pos[m] for m in test_ids]].reset_index(drop=True)
    rel_f, _ = resolve_links(zip(test_links["movie_id"], test_links["book_id"]), test_ids, book_ids)
    trained, db_trained, xcross = _train_fold(movies, books, train_links, settings, models, train_fn, acc)
    batch_size = settings.embed.batch_size
    fold_alpha: dict = {}   # the hybrid's alpha, tuned on this fold's training links (reported per fold)
    for method in baselines.standard_methods(models.tfidf, models.base, trained, models.trained_label,
                                             models.db_base, db_trained, batch_size=batch_size, cache=cache,
                                             lexical=models.lexical, train_links=train_links, catalog=(movies, books),
                                             hubs=(settings.score.hub_k, settings.score.hub_weight,
                                                   settings.score.fused_hub_weight),
                                             adapters=models.adapters if settings.eval.adapters else None,
                                             xcross=xcross):
        t1 = time.time()
        acc.scores.setdefault(method.name, []).append(baselines.method_scores(method, eval_movies, books))
        if "alpha" in method.info:
            fold_alpha[method.name] = {k: v for k, v in method.info.items() if k != "mrr_by_alpha"}
        acc.descriptions[method.name] = method.description
        acc.seconds[method.name] = acc.seconds.get(method.name, 0.0) + time.time() - t1
        t1 = time.time()        # the hubs: this fold's method on every film of the catalog (not timed above)
        acc.hubs.setdefault(method.name, []).append(
            score_hub_stats(baselines.method_scores(method, movies, books), book_ids))
        acc.hub_seconds += time.time() - t1
    acc.eval_frames.append(eval_movies.assign(fold=f))
    acc.relevant.extend(rel_f)
    acc.info.append({"fold": f, **fold_alpha, "train_links": int(len(train_links)),
                     "train_movies": int(train_links["movie_id"].nunique()),
                     "test_links": int(len(test_links)), "test_movies": len(test_ids)})
    log.info("eval fold %d: trained on %d links of %d films, scored %d held-out films (%.1fs)", f + 1,
             len(train_links), train_links["movie_id"].nunique(), len(test_ids), time.time() - t0)


def summarise(acc: _Folds, books, ev: EvalSettings) -> tuple[list[dict], dict, pd.DataFrame, pd.DataFrame]:
    """Phase 4: pooled metrics: ``(table rows, per-method ranks, labelled pairs, per-movie table)``."""
    ks, fractions = ev.ks, ev.confidence_fractions
    pairs = build_eval_pairs(acc.relevant, len(books), ev.negatives_per_positive, ev.seed)
    rows, ranks = [], {}
    for name, parts in acc.scores.items():
        row, ranks[name] = method_row(name, acc.descriptions[name], np.vstack(parts), acc.relevant, pairs, ks,
                                      fractions)
        row["seconds"] = round(acc.seconds[name], 2)
        row.update(fold_hubs(acc.hubs.get(name, []), books))
        rows.append(row)
        log.info("eval %-26s R@%d=%.3f MRR=%.3f (%d films) in %.1fs", name, ks[-1],
                 row.get(f"recall@{ks[-1]}", math.nan), row["mrr"], row["n_evaluated"], row["seconds"])
    eval_movies_all = pd.concat(acc.eval_frames, ignore_index=True)
    return rows, ranks, pairs, _per_movie_table(eval_movies_all, books, acc.relevant, ranks)


def fold_hubs(per_fold: list, books: pd.DataFrame) -> dict:
    """A method's ``HUB_COLUMNS``: each statistic's mean over the folds (a trained model, and so its rows'
    top lists, differs per fold); the hub book is the most recommended book of the fold where it was in
    the most lists (its title from ``books``)."""
    if not per_fold:
        return {c: None for c in HUB_COLUMNS}
    worst = max(per_fold, key=lambda h: h.max_occurrence)
    titles = dict(zip(books["id"].astype(str), books["title"] if "title" in books else books["id"]))

    def mean(attr: str) -> float:
        return round(float(np.mean([getattr(h, attr) for h in per_fold])), 6)

    out = {"hub_max_occurrence": mean("max_occurrence"), "hub_max_share": mean("max_share"),
           "hub_book": worst.hub_book, "hub_title": titles.get(worst.hub_book)}
    return {**out, **{f"hub_{a}": mean(a) for a in ("never_recommended", "gini", "skew")}}


def _setup(ev: EvalSettings, protocol: str, acc: _Folds, models: _Models, usable, stats, pairs, *,
           n_movies: int, n_books: int, n_unresolved_pairs: int) -> dict:
    folds = len(acc.info)
    return {
        "protocol": protocol,
        "folds": folds,
        "seed": ev.seed,
        "holdout_fraction": ev.holdout_fraction if folds == 1 else None,
        "negatives_per_positive": ev.negatives_per_positive,
        "ks": list(ev.ks),
        "ndcg_k": NDCG_K,
        "confidence_fractions": list(ev.confidence_fractions),
        "tie_policy": "pessimistic",
        "n_movies_catalog": n_movies,
        "n_books_catalog": n_books,
        "n_links_usable": int(len(usable)),
        "n_linked_movies": int(usable["movie_id"].nunique()),
        "n_test_links": int(sum(fi["test_links"] for fi in acc.info)),
        "n_test_movies": int(sum(fi["test_movies"] for fi in acc.info)),
        "fold_sizes": acc.info,
        "n_eval_pairs": int(len(pairs)),
        "n_eval_positive_pairs": int(pairs["label"].sum()),
        "n_unresolved_pairs": int(n_unresolved_pairs),
        "links": {k: v for k, v in stats.as_dict().items() if k != "missing"},
        "missing_links": [list(x) for x in stats.missing],
        "encoder": str(models.model.encoder),
        "pooling": str(models.model.pooling),
        "trained_model": ("given artifact" if models.trained_model is not None
                          else "trained per fold on the other folds' links"),
        "train_seconds": round(acc.train_seconds, 1),
        "hubs": {"top": HUB_TOP, "films": n_movies, "books": n_books, "seconds": round(acc.hub_seconds, 1),
                 "aggregation": "mean over folds of each fold's statistics",
                 "per_fold": {m: [h.as_dict() for h in hs] for m, hs in acc.hubs.items()}},
        "training": acc.training,
        "test_movie_ids": pd.concat(acc.eval_frames, ignore_index=True)["id"].tolist(),
    }


def _usable_inputs(movies: pd.DataFrame, books: pd.DataFrame, links: pd.DataFrame, text_protocol: str):
    """Phase 1 (and the strict protocol's masking, the one place texts are masked: before any method or
    model sees them): ``(movies, books, usable links, LinkStats, MaskingStats or None)``."""
    movies, books = movies.reset_index(drop=True), books.reset_index(drop=True)
    movie_ids, book_ids = movies["id"].astype(str).tolist(), books["id"].astype(str).tolist()
    if len(set(book_ids)) != len(book_ids) or len(set(movie_ids)) != len(movie_ids):
        raise ValueError("catalog ids must be unique")
    usable, stats = resolve_usable_links(links, movie_ids, book_ids)
    masking = None
    if text_protocol == "strict":
        movies, books, masking = mask_catalogs(movies, books, usable)
    log.info("eval: %d usable links of %d films; %d books; %s protocol", len(usable),
             usable["movie_id"].nunique(), len(book_ids), text_protocol)
    return movies, books, usable, stats, masking


def run_evaluation(movies: pd.DataFrame, books: pd.DataFrame, links: pd.DataFrame, settings: Settings, *,
                   trained_model=None, trained_label: str | None = None, train_fn: TrainFn | None = None,
                   build_fn: BuildFn | None = None, n_unresolved_pairs: int = 0, protocol: str = "open") -> EvalResult:
    """Run the whole ablation (module doc) under one text ``protocol``: every method scores the full
    book catalog for the held-out films of every fold; the folds are pooled into one table.

    Parameters
    ----------
    movies, books : pandas.DataFrame
        The catalogs, ``id, title, description, genres`` (titles are only displayed); books with an
        ``authors`` column let the strict protocol mask author names too.
    links : pandas.DataFrame
        The ground truth, ``movie_id, book_id`` (duplicates and unknown ids are dropped and counted).
    settings : lfr.settings.Settings
        ``load_settings()``, changed with ``with_values``: ``eval``, ``model`` (titles forced off),
        ``train``, ``lexical`` and ``embed.batch_size`` are read.
    trained_model : model, optional
        Evaluated as the trained row in every fold instead of training one (flagged in the notes:
        it may have seen the held-out links). ``trained_label`` describes that row.
    train_fn, build_fn : callable, optional
        ``train_fn(movies, books, train_links, settings) -> model | TrainResult`` (``settings.model``:
        the row's model) and ``build_fn(model_settings, genre_corpus)``; by default ``lfr.train.train``
        and ``lfr.model.build_model``.
    n_unresolved_pairs : int
        Pair-file rows that resolved to no link (reported in ``setup``).
    protocol : {"open", "strict"}
        ``strict`` removes the linked titles and authors from the texts first (``lfr.eval.masking``).

    Returns
    -------
    EvalResult
        One row per method (``table()``), the ``setup``, per-film ranks (``per_movie``, ``ranks``), notes.

    Example
    -------
    >>> settings = with_values(load_settings(), {"eval.folds": 1})      # doctest: +SKIP
    >>> run_evaluation(movies, books, links, settings).table()[["method", "mrr"]]   # doctest: +SKIP
    """
    ev, text_protocol = check_eval(settings.eval), check_protocols([protocol])[0]
    movies, books, usable, stats, masking = _usable_inputs(movies, books, links, text_protocol)
    splits, description = build_splits(usable, ev)
    notes: list[str] = []
    models = _build_models(movies, books, settings, build_fn or default_build, trained_model, trained_label, notes)
    acc, cache = _Folds(), baselines.FeatureCache()
    for f, split in enumerate(splits):
        run_fold(f, split, movies, books, settings, models, train_fn or default_train, acc, cache=cache)
    return _result(acc, books, ev, models, notes, description=description, text_protocol=text_protocol,
                   usable=usable, stats=stats, masking=masking, n_movies=len(movies),
                   n_unresolved_pairs=n_unresolved_pairs, hubness={
                       k: getattr(settings.score, k) for k in ("hubness", "hub_k", "hub_weight", "fused_hub_weight")})


def _result(acc: _Folds, books: pd.DataFrame, ev: EvalSettings, models: _Models, notes: list[str], *,
            description: str, text_protocol: str, usable, stats, masking, n_movies: int,
            n_unresolved_pairs: int, hubness: dict) -> EvalResult:
    """Phase 4 and the result: pooled metrics, the setup, the fusion rows against the best single method, the
    hub-aware rows against their plain ones (``hubness``: the ``score`` settings they used)."""
    rows, ranks, pairs, per_movie = summarise(acc, books, ev)
    setup = _setup(ev, description, acc, models, usable, stats, pairs, n_movies=n_movies, n_books=len(books),
                   n_unresolved_pairs=n_unresolved_pairs)
    setup["text_protocol"], setup["masking"] = text_protocol, masking.as_dict() if masking else None
    setup["fusion_vs_best_single"], lines = fusion_differences(rows, ranks, ev)
    setup["hubs"].update(hubness)
    setup["csls_vs_plain"], hub_lines = csls_differences(rows, ranks, ev)
    return EvalResult(rows=rows, setup=setup, per_movie=per_movie, notes=notes + lines + hub_lines, ranks=ranks,
                      hub_columns=list(HUB_COLUMNS),
                      ranking_columns=[*(f"recall@{k}" for k in ev.ks), "mrr", f"ndcg@{NDCG_K}", "median_rank"],
                      error_columns=[f"{m}@{100 * q:g}%" for q in ev.confidence_fractions for m in ("mae", "rmse")])


def run_protocols(movies: pd.DataFrame, books: pd.DataFrame, links: pd.DataFrame, settings: Settings,
                  **kwargs) -> dict[str, EvalResult]:
    """``run_evaluation`` once per ``eval.protocols`` entry (same folds, seeds and films), in that order:
    ``{protocol: EvalResult}``. Reporting both shows how much of a method's score came from texts
    that name the answer."""
    return {p: run_evaluation(movies, books, links, settings, protocol=p, **kwargs)
            for p in check_eval(settings.eval).protocols}


def fusion_differences(rows: list[dict], ranks: dict, ev: EvalSettings) -> tuple[dict, list[str]]:
    """Each fusion row (``hybrid*``) against the best single method (highest MRR among the other rows):
    paired per-film differences with 95% bootstrap intervals (``{fusion: {metric: {diff, lo, hi, ...}}}``)
    and one line per fusion for the report's notes. The best single method is picked after the fact, so
    the comparison is the hardest one for the fusion, not a pre-registered one."""
    singles = [r for r in rows if not r["method"].startswith("hybrid") and r["method"] in ranks]
    fusions = [r["method"] for r in rows if r["method"].startswith("hybrid") and r["method"] in ranks]
    if not singles or not fusions:
        return {}, []
    best = max(singles, key=lambda r: (np.nan_to_num(r["mrr"], nan=-1.0)))["method"]
    out, lines = paired_rows([(m, best) for m in fusions], ranks, ev, "best single method by MRR")
    return {"best_single": best, **out}, lines


def csls_differences(rows: list[dict], ranks: dict, ev: EvalSettings) -> tuple[dict, list[str]]:
    """Each hub-aware row (``<name>_csls``, ``_fused``, ``_bookz``) against its plain ``<name>``, and a ``_bookz``
    row against the ``_fused`` row of the same ``<name>`` (the two candidates for the fused score's correction),
    paired over the same films: what the hub correction costs or gains in accuracy (``{row: {metric: {diff, lo,
    hi, ...}}}``, lines; the second comparison keyed ``<bookz row> vs <fused row>``)."""
    pairs = [(r["method"], r["method"][:-len(suffix)]) for r in rows for suffix in ("_csls", "_fused", "_bookz")
             if r["method"].endswith(suffix) and r["method"] in ranks and r["method"][:-len(suffix)] in ranks]
    out, lines = paired_rows(pairs, ranks, ev, "hub-aware - plain")
    rivals = [(a, a[:-len("_bookz")] + "_fused") for a, _ in pairs
              if a.endswith("_bookz") and a[:-len("_bookz")] + "_fused" in ranks]
    versus, more = paired_rows(rivals, ranks, ev, "the two corrections of the fused score")
    out.update({f"{a} vs {b}": versus[a] for a, b in rivals})
    return out, lines + more


def paired_rows(pairs: list[tuple[str, str]], ranks: dict, ev: EvalSettings, why: str) -> tuple[dict, list[str]]:
    """``{a: {metric: paired_difference(a - b)}}`` for each ``(a, b)`` (Recall@k of ``ev.ks`` and MRR, seed
    ``ev.seed``) and one line per pair; ``why`` says in the line what the comparison is."""
    ks = ev.ks
    per = {m: per_film_metrics(ranks[m], ks, NDCG_K) for pair in pairs for m in pair}
    shown = [f"recall@{k}" for k in ks] + ["mrr"]
    out, lines = {}, []
    for a, b in pairs:
        out[a] = {c: paired_difference(per[a][c], per[b][c], seed=ev.seed) for c in shown}
        parts = [f"{'R@' + c.split('@')[1] if '@' in c else 'MRR'} {d['diff']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]"
                 + (" (noise)" if d["within_noise"] else "") for c, d in out[a].items()]
        lines.append(f"{a} - {b} ({why}), paired over films: " + "; ".join(parts) + ".")
    return out, lines


def _per_movie_table(eval_movies: pd.DataFrame, books: pd.DataFrame, relevant, ranks: dict) -> pd.DataFrame:
    titles = books["title"].tolist() if "title" in books else books["id"].tolist()
    out = []
    for i, rel in enumerate(relevant):
        row = {"movie": eval_movies.at[i, "title"] if "title" in eval_movies else eval_movies.at[i, "id"],
               "book(s)": "; ".join(str(titles[j]) for j in rel), "fold": int(eval_movies.at[i, "fold"])}
        for name, per in ranks.items():
            row[name] = min(per[i]) if per[i] else None
        out.append(row)
    return pd.DataFrame(out)
