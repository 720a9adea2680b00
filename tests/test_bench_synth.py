"""bench/synth_books.py: the synthetic scale catalog keeps the real texts and gives every row its own identity."""
import importlib.util
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent


def _synth():
    spec = importlib.util.spec_from_file_location("synth_books", ROOT / "bench" / "synth_books.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_synthetic_books_are_real_texts_with_unique_ids_and_titles(tmp_path):
    mod = _synth()
    real = pd.read_csv(ROOT / "data" / "sample" / "books_goodreads.csv", dtype=str, keep_default_na=False, index_col=0)
    n = 3 * len(real)                                       # more rows than the source: drawn with replacement
    out = mod.synth_books(real, n, seed=1)
    assert len(out) == n and list(out.columns) == list(real.columns)
    ids = out["URL"].str.extract(r"/book/show/(\d+)", expand=False)   # the goodreads reader's id rule
    assert ids.notna().all() and ids.nunique() == n and int(ids.astype("int64").min()) > int(
        real["URL"].str.extract(r"/book/show/(\d+)", expand=False).dropna().astype("int64").max())
    assert out["Book"].nunique() == n                      # no edition dedupe (same title + authors) can fire
    described = set(real.loc[real["Description"].str.strip() != "", "Description"])
    assert set(out["Description"]) <= described            # only real, non-empty descriptions
    drawn = out.assign(Book=out["Book"].str.replace(r" \[synthetic \d+\]$", "", regex=True))
    keys = ["Book", "Author", "Description", "Genres"]
    assert len(drawn[keys].merge(real[keys].drop_duplicates(), on=keys)) == n   # each row is a real book's
    assert mod.synth_books(real, 50, seed=1).equals(mod.synth_books(real, 50, seed=1))   # seeded


def test_main_writes_a_data_folder_the_jobs_can_read(tmp_path):
    mod = _synth()
    src = ROOT / "data" / "sample"
    assert mod.main(["--src", str(src), "--n", "40", "--out", str(tmp_path / "synth")]) == 0
    books = pd.read_csv(tmp_path / "synth" / "books_goodreads.csv", dtype=str, keep_default_na=False, index_col=0)
    assert len(books) == 40
    for name in ("movies_imdb_top1000.csv", "movies_wikipedia_summaries.json", "adaptations_dev.csv"):
        assert (tmp_path / "synth" / name).read_bytes() == (src / name).read_bytes()
