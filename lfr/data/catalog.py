"""``load_catalog``: read every source of a domain, validate, deduplicate -> (valid, rejects).

Nothing is dropped silently: every input row ends up in exactly one of the two frames, or
(merged films) in the lineage of a valid item.
A rejected row has ALL its reasons, comma-joined in the order of
``lfr.data.schema.REASON_ORDER`` (e.g. ``"empty_description,unparsable_genres"``).

Rules, in order:

1. Row checks: ``null_id`` (no id could be derived), ``malformed_row`` (CSV record the
   parser could not split / non-string JSON value), ``empty_description`` (null, blank
   or shorter than ``validation.min_description_chars``), ``oversized_description``
   (longer than ``validation.max_description_chars``: rejected, never truncated),
   ``unparsable_genres``, ``invalid_text`` (U+FFFD -- what the UTF-8 decoder leaves for
   invalid bytes -- or control characters other than TAB/LF/CR in title, description,
   genres or authors). Items with no genres are valid (the model handles them).
2. ``duplicate_id``: of the rows sharing an id, the first by (passes rule 1, source order
   in the config, position in the file) is kept; the others get ``duplicate_id``.
3. Editions (``validation.dedupe_editions``, default on): valid rows of one source with the
   same normalised title and the same authors (Goodreads lists some books twice, as two
   editions with different URLs) -> the first in the file is kept, the others get
   ``duplicate_of:<kept id>``. Rows without authors (films) are never merged by this rule:
   two films of one title are remakes (Drishyam 2013 / 2015).
4. Cross-source duplicates: a valid row whose normalised title (lower-case, apostrophes
   removed, other punctuation -> space, Wikipedia's "(film)"/"(YEAR film)" removed) equals
   that of an item accepted from an EARLIER source in ``cfg['catalogs'][domain]``, with the
   same year when both have one and the same authors when both have them, is the same item.
   Films (``validation.merge_sources``, default on; ``MERGE_DOMAINS``) are merged only on
   evidence: both years known and equal (the Wikipedia year comes from the disambiguator or
   the summary's first sentence). A title match with no year on one side or another year is
   kept as two items, logged and counted (``CatalogLoad.near``): on the real data most such
   "films" are articles about something else (the city Casablanca). A film merged is
   folded into that item (``merge_items``) -- the item keeps its id, title, year and genres
   (IMDb is listed first, so the IMDb row, which has genres, is the item), its description
   becomes both texts (the item's own, a blank line, the merged row's), and the lineage
   columns ``sources`` / ``merged_ids`` name the sources and the ids merged in. A merged row
   is not a reject: its text is in the item and its id in ``merged_ids``. The length limits
   apply to each source's text, so a merged description may exceed
   ``validation.max_description_chars``. A row that fits several items (a title + year
   shared by two films) or any duplicate when merging is off (and in book catalogs:
   publishers' blurbs repeat each other) gets ``duplicate_of:<earliest matching id>``.
   On the real data: 177 of 997 Wikipedia films are merged, 48 title matches kept apart.

File-level errors (``CatalogReadError``, exit code 2 in the jobs) come before any row: a file
that does not parse as a whole (``lfr.data.readers``), a source with no record (unless
``allow_empty: true`` on it or ``guards.allow_empty_sources``), a CSV whose last record is
incomplete (the file is cut).

Every input row therefore is valid, merged into a valid item (listed in its ``merged_ids``),
or rejected with its reasons.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import reduce
from typing import Mapping

from pyspark.sql import Column, DataFrame, Row, SparkSession, Window
from pyspark.sql import functions as F

from lfr.data import schema as S
from lfr.data.readers import CatalogReadError, read_source
from lfr.data.schema import conform
from lfr.data.text import has_bad_text, norm_title
from lfr.settings import Settings, ValidationSettings

log = logging.getLogger(__name__)

HASH_SEP = "\u001f"        # ASCII unit separator between fields (control chars are rejected in texts)
HASH_LIST_SEP = "\u001e"   # record separator between genre labels
_NORM = "_nt"
_AUTH = "_na"
_CACHED: dict = {}
# Domains whose cross-source duplicates are merged (validation.merge_sources): a film's IMDb
# overview and its Wikipedia plot complement each other; two sources' blurbs of one book
# mostly repeat each other, so book duplicates stay rejects.
MERGE_DOMAINS = ("movies",)


def content_hash_col(df: DataFrame | None = None) -> Column:
    """sha256 hex of what the model consumes: title, description and the genres, in order.

    Fields are joined with U+001F and genres with U+001E; both are control characters,
    which validation rejects in texts, so two different items cannot produce the same
    input string. A null title/description hashes like an empty one (the model sees
    both as empty). ``df`` is accepted for symmetry and not needed: the Column refers to
    ``title``, ``description``, ``genres`` of whatever frame it is used on."""
    genres = F.array_join(F.coalesce(F.col("genres"), F.array().cast("array<string>")), HASH_LIST_SEP)
    joined = F.concat_ws(HASH_SEP, F.coalesce(F.col("title"), F.lit("")), F.coalesce(F.col("description"), F.lit("")),
                         genres)
    return F.sha2(joined, 256)


def _row_reasons(vcfg: ValidationSettings) -> Column:
    desc = F.col("description")
    dlen = F.coalesce(F.length(desc), F.lit(0))
    bad_list = lambda c: F.coalesce(F.exists(F.col(c), lambda x: has_bad_text(x)), F.lit(False))  # noqa: E731
    checks = [
        (F.col("id").isNull() | (F.trim(F.col("id")) == ""), S.NULL_ID),
        (F.array_contains(F.col("_errors"), S.MALFORMED_ROW), S.MALFORMED_ROW),
        (dlen < max(int(vcfg.min_description_chars), 1), S.EMPTY_DESCRIPTION),
        (dlen > int(vcfg.max_description_chars), S.OVERSIZED_DESCRIPTION),
        (F.array_contains(F.col("_errors"), S.UNPARSABLE_GENRES), S.UNPARSABLE_GENRES),
        (has_bad_text(F.col("title")) | has_bad_text(desc) | bad_list("genres") | bad_list("authors"), S.INVALID_TEXT),
    ]
    return F.filter(F.array(*[F.when(c, F.lit(r)) for c, r in checks]), lambda x: x.isNotNull())


def _append(reasons: Column, extra: Column) -> Column:
    return F.when(extra.isNotNull(), F.concat(reasons, F.array(extra))).otherwise(reasons)


def _candidate() -> Column:
    """A row the dedup rules may match: no reason so far and a non-empty normalised title."""
    return (F.size("_reasons") == 0) & (F.length(_NORM) > 0)


def _rule_row_checks(df: DataFrame, vcfg: ValidationSettings) -> DataFrame:
    """Rule 1, plus the normalised title / authors keys the later rules match on."""
    df = df.withColumn("_reasons", _row_reasons(vcfg)).withColumn(_NORM, norm_title(F.col("title")))
    return df.withColumn(_AUTH, F.when(F.size("authors") > 0,
                                       F.lower(F.array_join(F.transform("authors", norm_title), "|"))))


def _rule_duplicate_ids(df: DataFrame) -> DataFrame:
    """Rule 2: of the rows sharing an id, the first that passes the row checks is kept."""
    w = Window.partitionBy("id").orderBy(F.size("_reasons") > 0, "_src", "_row")
    return df.withColumn("_reasons", _append(F.col("_reasons"), F.when(
        F.col("id").isNotNull() & (F.row_number().over(w) > 1), F.lit(S.DUPLICATE_ID))))


def _rule_editions(df: DataFrame) -> DataFrame:
    """Rule 3: one source, same normalised title and authors (rows with authors only) -> the first is kept."""
    ecand = _candidate() & F.col(_AUTH).isNotNull()
    w = Window.partitionBy(ecand, "_src", _NORM, _AUTH).orderBy("_row")
    first = F.first("id").over(w)
    return df.withColumn("_reasons", _append(F.col("_reasons"), F.when(
        ecand & (first != F.col("id")), F.concat(F.lit(S.DUPLICATE_OF + ":"), first))))


def _same_year(strict: bool) -> Column:
    """Years agree: both known and equal (``strict``: the evidence a merge needs), or either unknown."""
    equal = F.col("r.year") == F.col("k.year")
    if strict:
        return F.coalesce(equal, F.lit(False))
    return F.col("r.year").isNull() | F.col("k.year").isNull() | equal


def _cross_source_matches(df: DataFrame, n_sources: int, temp: list, strict_year: bool) -> DataFrame:
    """``(_src, _row, _kept, _n_kept, _near)``: rows matching an item accepted from an earlier source.

    Source by source against everything accepted so far; ``_kept`` is the earliest match
    (source order, then file order), ``_n_kept`` the number of accepted items it matches. With
    ``strict_year`` (films that would be merged) a match needs both years, equal; a row whose title
    and authors match but whose year is unknown on one side or differs gets only ``_near`` (the
    earliest such item): it is kept as its own item and counted, never merged on a title alone."""
    keys = df.filter(_candidate()).select("_src", "_row", "id", _NORM, "year", _AUTH).persist()
    temp.append(keys)  # released by load_catalog once the result is materialised
    accepted = keys.filter(F.col("_src") == 0)
    found = []
    first_id = F.min_by(F.col("k.id"), F.struct(F.col("k._src"), F.col("k._row")))
    for s in range(1, n_sources):
        cur = keys.filter(F.col("_src") == s).alias("r")
        k = accepted.alias("k")
        title = ((F.col(f"r.{_NORM}") == F.col(f"k.{_NORM}"))
                 & (F.col(f"r.{_AUTH}").isNull() | F.col(f"k.{_AUTH}").isNull()
                    | (F.col(f"r.{_AUTH}") == F.col(f"k.{_AUTH}"))))
        year_ok = _same_year(strict_year)
        dup = (cur.join(k, title).groupBy(F.col("r._src").alias("_src"), F.col("r._row").alias("_row"))
               .agg(F.min_by(F.col("k.id"), F.when(year_ok, F.struct(F.col("k._src"), F.col("k._row")))).alias("_kept"),
                    F.count(F.when(year_ok, 1)).alias("_n_kept"), first_id.alias("_near")))
        dup = dup.withColumn("_near", F.when(F.col("_n_kept") == 0, F.col("_near")))
        found.append(dup)
        accepted = accepted.unionByName(keys.filter(F.col("_src") == s).join(
            dup.filter(F.col("_n_kept") > 0), ["_src", "_row"], "left_anti"))
    return reduce(DataFrame.unionByName, found)


def _rule_cross_source(df: DataFrame, n_sources: int, merge: bool, temp: list) -> DataFrame:
    """Rule 4: a cross-source duplicate is merged into the item it matches (``_into``) or rejected.

    Merged when ``merge`` and it matches exactly one accepted item with the same known year;
    otherwise (merging off, or a title + year that fits several items) ``duplicate_of:<kept>``.
    ``_near``: a title match without that evidence (kept as its own item, counted by ``load``)."""
    if n_sources < 2:
        return df.withColumn("_into", F.lit(None).cast("string")).withColumn("_near", F.lit(None).cast("string"))
    df = df.join(F.broadcast(_cross_source_matches(df, n_sources, temp, strict_year=merge)), ["_src", "_row"], "left")
    merged = F.col("_kept").isNotNull() & F.lit(bool(merge)) & (F.col("_n_kept") == 1)
    df = df.withColumn("_into", F.when(merged, F.col("_kept")))
    return df.withColumn("_reasons", _append(F.col("_reasons"), F.when(
        F.col("_kept").isNotNull() & ~merged, F.concat(F.lit(S.DUPLICATE_OF + ":"), F.col("_kept"))))
    ).drop("_kept", "_n_kept")


def _annotate(df: DataFrame, vcfg: ValidationSettings, n_sources: int, temp: list, merge: bool) -> DataFrame:
    """The rules of the module doc, in order: ``_reason`` (null = valid) and ``_into`` (merged into that id)."""
    df = _rule_duplicate_ids(_rule_row_checks(df, vcfg))
    if vcfg.dedupe_editions:
        df = _rule_editions(df)
    df = _rule_cross_source(df, n_sources, merge, temp)
    return df.withColumn("_reason", F.when(F.size("_reasons") > 0, F.array_join("_reasons", ",")))


def _first_non_empty(values: Column, empty: Column) -> Column:
    return F.element_at(F.filter(values, empty), 1)


def merge_items(valid: DataFrame) -> DataFrame:
    """Valid rows -> one row per item: rows merged into an item (``_into``) are folded into it.

    The item keeps its id, title, authors and source; its description is its own text, then
    each merged row's (source order, then file order), joined with a blank line; year and
    genres are its own, else the first merged row's that has them. ``sources`` lists the
    distinct sources that fed it (its own first), ``merged_ids`` the ids folded in."""
    part = F.struct("_src", "_row", F.col("id").alias("mid"), "description", "source", "year", "genres")
    parts = (valid.filter(F.col("_into").isNotNull()).groupBy(F.col("_into").alias("id"))
             .agg(F.sort_array(F.collect_list(part)).alias("_parts")))
    items = valid.filter(F.col("_into").isNull()).join(parts, "id", "left")
    p = F.col("_parts")
    none = F.array().cast("array<string>")
    return items.select(
        *[c for c in items.columns if c not in ("description", "year", "genres", "_parts")],
        F.concat_ws("\n\n", F.col("description"), F.transform(p, lambda x: x["description"])).alias("description"),
        F.coalesce(F.col("year"),
                   _first_non_empty(F.transform(p, lambda x: x["year"]), lambda y: y.isNotNull())).alias("year"),
        F.when(F.size(F.coalesce(F.col("genres"), none)) > 0, F.col("genres")).otherwise(F.coalesce(
            _first_non_empty(F.transform(p, lambda x: x["genres"]), lambda g: F.size(g) > 0), F.col("genres"))
        ).alias("genres"),
        F.array_distinct(F.concat(F.array(F.coalesce(F.col("source"), F.lit(""))),
                                  F.coalesce(F.transform(p, lambda x: x["source"]), none))).alias("sources"),
        F.coalesce(F.transform(p, lambda x: x["mid"]), none).alias("merged_ids"),
    )


def read_sources(spark: SparkSession, sources: list[Mapping]) -> DataFrame:
    if not sources:
        raise CatalogReadError("no catalog sources configured")
    staged = [read_source(spark, dict(spec)).withColumn("_src", F.lit(i)) for i, spec in enumerate(sources)]
    return reduce(DataFrame.unionByName, staged)


#: readers whose last record, when malformed, means the file ends inside a record (cut short)
LINE_RECORD_READERS = ("imdb_top1000", "goodreads", "generic")


@dataclass
class CatalogLoad:
    """One domain's catalog as read: the frames and what the reading found, for the jobs' checks and logs."""
    domain: str
    valid: DataFrame
    rejects: DataFrame
    records: dict                 # source path -> records read from it
    merged: int = 0               # rows folded into an item of an earlier source
    near: int = 0                 # title matches kept apart for lack of evidence (no year on one side, years differ)
    near_sample: list = field(default_factory=list)   # up to 5 "id ~ id" pairs

    @property
    def sources(self) -> list[str]:
        return list(self.records)


def _source_summary(annotated: DataFrame) -> dict[int, Row]:
    """Per source index: records, whether its last record is malformed, rows merged, near matches (one job)."""
    malformed = F.array_contains(F.col("_errors"), S.MALFORMED_ROW)
    rows = annotated.groupBy("_src").agg(
        F.count(F.lit(1)).alias("records"), F.max_by(malformed, F.col("_row")).alias("last_malformed"),
        F.count("_into").alias("merged"), F.count(F.when(F.col("_reason").isNull(), F.col("_near"))).alias("near"),
        F.slice(F.collect_list(F.when(F.col("_reason").isNull() & F.col("_near").isNotNull(),
                                      F.concat_ws(" ~ ", "id", "_near"))), 1, 5).alias("near_sample"),
    ).collect()
    return {r["_src"]: r for r in rows}


def _check_sources(sources: list[Mapping], summary: dict[int, Row], allow_empty: bool) -> None:
    """File-level errors that need the parsed records: a source without any record (unless it is
    meant to be empty), a line-record file whose last record is malformed (the file is cut)."""
    for i, spec in enumerate(sources):
        row = summary.get(i)
        if row is None and not (allow_empty or spec.get("allow_empty")):
            raise CatalogReadError(
                f"{spec['path']} ({spec.get('reader')}) holds no record: an empty source would delete every item it "
                "fed. If it is meant to be empty, set allow_empty: true on that source (or guards.allow_empty_sources)")
        if row is not None and row["last_malformed"] and spec.get("reader") in LINE_RECORD_READERS:
            raise CatalogReadError(
                f"{spec['path']} ({spec.get('reader')}): its last record (record {row['records']}) does not have the "
                "header's columns -- the file ends inside a record (cut short?) or its tail is in another format; "
                "fix or re-export the file")


def _materialise(spark: SparkSession, vcfg: ValidationSettings, domain: str, sources: list) -> DataFrame:
    """The annotated union of the sources, persisted once (files parsed once for both frames).

    The nonce column keeps Spark's cache manager from serving an earlier load's rows (same plan)
    after a source file changed; the previous cache of the same domain is released (its frames stay
    valid: they recompute from the files)."""
    merge = bool(vcfg.merge_sources) and domain in MERGE_DOMAINS
    temp: list[DataFrame] = []
    annotated = _annotate(read_sources(spark, sources), vcfg, len(sources), temp, merge)
    annotated = annotated.withColumn("_load", F.lit(uuid.uuid4().hex)).persist()
    annotated.count()  # materialise now, so the intermediate caches can go
    for frame in temp:
        frame.unpersist()
    previous = _CACHED.pop((id(spark), domain), None)
    if previous is not None:
        previous.unpersist()
    _CACHED[(id(spark), domain)] = annotated
    return annotated


def read_catalog(spark: SparkSession, settings: Settings, domain: str) -> CatalogLoad:
    """Every source of ``domain`` read, checked, validated and deduplicated (see the module doc).

    ``settings``: the run's ``lfr.settings.Settings``: its ``catalogs``, ``validation`` and
    ``guards.allow_empty_sources``. Raises ``CatalogReadError`` for a file that cannot be used as a
    whole. ``rejected_at`` is the load time, fixed for the whole call."""
    catalogs = settings.catalogs
    if domain not in catalogs or not isinstance(catalogs[domain], list):
        raise CatalogReadError(f"no catalog sources for domain '{domain}' in the settings' catalogs "
                               f"(have: {sorted(catalogs)})")
    sources = catalogs[domain]
    annotated = _materialise(spark, settings.validation, domain, sources)
    summary = _source_summary(annotated)
    _check_sources(sources, summary, settings.guards.allow_empty_sources)
    load = CatalogLoad(domain, _valid_frame(annotated), _rejects_frame(annotated, domain),
                       {str(spec["path"]): int(summary[i]["records"]) if i in summary else 0
                        for i, spec in enumerate(sources)},
                       merged=sum(int(r["merged"]) for r in summary.values()),
                       near=sum(int(r["near"]) for r in summary.values()),
                       near_sample=[x for r in summary.values() for x in r["near_sample"]][:5])
    if load.near:
        log.warning("%s: %d cross-source title match(es) NOT merged for lack of evidence (no year on one side, or "
                    "the years differ): both kept as separate items, e.g. %s", domain, load.near,
                    "; ".join(load.near_sample))
    return load


def _valid_frame(annotated: DataFrame) -> DataFrame:
    return conform(merge_items(annotated.filter(F.col("_reason").isNull()))
                   .withColumn("id", F.coalesce(F.col("id"), F.lit("")))  # never null here; makes the column NOT NULL
                   .withColumn("genres", F.coalesce(F.col("genres"), F.array().cast("array<string>")))
                   .withColumn("source", F.coalesce(F.col("source"), F.lit(""))),
                   S.CATALOG_SCHEMA)


def _rejects_frame(annotated: DataFrame, domain: str) -> DataFrame:
    now = datetime.now(timezone.utc)
    return conform(annotated.filter(F.col("_reason").isNotNull()).select(
        F.lit(domain).alias("domain"), "source", "id", F.col("_reason").alias("reason"), F.col("_raw").alias("raw"),
        F.lit(now).cast("timestamp").alias("rejected_at"),
    ), S.REJECTS_SCHEMA)


def load_catalog(spark: SparkSession, settings: Settings, domain: str) -> tuple[DataFrame, DataFrame]:
    """``(valid_df, rejects_df)`` for ``domain`` in {movies, books} (``CATALOG_SCHEMA`` / ``REJECTS_SCHEMA``);
    ``read_catalog`` also returns what the reading found (records per source, merges, near matches)."""
    load = read_catalog(spark, settings, domain)
    return load.valid, load.rejects
