"""The methods of the ablation: each turns catalog rows into L2-normalised vectors.

A ``Method`` maps (movies frame, books frame) to two row-aligned matrices ``(M, B)`` whose rows
are L2-normalised (dense numpy or scipy sparse), so ``M @ B.T`` is the cosine score matrix every
method is ranked by, with the same metric code (``lfr.eval.metrics``). Frames carry the canonical
catalog columns; every method reads ``description`` and/or ``genres`` only -- never ``title``
(the ground-truth links were found by title, so embedding titles would make them trivial). A
description can still name the linked book; the strict protocol (``lfr.eval.masking``) removes
that before any method here sees the frames.

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
* ``lexical`` -- the product's lexical features (``lfr.lexical``: the Spark job's tokenizer,
  vocabulary rules and weighting function, ``lexical:`` settings), fitted on all descriptions, cosine.
* ``hybrid`` -- ``alpha * z(dense) + (1 - alpha) * z(lexical)`` with per-film z-scores over all books
  (the product's ``score.method: hybrid``); dense = the trained model when there is one, else
  text-only; ``alpha`` tuned per fold on the TRAINING folds' films and links only (grid, best MRR).
* ``hybrid_rrf`` -- reciprocal rank fusion ``1/(k + rank_dense) + 1/(k + rank_lexical)``, nothing tuned.
* ``hybrid_text_only`` / ``hybrid_rrf_text_only`` -- the same two fusions on the frozen text-only dense side,
  added when there is a trained model (so the table shows what training adds to the hybrid).
* ``adapters_only`` -- each catalog through its own domain's label-free LoRA adapter (X-Cross without
  integration, ``lfr.model.xcross``; the adapters never see a link, so one model serves every fold), cosine;
  with ``eval.adapters``, plus ``hybrid_adapters_only`` and its hub-aware rows (``adapters_only_csls``,
  ``hybrid_adapters_only_csls``, ``..._bookz`` and, with ``score.fused_hub_weight``, ``..._fused``).
* ``xcross`` -- with ``eval.xcross``: X-Cross integrated, per fold (those adapters, the integrators trained on
  the fold's training links; ``lfr.train.xcross``), cosine; plus the same hybrid and hub-aware rows
  (``hybrid_xcross``, ``xcross_csls``, ...), the hybrids' alpha tuned with the adapters' scores.
* ``text_only_csls`` / ``lightfusionrec_csls`` / ``hybrid_csls`` -- hub-aware (``score.hubness: csls``):
  ``cos(film, book) - hub_weight * r(book)``, ``r(book)`` the mean of the book's ``hub_k`` highest cosines
  over ALL films of the catalog (``csls_method``); ``hybrid_csls`` fuses the trained model's hub-aware
  scores with lexical, alpha tuned like ``hybrid`` on the frozen encoder's hub-aware scores.
* ``hybrid_csls_bookz`` -- what the product publishes by default (with ``hubs``; ``score.lexical_hubness: bookz``):
  ``hybrid_csls`` with its lexical half standardised twice, per film over the books (its z-score) and then per
  book over ALL films of the catalog, ``alpha z(dense csls) + (1 - alpha) zb(z(lexical))`` (``lexical_book_z``):
  statistics that a pass of the lexical product alone gives, where the fused correction (``_fused``) needs one
  more pass of the whole hybrid kernel. Paired against ``hybrid_csls``, and against the ``_fused`` row when
  ``score.fused_hub_weight`` adds one.

Most methods are one cosine (``embed``); the fusions are not, so a ``Method`` may instead give its
score matrix directly (``score``); ``method_scores`` runs either kind.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from lfr.eval.metrics import ranking_metrics, resolve_links

Matrix = "np.ndarray | scipy.sparse.spmatrix"
EmbedFn = Callable[[pd.DataFrame, pd.DataFrame], tuple]
ScoreFn = Callable[[pd.DataFrame, pd.DataFrame], np.ndarray]
ALPHA_GRID = tuple(round(0.05 * i, 2) for i in range(21))   # 0, 0.05, ..., 1
RRF_K = 60
# what makes two frozen encoders' features equal (besides the folder): chunking changes every long text's vector
ENCODER_KEY_ATTRS = ("pooling", "max_length", "precision", "chunking", "chunk_overlap", "chunk_pooling")
VAR_EPS = 1e-12   # as lfr.score.hybrid: a film whose scores do not vary gets z = 0 from that component


@dataclass
class Method:
    name: str
    description: str
    embed: EmbedFn | None = None        # (movies, books) -> row-normalised (M, B): scores are M @ B.T
    score: ScoreFn | None = None        # or (movies, books) -> the score matrix itself (fusions)
    info: dict = field(default_factory=dict)   # choices made while fitting (e.g. the tuned alpha), for the report


def method_scores(method: Method, movies: pd.DataFrame, books: pd.DataFrame) -> np.ndarray:
    """The (n_movies, n_books) float64 score matrix of either kind of method."""
    if method.score is not None:
        return np.asarray(method.score(movies, books), dtype=np.float64)
    return score_matrix(*method.embed(movies, books))


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


def lexical_method(corpus: Sequence[str], settings) -> Method:
    """The product's lexical features (``lfr.lexical``), fitted on ``corpus`` (all catalog descriptions)
    exactly as ``jobs/embed_lexical.py`` fits them in Spark (tested equal); cosine of the rows.
    ``settings``: ``lfr.settings.LexicalSettings`` (``lexical:`` in conf/lfr.yaml)."""
    from lfr.lexical import LexicalModel

    model = LexicalModel.fit_texts(list(corpus), settings)
    memo: dict[str, object] = {}

    def features(frame: pd.DataFrame):
        texts = descriptions(frame)
        key = hashlib.sha256("\x00".join(texts).encode("utf-8")).hexdigest()
        if key not in memo:          # the book side is the same in every fold and fusion
            memo[key] = model.transform(texts)
        return memo[key]

    def embed(movies: pd.DataFrame, books: pd.DataFrame):
        return features(movies), features(books)

    return Method("lexical", f"{settings.weighting} lexical features of the product (lfr.lexical), cosine", embed,
                  info={"weighting": settings.weighting, "vocab_size": len(model.vocabulary),
                        "lexical_version": model.version})


def zscore_rows(scores: np.ndarray) -> np.ndarray:
    """Per-film z-scores over all books (population sd, as ``lfr.score.hybrid``); a constant row -> 0."""
    s = np.asarray(scores, dtype=np.float64)
    mu = s.mean(axis=1, keepdims=True)
    var = ((s - mu) ** 2).mean(axis=1, keepdims=True)
    return np.divide(s - mu, np.sqrt(var), out=np.zeros_like(s), where=var > VAR_EPS)


def convex_fusion(dense: np.ndarray, lexical: np.ndarray, alpha: float, z_lexical: bool = True) -> np.ndarray:
    """``alpha * z(dense) + (1 - alpha) * z(lexical)``: alpha is the weight of the dense side (``z_lexical``
    False: ``lexical`` is already standardised, e.g. ``lexical_book_z``, and enters as it is)."""
    return float(alpha) * zscore_rows(dense) + (1.0 - float(alpha)) * (zscore_rows(lexical) if z_lexical else lexical)


def rrf_fusion(dense: np.ndarray, lexical: np.ndarray, k: int = RRF_K) -> np.ndarray:
    """Reciprocal rank fusion ``1/(k + r_dense) + 1/(k + r_lexical)``, ranks from 1 (ties share the best)."""
    from scipy.stats import rankdata

    def ranks(s):
        return rankdata(-np.asarray(s, dtype=np.float64), method="min", axis=1)

    return 1.0 / (k + ranks(dense)) + 1.0 / (k + ranks(lexical))


def tune_alpha(dense: np.ndarray, lexical: np.ndarray, relevant: Sequence[np.ndarray],
               grid: Sequence[float] = ALPHA_GRID, z_lexical: bool = True) -> tuple[float, dict[float, float]]:
    """The alpha of ``grid`` with the best MRR of ``convex_fusion`` on the given (training) films.

    Ties go to the alpha closest to 0.5 (the least extreme mix). Returns ``(alpha, {alpha: mrr})``."""
    zd, zl = zscore_rows(dense), (zscore_rows(lexical) if z_lexical else np.asarray(lexical, dtype=np.float64))
    curve = {float(a): float(ranking_metrics(a * zd + (1 - a) * zl, relevant, ks=[1], ndcg_k=1)["mrr"])
             for a in grid}
    best = max(curve.values())
    alpha = min((a for a, v in curve.items() if v >= best - 1e-12), key=lambda a: (abs(a - 0.5), a))
    return alpha, curve


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
    encoder (``model.text.finetuned``) is never cached. The key holds the chunking settings too.
    """

    def __init__(self):
        self._store: dict[tuple, np.ndarray] = {}
        self.hits = 0

    @staticmethod
    def _encoder_key(model):
        enc = getattr(model, "text", None)
        if enc is None or getattr(enc, "finetuned", True) or not hasattr(enc, "folder"):
            return None
        return (str(enc.folder), *(getattr(enc, a, None) for a in ENCODER_KEY_ATTRS))

    def text_features(self, model, texts: list[str], batch_size: int = 64) -> np.ndarray:
        enc_key = self._encoder_key(model)
        if enc_key is None:
            return np.asarray(model.encode_text(texts), dtype=np.float32)
        digest = hashlib.sha256("\x00".join(texts).encode("utf-8")).hexdigest()
        key = (*enc_key, len(texts), digest)
        if key in self._store:
            self.hits += 1
        else:
            self._store[key] = np.asarray(_encode_shared(model, texts, batch_size), dtype=np.float32)
        return self._store[key]


def _encode_shared(model, texts: list[str], batch_size: int) -> np.ndarray:
    """A LightFusionModel's frozen features through the trainer's process memo (``lfr.train.recipes``):
    the evaluation and each fold's training then encode the same catalog texts once, not twice."""
    from lfr.model import LightFusionModel

    if isinstance(model, LightFusionModel):
        from lfr.train.recipes import encode_memo

        return encode_memo(model, texts)
    return model.encode_text(texts, batch_size=batch_size)


def text_method(model, name: str = "text_only", label: str = "frozen text encoder (no fusion), cosine",
                cache: FeatureCache | None = None, *, batch_size: int) -> Method:
    cache = cache or FeatureCache()

    def embed(movies: pd.DataFrame, books: pd.DataFrame):
        return tuple(l2_normalize(cache.text_features(model, descriptions(f), batch_size)) for f in (movies, books))

    return Method(name, label, embed)


def adapters_method(model, batch_size: int) -> Method:
    """``adapters_only``: films through ``model``'s film adapter, books through its book adapter (an
    ``XCrossModel`` with identity integrators, one stream per item). Each set of texts is embedded once."""
    return domain_method(model, batch_size, "adapters_only", "label-free domain adapters (X-Cross without "
                         "integration): each catalog through its own domain's adapter, cosine", integrate=False)


def xcross_method(model, batch_size: int) -> Method:
    """``xcross``: a fold's integrated X-Cross model (the label-free adapters + the layer-wise integrators
    trained on the fold's training links): every item through both domain streams, its own one pooled."""
    return domain_method(model, batch_size, "xcross", "X-Cross: label-free domain adapters + layer-wise "
                         "integrators trained on the training links, cosine", integrate="auto")


def domain_method(model, batch_size: int, name: str, label: str, integrate: bool | str) -> Method:
    """A model with per-domain parts as a ``Method``: films embedded as ``film``, books as ``book``."""
    memo: dict[tuple, np.ndarray] = {}

    def features(frame: pd.DataFrame, domain: str) -> np.ndarray:
        texts = descriptions(frame)
        key = (domain, len(texts), hashlib.sha256("\x00".join(texts).encode("utf-8")).hexdigest())
        if key not in memo:
            memo[key] = model.embed(None, texts, None, batch_size=batch_size, domain=domain, integrate=integrate)
        return memo[key]

    return Method(name, label, lambda movies, books: (features(movies, "film"), features(books, "book")))


def fusion_method(model, name: str, label: str, batch_size: int, cache: FeatureCache | None = None) -> Method:
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


def hybrid_methods(dense: Method, lexical: Method, movies: pd.DataFrame, books: pd.DataFrame,
                   train_links: pd.DataFrame, grid: Sequence[float] = ALPHA_GRID, rrf_k: int = RRF_K,
                   suffix: str = "", tune_dense: Method | None = None, z_lexical: bool = True) -> list[Method]:
    """``hybrid`` (convex, alpha tuned on ``train_links``' films only) and ``hybrid_rrf`` (+ ``suffix``).

    ``movies``/``books``: the catalogs; the training films are the movies of ``train_links``, scored
    against all books. The films a fold evaluates are never among them, so alpha is never chosen on
    the films it is scored on. ``tune_dense``: the dense scores alpha is tuned with (default
    ``dense``; ``z_lexical`` False: ``lexical`` is standardised already, ``convex_fusion``). A model trained on
    ``train_links`` has seen those films' links, so its scores on them
    are optimistic and pull alpha to 1 (all dense); tune with the frozen encoder it started from."""
    movie_ids, book_ids = movies["id"].astype(str).tolist(), books["id"].astype(str).tolist()
    train_ids = sorted(set(train_links["movie_id"].astype(str)) & set(movie_ids))
    pos = {m: i for i, m in enumerate(movie_ids)}
    train_movies = movies.iloc[[pos[m] for m in train_ids]].reset_index(drop=True)
    relevant, _ = resolve_links(zip(train_links["movie_id"].astype(str), train_links["book_id"].astype(str)),
                                train_ids, book_ids)
    if train_ids:
        alpha, curve = tune_alpha(method_scores(tune_dense or dense, train_movies, books),
                                  method_scores(lexical, train_movies, books), relevant, grid, z_lexical)
    else:
        alpha, curve = 0.5, {}

    def convex(m: pd.DataFrame, b: pd.DataFrame) -> np.ndarray:
        return convex_fusion(method_scores(dense, m, b), method_scores(lexical, m, b), alpha, z_lexical)

    def rrf(m: pd.DataFrame, b: pd.DataFrame) -> np.ndarray:
        return rrf_fusion(method_scores(dense, m, b), method_scores(lexical, m, b), rrf_k)

    info = {"alpha": alpha, "dense": dense.name, "tuned_with": (tune_dense or dense).name,
            "tuned_on_films": len(train_ids), "tuning_mrr": curve.get(alpha), "mrr_by_alpha": curve}
    return [
        Method("hybrid" + suffix, f"alpha z({dense.name}) + (1 - alpha) z(lexical), per-film z-scores; alpha tuned "
               "on the training folds' links", score=convex, info=info),
        Method("hybrid_rrf" + suffix, f"reciprocal rank fusion of {dense.name} and lexical (k={rrf_k})", score=rrf,
               info={"dense": dense.name, "rrf_k": rrf_k}),
    ]


def book_hubness(scores: np.ndarray, hub_k: int) -> np.ndarray:
    """``r(book)``: per column, the mean of its ``hub_k`` highest scores (capped at the number of rows).
    ``scores``: every film of the catalog x the books, so ``r`` is how close a book is to its nearest films."""
    s = np.asarray(scores, dtype=np.float64)
    k = max(1, min(int(hub_k), s.shape[0]))
    return np.partition(s, s.shape[0] - k, axis=0)[s.shape[0] - k:].mean(axis=0)


def csls_method(dense: Method, all_movies: pd.DataFrame, hub_k: int, hub_weight: float,
                suffix: str = "_csls") -> Method:
    """``<dense>_csls``: ``cos(film, book) - hub_weight * r(book)`` (``lfr/score``'s ``score.hubness: csls``).

    Why: a book near the centre of the embedding space (a *hub*) is close to every film and fills the
    top lists of films it has nothing to do with; ``r(book)`` measures that from ``dense``'s own cosines
    with ALL films of ``all_movies`` (the catalog, not only the films being scored, as the Spark job
    measures it over every film of its run). No link is read: legal inside a fold. hub_weight 0.5 ranks
    each film's books as CSLS (``2 cos - r(film) - r(book)``). ``dense`` may be any method (a fusion: the
    hybrid's ``score.fused_hub_weight``, r(book) then in its score's units)."""
    memo: dict[str, np.ndarray] = {}

    def score(movies: pd.DataFrame, books: pd.DataFrame) -> np.ndarray:
        key = hashlib.sha256("\x00".join(books["id"].astype(str)).encode("utf-8")).hexdigest()
        if key not in memo:          # r(book) once per catalog: every fold's films share it
            memo[key] = book_hubness(method_scores(dense, all_movies, books), hub_k)
        return method_scores(dense, movies, books) - float(hub_weight) * memo[key][None, :]

    return Method(f"{dense.name}{suffix}", f"{dense.name} - {hub_weight:g} r(book), r = mean score of the book's "
                  f"{hub_k} nearest films of the catalog (CSLS hub correction)", score=score,
                  info={"dense": dense.name, "hub_k": int(hub_k), "hub_weight": float(hub_weight)})


def lexical_book_z(lexical: Method, all_movies: pd.DataFrame) -> Method:
    """``<lexical>_bookz``: each film's lexical z-scores over the books, standardised per book over ALL films of
    the catalog (``all_movies``; a book whose column does not vary gets 0), the ``hybrid_csls_bookz`` row's
    lexical half. Why: a lexical hub is a book whose z-scores are high for many films; dividing by its own spread
    over the films evens that out, from statistics of the lexical product alone (no pass of the fused score)."""
    memo: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def score(movies: pd.DataFrame, books: pd.DataFrame) -> np.ndarray:
        key = hashlib.sha256("\x00".join(books["id"].astype(str)).encode("utf-8")).hexdigest()
        if key not in memo:          # once per catalog: every fold's films share the books' statistics
            z = zscore_rows(method_scores(lexical, all_movies, books))
            mu = z.mean(axis=0)
            memo[key] = mu, ((z - mu) ** 2).mean(axis=0)
        mu, var = memo[key]
        z = zscore_rows(method_scores(lexical, movies, books))
        return np.divide(z - mu, np.sqrt(var), out=np.zeros_like(z), where=var > VAR_EPS)

    return Method(f"{lexical.name}_bookz", f"z({lexical.name}) per film, standardised per book over the catalog's "
                  "films", score=score, info={"lexical": lexical.name})


def standard_methods(
    corpus: Sequence[str] | Method,
    base_model,
    trained_model,
    trained_label: str = "LightFusionRec: fusion trained on the training links",
    distilbert_base=None,
    distilbert_trained=None,
    *,
    batch_size: int,
    cache: FeatureCache | None = None,
    lexical: Method | None = None,
    train_links: pd.DataFrame | None = None,
    catalog: tuple[pd.DataFrame, pd.DataFrame] | None = None,
    alpha_grid: Sequence[float] = ALPHA_GRID,
    hubs: tuple[int, float, float] | None = None,
    adapters: Method | None = None,
    xcross: tuple[Method, Method] | None = None,
) -> list[Method]:
    """The ablation's rows, in report order. ``None`` models leave their rows out.

    ``corpus``: the descriptions TF-IDF is fitted on, or an already fitted TF-IDF ``Method``.
    ``cache``: share one ``FeatureCache`` across calls (e.g. folds) to encode each text once.
    ``lexical`` (``lexical_method``) adds its row; with ``train_links`` (this fold's training links)
    and ``catalog`` (all movies, all books) also ``hybrid`` and ``hybrid_rrf`` (``hybrid_methods``);
    ``hubs`` = ``(hub_k, hub_weight, fused_hub_weight)`` with ``catalog`` adds the hub-aware rows (``_csls_rows``).
    ``adapters`` (``adapters_method``) adds its row, its hybrid and their hub-aware rows (``_domain_rows``);
    ``xcross`` = ``(xcross_method, adapters_method)`` the same for the fold's integrated X-Cross, its hybrids'
    alpha tuned with the adapters it started from (the fold's model has seen the training films' links).
    """
    cache = cache if cache is not None else FeatureCache()
    methods = [corpus if isinstance(corpus, Method) else tfidf_method(corpus)]
    if lexical is not None:
        methods.append(lexical)
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
                                   "frozen DistilBERT [CLS] (no fusion), cosine", cache, batch_size=batch_size))
    if distilbert_trained is not None:
        methods.append(fusion_method(distilbert_trained, "lightfusionrec_distilbert",
                                     "LightFusionRec with DistilBERT [CLS], trained on the training links",
                                     batch_size, cache))
    if lexical is not None and train_links is not None and catalog is not None:
        methods += _hybrid_rows(methods, lexical, train_links, catalog, alpha_grid)
    if hubs is not None and catalog is not None:
        methods += _csls_rows(methods, lexical, train_links, catalog, alpha_grid, hubs)
    if adapters is not None:
        methods += _domain_rows(adapters, lexical, train_links, catalog, alpha_grid, hubs)
    if xcross is not None:
        methods += _domain_rows(xcross[0], lexical, train_links, catalog, alpha_grid, hubs, tune=xcross[1])
    return methods


def _domain_rows(side: Method, lexical: Method | None, train_links: pd.DataFrame | None,
                 catalog: tuple[pd.DataFrame, pd.DataFrame] | None, alpha_grid: Sequence[float],
                 hubs: tuple[int, float, float] | None, tune: Method | None = None) -> list[Method]:
    """``<side>``, ``hybrid_<side>`` and, with ``hubs``, the same as ``_csls_rows`` builds for the product's
    dense side (``<side>_csls``, ``hybrid_<side>_csls``, ``..._fused``, ``..._bookz``): what ``score_all`` would
    publish with ``side``'s embeddings. The hybrids' alpha is tuned on ``tune``'s scores (its hub-aware ones for the
    hub-aware hybrid), else on ``side``'s own."""
    out = [side]
    fuse = lexical is not None and train_links is not None and catalog is not None
    if fuse:
        out.append(hybrid_methods(side, lexical, catalog[0], catalog[1], train_links, alpha_grid,
                                  suffix=f"_{side.name}", tune_dense=tune)[0])
    if hubs is not None and catalog is not None:
        hub_k, hub_weight, fused_weight = hubs
        dense = csls_method(side, catalog[0], hub_k, hub_weight)
        out.append(dense)
        if fuse:
            tune_csls = csls_method(tune, catalog[0], hub_k, hub_weight) if tune is not None else None
            out.append(hybrid_methods(dense, lexical, catalog[0], catalog[1], train_links, alpha_grid,
                                      suffix=f"_{side.name}_csls", tune_dense=tune_csls)[0])
            if fused_weight > 0:
                out.append(csls_method(out[-1], catalog[0], hub_k, fused_weight, suffix="_fused"))
            out.append(hybrid_methods(dense, lexical_book_z(lexical, catalog[0]), catalog[0], catalog[1], train_links,
                                      alpha_grid, suffix=f"_{side.name}_csls_bookz", tune_dense=tune_csls,
                                      z_lexical=False)[0])
    return out


def _hybrid_rows(methods: list[Method], lexical: Method, train_links: pd.DataFrame,
                 catalog: tuple[pd.DataFrame, pd.DataFrame], alpha_grid: Sequence[float]) -> list[Method]:
    """The fusions of lexical with each dense side: ``hybrid_text_only``/``hybrid_rrf_text_only`` (frozen
    encoder) and, with a trained model, ``hybrid``/``hybrid_rrf`` on it (what ``score.method: hybrid``
    fuses: the product's trained embeddings). Without a trained model ``hybrid`` is the text-only one."""
    by_name = {m.name: m for m in methods}
    text, trained = by_name.get("text_only"), by_name.get("lightfusionrec")
    out: list[Method] = []
    if text is not None and trained is not None:
        out += hybrid_methods(text, lexical, catalog[0], catalog[1], train_links, alpha_grid, suffix="_text_only")
    dense = trained or text
    if dense is not None:
        out += hybrid_methods(dense, lexical, catalog[0], catalog[1], train_links, alpha_grid, tune_dense=text)
    return out


def _csls_rows(methods: list[Method], lexical: Method | None, train_links: pd.DataFrame | None,
               catalog: tuple[pd.DataFrame, pd.DataFrame], alpha_grid: Sequence[float],
               hubs: tuple[int, float, float]) -> list[Method]:
    """``text_only_csls``, ``lightfusionrec_csls`` and ``hybrid_csls``: the convex hybrid on the trained model's
    (else text-only's) hub-aware scores, alpha tuned with the frozen encoder's hub-aware scores (as ``hybrid``
    is tuned with the frozen ones): what the product publishes with ``score.hubness: csls``. With a
    ``fused_hub_weight`` above 0 also ``hybrid_csls_fused``: ``hybrid_csls`` corrected once more on its fused
    score (``score.fused_hub_weight``)."""
    hub_k, hub_weight, fused_weight = hubs
    by_name = {m.name: m for m in methods}
    csls = {n: csls_method(by_name[n], catalog[0], hub_k, hub_weight)
            for n in ("text_only", "lightfusionrec") if n in by_name}
    out = list(csls.values())
    dense = csls.get("lightfusionrec") or csls.get("text_only")
    if dense is not None and lexical is not None and train_links is not None:
        out.append(hybrid_methods(dense, lexical, catalog[0], catalog[1], train_links, alpha_grid, suffix="_csls",
                                  tune_dense=csls.get("text_only"))[0])
        if fused_weight > 0:
            out.append(csls_method(out[-1], catalog[0], hub_k, fused_weight, suffix="_fused"))
        out.append(hybrid_methods(dense, lexical_book_z(lexical, catalog[0]), catalog[0], catalog[1], train_links,
                                  alpha_grid, suffix="_csls_bookz", tune_dense=csls.get("text_only"),
                                  z_lexical=False)[0])
    return out
