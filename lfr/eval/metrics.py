"""Evaluation metrics (pure numpy): ranking on ground-truth links, and the paper's MAE/RMSE.

Ranking metrics (``ranking_metrics``)
-------------------------------------
Input: a score matrix ``scores`` (n_movies, n_books) -- one row per evaluated film, one
column per book of the FULL book catalog -- and, per film, the column indices of its
relevant books (its ground-truth links). For each film every book is ranked by score,
highest first, and each relevant book gets a 1-based rank among *all* books.

* **Ties: pessimistic rank.** A relevant book's rank is ``1 + #{other books with a score
  >= its score}``: a book tied with others is placed *after* all of them (this includes other
  relevant books it is tied with). A method that gives every book the same score therefore
  ranks every relevant book last (rank = n_books) instead of being rewarded by the tie; degenerate
  scorers (e.g. genre vectors for a film without genres, all zero) cannot look good by luck or by
  sort order. NaN scores count as -inf (worst).
* **Multiple relevant books per film** (binary relevance, set ``R``, ranks ``r_i``):
  ``Recall@k = |{i : r_i <= k}| / |R|``; ``RR = 1 / min_i r_i`` (reciprocal rank of the best-ranked
  relevant book; ``MRR`` is its mean); ``nDCG@k = sum_{r_i <= k} 1/log2(r_i + 1) /
  sum_{j=1}^{min(|R|, k)} 1/log2(j + 1)`` (ideal DCG puts all relevant books at the top).
  ``median_rank`` is the median over films of ``min_i r_i``. With one link per film, Recall@k
  is the hit rate at k.
* Every metric is computed per film and then averaged over films (macro average; each film
  weighs the same whatever its number of links). ``k`` larger than the catalog means the whole
  catalog (Recall@k = 1).
* **Films with empty ground truth** (no relevant book left in the catalog) are excluded from the
  averages and counted in ``n_empty``; ``n_evaluated`` films are averaged. With no evaluated film
  every metric is NaN (no division by zero).
* **Links whose movie or book is missing from the catalog** are dropped before ranking by
  ``resolve_links``, which counts them (``LinkStats``) so the report can show them.

Intervals (``ranking_intervals``)
---------------------------------
Every mean-over-films ranking metric (Recall@k, MRR, nDCG@k) gets a 95% percentile bootstrap
interval over films (``BOOTSTRAP_RESAMPLES`` = 2,000 resamples of the films with replacement,
seeded), computed from the per-film values (``per_film_metrics``). Methods are compared on the
same films by the bootstrap of the per-film difference (``paired_difference``): a difference
whose interval contains 0 is within noise. With ~65 linked films one film is 1/65 = 0.015 of
Recall@k, so a one-point (0.01) change of R@10 is below the resolution of the data.

Hubs (``occurrence_counts``, ``score_hub_stats``)
-------------------------------------------------
Over a method's scores for every film of the catalog: a book's k-occurrence is the number of films
with it in their first 10; ``lfr.score.hubs`` turns the counts into the statistics the scoring job
logs (max share of films, never recommended, Gini, skew), so the two report the same numbers.

Error metrics (``confidence_error_metrics``) -- our reading of the paper's MAE/RMSE
-----------------------------------------------------------------------------------
The paper reports MAE and RMSE "on the top 20/50/80% predictions" without a full definition.
Our interpretation:

* **Pairs**: labelled (movie, book) pairs -- the ground-truth links (label 1) plus, per link,
  ``negatives_per_positive`` books drawn at random (fixed seed) among the books not linked to that
  film (label 0); see ``lfr.eval.runner.build_eval_pairs``.
* **Prediction on the label's [0, 1] scale**: ``p = clip(cosine, 0, 1)``. Labels +1/-1 are mapped
  to 1/0. Why: the model is trained with ``CosineEmbeddingLoss`` (margin 0), whose loss is
  ``1 - cos`` for positives and ``max(0, cos)`` for negatives -- it pulls positives to cosine 1
  and pushes negatives to cosine <= 0, not to -1. With the clip, a pair's absolute error is
  exactly that loss (capped at 1), so a negative the training is satisfied with (cos <= 0) has
  error 0; comparing against -1 or using (cos+1)/2 would penalise it.
* **Confidence** = distance from the decision threshold: ``|p - threshold|`` with threshold 0.5
  (the midpoint between the two targets). The top-q fraction is the ``ceil(q * n)`` (at least 1)
  most confident pairs; ties in confidence keep the pairs' given order (the pair builder shuffles
  the pairs with the seed, so the tie-break is random but reproducible and independent of label).
* MAE = mean |p - y|, RMSE = sqrt(mean (p - y)^2) over those pairs; ``all`` is q = 1.

These error metrics depend on calibration (the absolute cosine scale), not only on order: an
unsupervised baseline whose cosines sit around 0.1-0.5 for everything is not "wrong" in ranking
terms but has large errors here. The ranking metrics are the primary comparison.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np

TIE_POLICY = "pessimistic"
DEFAULT_KS = (1, 10, 100)


def _clean_scores(row: np.ndarray) -> np.ndarray:
    row = np.asarray(row, dtype=np.float64)
    return np.where(np.isnan(row), -np.inf, row)


def pessimistic_ranks(scores_row: np.ndarray, relevant_idx: Sequence[int]) -> np.ndarray:
    """1-based pessimistic rank of each relevant column among all columns of ``scores_row``.

    ``rank(j) = #{b : s_b >= s_j}`` (itself included) = 1 + number of *other* books scoring at
    least as high. NaN scores count as -inf.
    """
    row = _clean_scores(scores_row)
    rel = np.asarray(relevant_idx, dtype=np.int64)
    if rel.size == 0:
        return np.zeros(0, dtype=np.int64)
    return (row[None, :] >= row[rel][:, None]).sum(axis=1).astype(np.int64)


def _dcg_discounts(n: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, n + 2, dtype=np.float64))


def per_movie_metrics(ranks: np.ndarray, ks: Iterable[int], ndcg_k: int) -> dict[str, float]:
    """Metrics of one film from the ranks of its relevant books (non-empty)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    out: dict[str, float] = {}
    for k in ks:
        out[f"recall@{k}"] = float(np.mean(ranks <= k))
    best = float(ranks.min())
    out["mrr"] = 1.0 / best
    gains = np.where(ranks <= ndcg_k, 1.0 / np.log2(ranks + 1.0), 0.0).sum()
    ideal = _dcg_discounts(min(len(ranks), ndcg_k)).sum()
    out[f"ndcg@{ndcg_k}"] = float(gains / ideal)
    out["best_rank"] = best
    return out


def ranking_metrics(
    scores: np.ndarray,
    relevant: Sequence[Sequence[int]],
    ks: Iterable[int] = DEFAULT_KS,
    ndcg_k: int = 10,
    return_ranks: bool = False,
) -> dict:
    """Macro-averaged Recall@k, MRR, nDCG@k, median best rank over films (see module doc).

    ``scores``: (n_movies, n_books); ``relevant[i]``: column indices of film i's relevant books.
    Returns the metric means plus ``n_evaluated``, ``n_empty``, ``n_books``, ``tie_policy``;
    with ``return_ranks`` also ``ranks`` (list per film of its relevant books' ranks, ``[]`` for
    empty ones).
    """
    scores = np.atleast_2d(np.asarray(scores))
    ks = [int(k) for k in ks]
    if scores.shape[0] != len(relevant):
        raise ValueError(f"scores has {scores.shape[0]} rows but relevant has {len(relevant)} entries")
    n_books = scores.shape[1]
    per: list[dict[str, float]] = []
    all_ranks: list[list[int]] = []
    n_empty = 0
    for i, rel in enumerate(relevant):
        rel = np.unique(np.asarray(list(rel), dtype=np.int64))
        if rel.size == 0:
            n_empty += 1
            all_ranks.append([])
            continue
        if rel.min() < 0 or rel.max() >= n_books:
            raise IndexError(f"film {i}: relevant index out of range 0..{n_books - 1}")
        ranks = pessimistic_ranks(scores[i], rel)
        all_ranks.append(ranks.tolist())
        per.append(per_movie_metrics(ranks, ks, ndcg_k))
    out: dict = {}
    for name in [*(f"recall@{k}" for k in ks), "mrr", f"ndcg@{ndcg_k}"]:
        out[name] = float(np.mean([p[name] for p in per])) if per else math.nan
    out["median_rank"] = float(np.median([p["best_rank"] for p in per])) if per else math.nan
    out.update(n_evaluated=len(per), n_empty=n_empty, n_books=int(n_books), tie_policy=TIE_POLICY)
    if return_ranks:
        out["ranks"] = all_ranks
    return out


def confidence_error_metrics(
    cosine: np.ndarray,
    labels: np.ndarray,
    fractions: Iterable[float] = (0.2, 0.5, 0.8),
    threshold: float = 0.5,
) -> dict:
    """MAE/RMSE on the most confident fraction of labelled pairs (see module doc).

    ``cosine``: predicted cosine per pair; ``labels``: 1/+1 related, 0/-1 unrelated.
    Returns ``{"mae@20%": .., "rmse@20%": .., ..., "mae@all": .., "rmse@all": .., "n_pairs": n}``
    (NaN when there are no pairs).
    """
    cos = np.asarray(cosine, dtype=np.float64).ravel()
    lab = np.asarray(labels, dtype=np.float64).ravel()
    if cos.shape != lab.shape:
        raise ValueError(f"{cos.size} predictions but {lab.size} labels")
    y = (lab > 0).astype(np.float64)
    p = np.clip(np.nan_to_num(cos, nan=0.0), 0.0, 1.0)
    conf = np.abs(p - threshold)
    order = np.argsort(-conf, kind="stable")
    err = p - y
    out: dict = {}
    n = cos.size
    tagged = [(f"{100 * float(q):g}%", float(q)) for q in fractions] + [("all", 1.0)]
    for tag, q in tagged:
        if not 0.0 < q <= 1.0:
            raise ValueError(f"confidence fraction {q} not in (0, 1]")
        if n == 0:
            out[f"mae@{tag}"] = out[f"rmse@{tag}"] = math.nan
            continue
        m = max(1, math.ceil(q * n - 1e-9))
        sel = err[order[:m]]
        out[f"mae@{tag}"] = float(np.mean(np.abs(sel)))
        out[f"rmse@{tag}"] = float(np.sqrt(np.mean(sel ** 2)))
    out["n_pairs"] = int(n)
    return out


@dataclass
class LinkStats:
    """What happened to the ground-truth links on the way to the evaluation."""

    n_links: int = 0              # links given (after dropping exact duplicates)
    n_duplicates: int = 0         # exact duplicate (movie_id, book_id) rows dropped
    n_missing_movie: int = 0      # movie id not in the movie catalog
    n_missing_book: int = 0       # book id not in the book catalog (movie present)
    n_used: int = 0               # links resolved to catalog rows
    missing: list = field(default_factory=list)   # (movie_id, book_id, reason)

    def as_dict(self) -> dict:
        return asdict(self)


def resolve_links(
    links: Iterable[tuple[str, str]],
    movie_ids: Sequence[str],
    book_ids: Sequence[str],
) -> tuple[list[np.ndarray], LinkStats]:
    """Map (movie_id, book_id) links to book column indices per film row.

    Returns ``relevant`` aligned with ``movie_ids`` (an empty array for a film without a
    resolvable link) and the counts of duplicate / missing-movie / missing-book links.
    """
    m_index = {m: i for i, m in enumerate(movie_ids)}
    b_index = {b: j for j, b in enumerate(book_ids)}
    stats = LinkStats()
    seen: set[tuple[str, str]] = set()
    rel: list[set[int]] = [set() for _ in movie_ids]
    for movie_id, book_id in links:
        key = (movie_id, book_id)
        if key in seen:
            stats.n_duplicates += 1
            continue
        seen.add(key)
        stats.n_links += 1
        if movie_id not in m_index:
            stats.n_missing_movie += 1
            stats.missing.append((movie_id, book_id, "movie not in catalog"))
        elif book_id not in b_index:
            stats.n_missing_book += 1
            stats.missing.append((movie_id, book_id, "book not in catalog"))
        else:
            stats.n_used += 1
            rel[m_index[movie_id]].add(b_index[book_id])
    return [np.array(sorted(s), dtype=np.int64) for s in rel], stats


# --------------------------------------------------------------------------- uncertainty
# With a few dozen linked films one film moves Recall@k by 1/n, so a table of point estimates
# cannot tell a better method from a lucky one. Intervals come from the per-film values: the
# films are resampled with replacement (percentile bootstrap of the mean over films), and two
# methods are compared on the SAME resampled films (bootstrap of the per-film difference).

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_LEVEL = 0.95


def interval_metric_names(ks: Iterable[int] = DEFAULT_KS, ndcg_k: int = 10) -> list[str]:
    """The metrics that are means over films (median_rank is not: it gets no interval)."""
    return [*(f"recall@{int(k)}" for k in ks), "mrr", f"ndcg@{ndcg_k}"]


def per_film_metrics(ranks: Sequence[Sequence[int]], ks: Iterable[int] = DEFAULT_KS,
                     ndcg_k: int = 10) -> dict[str, np.ndarray]:
    """Per film, from the ranks of its relevant books (``ranking_metrics(..., return_ranks=True)``):
    Recall@k, reciprocal rank and nDCG@k; NaN for a film without relevant books.

    Several links per film are why best ranks alone are not enough (Recall@k counts every link).
    The NaN-ignoring mean of each array is ``ranking_metrics``' value."""
    ks = [int(k) for k in ks]
    names = interval_metric_names(ks, ndcg_k)
    out = {name: np.full(len(ranks), np.nan) for name in names}
    for i, r in enumerate(ranks):
        if len(r) == 0:
            continue
        m = per_movie_metrics(np.asarray(r), ks, ndcg_k)
        for name in names:
            out[name][i] = m[name]
    return out


def _resample_index(n: int, n_resamples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(int(seed)).integers(0, n, size=(int(n_resamples), n))


def bootstrap_interval(values: Sequence[float], n_resamples: int = BOOTSTRAP_RESAMPLES, *, seed: int,
                       level: float = BOOTSTRAP_LEVEL) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean over films and its percentile bootstrap interval.

    NaN values (films without links) are left out. Deterministic for a seed; with no value
    everything is NaN."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    means = v[_resample_index(v.size, n_resamples, seed)].mean(axis=1)
    alpha = (1.0 - float(level)) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(v.mean()), float(lo), float(hi)


def paired_difference(a: Sequence[float], b: Sequence[float], n_resamples: int = BOOTSTRAP_RESAMPLES, *,
                      seed: int, level: float = BOOTSTRAP_LEVEL) -> dict:
    """Mean per-film difference ``a - b`` over the films both evaluate, with its bootstrap interval.

    ``within_noise``: the interval contains 0 (the data cannot tell the two apart). A method
    compared with itself gives exactly 0 and [0, 0]."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values must cover the same films: {a.shape} vs {b.shape}")
    both = ~np.isnan(a) & ~np.isnan(b)
    diff, lo, hi = bootstrap_interval(a[both] - b[both], n_resamples, seed=seed, level=level)
    noise = bool(lo <= 0.0 <= hi) if not math.isnan(diff) else True
    return {"diff": diff, "lo": lo, "hi": hi, "within_noise": noise, "n_films": int(both.sum())}


def ranking_intervals(ranks: Mapping[str, Sequence[Sequence[int]]], reference: str | None = None,
                      ks: Iterable[int] = DEFAULT_KS, ndcg_k: int = 10, n_resamples: int = BOOTSTRAP_RESAMPLES, *,
                      seed: int, level: float = BOOTSTRAP_LEVEL) -> dict:
    """Intervals of every method's ranking metrics, and paired differences against ``reference``.

    ``ranks``: method -> per film (same films, same order for every method) the ranks of its
    relevant books. Returns ``{"metrics", "reference", "n_resamples", "level", "seed",
    "methods": {method: {metric: {value, lo, hi}}}, "paired": {method: {metric: {diff, lo, hi,
    within_noise, n_films}}}}`` (``paired`` is empty without a reference)."""
    names = interval_metric_names(ks, ndcg_k)
    per = {m: per_film_metrics(r, ks, ndcg_k) for m, r in ranks.items()}
    if reference is not None and reference not in per:
        raise KeyError(f"reference method {reference!r} not among {sorted(per)}")
    out: dict = {"metrics": names, "reference": reference, "n_resamples": int(n_resamples), "level": float(level),
                 "seed": int(seed), "methods": {}, "paired": {}}
    for m, values in per.items():
        out["methods"][m] = {}
        for name in names:
            value, lo, hi = bootstrap_interval(values[name], n_resamples, seed=seed, level=level)
            out["methods"][m][name] = {"value": value, "lo": lo, "hi": hi}
        if reference is not None:
            ref = per[reference]
            out["paired"][m] = {name: paired_difference(values[name], ref[name], n_resamples, seed=seed, level=level)
                                for name in names}
    return out


# --------------------------------------------------------------------------- hubs

HUB_TOP = 10     # as lfr.score.hubs: the k-occurrence of a book counts the films with it in their first 10


def occurrence_counts(scores: np.ndarray, top: int = HUB_TOP) -> np.ndarray:
    """Per book (column), the number of films (rows) with it among their first ``top`` books.

    Ties at a film's ``top``-th score go to the smaller column, as the product's kernel gives them to
    the smaller book id, so a film whose scores are all equal still lists exactly ``top`` books."""
    s = np.where(np.isnan(scores), -np.inf, np.asarray(scores, dtype=np.float64))
    top = max(1, min(int(top), s.shape[1]))
    cut = -np.partition(-s, top - 1, axis=1)[:, top - 1:top]        # each film's top-th highest score
    above, at = s > cut, s == cut
    room = top - above.sum(axis=1, keepdims=True)
    return (above | (at & (np.cumsum(at, axis=1) <= room))).sum(axis=0)


def score_hub_stats(scores: np.ndarray, book_ids: Sequence[str], top: int = HUB_TOP):
    """``lfr.score.hubs.HubStats`` of a score matrix over EVERY film of the catalog x every book: the
    statistics the scoring job logs for the table it wrote, here for an evaluated method."""
    from lfr.score.hubs import HubStats, occurrence_stats

    counts = occurrence_counts(scores, top)
    never, gini, skew = occurrence_stats(counts, len(book_ids))
    best, films = int(counts.max(initial=0)), int(scores.shape[0])
    return HubStats(top=min(int(top), len(book_ids)), films=films, books=len(book_ids), max_occurrence=best,
                    max_share=round(best / films, 6) if films else 0.0,
                    hub_book=str(book_ids[int(np.argmax(counts))]) if best else None,
                    never_recommended=round(never, 6), gini=round(gini, 6), skew=round(skew, 6))
