"""X-Cross in the project's evaluation (``lfr.eval.runner.run_evaluation``'s ``train_fn`` hook).

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

from dataclasses import replace
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from lfr.xcross.model import XCrossModel
from lfr.xcross.train import XCrossTrainResult, train


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
                  xcross_cfg: Mapping[str, Any] | None = None, link_fraction: float = 1.0,
                  seed: int = 13) -> Callable:
    """A ``train_fn(movies, books, train_links, cfg)`` for ``run_evaluation``: trains the adapters
    on the first call and reuses them, trains the integrator per fold (``integrate_stage=False``:
    the adapters-only ablation) on ``link_fraction`` of the fold's training films' links, returns
    an ``XCrossTrainResult`` whose ``model`` is routed."""
    state: dict[str, XCrossModel] = {}

    def train_fn(movies: pd.DataFrame, books: pd.DataFrame, train_links: pd.DataFrame, cfg: dict):
        train_links = subsample_links(train_links, link_fraction, seed)
        cfg = dict(cfg)
        if xcross_cfg is not None:
            cfg["xcross"] = {**dict(cfg.get("xcross") or {}), **dict(xcross_cfg)}
        result: XCrossTrainResult = train(movies, books, train_links, cfg, alt_texts=alt_texts,
                                          adapters_from=state.get("adapters"), train_integrator_stage=integrate_stage)
        state.setdefault("adapters", result.model)
        router = CatalogRouter(result.model, movies["description"], integrate=True if integrate_stage else False)
        return replace(result, model=router)

    return train_fn
