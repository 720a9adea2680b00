"""The strict protocol's masking: remove what names the answer from the texts every method reads.

The ground-truth links were found by title (62 of the 65 dev links) or because the film's
Wikipedia summary names the book, and merged film texts often say "based on the novel X by Y".
A method that reads such a text can match the book by its title or author instead of by what the
story is about. ``eval.protocols: [open, strict]`` reports both: ``open`` evaluates the texts as
the catalogs give them, ``strict`` evaluates them after ``mask_catalogs``:

* in each linked film's text: its linked book(s)' title (without the Goodreads series bracket,
  "The Hunger Games (The Hunger Games, #1)" -> "The Hunger Games"; also the part before a colon and,
  for titles of three or more words, the title without its leading article)
  and each author's full name and surname ("Arthur C. Clarke" -> "Arthur C. Clarke", "Clarke");
* in each linked book's text: its linked film(s)' title (without a trailing "(1960 film)").

Matching is case-insensitive on word boundaries (a phrase's spaces match any whitespace, straight
and curly apostrophes match each other). A match is REMOVED, not replaced by a placeholder: one
token written into both a film's and its book's text would itself be a shared word that TF-IDF,
BM25 and the encoders would match on. Masking errs towards removing too much: a surname such as
"King" is removed wherever it occurs in the linked film's own text.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

import pandas as pd

PROTOCOLS = ("open", "strict")
_TRAILING_PAREN = re.compile(r"\s*\([^()]*\)\s*$")
_INITIAL = re.compile(r"^(?:[A-Za-z]\.)+[A-Za-z]?$|^[A-Za-z]$")   # "C.", "J.K.", "J.R.R.", "C"
_SUFFIXES = {"jr", "jr.", "sr", "sr.", "ii", "iii", "iv"}
_ARTICLES = {"the", "a", "an"}
_PARTICLES = {"le", "la", "de", "du", "da", "di", "van", "von", "der", "den", "del", "st.", "mac"}


@dataclass(frozen=True)
class MaskStats:
    """How much the strict protocol removed (for the report)."""
    films_masked: int      # film texts with at least one removal
    films_linked: int
    film_removals: int     # phrases removed from film texts
    books_masked: int
    books_linked: int
    book_removals: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def clean_title(title) -> str:
    """The title without trailing brackets (Goodreads series "(X, #1)", Wikipedia "(1960 film)")."""
    text = "" if title is None or (isinstance(title, float) and title != title) else str(title).strip()
    while True:
        stripped = _TRAILING_PAREN.sub("", text)
        if stripped == text or not stripped:
            return text
        text = stripped


def title_phrases(title) -> list[str]:
    """A title as it may be written in a description: the clean title and its part before a colon."""
    clean = clean_title(title)
    out = [clean] if clean else []
    head = clean.split(":", 1)[0].strip()
    if head and head != clean:
        out.append(head)
    for t in list(out):            # "The Children of Men" is also written "Children of Men"
        words = t.split()
        if len(words) > 2 and words[0].lower() in _ARTICLES:
            out.append(" ".join(words[1:]))
    return list(dict.fromkeys(out))


def author_phrases(name) -> list[str]:
    """An author's full name and surname ("Ursula K. Le Guin" -> full, "Le Guin", "Guin"); initials and
    suffixes (Jr., III) are not a surname."""
    full = " ".join(str(name or "").split())
    tokens = [t for t in full.split(" ") if t and t.lower() not in _SUFFIXES and not _INITIAL.match(t)]
    out = [full] if full else []
    if tokens and len(full.split(" ")) > 1:
        i = len(tokens) - 1
        while i > 0 and tokens[i - 1].lower() in _PARTICLES:
            i -= 1
        out += [" ".join(tokens[i:]), tokens[-1]]
    return list(dict.fromkeys(p for p in out if p))


def phrase_pattern(phrases: Iterable[str]) -> re.Pattern | None:
    """One case-insensitive pattern for all phrases, longest first, on word boundaries."""
    parts = []
    for p in sorted({p.strip() for p in phrases if p and p.strip()}, key=len, reverse=True):
        words = ["".join("['\u2019]" if c in "'\u2019" else re.escape(c) for c in w) for w in p.split()]
        parts.append(r"\s+".join(words))
    if not parts:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(parts) + r")(?!\w)", re.IGNORECASE)


def mask_text(text, phrases: Iterable[str]) -> tuple[str, int]:
    """``(text without the phrases, number of removals)``; spaces left behind are collapsed."""
    if not isinstance(text, str) or not text:
        return text, 0
    pattern = phrase_pattern(phrases)
    if pattern is None:
        return text, 0
    masked, n = pattern.subn(" ", text)
    if n:
        masked = re.sub(r"[ \t]{2,}", " ", masked).strip()
    return masked, n


def _authors(value) -> list[str]:
    if value is None or (isinstance(value, float) and value != value):
        return []
    if isinstance(value, str):
        return [value]
    return [str(a) for a in value if a]


def _mask_frame(frame: pd.DataFrame, phrases_by_id: dict[str, list[str]]) -> tuple[pd.DataFrame, int, int]:
    out = frame.copy()
    masked, total = 0, 0
    for pos, item_id in enumerate(out["id"].astype(str)):
        phrases = phrases_by_id.get(item_id)
        if not phrases:
            continue
        text, n = mask_text(out.at[pos, "description"], phrases)
        if n:
            out.at[pos, "description"] = text
            masked, total = masked + 1, total + n
    return out, masked, total


def mask_catalogs(movies: pd.DataFrame, books: pd.DataFrame, links: pd.DataFrame,
                  ) -> tuple[pd.DataFrame, pd.DataFrame, MaskStats]:
    """Copies of the catalogs (index 0..n-1) with every link's answer removed from both sides.

    ``links``: ``movie_id, book_id`` resolved to the catalogs. A book's authors come from its
    ``authors`` column (array or string) when the frame has one; without it only titles are masked."""
    m_title = dict(zip(movies["id"].astype(str), movies["title"] if "title" in movies else [None] * len(movies)))
    b_rows = books.set_index(books["id"].astype(str))
    film_phrases: dict[str, list[str]] = {}
    book_phrases: dict[str, list[str]] = {}
    for m, b in zip(links["movie_id"].astype(str), links["book_id"].astype(str)):
        row = b_rows.loc[b]
        phrases = title_phrases(row.get("title"))
        for author in _authors(row.get("authors")):
            phrases += author_phrases(author)
        film_phrases.setdefault(m, []).extend(phrases)
        book_phrases.setdefault(b, []).extend(title_phrases(m_title.get(m)))
    movies_out, films_masked, film_removals = _mask_frame(movies.reset_index(drop=True), film_phrases)
    books_out, books_masked, book_removals = _mask_frame(books.reset_index(drop=True), book_phrases)
    return movies_out, books_out, MaskStats(films_masked, len(film_phrases), film_removals,
                                            books_masked, len(book_phrases), book_removals)


def check_protocols(protocols: Sequence[str]) -> list[str]:
    """``eval.protocols`` as a list of known names (at least one, no repeats)."""
    names = [str(p) for p in protocols]
    bad = [p for p in names if p not in PROTOCOLS]
    if bad or not names or len(set(names)) != len(names):
        raise ValueError(f"eval.protocols must be distinct names from {PROTOCOLS}, got {names}")
    return names
