"""FastText genre vectors in numpy: the executors of ``model.runtime: onnx`` import no fasttext.

Why a port and not a table of precomputed vectors: catalogs bring genre labels the training
corpus never saw, and FastText gives those a vector from their character n-grams. What is
ported is exactly what ``GenreModel.vectors`` asks of fasttext (``get_sentence_vector`` of an
unsupervised model; fastText's ``Dictionary::getSubwords``/``computeSubwords``/``hash`` and
``FastText::getSentenceVector``):

* a word's vector = mean of the input-matrix rows of its subwords: its own id (in-vocabulary
  words only) and the ids ``nwords + hash(ngram) % bucket`` of the character n-grams
  (``minn``..``maxn`` UTF-8 characters) of ``<word>``; the one-character n-grams ``<`` and ``>``
  are not n-grams;
* ``hash`` is 32-bit FNV-1a over the bytes, each byte sign-extended first (``int8_t``), as the
  C++ code does;
* a sentence's vector = mean of its words' vectors, each L2-normalised (zero vectors skipped).

The arrays come from ``GenreModel.export_module`` (safetensors + JSON in the artifact);
``tests/test_onnx_runtime.py`` checks this port against fasttext itself, labels in and out of
the vocabulary, with non-ASCII characters.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from lfr.model.genre import MATRIX_FILE, WORDS_FILE, GenreInput, sentence_vectors  # fasttext: inside functions only

EOS = "</s>"  # fastText's end-of-sentence word: no n-grams
_FNV_OFFSET, _FNV_PRIME, _MASK = 2166136261, 16777619, 0xFFFFFFFF


def fnv1a(text: str) -> int:
    """fastText's ``Dictionary::hash`` of ``text`` (UTF-8 bytes, each sign-extended as ``int8_t``)."""
    h = _FNV_OFFSET
    for b in text.encode("utf-8"):
        h = ((h ^ (b | 0xFFFFFF00 if b >= 0x80 else b)) * _FNV_PRIME) & _MASK
    return h


def char_ngrams(word: str, minn: int, maxn: int) -> list[str]:
    """fastText's ``computeSubwords`` of ``<word>``: n-grams of ``minn``..``maxn`` characters."""
    padded = f"<{word}>"
    chars = list(padded)   # Python characters = whole UTF-8 sequences, as the C++ loop groups bytes
    out = []
    for i in range(len(chars)):
        gram = ""
        for n in range(1, maxn + 1):
            j = i + n
            if j > len(chars):
                break
            gram += chars[j - 1]
            if n >= minn and not (n == 1 and (i == 0 or j == len(chars))):
                out.append(gram)
    return out


class NumpyGenreModel:
    """``GenreModel.vectors`` from the exported matrix and vocabulary, without fasttext."""

    def __init__(self, matrix: np.ndarray, words: Sequence[str], minn: int, maxn: int, bucket: int):
        self.matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        self.index = {w: i for i, w in enumerate(words)}
        self.nwords, self.minn, self.maxn, self.bucket = len(words), int(minn), int(maxn), int(bucket)
        self.dim = int(self.matrix.shape[1])
        if self.matrix.shape[0] != self.nwords + self.bucket:
            raise ValueError(f"genre matrix has {self.matrix.shape[0]} rows, expected {self.nwords} words + "
                             f"{self.bucket} buckets")
        self._cache: dict[str, np.ndarray] = {}

    @classmethod
    def load(cls, folder: str | os.PathLike, config: dict) -> "NumpyGenreModel":
        from safetensors.numpy import load_file

        folder = Path(folder)
        words = json.loads((folder / WORDS_FILE).read_text(encoding="utf-8"))
        model = cls(load_file(str(folder / MATRIX_FILE))["input"], words, config["minn"], config["maxn"],
                    config["bucket"])
        if model.dim != int(config["dim"]):
            raise ValueError(f"{folder}: a {model.dim}-d genre matrix, its module config says {config['dim']}")
        return model

    def subwords(self, word: str) -> list[int]:
        ids = [self.index[word]] if word in self.index else []
        if self.maxn > 0 and word != EOS:
            ids += [self.nwords + fnv1a(g) % self.bucket for g in char_ngrams(word, self.minn, self.maxn)]
        return ids

    def word_vector(self, word: str) -> np.ndarray:
        vec = self._cache.get(word)
        if vec is None:
            ids = self.subwords(word)
            vec = self.matrix[ids].mean(axis=0) if ids else np.zeros(self.dim, np.float32)
            self._cache[word] = vec.astype(np.float32)
        return vec

    def sentence_vector(self, labels: Sequence[str]) -> np.ndarray:
        acc, count = np.zeros(self.dim, np.float32), 0
        for word in labels:
            vec = self.word_vector(word)
            norm = float(np.linalg.norm(vec))
            if norm > 0:
                acc += vec / norm
                count += 1
        return acc / count if count else acc

    def vectors(self, genres: Sequence[GenreInput]) -> tuple[np.ndarray, np.ndarray]:
        """``(float32 (n, dim), bool (n,) has_genres)``; no genres -> zero row, False."""
        return sentence_vectors(genres, self.dim, self.sentence_vector)
