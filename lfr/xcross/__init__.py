"""X-Cross (arXiv 2504.20859) as a second model on the LightFusionRec pipeline (docs/XCROSS.md).

Public API::

    model = build_xcross(settings)                       # base encoder + no-op adapters + identity integrator
    result = train(movies, books, links, cfg)            # adapters (label-free), then the integrator (links)
    version = result.model.save(path)                    # safetensors + manifest.json ("kind": "xcross")
    model = load(path)                                   # verifies every sha256; no pickle
    vecs = model.embed(titles, descriptions, genres, batch_size=64, domain="film")   # float32 unit rows
    view = model.for_domain("book"); view.embed(titles, descriptions, genres, 64)    # pipeline interface
"""
from lfr.xcross.integrator import Integrator, LayerIntegrator
from lfr.xcross.model import DOMAINS, KIND, MODEL_KEYS, DomainView, XCrossModel, build_xcross, domain_name, load
from lfr.xcross.train import TRAIN_KEYS, XCrossTrainResult, train, xcross_settings

__all__ = ["DOMAINS", "KIND", "MODEL_KEYS", "TRAIN_KEYS", "DomainView", "Integrator", "LayerIntegrator", "XCrossModel",
           "XCrossTrainResult", "build_xcross", "domain_name", "load", "train", "xcross_settings"]
