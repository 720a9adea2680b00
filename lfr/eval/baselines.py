"""The methods of the ablation: each turns catalog rows into L2-normalised vectors.

A ``Method`` maps (movies frame, books frame) to two row-aligned matrices ``(M, B)`` whose rows
are L2-normalised (dense numpy or scipy sparse), so ``M @ B.T`` is the cosine score matrix every
method is ranked by, with the same metric code (``lfr.eval.metrics``). Frames carry the canonical
catalog columns; every method reads ``description`` and/or ``genres`` only -- never ``title``
(the ground-truth links were found by title, so embedding titles would make them trivial).

Methods (``standard_methods``):

* ``tfidf`` -- TF-IDF (scikit-learn; English stop words, sublinear tf) of descriptions, fitted on
  the descriptions of the whole movie + book catalogs (unsupervised, no link is used), cosine.
* ``genre_only`` -- the FastText genre vectors of the model (mean of label vectors), cosine; an
  item without genres gets a zero vector (cosine 0 with everything, ranked pessimistically).
* ``text_only`` -- the frozen pre-trained text encoder's features of the description, no fusion.
* ``fusion_untrained`` -- ``build_model(...).embed``: text + genre fused by the randomly
  initialised head (what training starts from).
* ``lightfusionrec`` -- the same architecture after training on the *training* links only.
* ``distilbert_text_only`` / ``lightfusionrec_distilbert`` -- the paper's encoder (DistilBERT,
  [CLS] pooling), when ``eval.distilbert_path`` names a local copy.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd

Matrix = "np.ndarray | scipy.sparse.spmatrix"
EmbedFn = Callable[[pd.DataFrame, pd.DataFrame], tuple]


@dataclass
class Method:
    name: str
    description: str
    embed: EmbedFn


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Row-normalise; zero rows stay zero (cosine 0 with everything)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def descriptions(frame: pd.DataFrame) -> list[str]:
    return ["" if d is None or (isinstance(d, float) and np.isnan(d)) else str(d) for d in frame["description"]]


def genre_lists(frame: pd.DataFrame) -> list[list[str]]:
    out = []
    for g in frame["genres"]:
        if g is None or (isinstance(g, float) and np.isnan(g)):
            out.append([])
        else:
            out.append([str(x) for x in list(g)])
    return out


def score_matrix(m: Matrix, b: Matrix) -> np.ndarray:
    """Cosine scores (n_movies, n_books) from row-normalised matrices."""
    s = m @ b.T
    if hasattr(s, "toarray"):
        s = s.toarray()
    return np.asarray(s, dtype=np.float64)


# --------------------------------------------------------------------------- methods


def tfidf_method(corpus: Sequence[str]) -> Method:
    """TF-IDF fitted once on ``corpus`` (all catalog descriptions)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(stop_words="english", sublinear_tf=True, strip_accents="unicode", dtype=np.float32)
    vec.fit([c for c in corpus if c] or ["empty"])

    def embed(movies: pd.DataFrame, books: pd.DataFrame):
        # TfidfVectorizer rows are already L2-normalised (norm='l2').
        return vec.transform(descriptions(movies)), vec.transform(descriptions(books))

    return Method("tfidf", "TF-IDF of descriptions (scikit-learn), cosine", embed)


def genre_method(model) -> Method:
    def embed(movies: pd.DataFrame, books: pd.DataFrame):
        out = []
        for frame in (movies, books):
            vecs, has = model.genre_vectors(genre_lists(frame))
            vecs = np.asarray(vecs, dtype=np.float32).copy()
            vecs[~np.asarray(has, dtype=bool)] = 0.0
            out.append(l2_normalize(vecs))
        return tuple(out)

    return Method("genre_only", "FastText genre vectors only, cosine", embed)


class FeatureCache:
    """Frozen text-encoder features shared between methods (computed once per encoder + texts).

    The text-only, untrained-fusion and trained-fusion rows all run the same frozen encoder
    over the same descriptions; only the fusion head differs. Features are cached under the
    encoder's folder, pooling, length limit and precision and a digest of the texts; a fine-tuned
    encoder (``model.text.finetuned``) is never cached.
    """

    def __init__(self):
        self._store: dict[tuple, np.ndarray] = {}
        self.hits = 0

    @staticmethod
    def _encoder_key(model):
        enc = getattr(model, "text", None)
        if enc is None or getattr(enc, "finetuned", True) or not hasattr(enc, "folder"):
            return None
        return (str(enc.folder), getattr(enc, "pooling", None), getattr(enc, "max_length", None),
                getattr(enc, "precision", None))

    def text_features(self, model, texts: list[str], batch_size: int = 64) -> np.ndarray:
        enc_key = self._encoder_key(model)
        if enc_key is None:
            return np.asarray(model.encode_text(texts), dtype=np.float32)
        digest = hashlib.sha256("\x00".join(texts).encode("utf-8")).hexdigest()
        key = (*enc_key, len(texts), digest)
        if key in self._store:
            self.hits += 1
        else:
            self._store[key] = np.asarray(model.encode_text(texts, batch_size=batch_size), dtype=np.float32)
        return self._store[key]


def text_method(model, name: str = "text_only", label: str = "frozen text encoder (no fusion), cosine",
                cache: FeatureCache | None = None, batch_size: int = 64) -> Method:
    cache = cache or FeatureCache()

    def embed(movies: pd.DataFrame, books: pd.DataFrame):
        return tuple(l2_normalize(cache.text_features(model, descriptions(f), batch_size)) for f in (movies, books))

    return Method(name, label, embed)


def fusion_method(model, name: str, label: str, batch_size: int = 64, cache: FeatureCache | None = None) -> Method:
    """``model.embed`` with titles=None; via cached features + ``embed_features`` when the model has it."""

    def embed(movies: pd.DataFrame, books: pd.DataFrame):
        out = []
        for frame in (movies, books):
            if cache is not None and hasattr(model, "embed_features") and not getattr(model, "include_title", False):
                text = cache.text_features(model, descriptions(frame), batch_size)
                gvec, _ = model.genre_vectors(genre_lists(frame))
                emb = model.embed_features(text, gvec)
            else:
                # titles=None: the evaluation embeds descriptions + genres only.
                emb = model.embed([None] * len(frame), descriptions(frame), genre_lists(frame), batch_size=batch_size)
            out.append(l2_normalize(emb))
        return tuple(out)

    return Method(name, label, embed)


def standard_methods(
    corpus: Sequence[str] | Method,
    base_model,
    trained_model,
    trained_label: str = "LightFusionRec: fusion trained on the training links",
    distilbert_base=None,
    distilbert_trained=None,
    batch_size: int = 64,
    cache: FeatureCache | None = None,
) -> list[Method]:
    """The ablation's rows, in report order. ``None`` models leave their rows out.

    ``corpus``: the descriptions TF-IDF is fitted on, or an already fitted TF-IDF ``Method``.
    ``cache``: share one ``FeatureCache`` across calls (e.g. folds) to encode each text once.
    """
    cache = cache if cache is not None else FeatureCache()
    methods = [corpus if isinstance(corpus, Method) else tfidf_method(corpus)]
    if base_model is not None:
        methods += [
            genre_method(base_model),
            text_method(base_model, cache=cache, batch_size=batch_size),
            fusion_method(base_model, "fusion_untrained", "text + genre, random (untrained) fusion head",
                          batch_size, cache),
        ]
    if trained_model is not None:
        methods.append(fusion_method(trained_model, "lightfusionrec", trained_label, batch_size, cache))
    if distilbert_base is not None:
        methods.append(text_method(distilbert_base, "distilbert_text_only",
                                   "frozen DistilBERT [CLS] (no fusion), cosine", cache, batch_size))
    if distilbert_trained is not None:
        methods.append(fusion_method(distilbert_trained, "lightfusionrec_distilbert",
                                     "LightFusionRec with DistilBERT [CLS], trained on the training links",
                                     batch_size, cache))
    return methods
