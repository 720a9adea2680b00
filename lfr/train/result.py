"""What a LightFusionRec training run returns, whichever recipe made it.

Why a module of its own: both recipes (``lfr.train.trainer``: paper; ``lfr.train.recipes``:
contrastive) build a ``TrainResult`` with the same data fingerprint and the same strict-JSON
cleaning, and the trainer dispatches to the contrastive recipe; with these in the trainer, the
two modules imported each other.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from lfr.model import LightFusionModel


@dataclass
class TrainResult:
    """The trained model and everything worth recording about the run."""

    model: LightFusionModel
    history: list[dict[str, float]]          # epoch 0 = before training, then one row per epoch
    metrics: dict[str, float]
    pair_stats: dict[str, Any]
    data_fingerprint: dict[str, Any]
    settings: dict[str, Any]
    seconds: float
    pairs: pd.DataFrame = field(repr=False)  # movie_id, book_id, label, split

    def manifest_extra(self) -> dict[str, Any]:
        """What ``model.save(path, extra_manifest=...)`` should record."""
        return {
            "training": {**self.settings, "seconds": round(self.seconds, 2), "history": self.history,
                         "pairs": self.pair_stats},
            "data_fingerprint": self.data_fingerprint,
            "metrics": self.metrics,
        }


def _genre_list(g: Any) -> list[str]:
    if g is None or isinstance(g, str) or not hasattr(g, "__iter__"):
        return [g] if isinstance(g, str) else []
    return [str(x) for x in g if isinstance(x, str)]


def data_fingerprint(movies: pd.DataFrame, books: pd.DataFrame, pairs: pd.DataFrame) -> dict[str, Any]:
    """sha256 over the ids + model inputs (title, description, genres) of every catalog item
    (the genre model sees them all) and over the training pairs, each in sorted order."""
    h = hashlib.sha256()
    for name, frame in (("movies", movies), ("books", books)):
        h.update(f"#{name}\n".encode())
        for row in frame.sort_values("id")[["id", "title", "description", "genres"]].itertuples(index=False):
            rec = [row.id, row.title if isinstance(row.title, str) else None,
                   row.description if isinstance(row.description, str) else None, _genre_list(row.genres)]
            h.update(json.dumps(rec, ensure_ascii=True).encode() + b"\n")
    h.update(b"#pairs\n")
    ordered = pairs.sort_values(["movie_id", "book_id"])[["movie_id", "book_id", "label"]]
    for m, b, lab in ordered.itertuples(index=False):
        h.update(f"{m}\t{b}\t{int(lab)}\n".encode())
    return {"sha256": h.hexdigest(), "movies": len(movies), "books": len(books), "pairs": len(pairs)}


def finite(obj: Any) -> Any:
    """NaN (e.g. no validation movies) -> None, so manifests stay strict JSON."""
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
