"""The two model kinds and their artifacts (see docs/CONTRACTS.md "Model", docs/XCROSS.md).

LightFusionRec (arXiv 2410.15656): text encoder + FastText genres + fusion head::

    model = build_model(cfg["model"], genre_corpus)   # trained FastText, untrained head
    version = model.save(path, extra_manifest=None)    # self-contained artifact dir
    vectors = model.embed(titles, descriptions, genres, batch_size=64)  # float32, unit rows

X-Cross (arXiv 2504.20859): base encoder + a LoRA adapter per domain + layer-wise integrators::

    model = build_xcross(settings)                     # trained by lfr.train.xcross
    vecs = model.embed(titles, descriptions, None, 64, domain="film")   # float32 unit rows

Either kind::

    model = load(path)                                 # dispatches on the manifest's kind; verifies sha256s; no pickle
"""
from lfr.model.artifact import ArtifactError, compute_model_version, verify_artifact
from lfr.model.fusion import HEADS, FusionHead, ResidualHead, make_head
from lfr.model.genre import GenreModel, normalise_genres, normalise_label
from lfr.model.integrator import Integrator, LayerIntegrator
from lfr.model.lightfusion import LightFusionModel, build_model
from lfr.model.loader import load
from lfr.model.text import TextEncoder, make_texts, pool_windows, resolve_encoder, resolve_precision
from lfr.model.xcross import DOMAINS, DomainView, XCrossModel, build_xcross, domain_name

__all__ = [
    "ArtifactError", "DOMAINS", "DomainView", "FusionHead", "GenreModel", "HEADS", "Integrator", "LayerIntegrator",
    "ResidualHead", "make_head", "pool_windows", "resolve_precision", "LightFusionModel",
    "TextEncoder", "XCrossModel", "build_model", "build_xcross", "compute_model_version", "domain_name", "load",
    "make_texts", "normalise_genres", "normalise_label", "resolve_encoder", "verify_artifact",
]
