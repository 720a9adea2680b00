"""Text normalisation shared by the readers, the dedup rules and the pair resolution.

Everything here is a Spark Column expression (JVM-side, no Python worker), except
``parse_list_literal`` which backs the ``genres`` parsing pandas UDF.
"""
from __future__ import annotations

import ast
import json

from pyspark.sql import Column
from pyspark.sql import functions as F

# Wikipedia disambiguators that mean "this is the film": "Psycho (1960 film)", "Vertigo (film)".
FILM_DISAMBIGUATOR = r"\s*\((?:\d{4} )?film\)\s*$"
FILM_DISAMBIGUATOR_YEAR = r"\((\d{4}) film\)\s*$"
_APOSTROPHES = "['\u2019\u2018`]"
_NON_ALNUM = r"[^\p{L}\p{N}]+"
# Control characters other than TAB, LF, CR, and U+FFFD (what a decoder puts for invalid UTF-8).
BAD_TEXT = "[\\x00-\\x08\\x0B\\x0C\\x0E-\\x1F\\x7F\\uFFFD]"
MAX_LIST_LITERAL_CHARS = 20_000


def norm_title(c: Column) -> Column:
    """Lower-case, apostrophes deleted, other punctuation -> one space, trimmed.

    "Schindler's List" and "Schindler’s list" -> "schindlers list". Accents are kept
    (both catalogs spell them the same way)."""
    c = F.regexp_replace(F.lower(c), _APOSTROPHES, "")
    return F.trim(F.regexp_replace(c, _NON_ALNUM, " "))


def slug(c: Column) -> Column:
    """Id-safe slug: the normalised title with '-' between words; null when nothing is left."""
    s = F.regexp_replace(norm_title(c), " ", "-")
    return F.when(F.length(s) > 0, s)


def strip_film_disambiguator(c: Column) -> Column:
    return F.trim(F.regexp_replace(c, FILM_DISAMBIGUATOR, ""))


def film_disambiguator_year(c: Column) -> Column:
    y = F.regexp_extract(c, FILM_DISAMBIGUATOR_YEAR, 1)
    return F.when(y != "", y.cast("int"))


# The film's year in a Wikipedia lead ("Psycho is a 1960 American psychological horror film"): the first
# "is/was a|an|the YYYY" of the first 300 characters, unless a novel/book/play follows it ("is a 1927
# adventure novel": the article is about the book, not the film).
SUMMARY_FILM_YEAR = (r"(?s)^.{0,300}?\b(?:is|was) (?:a|an|the) (\d{4})\b"
                     r"(?![^.]{0,60}?\b(?:novel|book|play|novella|story|poem)\b)")


def summary_film_year(c: Column) -> Column:
    """The release year a Wikipedia film summary states in its first sentence, else null.

    Why: most Wikipedia titles carry no year, so without it a title match with an IMDb film is
    no evidence (the file's "Casablanca" is the city, "Stalker" the behaviour)."""
    y = F.regexp_extract(c, SUMMARY_FILM_YEAR, 1)
    return F.when(y != "", y.cast("int"))


def parse_year(c: Column) -> Column:
    """'1972' -> 1972; anything else ('PG', '', null) -> null (a bad year is not a reject reason)."""
    t = F.trim(c.cast("string"))
    return F.when(t.rlike(r"^\d{4}$"), t.cast("int"))


_WS = r"[\s\p{Z}\u0085\u200b\ufeff]"


def strip_text(c: Column) -> Column:
    """Leading/trailing whitespace removed, Unicode included (NBSP, BOM) -- like Python's str.strip()."""
    return F.regexp_replace(c, f"^{_WS}+|{_WS}+$", "")


def collapse_ws(c: Column) -> Column:
    """Runs of whitespace -> one space, then stripped (titles, authors)."""
    return strip_text(F.regexp_replace(c, f"{_WS}+", " "))


def split_labels(c: Column, sep: str) -> Column:
    """'Crime,  Drama' -> ['Crime', 'Drama'] (trimmed, empties dropped); null -> []."""
    parts = F.transform(F.split(F.coalesce(c, F.lit("")), regex_quote(sep)), lambda x: F.trim(x))
    return F.filter(parts, lambda x: x != "")


def has_bad_text(c: Column) -> Column:
    return F.coalesce(c.rlike(BAD_TEXT), F.lit(False))


def regex_quote(sep: str) -> str:
    """``sep`` as a regular expression matching it literally."""
    return "".join("\\" + ch if not ch.isalnum() else ch for ch in sep)


def parse_list_literal(value: str | None, sep: str | None = None) -> list[str] | None:
    """Parse a list-valued field without eval.

    ``"['Classics', 'Fiction']"`` (Python literal) or ``'["a", "b"]'`` (JSON) -> list of
    trimmed non-empty labels. Null/blank -> ``[]`` (no genres is valid). A string not
    starting with '[' is split on ``sep`` when given, else it is unparsable. Returns
    ``None`` when unparsable (-> reject reason ``unparsable_genres``)."""
    if value is None:
        return []
    text = str(value).strip()
    if not text:
        return []
    if not text.startswith("["):
        if sep is None:
            return None
        return [p.strip() for p in text.split(sep) if p.strip()]
    if len(text) > MAX_LIST_LITERAL_CHARS:
        return None
    try:
        parsed = ast.literal_eval(text)  # literals only: never executes code
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        try:
            parsed = json.loads(text)
        except ValueError:
            return None
    if not isinstance(parsed, (list, tuple)) or not all(isinstance(p, str) for p in parsed):
        return None
    return [p.strip() for p in parsed if p.strip()]
