"""A synthetic book catalog of any size, drawn from the real Goodreads descriptions (for scale runs).

    .venv/bin/python bench/synth_books.py --n 200000 --out work/synth        # then:
    spark-submit jobs/embed_books.py --conf paths.data_dir=work/synth --conf paths.work_dir=work/synth-work \\
        --model-dir work/models/lightfusionrec

Rows are drawn with replacement (seeded) from the books of ``--src`` that have a description, so
the texts keep the real length distribution (what embedding speed depends on). Each row gets a
new Goodreads-style id in its URL and a numbered title, so the reader's edition dedupe (same
title + authors) keeps every row; descriptions, genres and authors are the real ones. The movie
files and the links of ``--src`` are linked next to it, so every job runs on the folder.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
FIRST_ID = 9_000_000_000   # above every real Goodreads id: no collision with the real catalog


def synth_books(real: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` rows drawn from ``real`` (Goodreads columns) with unique ids and titles."""
    pool = real[real["Description"].fillna("").str.strip() != ""].reset_index(drop=True)
    if pool.empty:
        raise ValueError("no book with a description to draw from")
    out = pool.sample(n=n, replace=True, random_state=seed).reset_index(drop=True)
    ids = [FIRST_ID + i for i in range(n)]
    out["Book"] = [f"{t} [synthetic {i}]" for i, t in enumerate(out["Book"])]
    out["URL"] = [f"https://www.goodreads.com/book/show/{i}.synthetic" for i in ids]
    out.index.name = None
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", default=str(ROOT.parent / "shared" / "data"), help="real catalogs (default ../shared/data)")
    p.add_argument("--n", type=int, default=200_000, help="books to write (default 200000)")
    p.add_argument("--out", default=str(ROOT / "work" / "synth"), help="output data folder (default work/synth)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    src, out = Path(a.src), Path(a.out)
    real = pd.read_csv(src / "books_goodreads.csv", dtype=str, keep_default_na=False, index_col=0)
    books = synth_books(real, a.n, a.seed)
    out.mkdir(parents=True, exist_ok=True)
    books.to_csv(out / "books_goodreads.csv")
    for name in ("movies_imdb_top1000.csv", "movies_wikipedia_summaries.json", "adaptations_dev.csv"):
        link = out / name
        if not link.exists() and (src / name).exists():
            os.symlink((src / name).resolve(), link)
    print(f"{len(books)} books from {len(real)} real ones -> {out / 'books_goodreads.csv'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
