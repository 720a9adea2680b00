"""jobs/train.py does not retrain (and so does not invalidate every embedding) when nothing changed."""
import pandas as pd

from lfr.config import load_config
from lfr.train.job import inputs_key


def _frames():
    movies = pd.DataFrame({"id": ["m1", "m2"], "title": ["A", "B"], "description": ["x", "y"],
                           "genres": [["Drama"], []]})
    books = pd.DataFrame({"id": ["b1"], "title": ["C"], "description": ["z"], "genres": [["Fiction"]]})
    pairs = pd.DataFrame({"movie_id": ["m1"], "book_id": ["b1"]})
    return movies, books, pairs


def test_inputs_key_changes_with_data_and_settings_only():
    cfg = load_config(environ={})
    movies, books, pairs = _frames()
    key = inputs_key(movies, books, pairs, cfg)
    # row order does not matter
    assert inputs_key(movies.iloc[::-1], books, pairs, cfg) == key
    changed = movies.copy()
    changed.loc[0, "description"] = "x2"
    assert inputs_key(changed, books, pairs, cfg) != key
    assert inputs_key(movies, books, None, cfg) != key
    assert inputs_key(movies, books, pairs, load_config(overrides=["train.lr=1e-3"], environ={})) != key
