"""Public face of the embedding UDF; it lives in the library (``lfr.embed.udf``) next to its model cache.

Kept so that ``from udfs.embed import make_embed_udf, embed_column`` keeps working for users'
notebooks and jobs; the library never imports this package.
"""
from lfr.embed.udf import embed_column, make_embed_udf

__all__ = ["embed_column", "make_embed_udf"]
