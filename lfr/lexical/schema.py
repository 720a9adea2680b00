"""The lexical feature tables' schema (``tables.movie_lexical`` / ``tables.book_lexical``).

Contract with the scorer (lfr.score): one row per catalog item; ``term_indices`` strictly
increasing, ``term_weights`` the same length and L2-normalised, so the dot product of two rows
is their cosine; an item with no known term has empty arrays. ``lexical_version`` names the
fitted model (tokenizer settings + vocabulary + idf + weighting): rows of different versions are
not comparable, and the scorer refuses to mix them.
"""
from __future__ import annotations

from pyspark.sql.types import ArrayType, FloatType, IntegerType, StringType, StructField, StructType, TimestampType

LEXICAL_SCHEMA = StructType([
    StructField("id", StringType(), nullable=False),
    StructField("title", StringType()),
    StructField("term_indices", ArrayType(IntegerType())),
    StructField("term_weights", ArrayType(FloatType())),
    StructField("lexical_version", StringType()),
    StructField("vocab_size", IntegerType()),
    StructField("content_hash", StringType()),
    StructField("computed_at", TimestampType()),
])

LEXICAL_TABLES = {"movies": "movie_lexical", "books": "book_lexical"}
