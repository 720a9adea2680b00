"""Queries behind notebooks/explore_recommendations.ipynb, kept here so the notebook stays short.

Everything reads the SQL catalog (``lfr.*`` tables and the ``movie_book_recommendations`` view)
or the Delta history of the recommendations table, and returns pandas DataFrames small enough to
show: one film's books, one row per book for the popularity skew, the evaluation's per-film ranks.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F


def project_root(start: Path | None = None) -> Path:
    """The checkout holding conf/lfr.yaml (the notebook may be started from notebooks/ or the root)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "conf" / "lfr.yaml").is_file():
            return folder
    raise FileNotFoundError(f"no conf/lfr.yaml above {here}: start the notebook inside the project")


def has_column(df: DataFrame, name: str) -> bool:
    return name in df.columns


def method_runs(spark: SparkSession, path: str, max_versions: int = 50) -> dict[str, int]:
    """Latest Delta version of the recommendations table per scoring method (``method`` column).

    Each scoring run overwrites the table (a full snapshot), so a dense run followed by a hybrid
    run leaves the dense one in the table's history: ``versionAsOf`` brings it back. Versions
    without a ``method`` column (older scorers, always dense) count as ``dense``."""
    history = spark.sql(f"DESCRIBE HISTORY delta.`{path}` LIMIT {int(max_versions)}")
    versions = [r["version"] for r in history.select("version").collect()]
    runs: dict[str, int] = {}
    for version in sorted(versions, reverse=True):
        df = spark.read.format("delta").option("versionAsOf", version).load(path)
        methods = [r[0] for r in df.select("method").distinct().collect()] if has_column(df, "method") else ["dense"]
        for m in methods:
            runs.setdefault(str(m), version)
    return runs


def film_books(spark: SparkSession, db: str, view: str, film: str, k: int = 10) -> pd.DataFrame:
    """The film's top-k books from the view, with the book's authors and genres from ``lfr.books``."""
    books = spark.table(f"{db}.books").select(F.col("id").alias("book_id"), "authors", "genres")
    recs = spark.table(f"{db}.{view}").where(F.col("movie_title") == film).where(F.col("rank") <= k)
    first = ["method"] if has_column(recs, "method") else []
    cols = [*first, "rank", "book_title", F.round("score", 3).alias("score"), "authors", "genres"]
    return recs.join(books, "book_id", "left").select(*cols).orderBy(*first, "rank").toPandas()


def compare_methods(spark: SparkSession, path: str, titles: DataFrame, movie_id: str, runs: dict[str, int],
                    k: int = 10) -> pd.DataFrame:
    """One column per method: the film's books by rank, each from that method's latest run."""
    out = {}
    for method, version in sorted(runs.items()):
        df = spark.read.format("delta").option("versionAsOf", version).load(path).where(F.col("movie_id") == movie_id)
        if has_column(df, "method"):
            df = df.where(F.col("method") == method)
        rows = (df.where(F.col("rank") <= k).join(titles, df.book_id == titles.id, "left")
                .select("rank", "title").orderBy("rank").toPandas())
        out[f"{method} (v{version})"] = rows.set_index("rank")["title"]
    return pd.DataFrame(out)


def popularity(spark: SparkSession, db: str, view: str) -> pd.DataFrame:
    """How many films each recommended book is recommended to, most recommended first."""
    return (spark.table(f"{db}.{view}").groupBy("book_id", "book_title")
            .agg(F.countDistinct("movie_id").alias("films"), F.round(F.avg("score"), 3).alias("mean_score"))
            .orderBy(F.desc("films"), "book_title").toPandas())


def skew_summary(pop: pd.DataFrame, n_books_catalog: int) -> dict[str, float]:
    """Catalogue coverage and concentration: the share of all recommendation slots taken by the top 10% of books."""
    counts = pop["films"].sort_values(ascending=False).to_numpy()
    top = max(1, int(round(0.1 * len(counts))))
    return {"books_recommended": int(len(counts)), "books_in_catalog": int(n_books_catalog),
            "coverage": round(len(counts) / max(1, n_books_catalog), 3),
            "top10pct_share": round(float(counts[:top].sum() / max(1, counts.sum())), 3),
            "max_films_per_book": int(counts[0]) if len(counts) else 0}


def eval_ranks(reports_dir: str) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The evaluation's per-film ranks and method table (``metrics.json`` of jobs/evaluate.py), or None."""
    path = Path(reports_dir) / "metrics.json"
    if not path.is_file():
        return None
    payload = json.loads(path.read_text(encoding="utf-8"))
    return pd.DataFrame(payload.get("per_movie", [])), pd.DataFrame(payload.get("methods", []))
