"""Catalog ingestion (lfr.data): readers, validation reasons, dedup, pairs, content hash."""
from __future__ import annotations

import hashlib
import json
import os
import sys

import pandas as pd
import pytest

# Python workers must run this interpreter (pandas UDFs need its pyarrow); set before the session starts.

from lfr.config import PROJECT_ROOT, load_config  # noqa: E402
from lfr.data import CATALOG_SCHEMA, REJECTS_SCHEMA, content_hash_col, load_catalog, read_pairs  # noqa: E402
from lfr.data.text import parse_list_literal  # noqa: E402

SAMPLE = PROJECT_ROOT / "data" / "sample"


@pytest.fixture(scope="module")
def cfg():
    return load_config(overrides=[f"paths.data_dir={SAMPLE}"])


@pytest.fixture(scope="module")
def movies(spark, cfg):
    valid, rejects = load_catalog(spark, cfg, "movies")
    return valid.toPandas(), rejects.toPandas(), valid


@pytest.fixture(scope="module")
def books(spark, cfg):
    valid, rejects = load_catalog(spark, cfg, "books")
    return valid.toPandas(), rejects.toPandas(), valid


def test_parse_list_literal():
    assert parse_list_literal("['Classics', 'Fiction']") == ["Classics", "Fiction"]
    assert parse_list_literal("[\"Children's\", ' Fiction ']") == ["Children's", "Fiction"]
    assert parse_list_literal('["a", "b"]') == ["a", "b"]
    assert parse_list_literal("[]") == [] and parse_list_literal(None) == [] and parse_list_literal("  ") == []
    assert parse_list_literal("['Classics', 'Fic") is None
    assert parse_list_literal("[1, 2]") is None
    assert parse_list_literal("__import__('os').system('true')") is None  # never evaluated
    assert parse_list_literal("Crime,  Drama", ",") == ["Crime", "Drama"]


def test_sample_movies_all_rows_accounted(movies):
    valid, rejects, vdf = movies
    n_imdb = len(pd.read_csv(SAMPLE / "movies_imdb_top1000.csv"))
    n_wiki = len(json.loads((SAMPLE / "movies_wikipedia_summaries.json").read_text(encoding="utf-8")))
    assert (n_imdb, n_wiki) == (300, 199)
    assert len(valid) + len(rejects) == n_imdb + n_wiki
    assert vdf.schema == CATALOG_SCHEMA
    assert valid.id.is_unique
    assert (valid.source == "imdb_top1000").sum() == 300
    # every Wikipedia reject is a cross-source duplicate naming the kept IMDb row
    assert set(rejects.source) == {"wikipedia_summaries"}
    assert rejects.reason.str.match(r"^duplicate_of:imdb:").all()
    kept = rejects.reason.str.removeprefix("duplicate_of:")
    assert kept.isin(set(valid.id)).all()
    by_id = valid.set_index("id")
    assert list(by_id.loc["imdb:the-godfather-1972", "genres"]) == ["Crime", "Drama"]
    assert pd.isna(by_id.loc["imdb:apollo-13", "year"])          # Released_Year 'PG'
    assert {"imdb:drishyam-2013", "imdb:drishyam-2015"} <= set(valid.id)  # same title, two films
    wiki = valid[valid.source == "wikipedia_summaries"]
    assert wiki.genres.map(len).eq(0).all() and len(wiki) == 199 - len(rejects)
    assert not wiki.title.str.contains(r"\(film\)").any()
    psycho = rejects[rejects.id == "wiki:psycho-1960-film"]
    assert psycho.reason.tolist() == ["duplicate_of:imdb:psycho-1960"]
    assert json.loads(psycho.raw.iloc[0]) == {"Psycho (1960 film)": json.loads(
        (SAMPLE / "movies_wikipedia_summaries.json").read_text(encoding="utf-8"))["Psycho (1960 film)"]}


def test_sample_books_reasons(books):
    valid, rejects, vdf = books
    src = pd.read_csv(SAMPLE / "books_goodreads.csv")
    assert len(src) == 700 and len(valid) + len(rejects) == 700
    assert vdf.schema == CATALOG_SCHEMA
    assert valid.id.is_unique and valid.id.str.match(r"^goodreads:\d+$").all()
    reasons = rejects.reason.str.replace(r"duplicate_of:.*", "duplicate_of", regex=True).value_counts().to_dict()
    assert reasons == {"empty_description": 12, "duplicate_of": 20, "invalid_text": 2}
    # '[]' genres are valid; descriptions equal pandas' parse (quotes, commas, newlines)
    assert (valid.genres.map(len) == 0).sum() > 0
    src["id"] = "goodreads:" + src.URL.str.extract(r"/book/show/(\d+)")[0]
    m = valid.merge(src, on="id")
    assert (m.description == m.Description.str.strip()).all()
    raw = json.loads(rejects.raw.iloc[0])
    assert {"Book", "Description", "Genres", "URL"} <= set(raw)


def test_sample_pairs_resolve(spark, cfg, movies, books, caplog):
    with caplog.at_level("WARNING", logger="lfr.data.pairs"):
        pairs = read_pairs(spark, cfg["catalogs"]["pairs"], movies[2], books[2]).toPandas()
    assert len(pairs) == 65 and not caplog.records
    assert pairs.movie_id.isin(set(movies[0].id)).all() and pairs.book_id.isin(set(books[0].id)).all()
    got = set(map(tuple, pairs.values))
    assert ("imdb:apocalypse-now-1979", books[0].set_index("title").loc["Heart of Darkness", "id"]) in got
    # a linked Wikipedia film that was merged into its IMDb row resolves to the IMDb id
    assert not pairs.movie_id.str.startswith("wiki:psycho").any()


def test_messy_generic_rejects_and_cross_source(spark, tmp_path):
    bad_utf8 = "broken \ufffd"  # what Spark's decoder makes of invalid bytes; the file below holds real invalid bytes
    rows = [
        ("m1", "Good Film", "A fine, \"quoted\"\ndescription.", "Drama|Crime", "1999"),
        ("m2", "No Genres", "Still valid.", "", ""),
        ("", "No Id", "desc", "Drama", ""),
        ("m1", "Dup Id", "another", "Drama", ""),
        ("m4", "Empty", "   ", "['Drama', ", ""),
        ("m5", "Too Long", "x" * 101, "Drama", ""),
        ("m6", "Control\x07Char", "desc", "Drama", ""),
        ("m7", "Bad Bytes", "@@BAD@@", "Drama", ""),
    ]
    df = pd.DataFrame(rows, columns=["id", "title", "description", "genres", "year"])
    path = tmp_path / "a.csv"
    data = df.to_csv(index=False).encode("utf-8").replace(b"@@BAD@@", b"broken \xff\xfe")
    path.write_bytes(data)
    other = tmp_path / "b.json"
    other.write_text("\n".join(json.dumps(r) for r in [
        {"id": "x1", "title": "good film!", "description": "same film, other source", "genres": ["A"], "year": 1999},
        {"id": "x2", "title": "Good Film", "description": "a remake", "genres": [], "year": 2020},
        {"id": "m2", "title": "Other", "description": "id clash across sources", "genres": None},
    ]), encoding="utf-8")
    cfg = {
        "catalogs": {"movies": [
            {"reader": "generic", "path": str(path), "genres_sep": "|"},
            {"reader": "generic", "path": str(other), "name": "other"},
        ]},
        "validation": {"max_description_chars": 100, "min_description_chars": 1},
    }
    valid, rejects = load_catalog(spark, cfg, "movies")
    v, r = valid.toPandas(), rejects.toPandas()
    assert rejects.schema == REJECTS_SCHEMA
    assert len(v) + len(r) == len(rows) + 3
    got = dict(zip(r.title if "title" in r else r.id, r.reason))
    by = {(json.loads(raw).get("title")): reason for raw, reason in zip(r.raw, r.reason)}
    assert by == {
        "No Id": "null_id",
        "Dup Id": "duplicate_id",
        "Empty": "empty_description,unparsable_genres",
        "Too Long": "oversized_description",
        "Control\x07Char": "invalid_text",
        "Bad Bytes": "invalid_text",
        "good film!": "duplicate_of:m1",
        "Other": "duplicate_id",
    }, got
    assert bad_utf8 in json.loads(r[r.id == "m7"].raw.iloc[0])["description"]
    vv = v.set_index("id")
    assert list(vv.loc["m1", "genres"]) == ["Drama", "Crime"] and vv.loc["m1", "description"] == 'A fine, "quoted"\ndescription.'
    assert list(vv.loc["m2", "genres"]) == [] and set(vv.index) == {"m1", "m2", "x2"}  # x2: other year -> not a duplicate
    assert vv.loc["x2", "source"] == "other"


def test_content_hash(spark):
    rows = [("a", "T", "D", ["x", "y"]), ("b", "T", "D", ["x", "y"]), ("c", "T", "D2", ["x", "y"]),
            ("d", "T", "D", ["xy"]), ("e", None, "D", [])]
    df = spark.createDataFrame(rows, "id string, title string, description string, genres array<string>")
    h = dict(df.select("id", content_hash_col(df).alias("h")).collect())
    assert h["a"] == h["b"] and len({h["a"], h["c"], h["d"]}) == 3
    assert h["a"] == hashlib.sha256("T\x1fD\x1fx\x1ey".encode()).hexdigest()
    assert h["e"] == hashlib.sha256("\x1fD\x1f".encode()).hexdigest()
