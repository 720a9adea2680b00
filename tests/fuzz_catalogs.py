"""Corrupted catalog files for the readers (tests/test_fuzz_catalogs.py), made from the bundled sample.

Each ``FuzzCase`` is one source file in the format of its reader with one kind of damage, and how
many records were written into it. Kinds: truncated records (the file cut inside a quoted field,
a record missing its last columns), wrong delimiters (``;`` / tab instead of ``,``), invalid UTF-8
bytes, NUL bytes, one 50 MB description, 1,000 columns, an empty file, a missing file; plus a seeded
random byte-level mutation of a clean file. The damage is deterministic for a seed, so a failing case
can be reproduced: ``python -m tests.fuzz_catalogs OUT_DIR`` writes them all.
"""
from __future__ import annotations

import csv
import io
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"
BOOK_COLS = ["", "Book", "Author", "Description", "Genres", "Avg_Rating", "Num_Ratings", "URL"]


@dataclass(frozen=True)
class FuzzCase:
    name: str
    reader: str          # lfr.data.readers name
    domain: str          # movies | books
    path: Path
    records: int         # records written (what a reader could at most recover)
    unreadable: bool = False   # the whole file is unusable: a clear CatalogReadError, not rows


def sample_books(n: int) -> list[list[str]]:
    with open(SAMPLE / "books_goodreads.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    return [r for r in rows[1:] if len(r) == len(BOOK_COLS)][:n]


def to_csv(header: list[str], rows: list[list[str]], delimiter: str = ",") -> str:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\n").writerows([header, *rows])
    return out.getvalue()


def _write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def _books_case(folder: Path, name: str, data: str | bytes, records: int, unreadable: bool = False) -> FuzzCase:
    return FuzzCase(name, "goodreads", "books", _write(folder / f"{name}.csv", data), records, unreadable)


def truncated(folder: Path, rows: list[list[str]]) -> list[FuzzCase]:
    text = to_csv(BOOK_COLS, rows)
    last_desc = text.rfind(rows[-1][3][:40])
    cut_in_quote = text[: last_desc + 20]                        # EOF inside an open quoted description
    short = [list(r) for r in rows]
    short[1] = short[1][:4]                                      # a record without its last columns
    short[2] = short[2][:2]
    return [_books_case(folder, "truncated_file", cut_in_quote, len(rows)),
            _books_case(folder, "truncated_records", to_csv(BOOK_COLS, short), len(rows))]


def wrong_delimiters(folder: Path, rows: list[list[str]]) -> list[FuzzCase]:
    mixed = to_csv(BOOK_COLS, rows[:3]) + to_csv(BOOK_COLS, rows[3:6], ";").split("\n", 1)[1] \
        + to_csv(BOOK_COLS, rows[6:], "\t").split("\n", 1)[1]
    return [_books_case(folder, "mixed_delimiters", mixed, len(rows)),
            _books_case(folder, "semicolon_file", to_csv(BOOK_COLS, rows, ";"), len(rows), unreadable=True)]


def bad_bytes(folder: Path, rows: list[list[str]]) -> list[FuzzCase]:
    clean = to_csv(BOOK_COLS, rows).encode("utf-8")
    invalid = clean.replace(rows[1][3][:30].encode(), rows[1][3][:10].encode() + b"\xff\xfe\xc3(" + rows[1][3][10:30].encode(), 1)
    nul = clean.replace(rows[2][3][:30].encode(), rows[2][3][:10].encode() + b"\x00\x00" + rows[2][3][10:30].encode(), 1)
    nul = nul.replace(rows[3][1].encode(), b"\x00" + rows[3][1].encode(), 1)
    return [_books_case(folder, "invalid_utf8", invalid, len(rows)), _books_case(folder, "nul_bytes", nul, len(rows))]


def huge_and_wide(folder: Path, rows: list[list[str]], huge_mb: int = 50) -> list[FuzzCase]:
    big = [list(r) for r in rows]
    big[0][3] = ("A very long description. " * (huge_mb * 1024 * 1024 // 25 + 1))[: huge_mb * 1024 * 1024]
    extra = [f"extra_{i}" for i in range(1000 - len(BOOK_COLS))]
    wide = [r + [str(i) for i in range(len(extra))] for r in rows]
    return [_books_case(folder, "huge_description", to_csv(BOOK_COLS, big), len(rows)),
            _books_case(folder, "thousand_columns", to_csv(BOOK_COLS + extra, wide), len(rows))]


def empty_and_missing(folder: Path) -> list[FuzzCase]:
    return [_books_case(folder, "empty_file", b"", 0, unreadable=True),
            _books_case(folder, "header_only", ",".join(BOOK_COLS) + "\n", 0),
            FuzzCase("missing_file", "goodreads", "books", folder / "does_not_exist.csv", 0, unreadable=True)]


def movie_cases(folder: Path) -> list[FuzzCase]:
    imdb = (SAMPLE / "movies_imdb_top1000.csv").read_text(encoding="utf-8").split("\n")
    head = "\n".join(imdb[:9])                                  # header + 8 records (single-line in the sample)
    cut = head[: len(head) - 30]
    wiki = json.loads((SAMPLE / "movies_wikipedia_summaries.json").read_text(encoding="utf-8"))
    entries = dict(list(wiki.items())[:6])
    first = next(iter(entries))
    entries[first] = entries[first][:50] + "\x00\ufffd" + entries[first][50:]
    broken_json = json.dumps(entries)[:-40]                      # the document cut short
    return [FuzzCase("imdb_truncated", "imdb_top1000", "movies", _write(folder / "imdb_truncated.csv", cut), 8),
            FuzzCase("wiki_nul_and_replacement", "wikipedia_summaries", "movies",
                     _write(folder / "wiki_bad_text.json", json.dumps(entries)), len(entries)),
            FuzzCase("wiki_cut_json", "wikipedia_summaries", "movies",
                     _write(folder / "wiki_cut.json", broken_json), len(entries))]


def random_mutations(folder: Path, rows: list[list[str]], seed: int, n_files: int = 2) -> list[FuzzCase]:
    """Seeded byte-level damage of a clean file: bytes flipped, deleted, quotes and delimiters inserted."""
    rng = random.Random(seed)
    cases = []
    for k in range(n_files):
        data = bytearray(to_csv(BOOK_COLS, rows).encode("utf-8"))
        header_end = data.index(b"\n") + 1
        for _ in range(12):
            pos = rng.randrange(header_end, len(data))
            op = rng.choice(["flip", "delete", "quote", "comma", "newline", "nul"])
            if op == "flip":
                data[pos] = rng.randrange(256)
            elif op == "delete":
                del data[pos: pos + rng.randrange(1, 20)]
            else:
                data[pos:pos] = {"quote": b'"', "comma": b",", "newline": b"\n", "nul": b"\x00"}[op]
        cases.append(_books_case(folder, f"random_{seed}_{k}", bytes(data), len(rows)))
    return cases


def all_cases(folder: Path, n_rows: int = 12, seed: int = 7, huge_mb: int = 50) -> list[FuzzCase]:
    folder.mkdir(parents=True, exist_ok=True)
    rows = sample_books(n_rows)
    return [*truncated(folder, rows), *wrong_delimiters(folder, rows), *bad_bytes(folder, rows),
            *huge_and_wide(folder, rows, huge_mb), *empty_and_missing(folder), *movie_cases(folder),
            *random_mutations(folder, rows, seed)]


if __name__ == "__main__":
    for case in all_cases(Path(sys.argv[1])):
        print(f"{case.name:28} {case.reader:20} {case.records:3} records  {case.path}")
