"""Genre embeddings: a small FastText model trained on the catalogs' genre labels.

Why FastText (the paper's choice): genre vocabularies differ between sources
("Sci-Fi" on IMDb, "Science Fiction" on Goodreads); FastText's character
n-grams give related labels related vectors even when the strings differ, and
a model trained on a few thousand label "sentences" takes well under a second.

Each item's genres form one sentence of normalised labels (lower-case, inner
whitespace -> ``_``, so "Historical Fiction" stays one token). An item's genre
vector is FastText's sentence vector of that sentence (mean of the
L2-normalised label vectors). Items without genres get a zero vector and
``has_genres=False``: absence of genres is information the caller may want to
see, and a zero vector contributes nothing but the projection bias downstream.

Determinism: training runs with ``thread=1`` and a fixed ``seed``, with
malloc zero-filling FastText's buffers (see ``_zero_filled_malloc``: the
installed build reads uninitialised memory otherwise); FastText is then
bit-reproducible for the same corpus. The saved ``genre.bin`` is
FastText's own binary format (``load_model`` parses it; no pickle).
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

_WS = re.compile(r"\s+")
_M_PERTURB = -6  # glibc mallopt parameter
_MIN_MATRIX_BYTES = 4096  # keep FastText's input matrix out of glibc's tcache size classes

GenreInput = Sequence[str] | np.ndarray | str | None
MATRIX_FILE = "genre.safetensors"   # export_module: FastText's input matrix ...
WORDS_FILE = "genre_words.json"     # ... and its vocabulary in id order (read by lfr.model.fasttext_np)


def normalise_label(label: str) -> str:
    """``" Historical  Fiction "`` -> ``"historical_fiction"`` (one FastText token)."""
    return _WS.sub("_", str(label).strip().lower())


def normalise_genres(genres: GenreInput) -> list[str]:
    """Normalised, de-duplicated labels in source order; ``None``/NaN/empty -> ``[]``.

    Accepts a list/tuple/numpy array of labels (Spark arrays arrive in pandas
    as numpy arrays) or a single label string.
    """
    if genres is None:
        return []
    if isinstance(genres, str):
        genres = [genres]
    elif not hasattr(genres, "__iter__"):  # NaN / pd.NA from a pandas column
        return []
    out: list[str] = []
    for raw in genres:
        if not isinstance(raw, str):  # None / NaN inside an array
            continue
        label = normalise_label(raw)
        if label and label not in out:
            out.append(label)
    return out


@contextlib.contextmanager
def _zero_filled_malloc():
    """Make glibc's malloc return zero-filled memory while FastText trains.

    Why: the fasttext-numpy2 0.10.4 build allocates the input matrix
    uninitialised and, with ``thread=1``, its ``uniform`` init only fills the
    first 10% of it (upstream fastText relies on a zero-initialised vector for
    the rest). The other rows then hold whatever the heap held before: NaN or
    1e32 garbage, so training failed with "Encountered NaN." in most runs on
    a busy heap and was never reproducible. ``mallopt(M_PERTURB, 0xff)`` makes
    malloc fill new blocks with ``0xff ^ 0xff = 0`` (upstream semantics) and is
    reset afterwards; it is process-wide but harmless (other threads just get
    zeroed memory for a moment). It does not apply to tcache-sized blocks
    (<= 1 KiB), hence the minimum matrix size enforced in ``GenreModel.train``. Not glibc: nothing to do here, and
    ``_check_matrix`` still refuses a corrupted model.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        yield
        return
    mallopt(_M_PERTURB, 0xFF)
    try:
        yield
    finally:
        mallopt(_M_PERTURB, 0)


def _check_matrix(ft: Any) -> None:
    """Refuse a model whose input matrix holds NaN/inf or garbage-sized values."""
    matrix = ft.get_input_matrix()
    if not np.isfinite(matrix).all() or float(np.abs(matrix).max(initial=0.0)) > 1e3:
        raise RuntimeError(
            "FastText genre model is corrupted (non-finite or huge input vectors): the fasttext build "
            "left memory uninitialised; retrain on glibc/Linux where lfr zero-fills FastText's allocations"
        )


def _train_seeded(params: dict[str, Any], seed: int) -> Any:
    """``fasttext.train_unsupervised`` with a seed.

    The Python wrapper of fasttext 0.9.x/0.10.x rejects ``seed`` as a keyword
    although the C++ trainer supports it, so the wrapper's two steps are done
    here (pinned fasttext-numpy2 0.10.4). If those internals ever move, fall
    back to the public call (fixed seed 0, still deterministic with thread=1).
    """
    import fasttext
    from fasttext import FastText as ft_py

    try:
        args = {**ft_py.unsupervised_default, **params, "seed": seed}
        built = ft_py._build_args(args, set(params) | {"seed"})
        model = ft_py._FastText(args=built)
        ft_py.fasttext.train(model.f, built)
        model.set_args(model.f.getArgs())
        return model
    except AttributeError:
        return fasttext.train_unsupervised(**params)


class GenreModel:
    """Wraps a trained ``fasttext`` model; maps genre lists to fixed-size vectors."""

    def __init__(self, ft_model: Any):
        self._ft = ft_model
        self.dim: int = int(ft_model.get_dimension())

    @classmethod
    def train(
        cls,
        corpus: Iterable[GenreInput],
        dim: int = 50,
        epochs: int = 50,
        bucket: int = 20000,
        seed: int = 13,
    ) -> "GenreModel":
        """Train on one sentence per item (items without genres are skipped).

        FastText reads its training data from a file, so the sentences go to a
        temporary file that is removed afterwards.
        """

        if int(bucket) * int(dim) * 4 < _MIN_MATRIX_BYTES:
            # Small blocks come from glibc's tcache, which M_PERTURB does not zero-fill.
            raise ValueError(f"genre_bucket * genre_dim too small ({bucket} * {dim}); use genre_bucket >= "
                             f"{-(-_MIN_MATRIX_BYTES // (4 * int(dim)))}")
        sentences = [" ".join(g) for g in (normalise_genres(x) for x in corpus) if g]
        if not sentences:
            raise ValueError("cannot train the genre model: no item in the corpus has genres")
        fd, path = tempfile.mkstemp(prefix="lfr-genres-", suffix=".txt")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write("\n".join(sentences) + "\n")
            params = {"input": path, "model": "skipgram", "dim": int(dim), "epoch": int(epochs),
                      "minCount": 1, "bucket": int(bucket), "thread": 1, "verbose": 0}
            with _zero_filled_malloc():
                ft = _train_seeded(params, int(seed))
            _check_matrix(ft)
        finally:
            os.unlink(path)
        return cls(ft)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "GenreModel":
        import fasttext

        return cls(fasttext.load_model(str(path)))

    def save(self, path: str | os.PathLike) -> None:
        self._ft.save_model(str(path))

    def save_module(self, path: str | os.PathLike) -> dict:
        """The genre module: FastText's own binary file; its config is the vector size."""
        self.save(path)
        return {"dim": self.dim}

    @classmethod
    def load_module(cls, path: str | os.PathLike, config: dict) -> "GenreModel":
        model = cls.load(path)
        if model.dim != int(config["dim"]):
            raise ValueError(f"{path}: a {model.dim}-d FastText model, its module config says {config['dim']}")
        return model

    def export_module(self, folder: str | os.PathLike) -> dict:
        """The arrays ``lfr.model.fasttext_np`` computes the same vectors from, without fasttext: the
        input matrix (safetensors) and the vocabulary in id order (JSON); returns their config."""
        from safetensors.numpy import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        args = self._ft.f.getArgs()
        save_file({"input": np.ascontiguousarray(self._ft.get_input_matrix(), dtype=np.float32)},
                  str(folder / MATRIX_FILE))
        words = list(self._ft.get_words(include_freq=False))
        (folder / WORDS_FILE).write_text(json.dumps(words, ensure_ascii=False) + "\n", encoding="utf-8")
        return {"dim": self.dim, "minn": int(args.minn), "maxn": int(args.maxn), "bucket": int(args.bucket),
                "words": len(words)}

    def vectors(self, genres: Sequence[GenreInput]) -> tuple[np.ndarray, np.ndarray]:
        """``(float32 (n, dim), bool (n,) has_genres)``; no genres -> zero row, False."""
        return sentence_vectors(genres, self.dim, lambda labels: self._ft.get_sentence_vector(" ".join(labels)))


def sentence_vectors(genres: Sequence[GenreInput], dim: int, sentence_vector: Callable[[list[str]], np.ndarray]
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Each item's genre vector from its normalised labels (``sentence_vector``: fasttext's, or the numpy
    port's), ``(float32 (n, dim), bool (n,) has_genres)``; no genres -> zero row, False."""
    out = np.zeros((len(genres), dim), dtype=np.float32)
    has = np.zeros(len(genres), dtype=bool)
    for i, g in enumerate(genres):
        labels = normalise_genres(g)
        if labels:
            out[i] = sentence_vector(labels)
            has[i] = True
    return out, has
