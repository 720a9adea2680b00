"""The SQL script splitter of jobs/sql.py (pure Python) and conf/queries.sql."""
from pathlib import Path

from lfr.score.sql import split_sql

ROOT = Path(__file__).resolve().parent.parent


def test_split_respects_quotes_comments_and_titles():
    text = """-- file header

-- first query
SELECT 'a;b', "c;d", `e;f` FROM t WHERE x = 'it''s; fine';
/* block; comment */ SELECT 2 -- trailing; comment
;
-- third
-- (two lines)
SELECT 3
"""
    st = split_sql(text)
    assert [s.sql for s in st] == [
        "SELECT 'a;b', \"c;d\", `e;f` FROM t WHERE x = 'it''s; fine'",
        "SELECT 2",
        "SELECT 3",
    ]
    assert [s.title for s in st] == ["first query", "", "third (two lines)"]


def test_example_queries_parse():
    st = split_sql((ROOT / "conf" / "queries.sql").read_text())
    assert len(st) >= 8 and all(s.title for s in st)
    assert any("movie_title = 'Jurassic Park'" in s.sql for s in st)
