"""The fitted lexical model: settings, vocabulary, document frequencies; versioned, saved as JSON + npy.

The Spark job fits it with Spark ML (``lfr.lexical.features.fit_model``); the evaluation fits the
same model on the driver with ``LexicalModel.fit_texts``, whose tokenizer (``tokenize``) replicates
Spark's ``RegexTokenizer(pattern=TOKEN_PATTERN, gaps=False, minTokenLength)`` followed by
``StopWordsRemover(ENGLISH)`` (a test checks both give the same terms). Term indices may differ
between the two fits (Spark orders the vocabulary by corpus frequency), so the product's tables
and the evaluation agree on every cosine, not on index numbers.

Settings: ``lfr.settings.LexicalSettings`` (``lexical:`` in conf/lfr.yaml), the same object the
job, the evaluation and a model's saved ``model.json`` use (``load`` reads it back with the same checks).

``version``: sha256 of the settings, vocabulary and document frequencies (hence idf) -- any change
of them is a new ``lexical_version``, and the feature tables are recomputed.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from lfr.config import ConfigError
from lfr.lexical.stopwords import ENGLISH
from lfr.lexical.weighting import SCHEMES, idf_weights, weight_counts
from lfr.settings import LexicalSettings, parse_section

# Java regex for Spark's RegexTokenizer; (?U) makes \w Unicode-aware (Amélie stays one word).
TOKEN_PATTERN = r"(?U)\w+"


def _java_word_class() -> str:
    r"""Java's ``(?U)\w`` as a Python character class: letters, letter numbers, marks (Mn/Mc/Me),
    decimal digits, connector punctuation, ZWNJ/ZWJ and the circled/squared letters (Unicode
    Other_Alphabetic outside the marks). Python's own ``\w`` differs: it lacks marks (the dot of a
    lowercased 'İ') and has other numbers ('²')."""
    keep = ("L", "Nl", "Mn", "Mc", "Me", "Nd", "Pc")
    ranges, start = [], None
    for cp in range(_LAST_WORD_CP + 2):
        ok = unicodedata.category(chr(cp)).startswith(keep) or cp in (0x200C, 0x200D) \
            or 0x24B6 <= cp <= 0x24E9 or 0x1F130 <= cp <= 0x1F189
        if ok and start is None:
            start = cp
        elif not ok and start is not None:
            ranges.append((start, cp - 1))
            start = None
    return "[" + "".join(re.escape(chr(a)) + ("-" + re.escape(chr(b)) if b > a else "") for a, b in ranges) + "]+"


_LAST_WORD_CP = 0x323AF   # no letter, mark or digit is assigned above (planes 14-16: tags, private use)


@functools.lru_cache(maxsize=1)
def _py_token() -> re.Pattern:
    return re.compile(_java_word_class())
_STOP = frozenset(ENGLISH)


def check_settings(settings: LexicalSettings) -> LexicalSettings:
    """``settings`` if the lexical model can use them, else a ``ConfigError`` naming the key."""
    if settings.weighting not in SCHEMES:
        raise ConfigError(f"lexical.weighting must be one of {SCHEMES}, got {settings.weighting!r}")
    return settings


def fit_key(settings: LexicalSettings) -> dict:
    """Everything the fitted model and its weights depend on: the ``lexical`` settings."""
    return settings.as_dict()


def tokenize(text: str | None, min_token_length: int) -> list[str]:
    """Terms of one text, as RegexTokenizer + StopWordsRemover produce them in Spark
    (``min_token_length``: ``lexical.min_token_length``)."""
    if not isinstance(text, str):
        return []
    return [t for t in _py_token().findall(text.lower()) if len(t) >= min_token_length and t not in _STOP]


@dataclass
class LexicalModel:
    settings: LexicalSettings
    vocabulary: list[str]
    df: np.ndarray               # document frequency per term (int64), aligned with vocabulary
    n_docs: int
    avgdl: float                 # mean in-vocabulary tokens per document of the fit
    _index: dict = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_settings(self.settings)

    @property
    def idf(self) -> np.ndarray:
        return idf_weights(self.df, self.n_docs, self.settings.weighting)

    @property
    def version(self) -> str:
        h = hashlib.sha256(json.dumps(fit_key(self.settings), sort_keys=True).encode())
        h.update(json.dumps([self.n_docs, round(float(self.avgdl), 9)]).encode())
        h.update("\x1f".join(self.vocabulary).encode("utf-8"))
        h.update(np.asarray(self.df, dtype="<i8").tobytes())
        return h.hexdigest()[:16]

    @property
    def index(self) -> dict[str, int]:
        if self._index is None:
            self._index = {t: i for i, t in enumerate(self.vocabulary)}
        return self._index

    def weight(self, counts: sp.csr_matrix) -> sp.csr_matrix:
        s = self.settings
        return weight_counts(counts, self.idf, s.weighting, k1=s.k1, b=s.b, avgdl=self.avgdl)

    def counts(self, texts: Sequence[str | None]) -> sp.csr_matrix:
        """Term counts (CSR) of ``texts`` over the vocabulary; unknown terms are dropped."""
        indptr, indices, data = [0], [], []
        for text in texts:
            c = Counter(self.index[t] for t in tokenize(text, self.settings.min_token_length) if t in self.index)
            for j in sorted(c):
                indices.append(j)
                data.append(c[j])
            indptr.append(len(indices))
        return sp.csr_matrix((np.asarray(data, np.float64), np.asarray(indices, np.int64), np.asarray(indptr)),
                             shape=(len(indptr) - 1, len(self.vocabulary)))

    def transform(self, texts: Sequence[str | None]) -> sp.csr_matrix:
        return self.weight(self.counts(texts))

    @classmethod
    def fit_texts(cls, texts: Sequence[str | None], settings: LexicalSettings) -> "LexicalModel":
        """Driver-side fit with the same rules as Spark's CountVectorizer (minDF, maxDF, vocabSize)."""
        check_settings(settings)
        docs = [tokenize(t, settings.min_token_length) for t in texts]
        df, tf = Counter(), Counter()
        for d in docs:
            df.update(set(d))
            tf.update(d)
        n = len(docs)
        max_df = settings.max_df * n if settings.max_df < 1.0 else float("inf")
        kept = [t for t in df if df[t] >= settings.min_df and df[t] <= max_df]
        kept = sorted(kept, key=lambda t: (-tf[t], t))[: settings.vocab_size]  # vocabSize keeps the most frequent
        kept = sorted(kept, key=lambda t: (-df[t], t))  # the order fit_model gives Spark's vocabulary
        total = sum(tf[t] for t in kept)
        return cls(settings, kept, np.array([df[t] for t in kept], dtype=np.int64), n, total / max(n, 1))

    # -- persistence: <dir>/model.json + vocabulary.json + df.npy (no pickle)
    def save(self, folder: str) -> str:
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "vocabulary.json"), "w", encoding="utf-8") as fh:
            json.dump(self.vocabulary, fh, ensure_ascii=False)
        np.save(os.path.join(folder, "df.npy"), np.asarray(self.df, dtype=np.int64), allow_pickle=False)
        np.save(os.path.join(folder, "idf.npy"), self.idf, allow_pickle=False)  # for readers; derived from df
        meta = {"version": self.version, "settings": fit_key(self.settings), "n_docs": int(self.n_docs),
                "avgdl": float(self.avgdl), "vocab_size": len(self.vocabulary)}
        with open(os.path.join(folder, "model.json"), "w", encoding="utf-8") as fh:
            json.dump(meta, fh, indent=2, sort_keys=True)
        return folder

    @classmethod
    def load(cls, folder: str) -> "LexicalModel":
        with open(os.path.join(folder, "model.json"), encoding="utf-8") as fh:
            meta = json.load(fh)
        with open(os.path.join(folder, "vocabulary.json"), encoding="utf-8") as fh:
            vocab = json.load(fh)
        df = np.load(os.path.join(folder, "df.npy"), allow_pickle=False)
        model = cls(parse_section(LexicalSettings, "lexical", meta["settings"]), vocab, df, int(meta["n_docs"]),
                    float(meta["avgdl"]))
        if model.version != meta["version"]:
            raise ValueError(f"lexical model in {folder} is corrupt: content hash {model.version} != "
                             f"recorded version {meta['version']}")
        return model
