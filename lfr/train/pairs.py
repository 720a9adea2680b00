"""Training pairs ``(movie_id, book_id, label in {+1, -1})`` and the by-movie validation split.

Positives
    * From a pair file (known adaptations, resolved to ids by ``lfr.data.read_pairs``)
      when one is given: those links only.
    * Otherwise from genre agreement. Rule: a book is a candidate positive for a
      movie when they share at least ``train.min_shared_genres`` normalised genre
      labels (``lfr.model.genre.normalise_label``: lower-case, inner whitespace ->
      ``_``, so "Sci-Fi" and "Science Fiction" do NOT match; FastText handles such
      near-synonyms in the model, the rule stays exact). Up to
      ``train.genre_positives_per_movie`` candidates are sampled per movie;
      movies without candidates get no positive.

Negatives
    ``train.negatives_per_positive`` books per positive, sampled without
    replacement among books sharing NO normalised genre with the movie (books
    without genres qualify) and not positive for it. If the movie has no genres,
    or too few such books exist, the remainder is filled from any non-positive
    book. Why genre-disjoint: random books are often genuinely related
    (same genre), which would teach the model to push apart similar items.

Determinism: ids are sorted before sampling and one ``numpy`` generator seeded
with ``train.seed`` drives all draws, so the same catalogs give the same pairs
regardless of input row order.

Validation is held out BY MOVIE: all pairs of a movie are either train or
validation, so validation measures generalisation to unseen movies rather than
memorised ones.
"""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import pandas as pd

from lfr.model.genre import normalise_genres
from lfr.settings import TrainSettings

log = logging.getLogger(__name__)

_BLOCK = 1024  # movies per block of the shared-genre count matrix


def _incidence(genres: Sequence, vocab: dict[str, int]) -> np.ndarray:
    out = np.zeros((len(genres), len(vocab)), dtype=np.float32)
    for i, g in enumerate(genres):
        for label in normalise_genres(g):
            j = vocab.get(label)
            if j is not None:
                out[i, j] = 1.0
    return out


class GenreIndex:
    """Shared-normalised-genre counts between sorted movies and sorted books."""

    def __init__(self, movies: pd.DataFrame, books: pd.DataFrame):
        m = movies.sort_values("id", kind="stable")
        b = books.sort_values("id", kind="stable")
        self.movie_ids: list[str] = [str(x) for x in m["id"]]
        self.book_ids: list[str] = [str(x) for x in b["id"]]
        self.movie_pos = {mid: i for i, mid in enumerate(self.movie_ids)}
        self.book_pos = {bid: i for i, bid in enumerate(self.book_ids)}
        labels = sorted({lab for g in m["genres"] for lab in normalise_genres(g)}
                        & {lab for g in b["genres"] for lab in normalise_genres(g)})
        vocab = {lab: i for i, lab in enumerate(labels)}
        self._m = _incidence(list(m["genres"]), vocab)
        self._b = _incidence(list(b["genres"]), vocab)
        self.movie_has_genres = np.array([bool(normalise_genres(g)) for g in m["genres"]])

    def shared(self, movie_rows: np.ndarray | slice) -> np.ndarray:
        """``(len(rows), n_books)`` counts of shared labels (only labels both catalogs use)."""
        return self._m[movie_rows] @ self._b.T


def genre_agreement_positives(movies: pd.DataFrame, books: pd.DataFrame, min_shared: int, per_movie: int,
                              rng: np.random.Generator, index: GenreIndex | None = None) -> pd.DataFrame:
    """Positives by the genre-agreement rule (module doc); ``movie_id, book_id``."""
    index = index or GenreIndex(movies, books)
    rows: list[tuple[str, str]] = []
    n_movies = len(index.movie_ids)
    for start in range(0, n_movies, _BLOCK):
        counts = index.shared(slice(start, start + _BLOCK))
        for k in range(counts.shape[0]):
            cand = np.flatnonzero(counts[k] >= max(1, int(min_shared)))
            if cand.size == 0:
                continue
            take = rng.choice(cand, size=min(int(per_movie), cand.size), replace=False)
            mid = index.movie_ids[start + k]
            rows.extend((mid, index.book_ids[j]) for j in sorted(take))
    return pd.DataFrame(rows, columns=["movie_id", "book_id"])


def sample_negatives(positives: pd.DataFrame, index: GenreIndex, per_positive: int,
                     rng: np.random.Generator) -> pd.DataFrame:
    """Negatives for each movie of ``positives`` (module doc); ``movie_id, book_id``."""
    rows: list[tuple[str, str]] = []
    n_books = len(index.book_ids)
    by_movie = positives.groupby("movie_id", sort=True)["book_id"].apply(list)
    for mid, pos_books in by_movie.items():
        need = int(per_positive) * len(pos_books)
        if need <= 0:
            continue
        m_row = index.movie_pos[mid]
        excluded = np.zeros(n_books, dtype=bool)
        excluded[[index.book_pos[b] for b in pos_books]] = True
        if index.movie_has_genres[m_row]:
            disjoint = (index.shared(np.array([m_row]))[0] == 0) & ~excluded
        else:
            disjoint = ~excluded
        first = np.flatnonzero(disjoint)
        take = rng.choice(first, size=min(need, first.size), replace=False) if first.size else np.array([], int)
        if take.size < need:  # too few genre-disjoint books: fill from any other non-positive book
            rest = np.flatnonzero(~excluded & ~np.isin(np.arange(n_books), take))
            extra = rng.choice(rest, size=min(need - take.size, rest.size), replace=False) if rest.size else []
            take = np.concatenate([take, np.asarray(extra, dtype=int)])
        rows.extend((mid, index.book_ids[j]) for j in sorted(take.tolist()))
    return pd.DataFrame(rows, columns=["movie_id", "book_id"])


def clean_positives(positives: pd.DataFrame, movies: pd.DataFrame, books: pd.DataFrame) -> pd.DataFrame:
    """Known links restricted to ids present in the catalogs, de-duplicated and sorted."""
    pos = positives[["movie_id", "book_id"]].astype(str).drop_duplicates()
    ok = pos["movie_id"].isin(set(movies["id"].astype(str))) & pos["book_id"].isin(set(books["id"].astype(str)))
    if (~ok).any():
        log.warning("training: %d of %d positive pairs name ids not in the (valid) catalogs; dropped",
                    int((~ok).sum()), len(pos))
    return pos[ok].sort_values(["movie_id", "book_id"]).reset_index(drop=True)


def build_pairs(movies: pd.DataFrame, books: pd.DataFrame, positives: pd.DataFrame | None,
                train_cfg: TrainSettings) -> tuple[pd.DataFrame, str]:
    """``(pairs [movie_id, book_id, label], positive_source)``; label is +1 / -1 (int8)."""
    rng = np.random.default_rng(int(train_cfg.seed))
    index = GenreIndex(movies, books)
    if positives is not None:
        pos, source = clean_positives(positives, movies, books), "pairs"
    else:
        pos = genre_agreement_positives(movies, books, int(train_cfg.min_shared_genres),
                                        int(train_cfg.genre_positives_per_movie), rng, index)
        source = "genre_agreement"
    if pos.empty:
        raise ValueError(
            f"no positive training pairs ({source}): "
            + ("no pair resolves to the catalogs" if source == "pairs"
               else f"no movie shares >= {train_cfg.min_shared_genres} normalised genres with a book "
                    "(lower train.min_shared_genres or give catalogs.pairs)")
        )
    neg = sample_negatives(pos, index, int(train_cfg.negatives_per_positive), rng)
    pairs = pd.concat([pos.assign(label=1), neg.assign(label=-1)], ignore_index=True)
    pairs["label"] = pairs["label"].astype("int8")
    return (pairs.sort_values(["movie_id", "label", "book_id"], ascending=[True, False, True]).reset_index(drop=True),
            source)


def split_by_movie(pairs: pd.DataFrame, val_fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out ``round(val_fraction * n_movies)`` whole movies (>= 1 when val_fraction > 0
    and there are >= 2 movies; always >= 1 training movie)."""
    movies = np.array(sorted(pairs["movie_id"].unique()))
    n_val = int(round(float(val_fraction) * len(movies)))
    if val_fraction > 0 and len(movies) >= 2:
        n_val = max(1, n_val)
    n_val = min(n_val, len(movies) - 1)
    if n_val <= 0:
        return pairs.reset_index(drop=True), pairs.iloc[0:0].reset_index(drop=True)
    val_movies = set(np.random.default_rng(int(seed)).permutation(movies)[:n_val])
    is_val = pairs["movie_id"].isin(val_movies)
    return pairs[~is_val].reset_index(drop=True), pairs[is_val].reset_index(drop=True)
