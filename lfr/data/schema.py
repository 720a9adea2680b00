"""Canonical catalog and rejects schemas (docs/CONTRACTS.md "Catalogs"), and the reject reason codes."""
from __future__ import annotations

from pyspark.sql.types import ArrayType, IntegerType, StringType, StructField, StructType, TimestampType

CATALOG_SCHEMA = StructType([
    StructField("id", StringType(), nullable=False),
    StructField("title", StringType()),
    StructField("description", StringType()),
    StructField("genres", ArrayType(StringType()), nullable=False),   # [] when none
    StructField("year", IntegerType()),
    StructField("authors", ArrayType(StringType())),
    StructField("source", StringType(), nullable=False),   # the source of the item's own row (id, title)
    # Lineage (validation.merge_sources): the distinct sources that fed the item, its own first, and
    # the ids of the other sources' rows merged into it (e.g. a film's Wikipedia row). [] when none.
    StructField("sources", ArrayType(StringType()), nullable=False),
    StructField("merged_ids", ArrayType(StringType()), nullable=False),
])

REJECTS_SCHEMA = StructType([
    StructField("domain", StringType()),
    StructField("source", StringType()),
    StructField("id", StringType()),
    StructField("reason", StringType()),
    StructField("raw", StringType()),
    StructField("rejected_at", TimestampType()),
])


# Reject reason codes. A rejected row carries ALL the reasons that apply to it,
# comma-joined in the order below (e.g. "empty_description,unparsable_genres").
# The two duplicate reasons name the kept row: "duplicate_of:<kept id>".
NULL_ID = "null_id"                            # no id could be derived (empty id / URL without /book/show/<digits>)
MALFORMED_ROW = "malformed_row"                # the CSV parser could not split the record into the header's columns
EMPTY_DESCRIPTION = "empty_description"        # null, blank or shorter than validation.min_description_chars
OVERSIZED_DESCRIPTION = "oversized_description"  # longer than validation.max_description_chars (never truncated)
UNPARSABLE_GENRES = "unparsable_genres"        # the genres field is not a list literal / delimited string
INVALID_TEXT = "invalid_text"                  # U+FFFD (invalid UTF-8 in the file) or control characters
DUPLICATE_ID = "duplicate_id"                  # same id as an earlier row (source order, then file order)
DUPLICATE_OF = "duplicate_of"                  # "duplicate_of:<id>": same title+author edition / cross-source
                                               # duplicate not merged

REASON_ORDER = [NULL_ID, MALFORMED_ROW, EMPTY_DESCRIPTION, OVERSIZED_DESCRIPTION, UNPARSABLE_GENRES,
                INVALID_TEXT, DUPLICATE_ID, DUPLICATE_OF]


def conform(df, schema: StructType):
    """``df`` with exactly ``schema``: column order, types (cast) and nullability.

    A column the schema declares nullable is made nullable with ``nullif(c, NULL)`` (a
    no-op on the values: Spark infers nullability and has no cast for it); a column the
    schema declares NOT NULL must already be non-nullable in ``df`` (else ValueError)."""
    from pyspark.sql import functions as F

    have = {f.name: f for f in df.schema.fields}
    cols = []
    for f in schema.fields:
        if f.name not in have:
            raise ValueError(f"conform: missing column '{f.name}' (have {list(have)})")
        c = F.col(f"`{f.name}`")
        if have[f.name].dataType != f.dataType:
            c = c.cast(f.dataType)
        if f.nullable and not have[f.name].nullable:
            c = F.nullif(c, F.lit(None).cast(f.dataType))
        elif not f.nullable and have[f.name].nullable:
            raise ValueError(f"conform: column '{f.name}' may hold nulls, schema says NOT NULL")
        cols.append(c.alias(f.name))
    return df.select(*cols)
