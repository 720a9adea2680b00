"""Distributed, incremental embedding of the catalogs (docs/CONTRACTS.md "Embedding tables").

    stats = embed_catalog(spark, cfg, "books", full=False, model_dir=None)

``ship_artifact`` / ``load_cached``: the model artifact to the executors once, loaded once
per Python worker; the UDF itself is ``udfs.embed.make_embed_udf`` / ``embed_column``.
"""
from lfr.embed.pipeline import EMBEDDING_TABLES, EmbedStats, embed_catalog, sync_table
from lfr.embed.schema import EMBEDDING_TYPE, EMBEDDINGS_SCHEMA
from lfr.embed.ship import ArtifactRef, ModelArtifactMissing, load_cached, read_model_version, ship_artifact

__all__ = [
    "ArtifactRef", "EMBEDDINGS_SCHEMA", "EMBEDDING_TABLES", "EMBEDDING_TYPE", "EmbedStats", "ModelArtifactMissing",
    "embed_catalog", "load_cached", "read_model_version", "ship_artifact", "sync_table",
]
