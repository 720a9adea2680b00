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
from lfr.lazy import lazy_exports

#: Public name -> the module that defines it, imported on first use (PEP 562): the torch-free
#: ``model.runtime: onnx`` executors import ``lfr.model.onnxrt`` through this package without
#: pulling in torch, transformers or fasttext.
_EXPORTS = {
    "ArtifactError": "artifact", "compute_model_version": "artifact", "verify_artifact": "artifact",
    "HEADS": "fusion", "FusionHead": "fusion", "ResidualHead": "fusion", "make_head": "fusion",
    "GenreModel": "genre", "normalise_genres": "genre", "normalise_label": "genre",
    "Integrator": "integrator", "LayerIntegrator": "integrator",
    "LightFusionModel": "lightfusion", "build_model": "lightfusion",
    "load": "loader",
    "TextEncoder": "text", "resolve_encoder": "text", "resolve_precision": "text",
    "make_texts": "windows", "pool_windows": "windows",
    "DOMAINS": "xcross", "DomainView": "xcross", "XCrossModel": "xcross", "build_xcross": "xcross",
    "domain_name": "xcross",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
