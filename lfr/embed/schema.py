"""Embedding table schema (docs/CONTRACTS.md "Embedding tables")."""
from pyspark.sql.types import ArrayType, FloatType, StringType, StructField, StructType, TimestampType

EMBEDDING_TYPE = ArrayType(FloatType(), containsNull=False)

EMBEDDINGS_SCHEMA = StructType([
    StructField("id", StringType(), nullable=False),
    StructField("title", StringType()),
    StructField("embedding", EMBEDDING_TYPE),
    StructField("model_version", StringType()),
    StructField("content_hash", StringType()),
    StructField("embedded_at", TimestampType()),
])
