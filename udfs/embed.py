"""Public face of the embedding UDF; it lives in the library (``lfr.embed.udf``) next to its model cache.

Kept so that ``from udfs.embed import make_embed_udf, embed_column`` keeps working for users'
notebooks and jobs; the library never imports this package. The UDF takes the item id column too
(``embed_column(ref, ..., ids="id")``; ``make_embed_udf(ref, n)(title, description, genres, id)``):
a batch whose vectors fail the output check (count, dimension, finite, non-zero) fails the task
with an ``EmbeddingOutputError`` naming those ids.
"""
from lfr.embed.udf import EmbeddingOutputError, embed_column, make_embed_udf

__all__ = ["EmbeddingOutputError", "embed_column", "make_embed_udf"]
