"""LightFusionRec model (arXiv 2410.15656): text encoder + FastText genres + fusion head.

Public API (see docs/CONTRACTS.md "Model")::

    model = build_model(cfg["model"], genre_corpus)   # trained FastText, untrained head
    version = model.save(path, extra_manifest=None)    # self-contained artifact dir
    model = load(path)                                 # verifies sha256s; no pickle
    vectors = model.embed(titles, descriptions, genres, batch_size=64)  # float32, unit rows
"""
from lfr.model.artifact import ArtifactError, compute_model_version, verify_artifact
from lfr.model.fusion import HEADS, FusionHead, ResidualHead, make_head
from lfr.model.genre import GenreModel, normalise_genres, normalise_label
from lfr.model.lightfusion import MODEL_DEFAULTS, LightFusionModel, build_model, load, make_texts, model_settings
from lfr.model.text import TextEncoder, pool_windows, resolve_encoder, resolve_precision

__all__ = [
    "ArtifactError", "FusionHead", "GenreModel", "HEADS", "ResidualHead", "make_head", "pool_windows",
    "resolve_precision", "LightFusionModel", "MODEL_DEFAULTS", "TextEncoder",
    "build_model", "compute_model_version", "load", "make_texts", "model_settings", "normalise_genres",
    "normalise_label", "resolve_encoder", "verify_artifact",
]
