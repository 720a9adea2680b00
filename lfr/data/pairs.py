"""``read_pairs``: known movie -> book links resolved to catalog ids.

Two file formats (CSV with a header):

* ``movie_id,book_id`` -- ids as in the catalogs; an id merged into another item (listed in
  its ``merged_ids``, e.g. a Wikipedia film merged into its IMDb row) resolves to that item;
  pairs naming an id that is not in the catalog are logged and left out.
* adaptations: ``movie_source, movie_title, movie_year, book_title, book_author`` where
  ``movie_source`` is ``imdb_top1000`` or ``wikipedia`` and titles are exactly as in the
  source files. A movie resolves to the id its reader gives that row
  (``imdb:<slug>-<year>`` / ``wiki:<slug of the Wikipedia title>``), or to the item that id
  was merged into (``merged_ids``: a Wikipedia film merged into its IMDb row); failing that
  (a catalog without lineage, or the row rejected as a duplicate) it resolves the way the
  deduplication matched: same normalised title (disambiguator removed) and the same year
  when both have one. A book resolves by exact title (whitespace collapsed, as the reader
  does), preferring the same author; failing that by normalised title + author. Ties go
  to the smallest id. Unresolved pairs are logged with their titles and left out.
"""
from __future__ import annotations

import logging

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from lfr.data.readers import read_csv
from lfr.data.text import collapse_ws, film_disambiguator_year, norm_title, parse_year, slug, strip_film_disambiguator

log = logging.getLogger(__name__)
ADAPTATION_COLUMNS = ["movie_source", "movie_title", "movie_year", "book_title"]
WIKI_SOURCES = ("wikipedia", "wikipedia_summaries", "wiki")
IMDB_SOURCES = ("imdb_top1000", "imdb")


def _best(df: DataFrame, key: str, order: list[Column]) -> DataFrame:
    w = Window.partitionBy(key).orderBy(*order)
    return df.withColumn("_rk", F.row_number().over(w)).filter("_rk = 1").drop("_rk")


def _merged_ids(movies: DataFrame) -> Column:
    """The ids of the rows merged into each item (``merged_ids``); [] for a frame without lineage
    (e.g. an embeddings table)."""
    none = F.array().cast("array<string>")
    return F.coalesce(F.col("merged_ids"), none) if "merged_ids" in movies.columns else none


def _movie_keys(movies: DataFrame) -> DataFrame:
    """``(_key, _mid)``: every id a pair file may name -> the item's id (its own and the merged ones)."""
    own = movies.select(F.col("id").alias("_key"), F.col("id").alias("_mid"))
    merged = movies.select(F.explode(_merged_ids(movies)).alias("_key"), F.col("id").alias("_mid"))
    return own.unionByName(merged)


def _resolve_movies(pairs: DataFrame, movies: DataFrame) -> DataFrame:
    src = F.lower(F.trim(F.col("movie_source")))
    title = collapse_ws(F.col("movie_title"))
    year = F.coalesce(parse_year(F.col("movie_year")), film_disambiguator_year(title))
    year_suffix = F.when(year.isNotNull(), F.concat(F.lit("-"), year.cast("string"))).otherwise(F.lit(""))
    expected = (F.when(src.isin(*IMDB_SOURCES), F.concat(F.lit("imdb:"), slug(title), year_suffix))
                .when(src.isin(*WIKI_SOURCES), F.concat(F.lit("wiki:"), slug(title))))
    p = (pairs.withColumn("_m_expected", expected).withColumn("_m_nt", norm_title(strip_film_disambiguator(title)))
         .withColumn("_m_year", year))
    m = movies.select(F.col("id").alias("_m_id"), norm_title(F.col("title")).alias("_c_nt"),
                      F.col("year").alias("_c_year"), _merged_ids(movies).alias("_m_merged"))
    named = (F.col("_m_expected") == F.col("_m_id")) | F.array_contains(F.col("_m_merged"), F.col("_m_expected"))
    cond = named | (
        (F.col("_m_nt") == F.col("_c_nt")) & (F.length("_m_nt") > 0)
        & (F.col("_m_year").isNull() | F.col("_c_year").isNull() | (F.col("_m_year") == F.col("_c_year"))))
    j = p.join(m, cond, "left")
    order = [named.desc_nulls_last(), (F.col("_m_year") == F.col("_c_year")).desc_nulls_last(), F.col("_m_id")]
    return (_best(j, "_pair", order).drop("_m_expected", "_m_nt", "_m_year", "_c_nt", "_c_year", "_m_merged")
            .withColumnRenamed("_m_id", "movie_id"))


def _resolve_books(pairs: DataFrame, books: DataFrame) -> DataFrame:
    title = collapse_ws(F.col("book_title"))
    author = (F.lower(collapse_ws(F.col("book_author"))) if "book_author" in pairs.columns
              else F.lit(None).cast("string"))
    p = pairs.withColumn("_b_title", title).withColumn("_b_nt", norm_title(title)).withColumn("_b_author", author)
    auth = F.lower(F.array_join(F.col("authors"), "|")) if "authors" in books.columns else F.lit(None).cast("string")
    b = books.select(F.col("id").alias("_b_id"), F.col("title").alias("_c_title"),
                     norm_title(F.col("title")).alias("_c_nt"), auth.alias("_c_author"))
    same_author = F.col("_b_author").isNotNull() & (F.col("_b_author") == F.col("_c_author"))
    cond = ((F.col("_b_title") == F.col("_c_title"))
            | ((F.col("_b_nt") == F.col("_c_nt")) & (F.length("_b_nt") > 0) & same_author))
    j = p.join(b, cond, "left")
    order = [(F.col("_b_title") == F.col("_c_title")).desc_nulls_last(), same_author.desc_nulls_last(), F.col("_b_id")]
    return (_best(j, "_pair", order).drop("_b_title", "_b_nt", "_b_author", "_c_title", "_c_nt", "_c_author")
            .withColumnRenamed("_b_id", "book_id"))


def read_pairs(spark: SparkSession, path: str, movies_df: DataFrame, books_df: DataFrame) -> DataFrame:
    """``DataFrame(movie_id string, book_id string)``, distinct, resolved against the two catalogs."""
    raw = read_csv(spark, path).drop("_corrupt_record")
    cols = set(raw.columns)
    raw = raw.withColumn("_pair", F.monotonically_increasing_id())
    if {"movie_id", "book_id"} <= cols:
        p = raw.select("_pair", F.trim("movie_id").alias("movie_id"), F.trim("book_id").alias("book_id"))
        mids = _movie_keys(movies_df)
        bids = books_df.select(F.col("id").alias("_bid"))
        res = (p.join(mids, F.col("movie_id") == F.col("_key"), "left")
               .join(bids, F.col("book_id") == F.col("_bid"), "left")
               .withColumn("movie_title", F.col("movie_id")).withColumn("book_title", F.col("book_id"))
               .withColumn("movie_id", F.col("_mid")).withColumn("book_id", F.col("_bid")))
    elif set(ADAPTATION_COLUMNS) <= cols:
        res = _resolve_books(_resolve_movies(raw, movies_df), books_df)
    else:
        raise ValueError(f"pair file {path}: expected columns movie_id,book_id or {','.join(ADAPTATION_COLUMNS)}; "
                         f"has {sorted(cols)}")
    res = res.select("_pair", "movie_id", "book_id", "movie_title", "book_title").persist()
    unresolved = res.filter(F.col("movie_id").isNull() | F.col("book_id").isNull()).orderBy("_pair").collect()
    total = res.count()
    for r in unresolved:
        log.warning("pair not resolved: movie %r -> %s, book %r -> %s", r["movie_title"], r["movie_id"] or "NOT FOUND",
                    r["book_title"], r["book_id"] or "NOT FOUND")
    log.info("pairs %s: %d read, %d resolved, %d unresolved", path, total, total - len(unresolved), len(unresolved))
    out = (res.filter(F.col("movie_id").isNotNull() & F.col("book_id").isNotNull())
           .select("movie_id", "book_id").distinct())
    return out
