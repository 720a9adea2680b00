"""Distributed, incremental embedding of the catalogs (docs/CONTRACTS.md "Embedding tables").

    settings = load_settings(overrides=["embed.batch_size=32"])      # lfr.settings
    stats = embed_catalog(spark, settings, "books")

Driver side: ``ship_artifact`` sends the model artifact to the executors once
(``lfr.embed.ship``); ``embed_catalog`` plans and writes the changes (``lfr.embed.pipeline``,
through ``lfr.spark.sync.IncrementalTable``). Worker side: the pandas UDF ``make_embed_udf`` /
``embed_column`` and its per-process model cache (``lfr.embed.udf``).
"""
from lfr.embed.pipeline import EMBEDDING_TABLES, EmbedStats, embed_catalog
from lfr.embed.schema import EMBEDDING_TYPE, EMBEDDINGS_SCHEMA
from lfr.embed.ship import ArtifactRef, ship_artifact
from lfr.embed.udf import embed_column, load_cached, make_embed_udf
from lfr.model.artifact import ArtifactMissing

__all__ = [
    "ArtifactMissing", "ArtifactRef", "EMBEDDINGS_SCHEMA", "EMBEDDING_TABLES", "EMBEDDING_TYPE", "EmbedStats",
    "embed_catalog", "embed_column", "load_cached", "make_embed_udf", "ship_artifact",
]
