"""Running SQL files against the registered tables (used by ``jobs/sql.py``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, TextIO


@dataclass
class Statement:
    sql: str        # the statement, without the trailing ';'
    title: str      # the '--' comment lines right before it (its description), joined


def split_sql(text: str) -> list[Statement]:
    """Split a SQL script on ``;`` outside quotes and comments.

    Handles '...' (with '' escapes), "..." and `...` quoting, ``--`` line and ``/* */`` block
    comments. Each statement carries the ``--`` comment lines directly above it as its title.
    """
    out: list[Statement] = []
    buf: list[str] = []
    comments: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "'\"`":
            j = i + 1
            while j < n:
                if text[j] == ch:
                    if ch == "'" and j + 1 < n and text[j + 1] == "'":
                        j += 2
                        continue
                    break
                if text[j] == "\\" and ch != "`":
                    j += 1
                j += 1
            buf.append(text[i:j + 1])
            i = j + 1
        elif text.startswith("--", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            if not "".join(buf).strip():
                comments.append(text[i + 2:j].strip())
            i = j + 1
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
            buf.append(" ")
        elif ch == ";":
            _flush(buf, comments, out)
            buf, comments = [], []
            i += 1
        else:
            if ch == "\n" and not "".join(buf).strip() and comments and text[i - 1:i] == "\n":
                comments = []          # a blank line separates a file header from the next statement's comment
            buf.append(ch)
            i += 1
    _flush(buf, comments, out)
    return out


def _flush(buf: list[str], comments: list[str], out: list[Statement]) -> None:
    sql = "".join(buf).strip()
    if sql:
        out.append(Statement(sql=sql, title=" ".join(c for c in comments if c)))


def run_statements(spark, statements: list[Statement], max_rows: int = 20, truncate: int = 60,
                   stream: TextIO | None = None) -> Iterator[tuple[Statement, int]]:
    """Execute each statement; print queries' results (first ``max_rows``). Yields (statement, rows shown)."""
    import sys

    stream = stream or sys.stdout
    for st in statements:
        print(f"\n-- {st.title}" if st.title else "", file=stream)
        print(st.sql + ";", file=stream)
        df = spark.sql(st.sql)
        shown = 0
        if df.columns:
            rows = df.limit(max_rows + 1).collect()
            shown = min(len(rows), max_rows)
            print(_format(df.columns, rows[:max_rows], truncate), file=stream)
            if len(rows) > max_rows:
                print(f"(first {max_rows} rows shown)", file=stream)
            else:
                print(f"({len(rows)} row{'s' if len(rows) != 1 else ''})", file=stream)
        stream.flush()
        yield st, shown


def _format(columns: list[str], rows, truncate: int) -> str:
    def cell(v) -> str:
        if v is None:
            s = "NULL"
        elif isinstance(v, float):
            s = f"{v:.4f}"
        else:
            s = str(v)
        return s if len(s) <= truncate else s[:truncate - 3] + "..."

    cells = [[cell(v) for v in r] for r in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    fmt = lambda vals: "| " + " | ".join(v.ljust(w) for v, w in zip(vals, widths)) + " |"  # noqa: E731
    return "\n".join([line, fmt(columns), line, *[fmt(r) for r in cells], line])
