"""Build the bundled sample in data/sample/ from the full catalogs (../shared/data).

Kept small (hundreds of rows) so tests and the demo run fast, but real and
messy: every film and book of the adaptation links is kept (so evaluation works
on the sample), the rows with empty descriptions / empty genre lists / duplicate
titles are kept on purpose, and the rest is a seeded random draw.

    python scripts/make_sample.py --src ../shared/data --dst data/sample
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pandas as pd


def norm_title(title: str) -> str:
    title = re.sub(r"\s*\((?:\d{4} )?film\)$", "", str(title))
    return re.sub(r"[^a-z0-9]+", " ", title.lower()).strip()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", default="../shared/data")
    ap.add_argument("--dst", default="data/sample")
    ap.add_argument("--movies", type=int, default=300)
    ap.add_argument("--wiki-only", type=int, default=120)
    ap.add_argument("--books", type=int, default=700)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    src, dst = Path(a.src), Path(a.dst)
    dst.mkdir(parents=True, exist_ok=True)

    links = pd.read_csv(src / "adaptations_dev.csv", dtype=str, keep_default_na=False)
    imdb = pd.read_csv(src / "movies_imdb_top1000.csv", dtype=str, keep_default_na=False)
    books = pd.read_csv(src / "books_goodreads.csv", dtype=str, keep_default_na=False)
    wiki = json.loads((src / "movies_wikipedia_summaries.json").read_text(encoding="utf-8"))

    linked_imdb = set(links.loc[links.movie_source == "imdb_top1000", "movie_title"])
    linked_wiki = set(links.loc[links.movie_source == "wikipedia", "movie_title"])
    linked_books = set(links.book_title)

    dup_titles = imdb.Series_Title[imdb.Series_Title.duplicated(keep=False)]
    keep_imdb = imdb.Series_Title.isin(linked_imdb | set(dup_titles))
    rest = imdb[~keep_imdb].sample(n=max(0, a.movies - int(keep_imdb.sum())), random_state=a.seed)
    imdb_s = imdb[keep_imdb | imdb.index.isin(rest.index)].sort_index()

    imdb_norm = set(imdb_s.Series_Title.map(norm_title))
    all_imdb_norm = set(imdb.Series_Title.map(norm_title))
    overlap = [t for t in wiki if norm_title(t) in imdb_norm]
    wiki_only = sorted(t for t in wiki if norm_title(t) not in all_imdb_norm and t not in linked_wiki)
    rng = pd.Series(wiki_only).sample(n=min(a.wiki_only, len(wiki_only)), random_state=a.seed)
    wiki_keep = set(overlap) | linked_wiki | set(rng)
    wiki_s = {t: s for t, s in wiki.items() if t in wiki_keep}

    messy = ((books.Description.str.strip() == "") | (books.Genres.str.strip() == "[]")
             | books.Book.duplicated(keep=False))
    keep_b = books.Book.isin(linked_books) | messy
    rest_b = books[~keep_b].sample(n=max(0, a.books - int(keep_b.sum())), random_state=a.seed)
    books_s = books[keep_b | books.index.isin(rest_b.index)].sort_index()

    imdb_s.to_csv(dst / "movies_imdb_top1000.csv", index=False)
    # keep the original blank index header
    books_s.rename(columns={"Unnamed: 0": ""}).to_csv(dst / "books_goodreads.csv", index=False)
    (dst / "movies_wikipedia_summaries.json").write_text(json.dumps(wiki_s, ensure_ascii=False, indent=0),
                                                          encoding="utf-8")
    links.to_csv(dst / "adaptations_dev.csv", index=False)
    print(f"imdb {len(imdb_s)}, wikipedia {len(wiki_s)}, books {len(books_s)}, links {len(links)}")


if __name__ == "__main__":
    main()
