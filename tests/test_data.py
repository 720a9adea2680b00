"""Catalog ingestion (lfr.data): readers, validation reasons, dedup, pairs, content hash."""
from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest

from lfr.config import PROJECT_ROOT
from lfr.data import CATALOG_SCHEMA, REJECTS_SCHEMA, content_hash_col, load_catalog, read_pairs
from lfr.data.text import parse_list_literal
from lfr.settings import load_settings, with_values

SAMPLE = PROJECT_ROOT / "data" / "sample"


@pytest.fixture(scope="module")
def cfg():
    return load_settings(overrides=[f"paths.data_dir={SAMPLE}"])


def catalog_settings(movies: list, **validation):
    """The packaged conf with these movie sources and validation values."""
    return with_values(load_settings(environ={}), {"catalogs": {"movies": movies},
                                                  **{f"validation.{k}": v for k, v in validation.items()}})


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


def _wiki_summaries() -> dict:
    return json.loads((SAMPLE / "movies_wikipedia_summaries.json").read_text(encoding="utf-8"))


def test_sample_movies_merged_nothing_lost(movies):
    valid, rejects, vdf = movies
    imdb = pd.read_csv(SAMPLE / "movies_imdb_top1000.csv")
    wiki = _wiki_summaries()
    assert (len(imdb), len(wiki)) == (300, 199)
    assert vdf.schema == CATALOG_SCHEMA
    assert valid.id.is_unique
    # nothing lost: every input row is an item, merged into one (lineage), or a reject with a reason
    merged = [m for ids in valid.merged_ids for m in ids]
    assert len(valid) + len(merged) + len(rejects) == len(imdb) + len(wiki)
    assert set(merged).isdisjoint(valid.id) and len(set(merged)) == len(merged)
    assert rejects.reason.notna().all() and (rejects.reason != "").all()
    assert merged and all(m.startswith("wiki:") for m in merged)
    assert (valid.source == "imdb_top1000").sum() == 300
    # lineage: sources name what fed the item, merged_ids the ids folded in
    for _, r in valid.iterrows():
        assert list(r.sources)[0] == r.source
        assert (("wikipedia_summaries" in list(r.sources))
                == (len(r.merged_ids) > 0 or r.source == "wikipedia_summaries"))
    by_id = valid.set_index("id")
    psycho = by_id.loc["imdb:psycho-1960"]
    assert list(psycho.merged_ids) == ["wiki:psycho-1960-film"]
    assert list(psycho.sources) == ["imdb_top1000", "wikipedia_summaries"]
    overview = imdb.set_index("Series_Title").loc["Psycho", "Overview"].strip()
    assert psycho.description == overview + "\n\n" + wiki["Psycho (1960 film)"].strip()
    assert (psycho.title, psycho.year, list(psycho.genres)) == ("Psycho", 1960, ["Horror", "Mystery", "Thriller"])
    assert "wiki:psycho-1960-film" not in set(rejects.id)
    assert list(by_id.loc["imdb:the-godfather-1972", "genres"]) == ["Crime", "Drama"]
    assert pd.isna(by_id.loc["imdb:apollo-13", "year"])          # Released_Year 'PG'
    assert {"imdb:drishyam-2013", "imdb:drishyam-2015"} <= set(valid.id)  # same title, two films
    wiki_items = valid[valid.source == "wikipedia_summaries"]
    assert wiki_items.genres.map(len).eq(0).all() and wiki_items.merged_ids.map(len).eq(0).all()
    assert not wiki_items.title.str.contains(r"\(film\)").any()
    unmerged = valid[valid.merged_ids.map(len) == 0]
    assert unmerged.sources.map(list).eq(unmerged.source.map(lambda x: [x])).all()


def test_merged_content_hash_covers_both_texts(spark, movies):
    vdf = movies[2].filter("id = 'imdb:psycho-1960'")
    row = vdf.select("title", "description", "genres", content_hash_col(vdf).alias("h")).first()
    text = "\x1f".join([row.title, row.description, "\x1e".join(row.genres)])
    assert row.h == hashlib.sha256(text.encode()).hexdigest() and "\n\n" in row.description


def _expected_book_reasons(src: pd.DataFrame) -> dict[str, int]:
    """Reject reasons of a Goodreads file by the rules of lfr.data.catalog, re-stated in plain Python:
    row checks (no id, empty/oversized description, unparsable genres, bad text), then a repeated id,
    then a repeated (normalised title, author) edition."""
    import re
    from collections import Counter

    from lfr.data.text import BAD_TEXT

    bad = re.compile(BAD_TEXT)
    ws = lambda s: re.sub(r"\s+", " ", s).strip()  # noqa: E731
    norm = lambda s: re.sub(r"[\W_]+", " ", re.sub("['\u2019\u2018`]", "", s.lower())).strip()  # noqa: E731
    seen_ids, seen_editions, reasons = set(), set(), []
    for r in src.itertuples():
        desc, genres, m = r.Description.strip(), parse_list_literal(r.Genres), re.search(r"/book/show/(\d+)", r.URL)
        row = [why for cond, why in [
            (m is None, "null_id"), (not desc, "empty_description"), (len(desc) > 20000, "oversized_description"),
            (genres is None, "unparsable_genres"),
            (any(bad.search(t) for t in (r.Book, r.Description, r.Author, *(genres or []))), "invalid_text")] if cond]
        edition = (norm(ws(r.Book)), ws(r.Author))
        if not row and m.group(1) in seen_ids:
            row = ["duplicate_id"]
        elif not row and edition[1] and edition in seen_editions:
            row = ["duplicate_of"]
        if row:
            reasons.append(",".join(row))
        else:
            seen_ids.add(m.group(1))
            seen_editions.add(edition)
    return dict(Counter(reasons))


def test_sample_books_reasons(books):
    valid, rejects, vdf = books
    src = pd.read_csv(SAMPLE / "books_goodreads.csv")
    assert len(src) == 700 and len(valid) + len(rejects) == 700
    assert vdf.schema == CATALOG_SCHEMA
    assert valid.id.is_unique and valid.id.str.match(r"^goodreads:\d+$").all()
    reasons = rejects.reason.str.replace(r"duplicate_of:.*", "duplicate_of", regex=True).value_counts().to_dict()
    # derived from the file by the documented rules (plain Python), not copied from a run
    expected = _expected_book_reasons(pd.read_csv(SAMPLE / "books_goodreads.csv", keep_default_na=False, dtype=str))
    assert reasons == expected and sum(expected.values()) == len(rejects) and len(expected) >= 3
    # '[]' genres are valid; descriptions equal pandas' parse (quotes, commas, newlines)
    assert (valid.genres.map(len) == 0).sum() > 0
    src["id"] = "goodreads:" + src.URL.str.extract(r"/book/show/(\d+)")[0]
    m = valid.merge(src, on="id")
    assert (m.description == m.Description.str.strip()).all()
    raw = json.loads(rejects.raw.iloc[0])
    assert {"Book", "Description", "Genres", "URL"} <= set(raw)


def test_sample_pairs_resolve(spark, cfg, movies, books, caplog):
    with caplog.at_level("WARNING", logger="lfr.data.pairs"):
        pairs = read_pairs(spark, cfg.catalogs["pairs"], movies[2], books[2]).toPandas()
    assert len(pairs) == 65 and not caplog.records
    assert pairs.movie_id.isin(set(movies[0].id)).all() and pairs.book_id.isin(set(books[0].id)).all()
    got = set(map(tuple, pairs.values))
    assert ("imdb:apocalypse-now-1979", books[0].set_index("title").loc["Heart of Darkness", "id"]) in got
    assert not pairs.movie_id.str.startswith("wiki:psycho").any()


def test_pairs_naming_a_merged_film_resolve_to_the_item(spark, movies, books, tmp_path):
    """A link naming the Wikipedia row of a merged film resolves to the merged item's (IMDb) id,
    by its id (``merged_ids``) and in the adaptations format; ids alone need no title match."""
    novel = books[0].set_index("title").loc["Heart of Darkness", "id"]
    ids = tmp_path / "ids.csv"
    ids.write_text(f"movie_id,book_id\nwiki:psycho-1960-film,{novel}\nwiki:no-such-film,{novel}\n", encoding="utf-8")
    got = read_pairs(spark, str(ids), movies[2], books[2]).toPandas()
    assert got.values.tolist() == [["imdb:psycho-1960", novel]]
    adapt = tmp_path / "adapt.csv"
    adapt.write_text("movie_source,movie_title,movie_year,book_title,book_author\n"
                     "wikipedia,Psycho (1960 film),,Heart of Darkness,Joseph Conrad\n", encoding="utf-8")
    got = read_pairs(spark, str(adapt), movies[2], books[2]).toPandas()
    assert got.values.tolist() == [["imdb:psycho-1960", novel]]
    # the same lookup by id fails on a catalog without lineage (the merged id is not an item id)
    bare = movies[2].drop("merged_ids")
    assert read_pairs(spark, str(ids), bare, books[2]).count() == 0


OTHER_TEXT = "same film, other source " + "z" * 66   # 90 chars: each text <= 100, both together > 100


@pytest.mark.parametrize("merge", [False, True])
def test_messy_generic_rejects_and_cross_source(spark, tmp_path, merge):
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
        ("t1", "Twin", "one film", "", "1990"),
        ("t2", "Twin", "its remake", "", "2010"),
    ]
    df = pd.DataFrame(rows, columns=["id", "title", "description", "genres", "year"])
    path = tmp_path / "a.csv"
    data = df.to_csv(index=False).encode("utf-8").replace(b"@@BAD@@", b"broken \xff\xfe")
    path.write_bytes(data)
    other = tmp_path / "b.json"
    other.write_text("\n".join(json.dumps(r) for r in [
        {"id": "x1", "title": "good film!", "description": OTHER_TEXT, "genres": ["A"], "year": 1999},
        {"id": "x2", "title": "Good Film", "description": "a remake", "genres": [], "year": 2020},
        {"id": "m2", "title": "Other", "description": "id clash across sources", "genres": None},
        {"id": "x3", "title": "Twin", "description": "which twin? no year", "genres": []},
    ]), encoding="utf-8")
    cfg = catalog_settings([{"reader": "generic", "path": str(path), "genres_sep": "|"},
                            {"reader": "generic", "path": str(other), "name": "other"}],
                           max_description_chars=100, min_description_chars=1, merge_sources=merge)
    valid, rejects = load_catalog(spark, cfg, "movies")
    v, r = valid.toPandas(), rejects.toPandas()
    assert rejects.schema == REJECTS_SCHEMA
    assert len(v) + len(r) + sum(len(ids) for ids in v.merged_ids) == len(rows) + 4
    got = dict(zip(r.title if "title" in r else r.id, r.reason))
    by = {(json.loads(raw).get("title")): reason for raw, reason in zip(r.raw, r.reason)}
    assert by == {
        "No Id": "null_id",
        "Dup Id": "duplicate_id",
        "Empty": "empty_description,unparsable_genres",
        "Too Long": "oversized_description",
        "Control\x07Char": "invalid_text",
        "Bad Bytes": "invalid_text",
        **({} if merge else {"good film!": "duplicate_of:m1", "Twin": "duplicate_of:t1"}),
        "Other": "duplicate_id",
        # Twin x3 (no year) fits two films: merging needs a known, equal year, so it stays its own item
    }, got
    assert bad_utf8 in json.loads(r[r.id == "m7"].raw.iloc[0])["description"]
    vv = v.set_index("id")
    assert list(vv.loc["m1", "genres"]) == ["Drama", "Crime"]
    assert list(vv.loc["m2", "genres"]) == [] and set(vv.index) == {"m1", "m2", "x2", "t1", "t2"} | (
        {"x3"} if merge else set())  # x2: other year
    assert vv.loc["x2", "source"] == "other"
    if merge:   # x1 folded into m1: m1's id, title, year and genres, both texts
        assert list(vv.loc["m1", "merged_ids"]) == ["x1"] and list(vv.loc["m1", "sources"]) == ["generic", "other"]
        assert vv.loc["m1", "description"] == 'A fine, "quoted"\ndescription.\n\n' + OTHER_TEXT
        assert len(vv.loc["m1", "description"]) > 100   # each text within the limit: the merge is never oversized
        assert (vv.loc["m1", "title"], vv.loc["m1", "year"]) == ("Good Film", 1999)
    else:
        assert list(vv.loc["m1", "merged_ids"]) == [] and list(vv.loc["m1", "sources"]) == ["generic"]
        assert vv.loc["m1", "description"] == 'A fine, "quoted"\ndescription.'
    assert list(vv.loc["x2", "merged_ids"]) == [] and list(vv.loc["x2", "sources"]) == ["other"]


def test_films_merge_only_on_a_known_equal_year(spark, tmp_path):
    """A Wikipedia title matching an IMDb film merges only when both years are known and equal (the
    disambiguator or the summary's first sentence gives it); no year on one side, or another year, keeps
    both items apart, and the case is counted and logged."""
    from lfr.data.catalog import read_catalog

    imdb = tmp_path / "imdb.csv"
    pd.DataFrame([("Casablanca", "1942", "Drama", "A cynical expatriate runs a nightclub."),
                  ("Psycho", "1960", "Horror", "A secretary steals money and hides at a motel."),
                  ("Vertigo", "1958", "Mystery", "A detective with a fear of heights follows a woman."),
                  ("A Star Is Born", "2018", "Drama", "A musician helps a young singer find fame.")],
                 columns=["Series_Title", "Released_Year", "Genres", "Overview"]).to_csv(imdb, index=False)
    wiki = tmp_path / "wiki.json"
    wiki.write_text(json.dumps({
        "Casablanca": "Casablanca is the largest city of Morocco.",                       # no year: another thing
        "Psycho (1960 film)": "Psycho is a psychological horror film.",                  # the disambiguator's year
        "Vertigo": "Vertigo is a 1958 American film noir directed by Alfred Hitchcock.",  # the lead's year
        "A Star Is Born": "A Star Is Born is a 1954 American musical film.",             # another year: the 1954 film
    }), encoding="utf-8")
    cfg = catalog_settings([{"reader": "imdb_top1000", "path": str(imdb)},
                            {"reader": "wikipedia_summaries", "path": str(wiki)}],
                           max_description_chars=1000, min_description_chars=1, merge_sources=True)
    load = read_catalog(spark, cfg, "movies")
    v = load.valid.toPandas().set_index("id")
    merged = {i: list(m) for i, m in v.merged_ids.items() if len(m)}
    assert merged == {"imdb:psycho-1960": ["wiki:psycho-1960-film"], "imdb:vertigo-1958": ["wiki:vertigo"]}
    assert {"wiki:casablanca", "wiki:a-star-is-born"} <= set(v.index) and len(v) == 6
    assert "Morocco" not in v.loc["imdb:casablanca-1942", "description"]
    assert v.loc["wiki:a-star-is-born", "year"] == 1954 and pd.isna(v.loc["wiki:casablanca", "year"])
    assert (load.merged, load.near, load.records) == (2, 2, {str(imdb): 4, str(wiki): 4})
    assert sorted(load.near_sample) == ["wiki:a-star-is-born ~ imdb:a-star-is-born-2018",
                                        "wiki:casablanca ~ imdb:casablanca-1942"]


def test_content_hash(spark):
    rows = [("a", "T", "D", ["x", "y"]), ("b", "T", "D", ["x", "y"]), ("c", "T", "D2", ["x", "y"]),
            ("d", "T", "D", ["xy"]), ("e", None, "D", [])]
    df = spark.createDataFrame(rows, "id string, title string, description string, genres array<string>")
    h = dict(df.select("id", content_hash_col(df).alias("h")).collect())
    assert h["a"] == h["b"] and len({h["a"], h["c"], h["d"]}) == 3
    assert h["a"] == hashlib.sha256("T\x1fD\x1fx\x1ey".encode()).hexdigest()
    assert h["e"] == hashlib.sha256("\x1fD\x1f".encode()).hexdigest()


def test_malformed_rows_rejected_with_their_text(spark, tmp_path):
    """A CSV record with more fields than the header and a non-string JSON summary are ``malformed_row``
    rejects (the record's own text kept in ``raw``); the rows around them stay valid."""
    csv_path = tmp_path / "movies.csv"
    csv_path.write_text("id,title,description,genres\n"
                        "g1,Good One,\"A fine, quoted description.\",Drama\n"
                        "bad,Too Many,fields here,Drama,EXTRA,MORE\n"
                        "g2,Good Two,Another description.,Crime\n", encoding="utf-8")
    wiki_path = tmp_path / "wiki.json"
    wiki_path.write_text(json.dumps({"Fine (film)": "A summary.", "Numbered (film)": 42}), encoding="utf-8")
    cfg = catalog_settings([{"reader": "generic", "path": str(csv_path)},
                            {"reader": "wikipedia_summaries", "path": str(wiki_path)}],
                           max_description_chars=1000, min_description_chars=1, merge_sources=True)
    valid, rejects = load_catalog(spark, cfg, "movies")
    v, r = valid.toPandas(), rejects.toPandas()
    assert sorted(v.id) == ["g1", "g2", "wiki:fine-film"]
    by_raw = {raw: reason for raw, reason in zip(r.raw, r.reason)}
    assert len(by_raw) == 2
    csv_raw = next(raw for raw in by_raw if "corrupt_record" in json.loads(raw))
    assert "EXTRA,MORE" in json.loads(csv_raw)["corrupt_record"]         # the record exactly as in the file
    assert by_raw[csv_raw] == "malformed_row"
    wiki_raw = json.dumps({"Numbered (film)": 42})
    assert by_raw[wiki_raw] == "malformed_row,empty_description"        # all its reasons: no text either


def test_bounded_sample_is_seeded_keeps_links_and_whole_author_groups(spark):
    """lfr.data.driver.bounded_sample: at most max_items rows plus the kept ids, the same rows however the
    catalog is partitioned, another sample for another seed, a book's author group taken whole (but for the
    last group drawn), a catalog that fits returned whole."""
    from lfr.data.driver import author_key, bounded_sample, id_key

    rows = [(f"b{i:03d}", [f"Author {i % 37}"] if i % 11 else []) for i in range(300)]
    books = spark.createDataFrame(rows, "id string, authors array<string>")
    keep = spark.createDataFrame([("b005",), ("b299",), ("b150",)], "book_id string")

    def ids(df, seed, partitions=2, keep_ids=keep, most=60):
        sample, total = bounded_sample(df.repartition(partitions), most, seed, author_key(), keep_ids)
        assert total == 300
        return sorted(r.id for r in sample.collect())

    got = ids(books, 13)
    assert {"b005", "b299", "b150"} <= set(got) and len(set(got)) == len(got)
    assert 60 <= len(got) <= 63
    assert got == ids(books, 13, partitions=5)              # deterministic: not the partitioning's
    assert got != ids(books, 14)
    without_keep = ids(books, 13, keep_ids=None)
    assert len(without_keep) == 60 and set(without_keep) <= set(got)
    by_author = {}
    for bid, authors in rows:
        if authors:
            by_author.setdefault(authors[0], set()).add(bid)
    partial = [a for a, members in by_author.items() if 0 < len(members & set(without_keep)) < len(members)]
    assert len(partial) <= 1, partial                        # whole groups, the last one drawn may be cut
    assert any(len(m & set(without_keep)) == len(m) > 1 for m in by_author.values())

    films = spark.createDataFrame([(f"m{i}",) for i in range(40)], "id string")
    whole, total = bounded_sample(films, 40, 13, id_key())
    assert total == 40 and whole.count() == 40               # fits: every row
    assert bounded_sample(films, 10, 13, id_key())[0].count() == 10
    with pytest.raises(ValueError, match="max_items"):
        bounded_sample(films, 0, 13, id_key())
