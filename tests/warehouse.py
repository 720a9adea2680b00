"""A small project warehouse as the pipeline leaves it, for the tests of the ways users read it
(notebook, JDBC server): catalogs, embeddings, two scoring runs (dense, then hybrid) of
``recommendations`` in the Delta history, an evaluation ``metrics.json``, and the tables + view
registered in a persistent (Derby) metastore under the tmp work dir by a separate process.

That process is a user's plain ``python -c`` (not spark-submit: no PYSPARK_* exports, the project
environment not on PATH) that also runs a pandas UDF, so its output is what tests/test_session.py
checks of such a process (Python workers, Derby's files, quiet logs); the JDBC server and the notebook
are the next processes, reading the registered names.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.jvm import NO_CODEGEN

ROOT = Path(__file__).resolve().parent.parent

MOVIES = [("m1", "Jurassic Park", ["Adventure", "Sci-Fi"]), ("m2", "The Godfather", ["Crime", "Drama"]),
          ("m3", "Heat", ["Crime", "Thriller"])]
BOOKS = [("b1", "Jurassic Park", ["Science Fiction", "Thriller"], ["Michael Crichton"]),
         ("b2", "The Lost World", ["Science Fiction"], ["Michael Crichton"]),
         ("b3", "The Godfather", ["Crime", "Fiction"], ["Mario Puzo"]),
         ("b4", "Congo", ["Adventure"], ["Michael Crichton"]),
         ("b5", "The Sicilian", ["Crime"], ["Mario Puzo"])]
# movie -> books by rank, per scoring method
RUNS = {"dense": {"m1": ["b2", "b1", "b4"], "m2": ["b3", "b5", "b2"], "m3": ["b5", "b3", "b2"]},
        "hybrid": {"m1": ["b1", "b2", "b4"], "m2": ["b3", "b5", "b4"], "m3": ["b5", "b3", "b1"]}}

REGISTER = """
import sys
import pandas as pd
from pyspark.sql.functions import pandas_udf
from lfr.settings import load_settings
from lfr.spark import build_session
from lfr.score import register_recommendations

cfg = load_settings(overrides=sys.argv[1:])
spark = build_session(cfg)

@pandas_udf("long")
def twice(v: pd.Series) -> pd.Series:   # runs on the Python workers Spark starts
    return v * 2

print("udf", sorted(r.v for r in spark.range(5).select(twice("id").alias("v")).collect()))
print("registered:", ",".join(register_recommendations(spark, cfg)),
      "catalog:", spark.conf.get("spark.sql.catalogImplementation"))
spark.stop()
"""


@dataclass
class Warehouse:
    work_dir: Path
    overrides: list[str]        # config overrides pointing every consumer at it
    register: subprocess.CompletedProcess   # the plain `python -c` that registered the tables (cwd: work_dir)

    @property
    def lfr_conf(self) -> str:  # the same, as LFR_CONF for scripts and notebook kernels
        return " ".join(self.overrides)


def small_conf(work_dir: Path) -> list[str]:
    return [f"paths.work_dir={work_dir}", "spark.master=local[1]", "spark.sql.shuffle.partitions=1",
            "spark.ui.enabled=false", "spark.driver.memory=1g", "spark.databricks.delta.snapshotPartitions=1",
            *NO_CODEGEN]


def _write_tables(spark, work_dir: Path) -> None:
    from pyspark.sql import functions as F

    wh = work_dir / "warehouse"
    spark.createDataFrame([(i, t, "", g, None, None, "test") for i, t, g in MOVIES],
                          "id string, title string, description string, genres array<string>, year int, "
                          "authors array<string>, source string").write.format("delta").save(str(wh / "movies"))
    spark.createDataFrame([(i, t, "", g, None, a, "test") for i, t, g, a in BOOKS],
                          "id string, title string, description string, genres array<string>, year int, "
                          "authors array<string>, source string").write.format("delta").save(str(wh / "books"))
    for name, rows in (("movie_embeddings", MOVIES), ("book_embeddings", BOOKS)):
        spark.createDataFrame([(r[0], r[1], [1.0, 0.0]) for r in rows],
                              "id string, title string, embedding array<float>") \
            .withColumn("model_version", F.lit("v-test")).write.format("delta").save(str(wh / name))
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for method, recs in RUNS.items():   # each run overwrites the table: the first stays in its history
        rows = [(m, rank + 1, b, 0.9 - 0.1 * rank - (0.05 if m != "m1" else 0.0), method, "{}", "v-test", None,
                 f"run-{method}", now) for m, books in recs.items() for rank, b in enumerate(books)]
        spark.createDataFrame(rows, "movie_id string, rank int, book_id string, score float, method string, "
                                    "method_params string, model_version string, lexical_version string, "
                                    "run_id string, scored_at timestamp") \
            .write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(str(wh / "recommendations"))


def _write_report(work_dir: Path) -> None:
    reports = work_dir / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    payload = {"methods": [{"method": "lightfusionrec", "recall@1": 0.5, "recall@10": 1.0, "mrr": 0.75,
                            "median_rank": 1.5},
                           {"method": "tfidf", "recall@1": 0.0, "recall@10": 1.0, "mrr": 0.4, "median_rank": 3.0}],
               "per_movie": [{"movie": "Jurassic Park", "book(s)": "Jurassic Park", "fold": 0, "lightfusionrec": 2,
                              "tfidf": 3},
                             {"movie": "The Godfather", "book(s)": "The Godfather", "fold": 1, "lightfusionrec": 1,
                              "tfidf": 3}]}
    (reports / "metrics.json").write_text(json.dumps(payload), encoding="utf-8")


def plain_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: no PYSPARK_* exports; the checkout importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYSPARK_")}
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


def new_user_env() -> dict[str, str]:
    """A new user's shell: no PYSPARK_* exports, the project environment not on PATH or activated."""
    env = plain_env(PATH="/usr/local/bin:/usr/bin:/bin")
    env.pop("VIRTUAL_ENV", None)
    return env


@pytest.fixture(scope="session")
def registered_warehouse(spark, tmp_path_factory) -> Warehouse:
    work_dir = tmp_path_factory.mktemp("lfr_work")
    _write_tables(spark, work_dir)
    _write_report(work_dir)
    overrides = small_conf(work_dir)
    proc = subprocess.run([sys.executable, "-c", REGISTER, *overrides], cwd=work_dir, env=new_user_env(),
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "catalog: hive" in proc.stdout and "movie_book_recommendations" in proc.stdout, proc.stdout
    return Warehouse(work_dir=work_dir, overrides=overrides, register=proc)
