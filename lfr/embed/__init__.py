"""Distributed, incremental embedding of the catalogs (docs/CONTRACTS.md "Embedding tables").

    settings = load_settings(overrides=["embed.batch_size=32"])      # lfr.settings
    stats = embed_catalog(spark, settings, "books")

Driver side: ``ship_artifact`` sends the model artifact to the executors once
(``lfr.embed.ship``); ``embed_catalog`` plans and writes the changes (``lfr.embed.pipeline``,
through ``lfr.spark.sync.IncrementalTable``). Worker side: the pandas UDF ``make_embed_udf`` /
``embed_column`` and its per-process model cache (``lfr.embed.udf``).
"""
from lfr.lazy import lazy_exports

#: Public name -> its module, imported on first use (PEP 562): an executor that unpickles the UDF
#: imports ``lfr.embed.udf`` through this package, and must not need the driver's modules (Delta,
#: the config stack) or torch on the ``model.runtime: onnx`` path.
_EXPORTS = {
    "EMBEDDING_TABLES": "pipeline", "EmbedStats": "pipeline", "embed_catalog": "pipeline",
    "EMBEDDING_TYPE": "schema", "EMBEDDINGS_SCHEMA": "schema",
    "ArtifactRef": "ship", "ship_artifact": "ship",
    "embed_column": "udf", "load_cached": "udf", "make_embed_udf": "udf", "ArtifactMissing": "lfr.model.artifact",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
