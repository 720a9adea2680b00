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

Methods that do not learn from links (TF-IDF, genre-only, text-only, untrained fusion) give the
same scores whichever fold a film is in. Unsupervised parts see the whole catalogs (TF-IDF
vocabulary and idf, the FastText genre model): descriptions and genre labels, never links.
Titles are never embedded.
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
from lfr.eval.metrics import confidence_error_metrics, ranking_metrics, resolve_links
from lfr.lexical.model import LexicalSettings

log = logging.getLogger(__name__)

NDCG_K = 10
DEFAULT_EVAL = {
    "ks": [1, 10, 100],
    "confidence_fractions": [0.2, 0.5, 0.8],
    "distilbert_path": None,
    "folds": 3,
    "holdout_fraction": 0.3,
    "negatives_per_positive": 3,
    "seed": 13,
}
TRAINED_LABEL = "LightFusionRec: fusion trained on the training links"

TrainFn = Callable[[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict], object]


@dataclass
class EvalResult:
    rows: list[dict]                       # one per method: name, description, metrics, seconds
    setup: dict                            # split sizes, seeds, link stats, settings
    per_movie: pd.DataFrame                # held-out film x method: best rank of its linked book(s)
    notes: list[str] = field(default_factory=list)
    ranking_columns: list[str] = field(default_factory=list)
    error_columns: list[str] = field(default_factory=list)

    def table(self) -> pd.DataFrame:
        cols = ["method", *self.ranking_columns, "n_evaluated", *self.error_columns]
        return pd.DataFrame([{c: r.get(c) for c in cols} for r in self.rows], columns=cols)


def eval_settings(cfg: dict) -> dict:
    out = dict(DEFAULT_EVAL)
    out.update({k: v for k, v in (cfg.get("eval") or {}).items() if v is not None or k == "distilbert_path"})
    out["ks"] = [int(k) for k in out["ks"]]
    out["confidence_fractions"] = [float(q) for q in out["confidence_fractions"]]
    out["folds"] = int(out["folds"])
    if out["folds"] < 1:
        raise ValueError(f"eval.folds must be >= 1, got {out['folds']}")
    return out


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


def eval_model_cfg(cfg: dict, **changes) -> dict:
    """The model settings for evaluation: the config's ``model`` with titles forced off."""
    model_cfg = copy.deepcopy(dict(cfg.get("model") or {}))
    model_cfg["include_title"] = False
    model_cfg.update(changes)
    return model_cfg


def genre_corpus(movies: pd.DataFrame, books: pd.DataFrame) -> list[list[str]]:
    return baselines.genre_lists(movies) + baselines.genre_lists(books)


def default_build(model_cfg: dict, corpus: list[list[str]]):
    from lfr.model import build_model

    return build_model(model_cfg, corpus)


def default_train(movies: pd.DataFrame, books: pd.DataFrame, train_links: pd.DataFrame, cfg: dict):
    """Train LightFusionRec with ``lfr.train.train`` on the training links only (a ``TrainResult``)."""
    from lfr.train import train

    return train(movies, books, train_links, cfg, progress=False)


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


def run_evaluation(
    movies: pd.DataFrame,
    books: pd.DataFrame,
    links: pd.DataFrame,
    cfg: dict,
    *,
    trained_model=None,
    trained_label: str | None = None,
    train_fn: TrainFn | None = None,
    build_fn: Callable | None = None,
    n_unresolved_pairs: int = 0,
) -> EvalResult:
    """Run the whole ablation (see module doc) and return the table + setup.

    ``movies``/``books``: catalog frames (``id, title, description, genres``; titles are only
    used for display). ``links``: ``movie_id, book_id``. ``trained_model``: evaluate this model as
    the trained row in every fold instead of training one (it may have seen the held-out links:
    flagged). ``train_fn(movies, books, train_links, cfg) -> model | TrainResult`` and
    ``build_fn(model_cfg, corpus)`` can be swapped (tests); they default to ``lfr.train.train`` /
    ``lfr.model.build_model``.
    """
    settings = eval_settings(cfg)
    ks, fractions = settings["ks"], settings["confidence_fractions"]
    seed, n_folds = int(settings["seed"]), settings["folds"]
    build_fn = build_fn or default_build
    train_fn = train_fn or default_train
    batch_size = int((cfg.get("embed") or {}).get("batch_size", 64))
    notes: list[str] = []

    movies = movies.reset_index(drop=True)
    books = books.reset_index(drop=True)
    movie_ids, book_ids = movies["id"].astype(str).tolist(), books["id"].astype(str).tolist()
    if len(set(book_ids)) != len(book_ids) or len(set(movie_ids)) != len(movie_ids):
        raise ValueError("catalog ids must be unique")

    # 1. links -> catalog
    link_pairs = list(zip(links["movie_id"].astype(str), links["book_id"].astype(str)))
    _, stats = resolve_links(link_pairs, movie_ids, book_ids)
    known_m, known_b = set(movie_ids), set(book_ids)
    usable = (pd.DataFrame(link_pairs, columns=["movie_id", "book_id"]).drop_duplicates()
              .loc[lambda d: d["movie_id"].isin(known_m) & d["book_id"].isin(known_b)].reset_index(drop=True))
    if usable.empty:
        raise ValueError("no ground-truth link resolves to the catalogs: nothing to evaluate")

    # 2. held out by movie
    if n_folds >= 2:
        splits = kfold_links_by_movie(usable, n_folds, seed)
        protocol = f"{len(splits)}-fold cross-validation by film (every linked film held out once)"
    else:
        splits = [split_links_by_movie(usable, float(settings["holdout_fraction"]), seed)]
        protocol = f"one held-out split by film (fraction {settings['holdout_fraction']})"
    m_pos = {m: i for i, m in enumerate(movie_ids)}

    # models that do not depend on the split
    corpus = genre_corpus(movies, books)
    model_cfg = eval_model_cfg(cfg)
    started = time.time()
    base = build_fn(model_cfg, corpus)
    tfidf = baselines.tfidf_method(baselines.descriptions(movies) + baselines.descriptions(books))
    lexical = baselines.lexical_method(baselines.descriptions(movies) + baselines.descriptions(books),
                                       LexicalSettings.from_cfg(cfg))
    db_path = settings.get("distilbert_path")
    db_cfg = db_base = None
    if db_path and Path(str(db_path)).is_dir():
        db_cfg = eval_model_cfg(cfg, encoder=str(db_path), pooling="cls")
        db_base = build_fn(db_cfg, corpus)
    elif db_path:
        notes.append(f"DistilBERT rows skipped: eval.distilbert_path={db_path} is not a folder.")
    else:
        notes.append("DistilBERT rows skipped: set eval.distilbert_path to a local distilbert-base-uncased "
                     "folder (nothing is downloaded).")
    given = trained_model is not None
    if given:
        trained_label = trained_label or "LightFusionRec: given artifact (may have seen held-out links)"
        notes.append("The trained row uses a given artifact, not one trained per split: it may have been "
                     "trained on the held-out links, so its numbers can be optimistic.")
    trained_label = trained_label or TRAINED_LABEL
    log.info("eval: %d usable links of %d films; %s; %d books; base models in %.1fs", len(usable),
             usable["movie_id"].nunique(), protocol, len(book_ids), time.time() - started)

    # 3. per fold: train, score the fold's films against all books
    cache = baselines.FeatureCache()
    scores: dict[str, list[np.ndarray]] = {}
    descriptions: dict[str, str] = {}
    seconds: dict[str, float] = {}
    eval_frames, relevant, fold_info, training = [], [], [], {}
    train_seconds = 0.0
    for f, (train_links, test_links) in enumerate(splits):
        test_ids = sorted(test_links["movie_id"].unique())
        eval_movies = movies.iloc[[m_pos[m] for m in test_ids]].reset_index(drop=True)
        rel_f, _ = resolve_links(zip(test_links["movie_id"], test_links["book_id"]), test_ids, book_ids)
        t0 = time.time()
        trained, db_trained = trained_model, None
        if not given:
            train_cfg = copy.deepcopy(dict(cfg))
            train_cfg["model"] = model_cfg
            trained, info = _unwrap_trained(train_fn(movies, books, train_links, train_cfg))
            if info:
                training.setdefault("lightfusionrec", []).append(info)
        if db_cfg is not None:
            train_cfg = copy.deepcopy(dict(cfg))
            train_cfg["model"] = db_cfg
            db_trained, info = _unwrap_trained(train_fn(movies, books, train_links, train_cfg))
            if info:
                training.setdefault("lightfusionrec_distilbert", []).append(info)
        train_seconds += time.time() - t0
        methods = baselines.standard_methods(tfidf, base, trained, trained_label, db_base, db_trained,
                                             batch_size=batch_size, cache=cache, lexical=lexical,
                                             train_links=train_links, catalog=(movies, books))
        fold_alpha: dict = {}   # the hybrid's alpha, tuned on this fold's training links (reported per fold)
        for method in methods:
            t1 = time.time()
            scores.setdefault(method.name, []).append(baselines.method_scores(method, eval_movies, books))
            if method.name == "hybrid":
                fold_alpha["hybrid"] = {k: v for k, v in method.info.items() if k != "mrr_by_alpha"}
            descriptions[method.name] = method.description
            seconds[method.name] = seconds.get(method.name, 0.0) + time.time() - t1
        eval_frames.append(eval_movies.assign(fold=f))
        relevant.extend(rel_f)
        fold_info.append({"fold": f, **fold_alpha, "train_links": int(len(train_links)),
                          "train_movies": int(train_links["movie_id"].nunique()),
                          "test_links": int(len(test_links)), "test_movies": len(test_ids)})
        log.info("eval fold %d/%d: trained on %d links of %d films, scored %d held-out films (%.1fs)", f + 1,
                 len(splits), len(train_links), train_links["movie_id"].nunique(), len(test_ids), time.time() - t0)

    # 4. pooled metrics
    eval_movies_all = pd.concat(eval_frames, ignore_index=True)
    pairs = build_eval_pairs(relevant, len(book_ids), int(settings["negatives_per_positive"]), seed)
    rows, ranks = [], {}
    for name, parts in scores.items():
        row, ranks[name] = method_row(name, descriptions[name], np.vstack(parts), relevant, pairs, ks, fractions)
        row["seconds"] = round(seconds[name], 2)
        rows.append(row)
        log.info("eval %-26s R@%d=%.3f MRR=%.3f (%d films) in %.1fs", name, ks[-1],
                 row.get(f"recall@{ks[-1]}", math.nan), row["mrr"], row["n_evaluated"], row["seconds"])

    per_movie = _per_movie_table(eval_movies_all, books, relevant, ranks)
    ranking_columns = [*(f"recall@{k}" for k in ks), "mrr", f"ndcg@{NDCG_K}", "median_rank"]
    error_columns = [f"{m}@{100 * q:g}%" for q in fractions for m in ("mae", "rmse")]
    setup = {
        "protocol": protocol,
        "folds": len(splits),
        "seed": seed,
        "holdout_fraction": settings["holdout_fraction"] if len(splits) == 1 else None,
        "negatives_per_positive": int(settings["negatives_per_positive"]),
        "ks": ks,
        "ndcg_k": NDCG_K,
        "confidence_fractions": fractions,
        "tie_policy": "pessimistic",
        "n_movies_catalog": len(movie_ids),
        "n_books_catalog": len(book_ids),
        "n_links_usable": int(len(usable)),
        "n_linked_movies": int(usable["movie_id"].nunique()),
        "n_test_links": int(sum(fi["test_links"] for fi in fold_info)),
        "n_test_movies": int(sum(fi["test_movies"] for fi in fold_info)),
        "fold_sizes": fold_info,
        "n_eval_pairs": int(len(pairs)),
        "n_eval_positive_pairs": int(pairs["label"].sum()),
        "n_unresolved_pairs": int(n_unresolved_pairs),
        "links": {k: v for k, v in stats.as_dict().items() if k != "missing"},
        "missing_links": [list(x) for x in stats.missing],
        "encoder": str(model_cfg.get("encoder")),
        "pooling": str(model_cfg.get("pooling")),
        "trained_model": "given artifact" if given else "trained per fold on the other folds' links",
        "train_seconds": round(train_seconds, 1),
        "training": training,
        "test_movie_ids": eval_movies_all["id"].tolist(),
    }
    return EvalResult(rows=rows, setup=setup, per_movie=per_movie, notes=notes,
                      ranking_columns=ranking_columns, error_columns=error_columns)


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
