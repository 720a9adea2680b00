"""Source readers: each turns one file (or folder) into the canonical catalog columns.

A reader returns a *staged* DataFrame: the ``CATALOG_SCHEMA`` columns plus
``_raw`` (the original row as a JSON string, kept for the rejects table), ``_row``
(position in the file: the deterministic "first" for duplicate rules) and
``_errors`` (parse-level reject reasons: ``malformed_row``, ``unparsable_genres``).
Validation and deduplication are done once, for all sources, in ``lfr.data.catalog``.

CSV: ``multiLine`` with ``"`` as both quote and escape (RFC 4180 ``""``), because the
descriptions contain quotes, commas and newlines; a record the parser cannot split
into the header's columns lands in ``_corrupt_record`` and becomes ``malformed_row``.
multiLine CSV files are not splittable, so a file is one partition and
``monotonically_increasing_id`` is its row order.

File-level errors (``CatalogReadError`` naming the file and where): a CSV whose quotes do not
balance (a file cut inside a quoted field, or a stray quote: either makes the parser swallow the
following records into one field), a Wikipedia document that is not one valid JSON object (a cut
file). ``lfr.data.catalog`` adds the checks that need the parsed records (a file that ends inside
a record, a source with no record at all).

Readers (``reader:`` in ``cfg['catalogs'][domain]``):

* ``imdb_top1000`` -- IMDb Top 1000 CSV. id ``imdb:<slug>-<year>`` (``imdb:<slug>`` when
  the year is not a year, e.g. 'PG'); genres from ``Genres`` ("Crime,  Drama").
* ``wikipedia_summaries`` -- one JSON object ``{wikipedia_title: summary}``. id
  ``wiki:<slug of the full key>``; title without "(film)"/"(YEAR film)"; year from the
  disambiguator, else the one the summary's first sentence states ("is a 1960 American ... film";
  ``lfr.data.text.summary_film_year``); genres ``[]``. Duplicate keys are kept (-> ``duplicate_id``).
* ``goodreads`` -- Goodreads best-books CSV. id ``goodreads:<digits of /book/show/<digits>>``;
  genres from the Python-list literal (``ast.literal_eval``/JSON, never ``eval``);
  authors ``[Author]`` with whitespace collapsed.
* ``generic`` -- any catalog with columns ``id, title, description, genres`` and optional
  ``year``, ``authors``. Spec keys: ``path``; ``format`` (csv | json | parquet; default from
  the extension; csv has a header and the same quoting as above; json is JSON lines unless
  ``options: {multiLine: true}``); ``options`` (extra reader options); ``genres_sep`` /
  ``authors_sep`` (default ``,``) for delimited strings -- an ``array<string>`` column or a
  list literal ``['a', 'b']`` is taken as is; ``id_prefix`` (default ``""``: ids kept as
  given); ``name`` (the ``source`` value, default ``generic``).
"""
from __future__ import annotations

from typing import Callable

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.functions import pandas_udf
from pyspark.sql.types import ArrayType, BooleanType, LongType, StringType, StructField, StructType

from lfr.data import schema as S
from lfr.data.text import (
    collapse_ws,
    film_disambiguator_year,
    parse_list_literal,
    parse_year,
    regex_quote,
    slug,
    split_labels,
    strip_film_disambiguator,
    strip_text,
    summary_film_year,
)
from lfr.errors import UsageError

CORRUPT = "_corrupt_record"
# Why caps: one damaged or hostile record (a 50 MB description) must not carry its full text through
# every later shuffle and cache (it ran the driver out of heap). A description is cut at MAX_TEXT_CHARS + 1
# characters -- still longer than any sane validation.max_description_chars, so it is rejected as
# oversized -- and the raw copy kept for the rejects table cuts each text field at RAW_FIELD_CHARS.
MAX_TEXT_CHARS = 1_000_000
RAW_FIELD_CHARS = 10_000


class CatalogReadError(UsageError):
    """A source cannot be read at all (missing file, wrong columns, unknown reader)."""


def _csv_reader(spark: SparkSession, extra: dict | None = None):
    opts = {"header": "true", "multiLine": "true", "quote": '"', "escape": '"', "encoding": "UTF-8",
            "mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT}
    opts.update({k: str(v) for k, v in (extra or {}).items()})
    return spark.read.options(**opts)


def read_csv(spark: SparkSession, path: str, options: dict | None = None) -> DataFrame:
    """All-string CSV read with a ``_corrupt_record`` column (header names kept; a blank one is ``_c0``).

    The file's quoting is checked first (``check_csv_quotes``): a parse of unbalanced quotes is not
    a set of records but a guess."""
    try:
        header = _csv_reader(spark, options).csv(path).schema
    except Exception as exc:  # AnalysisException: path does not exist
        raise CatalogReadError(f"cannot read CSV catalog {path}: {exc}") from exc
    check_csv_quotes(spark, path, str((options or {}).get("quote", '"')))
    fields = [StructField(f.name, StringType()) for f in header.fields if f.name != CORRUPT]
    return _csv_reader(spark, options).schema(StructType(fields + [StructField(CORRUPT, StringType())])).csv(path)


def _unclosed_quote_line(lines: DataFrame, quotes: Column) -> tuple[int, int]:
    """(line number, character offset) of the quote that opens the last never-closed quoted field
    of one file's lines (read in file order). Runs only on the error path: one ordered pass."""
    from pyspark.sql import Window

    w = Window.orderBy("_ln").rowsBetween(Window.unboundedPreceding, Window.currentRow)
    scan = (lines.withColumn("_ln", F.monotonically_increasing_id()).withColumn("_q", quotes)
            .withColumn("_line", F.row_number().over(Window.orderBy("_ln")))
            .withColumn("_cum", F.sum("_q").over(w))
            .withColumn("_start", F.sum(F.length("value") + 1).over(w) - F.length("value") - 1))
    row = scan.filter((F.col("_cum") % 2 == 1) & ((F.col("_cum") - F.col("_q")) % 2 == 0)) \
        .orderBy(F.desc("_ln")).select("_line", "_start").first()
    return (int(row["_line"]), int(row["_start"])) if row else (0, 0)


def check_csv_quotes(spark: SparkSession, path: str, quote: str = '"') -> None:
    """Every quote of a CSV file must be closed: RFC 4180 doubles a quote inside a quoted field,
    so a well-formed file holds an even number of them. An odd count is a file cut inside a quoted
    field or a stray quote -- the parser would fold the records after it into one field -- so it
    is a file-level ``CatalogReadError`` naming the file and the line of the unclosed quote."""
    if not quote:
        return
    lines = spark.read.text(path).withColumn("_file", F.input_file_name())
    # split, not a length difference: length() of a line with invalid UTF-8 bytes counts a
    # malformed lead byte and the quote after it as one character
    quotes = F.size(F.split(F.col("value"), regex_quote(quote), -1)) - 1
    odd = (lines.groupBy("_file").agg(F.sum(quotes).alias("n")).filter(F.col("n") % 2 == 1)
           .select("_file").collect())
    for row in odd:
        line, offset = _unclosed_quote_line(lines.filter(F.col("_file") == row["_file"]), quotes)
        raise CatalogReadError(
            f"{row['_file'] or path}: a quoted field opened on line {line} (character {offset}) is never closed "
            "(the file is cut inside a record, or holds a stray quote that would fold the following records "
            "into one field); fix or re-export the file")


def _require(df: DataFrame, cols: list[str], path: str, reader: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise CatalogReadError(f"{reader}: {path} lacks column(s) {missing} (has {df.columns})")


def _raw_json(df: DataFrame) -> Column:
    types = dict((f.name, f.dataType) for f in df.schema.fields)
    cut = lambda c: (F.substring(F.col(f"`{c}`"), 1, RAW_FIELD_CHARS).alias(c)  # noqa: E731
                     if isinstance(types[c], StringType) else F.col(f"`{c}`"))
    cols = [c for c in df.columns if c != CORRUPT]
    raw = F.to_json(F.struct(*[cut(c) for c in cols]), {"ignoreNullFields": "false"})
    if CORRUPT in df.columns:  # a malformed record: keep its text as in the file (up to RAW_FIELD_CHARS)
        raw = (F.when(F.col(CORRUPT).isNotNull(), F.to_json(F.struct(cut(CORRUPT).alias("corrupt_record"))))
               .otherwise(raw))
    return raw


def _errors(*pairs: tuple[Column, str]) -> Column:
    arr = F.array(*[F.when(cond, F.lit(reason)) for cond, reason in pairs])
    return F.filter(arr, lambda x: x.isNotNull())


def _list_udf(sep: str | None) -> Callable[[Column], Column]:
    @pandas_udf(ArrayType(StringType()))
    def parse(values: pd.Series) -> pd.Series:
        return values.map(lambda v: parse_list_literal(None if pd.isna(v) else v, sep))

    return parse


def _staged(df: DataFrame, *, id: Column, title: Column, description: Column, genres: Column, year: Column,
            authors: Column, source: str, errors: Column) -> DataFrame:
    return df.select(
        id.cast("string").alias("id"),
        title.cast("string").alias("title"),
        F.substring(description.cast("string"), 1, MAX_TEXT_CHARS + 1).alias("description"),
        genres.cast(ArrayType(StringType())).alias("genres"),
        year.cast("int").alias("year"),
        authors.cast(ArrayType(StringType())).alias("authors"),
        F.lit(source).alias("source"),
        _raw_json(df).alias("_raw"),
        F.monotonically_increasing_id().alias("_row"),
        errors.alias("_errors"),
    )


def read_imdb_top1000(spark: SparkSession, spec: dict) -> DataFrame:
    path = spec["path"]
    df = read_csv(spark, path, spec.get("options"))
    _require(df, ["Series_Title", "Released_Year", "Genres", "Overview"], path, "imdb_top1000")
    year = parse_year(F.col("Released_Year"))
    title = collapse_ws(F.col("Series_Title"))
    s = slug(title)
    year_suffix = F.when(year.isNotNull(), F.concat(F.lit("-"), year.cast("string"))).otherwise(F.lit(""))
    ident = F.when(s.isNotNull(), F.concat(F.lit("imdb:"), s, year_suffix))
    return _staged(
        df, id=ident, title=title, description=strip_text(F.col("Overview")), genres=split_labels(F.col("Genres"), ","),
        year=year, authors=F.lit(None), source="imdb_top1000",
        errors=_errors((F.col(CORRUPT).isNotNull(), S.MALFORMED_ROW)),
    )


def _json_problem(doc: str) -> str | None:
    """Why a Wikipedia summaries document is unusable as a whole (None: it is one JSON object)."""
    import json

    try:
        pairs = json.loads(doc, object_pairs_hook=lambda kv: kv)
    except ValueError as exc:
        where = (f"line {exc.lineno}, column {exc.colno} (character {exc.pos} of {len(doc)})"
                 if isinstance(exc, json.JSONDecodeError) else "")
        return f"not valid JSON at {where}: {getattr(exc, 'msg', exc)} (a file cut short or damaged)"
    if not isinstance(pairs, list):
        return f"not one JSON object {{title: summary}} (the document is a {type(pairs).__name__})"
    return None


def _check_json_documents(text: DataFrame, path: str) -> None:
    """A document that does not parse as a whole is a file-level error naming the file and the offset
    (one malformed row would hide that the rest of the file is missing)."""
    check = F.udf(lambda doc: _json_problem(doc), StringType())  # a plain UDF (type hints would make it a pandas one)
    for row in text.select(F.input_file_name().alias("file"), check("value").alias("problem")).collect():
        if row["problem"]:
            raise CatalogReadError(f"wikipedia_summaries: {row['file'] or path} is {row['problem']}")


def read_wikipedia_summaries(spark: SparkSession, spec: dict) -> DataFrame:
    """The file is one JSON object; it is parsed in one task with the order and any duplicate keys kept."""
    path = spec["path"]
    try:
        text = spark.read.text(path, wholetext=True)
    except Exception as exc:
        raise CatalogReadError(f"cannot read wikipedia_summaries {path}: {exc}") from exc
    _check_json_documents(text, path)
    entry = StructType([StructField("pos", LongType()), StructField("key", StringType()),
                        StructField("value", StringType()), StructField("raw", StringType()),
                        StructField("ok", BooleanType())])

    @F.udf(ArrayType(entry))
    def entries(doc):
        import json

        out = []
        for i, (key, value) in enumerate(json.loads(doc, object_pairs_hook=lambda kv: kv)):
            ok = value is None or isinstance(value, str)
            out.append((i, key, value if isinstance(value, str) else None,
                        json.dumps({key: value}, ensure_ascii=False), ok))
        return out

    rows = text.select(F.explode(entries("value")).alias("e")).select("e.*")
    key = F.col("key")
    df = rows.select(
        F.when(slug(key).isNotNull(), F.concat(F.lit("wiki:"), slug(key))).alias("id"),
        strip_film_disambiguator(key).alias("title"),
        strip_text(F.col("value")).alias("description"),
        F.array().cast(ArrayType(StringType())).alias("genres"),
        F.coalesce(film_disambiguator_year(key), summary_film_year(F.col("value"))).alias("year"),
        F.lit(None).cast(ArrayType(StringType())).alias("authors"),
        F.lit("wikipedia_summaries").alias("source"),
        F.col("raw").alias("_raw"),
        F.col("pos").alias("_row"),
        _errors((~F.col("ok"), S.MALFORMED_ROW)).alias("_errors"),
    )
    return df


def read_goodreads(spark: SparkSession, spec: dict) -> DataFrame:
    path = spec["path"]
    df = read_csv(spark, path, spec.get("options"))
    _require(df, ["Book", "Author", "Description", "Genres", "URL"], path, "goodreads")
    book_id = F.regexp_extract(F.coalesce(F.col("URL"), F.lit("")), r"/book/show/(\d+)", 1)
    genres = _list_udf(None)(F.col("Genres"))
    author = collapse_ws(F.col("Author"))
    df = df.withColumn("__genres", genres)
    return _staged(
        df, id=F.when(book_id != "", F.concat(F.lit("goodreads:"), book_id)), title=collapse_ws(F.col("Book")),
        description=strip_text(F.col("Description")), genres=F.coalesce(F.col("__genres"), F.array()),
        year=F.lit(None), authors=F.when(F.length(author) > 0, F.array(author)), source="goodreads",
        errors=_errors((F.col(CORRUPT).isNotNull(), S.MALFORMED_ROW),
                       (F.col("__genres").isNull(), S.UNPARSABLE_GENRES)),
    ).drop("__genres")


def read_generic(spark: SparkSession, spec: dict) -> DataFrame:
    path = spec["path"]
    fmt = (spec.get("format") or path.rstrip("/").rsplit(".", 1)[-1]).lower()
    options = spec.get("options") or {}
    try:
        if fmt == "csv":
            df = read_csv(spark, path, options)
        elif fmt in ("json", "jsonl", "ndjson"):
            df = spark.read.options(**{k: str(v) for k, v in options.items()}).json(path)
        elif fmt == "parquet":
            df = spark.read.options(**{k: str(v) for k, v in options.items()}).parquet(path)
        else:
            raise CatalogReadError(f"generic: unknown format '{fmt}' for {path} (csv | json | parquet; set 'format')")
    except CatalogReadError:
        raise
    except Exception as exc:
        raise CatalogReadError(f"generic: cannot read {path}: {exc}") from exc
    _require(df, ["id", "title", "description"], path, "generic")
    types = {f.name: f.dataType for f in df.schema.fields}
    errs = []
    if CORRUPT in df.columns:
        errs.append((F.col(CORRUPT).isNotNull(), S.MALFORMED_ROW))

    def listcol(name: str, sep: str) -> Column | None:
        if name not in types:
            return None
        if isinstance(types[name], ArrayType):
            arr = F.coalesce(F.col(name).cast(ArrayType(StringType())),
                             F.array().cast(ArrayType(StringType())))  # null -> none
            return F.filter(F.transform(arr, lambda x: strip_text(x)), lambda x: x.isNotNull() & (x != ""))
        return _list_udf(sep)(F.col(name).cast("string"))

    genres = listcol("genres", spec.get("genres_sep", ","))
    if genres is not None:
        df = df.withColumn("__genres", genres)
        errs.append((F.col("__genres").isNull(), S.UNPARSABLE_GENRES))
    authors = listcol("authors", spec.get("authors_sep", ","))
    if authors is not None:
        df = df.withColumn("__authors", authors)
    ident = F.trim(F.col("id").cast("string"))
    prefix = spec.get("id_prefix") or ""
    return _staged(
        df, id=F.when(F.length(ident) > 0, F.concat(F.lit(prefix), ident)),
        title=collapse_ws(F.col("title").cast("string")),
        description=strip_text(F.col("description").cast("string")),
        genres=F.coalesce(F.col("__genres"), F.array()) if genres is not None else F.array(),
        year=parse_year(F.col("year")) if "year" in types else F.lit(None),
        authors=F.when(F.size(F.col("__authors")) > 0, F.col("__authors")) if authors is not None else F.lit(None),
        source=str(spec.get("name") or "generic"),
        errors=_errors(*errs) if errs else F.array().cast(ArrayType(StringType())),
    )


READERS: dict[str, Callable[[SparkSession, dict], DataFrame]] = {
    "imdb_top1000": read_imdb_top1000,
    "wikipedia_summaries": read_wikipedia_summaries,
    "goodreads": read_goodreads,
    "generic": read_generic,
}


def read_source(spark: SparkSession, spec: dict) -> DataFrame:
    """One ``{reader: ..., path: ...}`` entry of ``cfg['catalogs'][domain]`` -> staged DataFrame."""
    name = spec.get("reader")
    if name not in READERS:
        raise CatalogReadError(f"unknown catalog reader '{name}' (have: {', '.join(READERS)})")
    if not spec.get("path"):
        raise CatalogReadError(f"catalog source {spec} has no 'path'")
    return READERS[name](spark, spec)
