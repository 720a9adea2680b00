"""Nothing shrinks silently: the embed and lexical jobs refuse damaged or shrunken inputs before writing.

Each damaged input below is run through the embed job's own body and exit-code mapping
(jobs/jobkit.py) on a warehouse the jobs built from a tiny copy of the sample: exit code 2, a message
naming the file, and every table keeps its Delta version. ``--allow-deletes`` accepts a real shrink.
"""
from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "jobs"))
import jobkit  # noqa: E402
from tests.e2e_data import write_tiny_data  # noqa: E402

TABLES = ("movies", "books", "movie_embeddings", "book_embeddings", "rejects", "movie_lexical", "book_lexical")


# ---------------------------------------------------------------- the limits themselves (no Spark)
def test_guard_limits_and_message():
    from lfr.spark.guards import Guards, Shrink, ShrinkRefused

    g = Guards(max_delete_fraction=0.02, max_delete_rows=None)
    g.check(Shrink("movies", 1000, 980, 20))                        # 2% of 1000: allowed
    g.check(Shrink("movies", 1000, 1100, 0))                        # growth: nothing to check
    with pytest.raises(ShrinkRefused) as err:
        g.check(Shrink("movies", 1000, 979, 21), ["a.csv", "b.json"], "items")
    msg = str(err.value)
    for part in ("movies: 1000 items before, 979 after, 21 deleted from a.csv, b.json", "allow 20",
                 "--allow-deletes", "Nothing was written"):
        assert part in msg, msg
    with pytest.raises(ShrinkRefused):                               # the row count drop counts too
        g.check(Shrink("movies", 1000, 900, 0))
    with pytest.raises(ShrinkRefused):                               # the absolute limit
        Guards(0.5, 10).check(Shrink("books", 1000, 989, 11))
    Guards(0.02, None, allow_deletes=True).check(Shrink("movies", 10, 0, 10))


# ---------------------------------------------------------------- the jobs on a real (tiny) warehouse
class Warehouse:
    def __init__(self, spark, root: Path, model_dir: str):
        self.spark, self.root, self.model_dir = spark, root, model_dir
        self.clean = write_tiny_data(root / "clean").data_dir
        self.data = root / "data"
        shutil.copytree(self.clean, self.data)

    def context(self, job: str, add_args, argv: list[str]) -> jobkit.JobContext:
        conf = [f"paths.work_dir={self.root / 'work'}", f"paths.data_dir={self.data}",
                "tables.database=lfr_guards", "embed.progress_seconds=0"]
        args = jobkit.parse_args(job, add_args, [*argv, *(x for c in conf for x in ("--conf", c))])
        return jobkit.JobContext(args=args, settings=jobkit.job_settings(args), spark=self.spark)

    def embed(self, domain: str, *flags: str) -> int:
        ctx = self.context(f"embed_{domain}", jobkit.add_embed_args, ["--model-dir", self.model_dir, *flags])
        return jobkit.exit_code(f"embed_{domain}", lambda: jobkit.embed_job(domain)(ctx))

    def lexical(self, *flags: str) -> int:
        import embed_lexical

        ctx = self.context("embed_lexical", embed_lexical.add_args, list(flags))
        return jobkit.exit_code("embed_lexical", lambda: embed_lexical.main(ctx))

    def versions(self) -> dict:
        from delta.tables import DeltaTable

        out = {}
        for t in TABLES:
            path = self.root / "work" / "warehouse" / t
            out[t] = DeltaTable.forPath(self.spark, str(path)).history(1).first()["version"]
        return out

    def count(self, table: str) -> int:
        return self.spark.read.format("delta").load(str(self.root / "work" / "warehouse" / table)).count()

    def restore(self) -> None:
        shutil.rmtree(self.data)
        shutil.copytree(self.clean, self.data)

    def keep(self) -> None:
        """Put the tables aside as they are (``rollback`` brings them back)."""
        shutil.copytree(self.root / "work", self.root / "kept")

    def rollback(self) -> None:
        """The input files and the tables as ``keep`` left them (a copy: cheaper than rerunning the jobs);
        Delta's cached table states are dropped, since their logs went back."""
        self.restore()
        shutil.rmtree(self.root / "work")
        shutil.copytree(self.root / "kept", self.root / "work")
        self.spark._jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()


@pytest.fixture(scope="module")
def warehouse(spark, tiny_artifact, tmp_path_factory) -> Warehouse:
    wh = Warehouse(spark, tmp_path_factory.mktemp("guards"), tiny_artifact)
    assert wh.embed("books") == 0 and wh.embed("movies") == 0 and wh.lexical() == 0
    wh.keep()
    return wh


def _cut_in_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


DAMAGE = {   # name -> (domain, file, how)
    "wikipedia JSON cut in half": ("movies", "movies_wikipedia_summaries.json", _cut_in_half),
    "{} Wikipedia file": ("movies", "movies_wikipedia_summaries.json", lambda p: p.write_text("{}")),
    "header-only books CSV": ("books", "books_goodreads.csv",
                              lambda p: p.write_text(p.read_text(encoding="utf-8").split("\n", 1)[0] + "\n")),
    "books CSV cut inside a record": ("books", "books_goodreads.csv", _cut_in_half),
}


@pytest.mark.parametrize("name", list(DAMAGE))
def test_a_damaged_file_exits_2_naming_it_and_writes_nothing(warehouse, caplog, name):
    domain, file, damage = DAMAGE[name]
    before = warehouse.versions()
    damage(warehouse.data / file)
    try:
        with caplog.at_level(logging.ERROR, logger="lfr"):
            code = warehouse.embed(domain)
        assert code == 2
        assert file in caplog.text, caplog.text
        assert warehouse.versions() == before
        print(f"{name}: {caplog.records[-1].getMessage()}")
    finally:
        warehouse.restore()


def _drop_imdb_rows(path: Path, fraction: float) -> int:
    import csv

    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    keep = rows[: 1 + int(round((len(rows) - 1) * (1 - fraction)))]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(keep)
    return len(rows) - len(keep)


def test_a_shrunken_source_is_refused_until_allowed_then_lexical_follows(warehouse, caplog):
    """30% of the IMDb rows removed: refused (exit 2, nothing written); --allow-deletes accepts it; the
    lexical job then refuses to follow the shrink until it is given the flag too."""
    n_movies = warehouse.count("movies")
    before = warehouse.versions()
    dropped = _drop_imdb_rows(warehouse.data / "movies_imdb_top1000.csv", 0.3)
    try:
        with caplog.at_level(logging.ERROR, logger="lfr"):
            assert warehouse.embed("movies") == 2
        assert f"movies: {n_movies} items before, {n_movies - dropped} after, {dropped} deleted" in caplog.text
        assert "movies_imdb_top1000.csv" in caplog.text and "--allow-deletes" in caplog.text
        assert warehouse.embed("movies", "--full") == 2                 # a rebuild is no bypass
        assert warehouse.versions() == before
        print(f"shrink: {caplog.records[-1].getMessage()}")
        assert warehouse.embed("movies", "--allow-deletes") == 0
        assert warehouse.count("movies") == warehouse.count("movie_embeddings") == n_movies - dropped
        caplog.clear()
        lexical_before = warehouse.versions()["movie_lexical"]
        with caplog.at_level(logging.ERROR, logger="lfr"):
            assert warehouse.lexical() == 2
        assert "movie_lexical" in caplog.text and warehouse.versions()["movie_lexical"] == lexical_before
        assert warehouse.lexical("--allow-deletes") == 0
        assert warehouse.count("movie_lexical") == n_movies - dropped
    finally:
        warehouse.rollback()
    assert warehouse.versions() == before          # the tables as the fixture left them, for any later test
