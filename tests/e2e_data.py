"""A tiny copy of the bundled sample (real rows, same file formats) for the end-to-end job tests.

Why real rows and the real readers: the jobs are run as users run them (spark-submit, the
sample's file names under ``paths.data_dir``), so the readers, validation and pair resolution
are part of what is tested; a few dozen rows keep each job to seconds with the tiny encoder.
Everything a test asserts about counts is derived from what this module wrote.
"""
from __future__ import annotations

import csv
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"
N_LINKS = 8              # linked films (imdb_top1000 links whose film and book are both in the sample)
N_OTHER_MOVIES = 10
N_OTHER_BOOKS = 12
WIKI_KEYS = 3            # Wikipedia summaries of films not in the IMDb subset


@dataclass
class TinyData:
    data_dir: Path
    links: list[dict]                               # adaptations rows written to adaptations_dev.csv
    imdb: list[dict] = field(default_factory=list)  # IMDb rows written
    books: list[dict] = field(default_factory=list)  # Goodreads rows written
    wiki: dict = field(default_factory=dict)


def _read_csv(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def _write_csv(path: Path, fields: list[str], rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _pick_links(links: list[dict], imdb: list[dict], books: list[dict]) -> list[dict]:
    """Jurassic Park first (conf/queries.sql asks for it), then the first other resolvable IMDb links."""
    films = {(r["Series_Title"], r["Released_Year"]) for r in imdb}
    titles = {(r["Book"], r["Author"]) for r in books}
    ok = [row for row in links if row["movie_source"] == "imdb_top1000"
          and (row["movie_title"], row["movie_year"]) in films and (row["book_title"], row["book_author"]) in titles]
    ok.sort(key=lambda row: row["movie_title"] != "Jurassic Park")
    return ok[:N_LINKS]


def write_tiny_data(dest: Path) -> TinyData:
    """Write the four sample files (a subset of each) into ``dest``; returns what was written."""
    dest.mkdir(parents=True, exist_ok=True)
    lf, links = _read_csv(SAMPLE / "adaptations_dev.csv")
    mf, imdb = _read_csv(SAMPLE / "movies_imdb_top1000.csv")
    bf, books = _read_csv(SAMPLE / "books_goodreads.csv")
    chosen = _pick_links(links, imdb, books)
    films = {(row["movie_title"], row["movie_year"]) for row in chosen}
    titles = {(row["book_title"], row["book_author"]) for row in chosen}
    imdb_rows = [r for r in imdb if (r["Series_Title"], r["Released_Year"]) in films]
    imdb_rows += [r for r in imdb if (r["Series_Title"], r["Released_Year"]) not in films][:N_OTHER_MOVIES]
    book_rows = [r for r in books if (r["Book"], r["Author"]) in titles]
    book_rows += [r for r in books
                  if (r["Book"], r["Author"]) not in titles and r["Description"].strip()][:N_OTHER_BOOKS]
    _write_csv(dest / "adaptations_dev.csv", lf, chosen)
    _write_csv(dest / "movies_imdb_top1000.csv", mf, imdb_rows)
    _write_csv(dest / "books_goodreads.csv", bf, book_rows)
    summaries = json.loads((SAMPLE / "movies_wikipedia_summaries.json").read_text(encoding="utf-8"))
    imdb_titles = {r["Series_Title"].lower() for r in imdb_rows}
    wiki = {k: v for k, v in summaries.items() if k.split(" (")[0].lower() not in imdb_titles}
    wiki = dict(list(wiki.items())[:WIKI_KEYS])
    (dest / "movies_wikipedia_summaries.json").write_text(json.dumps(wiki, indent=1), encoding="utf-8")
    return TinyData(data_dir=dest, links=chosen, imdb=imdb_rows, books=book_rows, wiki=wiki)


def without_books(data: TinyData, dest: Path, drop: int) -> tuple[Path, list[dict]]:
    """A copy of ``data`` whose Goodreads file lacks its last ``drop`` rows; returns (dir, dropped rows)."""
    shutil.copytree(data.data_dir, dest)
    _, rows = _read_csv(dest / "books_goodreads.csv")
    fields, _ = _read_csv(SAMPLE / "books_goodreads.csv")
    _write_csv(dest / "books_goodreads.csv", fields, rows[:-drop])
    return dest, rows[-drop:]
