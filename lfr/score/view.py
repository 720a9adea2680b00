"""SQL registration of the recommendations: tables + the view ``tables.recommendations_view``."""
from __future__ import annotations

import logging

from pyspark.sql import SparkSession

from lfr.settings import Settings
from lfr.spark.delta import is_delta_table, register_table, register_tables

log = logging.getLogger(__name__)

VIEW_SQL = """CREATE OR REPLACE VIEW {view} AS
SELECT r.movie_id, r.rank, r.book_id, r.score, r.method, r.method_params, r.model_version, r.lexical_version,
       r.run_id, r.scored_at, m.title AS movie_title, b.title AS book_title
FROM {recommendations} r
LEFT JOIN {movie_titles} m ON m.id = r.movie_id
LEFT JOIN {book_titles} b ON b.id = r.book_id"""


def create_view(spark: SparkSession, view: str, recommendations: str, movie_titles: str, book_titles: str) -> str:
    """``CREATE OR REPLACE VIEW``: recommendations (with their method) plus ``movie_title`` and ``book_title``.

    Arguments are qualified table names (``lfr.recommendations``); the title tables are any
    tables with ``id, title`` (the embedding tables, or the lexical ones when only those exist).
    Idempotent. With Spark's default in-memory catalog the view lives as long as the session (as
    the table registrations do), so every job that wants SQL re-creates it; with a Hive metastore it persists.
    """
    spark.sql(VIEW_SQL.format(view=view, recommendations=recommendations,
                              movie_titles=movie_titles, book_titles=book_titles))
    return view


def _title_table(spark: SparkSession, t, domain: str):
    """The first existing table with titles of ``domain`` ('movie' / 'book'): embeddings, then lexical."""
    for key in (f"{domain}_embeddings", f"{domain}_lexical"):
        spec = t.get(key) if hasattr(t, "get") else None
        if spec and is_delta_table(spark, spec["path"]):
            return spec
    return None


def register_recommendations(spark: SparkSession, settings: Settings) -> list[str]:
    """Register every existing table of ``settings.tables`` plus the view; returns the names (idempotent)."""
    t = settings.tables.as_dict()
    names = register_tables(spark, settings.tables)
    db = t["database"]
    needed = [t["recommendations"], _title_table(spark, t, "movie"), _title_table(spark, t, "book")]
    if all(spec is not None and is_delta_table(spark, spec["path"]) for spec in needed):
        q = [register_table(spark, db, spec["name"], spec["path"]) for spec in needed]
        names.append(create_view(spark, f"`{db}`.`{t['recommendations_view']}`", *q))
    else:
        log.info("view %s.%s not created: recommendations or title tables missing", db, t["recommendations_view"])
    return names
