"""Corrupted catalog files for the readers (tests/test_fuzz_catalogs.py), made from the bundled sample.

Each ``FuzzCase`` is one source file in the format of its reader with one kind of damage, and the
ground truth of what was written into it: the ids of its records (as the reader derives them), the
records the damage hit with the reject reason each must get, and the outcome the file must have:

* ``accounted`` -- every written record ends, by id, exactly once in the valid catalog, merged into
  an item, or in the rejects (its own row, with its reason);
* ``error`` -- the file cannot be used as a whole (cut inside a record, unbalanced quotes, empty,
  missing, wrong format): a ``CatalogReadError`` naming the file, before any row is produced.

Kinds: truncated records, wrong delimiters, invalid UTF-8 bytes, NUL bytes, one huge description,
1,000 columns, a stray quote, empty / header-only / missing files, cut and empty JSON documents, and
a seeded random byte-level mutation of a clean file (never inside a record's id, so accounting by id
stays possible; its outcome follows from its quotes: an odd count can only be an error). The damage
is deterministic for a seed: ``python -m tests.fuzz_catalogs OUT_DIR`` writes them all.
"""
from __future__ import annotations

import csv
import io
import json
import random
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"
BOOK_COLS = ["", "Book", "Author", "Description", "Genres", "Avg_Rating", "Num_Ratings", "URL"]
BOOK_URL = re.compile(rb"/book/show/(\d+)")
ACCOUNTED, ERROR = "accounted", "error"


@dataclass(frozen=True)
class FuzzCase:
    name: str
    reader: str          # lfr.data.readers name
    domain: str          # movies | books
    path: Path
    ids: tuple           # ids of the records written, in file order
    expect: str = ACCOUNTED          # ACCOUNTED | ERROR
    damaged: dict = field(default_factory=dict)   # id -> reject reason that record must get
    exact: bool = True   # every record not in ``damaged`` must be valid (False: random damage)
    allow_empty: bool = False        # the source is declared empty-able

    @property
    def records(self) -> int:
        return len(self.ids)


def slug(title: str) -> str:
    """The readers' slug (lfr.data.text.slug) for plain titles: lower-case, apostrophes dropped, '-' joins."""
    t = re.sub("['\u2019\u2018`]", "", title.lower())
    return "-".join(re.sub(r"[^\w]+", " ", t).split())


def book_id(row: list[str]) -> str:
    return "goodreads:" + BOOK_URL.search(row[7].encode()).group(1).decode()


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


def _books(folder: Path, name: str, data: str | bytes, rows: list[list[str]], **kw) -> FuzzCase:
    return FuzzCase(name, "goodreads", "books", _write(folder / f"{name}.csv", data),
                    tuple(book_id(r) for r in rows), **kw)


def truncated(folder: Path, rows: list[list[str]]) -> list[FuzzCase]:
    text = to_csv(BOOK_COLS, rows)
    last_desc = text.rfind(rows[-1][3][:40])
    cut_in_quote = text[: last_desc + 20]                        # EOF inside an open quoted description
    short = [list(r) for r in rows]
    short[1] = short[1][:4] + [short[1][7]]                      # records missing columns (their URL kept in the text)
    short[2] = short[2][:3] + [short[2][7]]
    bad = {book_id(rows[1]): "malformed_row", book_id(rows[2]): "malformed_row"}
    return [_books(folder, "truncated_file", cut_in_quote, rows, expect=ERROR),
            _books(folder, "truncated_records", to_csv(BOOK_COLS, short), rows, damaged=bad)]


def wrong_delimiters(folder: Path, rows: list[list[str]]) -> list[FuzzCase]:
    mixed = to_csv(BOOK_COLS, rows[:3]) + to_csv(BOOK_COLS, rows[3:6], ";").split("\n", 1)[1] \
        + to_csv(BOOK_COLS, rows[6:], "\t").split("\n", 1)[1]
    return [_books(folder, "mixed_delimiters", mixed, rows, expect=ERROR),          # its tail is another format
            _books(folder, "semicolon_file", to_csv(BOOK_COLS, rows, ";"), rows, expect=ERROR)]


def bad_bytes(folder: Path, rows: list[list[str]]) -> list[FuzzCase]:
    clean = to_csv(BOOK_COLS, rows).encode("utf-8")
    invalid = clean.replace(rows[1][3][:30].encode(),
                            rows[1][3][:10].encode() + b"\xff\xfe\xc3(" + rows[1][3][10:30].encode(), 1)
    nul = clean.replace(rows[2][3][:30].encode(),
                        rows[2][3][:10].encode() + b"\x00\x00" + rows[2][3][10:30].encode(), 1)
    nul = nul.replace(rows[3][1].encode(), b"\x00" + rows[3][1].encode(), 1)
    assert invalid != clean and nul != clean
    return [_books(folder, "invalid_utf8", invalid, rows, damaged={book_id(rows[1]): "invalid_text"}),
            _books(folder, "nul_bytes", nul, rows, damaged={book_id(rows[2]): "invalid_text",
                                                            book_id(rows[3]): "invalid_text"})]


def huge_and_wide(folder: Path, rows: list[list[str]], huge_mb: int = 50) -> list[FuzzCase]:
    big = [list(r) for r in rows]
    big[0][3] = ("A very long description. " * (huge_mb * 1024 * 1024 // 25 + 1))[: huge_mb * 1024 * 1024]
    extra = [f"extra_{i}" for i in range(1000 - len(BOOK_COLS))]
    wide = [r + [str(i) for i in range(len(extra))] for r in rows]
    return [_books(folder, "huge_description", to_csv(BOOK_COLS, big), rows,
                   damaged={book_id(rows[0]): "oversized_description"}),
            _books(folder, "thousand_columns", to_csv(BOOK_COLS + extra, wide), rows)]


def stray_quote(folder: Path, rows: list[list[str]]) -> list[FuzzCase]:
    """One unescaped quote opening an author field: the parser would fold the next records into it."""
    text = to_csv(BOOK_COLS, rows)
    record = to_csv(rows[4], [])                                 # the record as the file spells it
    head = to_csv(rows[4][:2], []).rstrip("\n") + ","            # its index and title fields
    assert record in text and record.startswith(head) and not rows[4][2].startswith('"')
    return [_books(folder, "stray_quote", text.replace(record, head + '"' + record[len(head):], 1), rows,
                   expect=ERROR)]


def empty_and_missing(folder: Path) -> list[FuzzCase]:
    header = ",".join(BOOK_COLS) + "\n"
    return [_books(folder, "empty_file", b"", [], expect=ERROR),
            _books(folder, "header_only", header, [], expect=ERROR),
            _books(folder, "header_only_allowed", header, [], allow_empty=True),
            FuzzCase("missing_file", "goodreads", "books", folder / "does_not_exist.csv", (), expect=ERROR)]


def _wiki(folder: Path, name: str, doc: str, entries: dict, **kw) -> FuzzCase:
    return FuzzCase(name, "wikipedia_summaries", "movies", _write(folder / f"{name}.json", doc),
                    tuple("wiki:" + slug(k) for k in entries), **kw)


def movie_cases(folder: Path) -> list[FuzzCase]:
    with open(SAMPLE / "movies_imdb_top1000.csv", newline="", encoding="utf-8") as fh:
        imdb = list(csv.reader(fh))
    text = to_csv(imdb[0], imdb[1:9])
    imdb_ids = tuple(f"imdb:{slug(r[1])}-{r[2]}" for r in imdb[1:9])
    wiki = json.loads((SAMPLE / "movies_wikipedia_summaries.json").read_text(encoding="utf-8"))
    entries = dict(list(wiki.items())[:6])
    first = next(iter(entries))
    bad = dict(entries)
    bad[first] = entries[first][:50] + "\x00\ufffd" + entries[first][50:]
    doc = json.dumps(entries)
    return [FuzzCase("imdb_truncated", "imdb_top1000", "movies", _write(folder / "imdb_truncated.csv", text[:-30]),
                     imdb_ids, expect=ERROR),
            _wiki(folder, "wiki_nul_and_replacement", json.dumps(bad), entries,
                  damaged={"wiki:" + slug(first): "invalid_text"}),
            _wiki(folder, "wiki_cut_json", doc[:-40], entries, expect=ERROR),          # the document cut short
            _wiki(folder, "wiki_cut_in_half", doc[: len(doc) // 2], entries, expect=ERROR),
            _wiki(folder, "wiki_empty_object", "{}", {}, expect=ERROR)]


def _protected(data: bytearray) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in BOOK_URL.finditer(bytes(data))]


def random_mutations(folder: Path, rows: list[list[str]], seed: int, n_files: int = 2) -> list[FuzzCase]:
    """Seeded byte-level damage of a clean file: bytes flipped, deleted, quotes, delimiters, newlines and
    NULs inserted -- anywhere but inside a record's id, so the records stay identifiable."""
    rng = random.Random(seed)
    cases = []
    for k in range(n_files):
        data = bytearray(to_csv(BOOK_COLS, rows).encode("utf-8"))
        header_end = data.index(b"\n") + 1
        for _ in range(12):
            spans = _protected(data)
            pos = rng.randrange(header_end, len(data))
            while any(a - 20 <= pos < b for a, b in spans):
                pos = rng.randrange(header_end, len(data))
            op = rng.choice(["flip", "delete", "quote", "comma", "newline", "nul"])
            if op == "flip":
                data[pos] = rng.randrange(256)
            elif op == "delete":
                end = min([pos + rng.randrange(1, 20)] + [a - 20 for a, _ in spans if a - 20 > pos])
                del data[pos:end]
            else:
                data[pos:pos] = {"quote": b'"', "comma": b",", "newline": b"\n", "nul": b"\x00"}[op]
        expect = ERROR if bytes(data).count(b'"') % 2 else ACCOUNTED
        cases.append(_books(folder, f"random_{seed}_{k}", bytes(data), rows, expect=expect, exact=False))
    return cases


def all_cases(folder: Path, n_rows: int = 12, seed: int = 7, huge_mb: int = 50) -> list[FuzzCase]:
    folder.mkdir(parents=True, exist_ok=True)
    rows = sample_books(n_rows)
    return [*truncated(folder, rows), *wrong_delimiters(folder, rows), *bad_bytes(folder, rows),
            *huge_and_wide(folder, rows, huge_mb), *stray_quote(folder, rows), *empty_and_missing(folder),
            *movie_cases(folder), *random_mutations(folder, rows, seed)]


if __name__ == "__main__":
    for case in all_cases(Path(sys.argv[1])):
        print(f"{case.name:28} {case.reader:20} {case.records:3} records  {case.expect:9}  {case.path}")
