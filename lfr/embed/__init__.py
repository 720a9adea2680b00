"""Distributed, incremental embedding of the catalogs (docs/CONTRACTS.md "Embedding tables").

    stats = embed_catalog(spark, cfg, "books", tables=settings.tables.as_dict(), model_dir=settings.paths.model_dir,
                          batch_size=64, partitions=None, ship_model="archive", delete_missing=True)

Driver side: ``ship_artifact`` sends the model artifact to the executors once
(``lfr.embed.ship``); ``embed_catalog`` plans and writes the changes (``lfr.embed.pipeline``).
Worker side: the pandas UDF ``make_embed_udf`` / ``embed_column`` and its per-process model
cache (``lfr.embed.udf``).
"""
from lfr.embed.pipeline import EMBEDDING_TABLES, EmbedStats, embed_catalog, sync_table
from lfr.embed.schema import EMBEDDING_TYPE, EMBEDDINGS_SCHEMA
from lfr.embed.ship import ArtifactRef, ship_artifact
from lfr.embed.udf import embed_column, load_cached, make_embed_udf
from lfr.model.artifact import ArtifactMissing

__all__ = [
    "ArtifactMissing", "ArtifactRef", "EMBEDDINGS_SCHEMA", "EMBEDDING_TABLES", "EMBEDDING_TYPE", "EmbedStats",
    "embed_catalog", "embed_column", "load_cached", "make_embed_udf", "ship_artifact", "sync_table",
]
