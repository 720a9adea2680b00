"""Every job entry point as users run it: ``spark-submit jobs/<job>.py`` on a tiny real sample.

Why through spark-submit: the flags, the exit codes, the worker interpreter, shipping the model
and the library to the executors and the Delta tables the next job reads are what break for
users, and none of that runs when library functions are called in-process.

One module-scoped pipeline (one ``pipeline.py`` run from a plain shell: train -> embed books -> embed
movies -> score, in one session) writes one warehouse; each test then checks a job's output or runs one
more job on it (or on a copy, when the job changes it). The tiny random DistilBERT (tests/fixtures_model.py) and a
few dozen rows of data/sample (tests/e2e_data.py) keep every job short; expected counts are derived
from the files written, never copied from a run.

Each spark-submit pays a JVM start and a cold session (most of a tiny job's time), so the module runs two:
the fixture's and the resumed pipeline's (on a copy of the fixture's work). A check that is about a job's
verdict or its flags rather than its launch (a refusal, a skip, a retraining with --force, an overwrite with
--full, an exit code 2, flags equal to settings) runs the same script in this process (``in_process``:
``jobs/<job>.py`` as ``__main__``, its own flags, settings and exit code, on the test session). The launch is
covered once per job body: pipeline.py here (the bodies of train, embed_books, embed_movies, embed_lexical,
score_all, evaluate and sql), embed_books.py, embed_movies.py and score_all.py as scripts in
tests/test_cluster.py.
"""
from __future__ import annotations

import json
import logging
import os
import re
import runpy
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.e2e_data import TinyData, without_books, write_tiny_data
from tests.jvm import NO_CODEGEN, class_data_archive

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TINY_DIM = 32     # the tiny encoder's hidden size: the residual head keeps it
MOVIE_FILTER = "year >= 1970"
BOOK_FILTER = "array_contains(genres, 'Classics')"


@dataclass
class Run:
    code: int
    out: str    # stdout: printed results, and the job's log lines (spark-submit forwards the driver's stderr)
    err: str    # stderr: the JVM's own lines

    @property
    def log(self) -> str:
        return self.out + self.err

    def __str__(self) -> str:   # the tail of both, for assertion messages
        return f"exit {self.code}\n--- stdout\n{self.out[-6000:]}\n--- stderr\n{self.err[-2000:]}"


def user_env() -> dict[str, str]:
    """A shell after ``source .venv/bin/activate``: the venv first on PATH, no PYSPARK_* exports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYSPARK_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)
    env["LFR_SPARK_LOG_LEVEL"] = "ERROR"
    return env


def plain_env() -> dict[str, str]:
    """No venv on PATH, no PYSPARK_PYTHON/PYTHONPATH: spark-submit found through SPARK_HOME only, so the
    driver and worker interpreters are the project's own choice (the spark-defaults.conf setup.sh writes)."""
    import pyspark

    venv = str(BIN)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PYSPARK_") and k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p and Path(p).resolve() != Path(venv).resolve())
    env["SPARK_HOME"] = str(Path(pyspark.__file__).parent)
    env["LFR_SPARK_LOG_LEVEL"] = "ERROR"
    return env


def submit(job: str, *args: str, conf: list[str], env: dict | None = None, timeout: int = 1800) -> Run:
    cmd = [str(BIN / "spark-submit"), str(ROOT / "jobs" / job), *args]
    for c in conf:
        cmd += ["--conf", c]
    proc = subprocess.run(cmd, cwd=ROOT, env=env or user_env(), capture_output=True, text=True, timeout=timeout)
    return Run(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def in_process(spark, monkeypatch, capsys, caplog):
    """``run(job, *args, conf=[...])``: ``jobs/<job>`` executed as ``__main__`` in this process, as spark-submit
    would start it (its flags, settings, body and exit code), except that the session is the test session
    (``lfr.spark.build_session`` returns it): no JVM start. Returns a ``Run`` (log lines in ``err``)."""
    monkeypatch.syspath_prepend(str(ROOT / "jobs"))       # spark-submit puts the script's folder on sys.path
    monkeypatch.setattr("lfr.spark.build_session", lambda *a, **kw: spark)
    monkeypatch.setenv("LFR_SPARK_LOG_LEVEL", "ERROR")

    def run(job: str, *args: str, conf: list[str]) -> Run:
        script = str(ROOT / "jobs" / job)
        monkeypatch.setattr(sys, "argv", [script, *args, *(x for c in conf for x in ("--conf", c))])
        capsys.readouterr()
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="lfr"):
            try:
                runpy.run_path(script, run_name="__main__")
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
        printed = capsys.readouterr()
        return Run(code, printed.out, caplog.text + printed.err)

    return run


def job_conf(work: Path, data_dir: Path, encoder: str) -> list[str]:
    return [
        f"paths.work_dir={work}", f"paths.data_dir={data_dir}", "paths.metastore_dir=null",
        "spark.master=local[2]", "spark.sql.shuffle.partitions=2", "spark.default.parallelism=2",
        "spark.ui.enabled=false", "spark.driver.memory=1g", "spark.databricks.delta.snapshotPartitions=1",
        "spark.sql.catalogImplementation=in-memory", *NO_CODEGEN,
        f"model.encoder={encoder}", "model.pooling=cls", "model.max_length=64", "model.chunking=off",
        "model.genre_dim=8", "model.genre_epochs=5", "model.genre_bucket=1000", "model.precision=fp32",
        "train.epochs=2", "train.pretrain_epochs=0", "train.hard_negatives=2", "train.patience=1",
        "embed.batch_size=8", "eval.folds=2",
    ]


def goodreads_id(row: dict) -> str:
    return "goodreads:" + re.search(r"/book/show/(\d+)", row["URL"]).group(1)


@dataclass
class Pipeline:
    data: TinyData
    work: Path
    conf: list[str]
    encoder: str
    runs: dict

    @property
    def warehouse(self) -> Path:
        return self.work / "warehouse"

    @property
    def model_dir(self) -> Path:
        return self.work / "models" / "lightfusionrec"

    def table(self, spark, name: str):
        return spark.read.format("delta").load(str(self.warehouse / name))


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> TinyData:
    return write_tiny_data(tmp_path_factory.mktemp("e2e_data") / "data")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, tiny_encoder_dir, tiny_data) -> Pipeline:
    """One ``pipeline.py`` run from a plain shell (``plain_env``: no venv on PATH, no PYSPARK_PYTHON, no
    PYTHONPATH): the driver and the embedding UDFs' workers must find torch and lfr by the project's own
    settings. Its driver JVM logs the class-data archive it maps (``cds.log``)."""
    data = tiny_data
    work = tmp_path_factory.mktemp("e2e") / "work"
    conf = job_conf(work, data.data_dir, tiny_encoder_dir)
    env = plain_env()
    env["SPARK_SUBMIT_OPTS"] = f"{env.get('SPARK_SUBMIT_OPTS', '')} -Xlog:cds=info:file={work.parent / 'cds.log'}"
    # every step is its job's own body (jobs/pipeline.py); score_all's options as settings (as flags: below)
    run = submit("pipeline.py", "--steps", "train,embed_books,embed_movies,score_all", env=env,
                 conf=conf + [f"score.{key}={value}" for key, value in score_options(data).items()])
    assert run.code == 0, f"pipeline.py failed:\n{run}"
    return Pipeline(data=data, work=work, conf=conf, encoder=tiny_encoder_dir, runs={"pipeline": run})


def test_the_drivers_jvm_maps_the_class_data_archive_setup_wrote(pipeline):
    """scripts/setup.sh writes the archive and names it in spark-defaults.conf; the fixture's driver maps it."""
    archive = class_data_archive()
    if archive is None:
        pytest.skip("setup named no class-data archive in spark-defaults.conf")
    assert archive.is_file(), archive
    log = (pipeline.work.parent / "cds.log").read_text(encoding="utf-8")
    assert "Mapped dynamic region" in log, log[-3000:]


def score_options(data: TinyData) -> dict[str, str]:
    """The scoring the tests check: dense cosine (checked against a dense brute force here; hybrid and
    score.hubness: tests/test_score_hybrid_spark.py), k covering every book, both filters, the fixture's links
    excluded."""
    return {"method": "dense", "hubness": "none", "k": str(len(data.books)), "movie_filter": MOVIE_FILTER,
            "book_filter": BOOK_FILTER, "exclude_pairs": str(data.data_dir / "adaptations_dev.csv")}


def copy_conf(pipeline: Pipeline, work: Path) -> list[str]:
    """The pipeline's settings on a copy of its work dir (warehouse and model)."""
    shutil.copytree(pipeline.work, work)
    return [c for c in pipeline.conf if not c.startswith("paths.work_dir=")] + [f"paths.work_dir={work}"]


def _manifest(model_dir: Path) -> dict:
    return json.loads((model_dir / "manifest.json").read_text(encoding="utf-8"))


# ------------------------------------------------------------------ train
def test_train_skips_unchanged_inputs_and_force_retrains(pipeline, tmp_path, in_process):
    """(jobs/train.py's body through spark-submit: the fixture's train step.)"""
    model = tmp_path / "model"
    shutil.copytree(pipeline.model_dir, model)
    before = (model / "manifest.json").read_bytes()
    again = in_process("train.py", "--no-progress", "--model-dir", str(model), conf=pipeline.conf)
    assert again.code == 0, again
    assert "up to date" in again.log and "trained model" not in again.log, again
    assert (model / "manifest.json").read_bytes() == before        # nothing republished
    forced = in_process("train.py", "--no-progress", "--force", "--model-dir", str(model), conf=pipeline.conf)
    assert forced.code == 0, forced
    assert "trained model" in forced.log and "up to date" not in forced.log, forced
    assert _manifest(model)["inputs_key"] == json.loads(before)["inputs_key"]          # same inputs, retrained
    assert _manifest(model)["model_version"] != json.loads(before)["model_version"]
    assert re.search(r"^epoch\s+stage\s+train_loss.*val_mrr", forced.out, re.M), forced   # the history table


def test_train_no_pairs_publishes_to_model_dir(pipeline, tmp_path, in_process):
    target = tmp_path / "genre_model"
    published = (pipeline.model_dir / "manifest.json").stat().st_mtime_ns
    run = in_process("train.py", "--no-progress", "--no-pairs", "--model-dir", str(target), conf=pipeline.conf)
    assert run.code == 0, run
    manifest, with_pairs = _manifest(target), _manifest(pipeline.model_dir)
    assert manifest["inputs_key"] != with_pairs["inputs_key"]    # trained without the links
    assert manifest["model_version"] != with_pairs["model_version"]
    assert (pipeline.model_dir / "manifest.json").stat().st_mtime_ns == published   # default model untouched


# ------------------------------------------------------------------ embed
def test_embed_without_a_model_exits_2_naming_train(tiny_data, tmp_path, in_process):
    conf = job_conf(tmp_path / "work", tiny_data.data_dir, "unused") + [f"paths.model_dir={tmp_path / 'none'}"]
    run = in_process("embed_books.py", conf=conf)
    assert run.code == 2, run
    assert "jobs/train.py" in run.log, run
    assert not (tmp_path / "work" / "warehouse" / "book_embeddings").exists()   # failed before reading data


def _valid_ids(pipeline: Pipeline, spark, domain: str) -> set[str]:
    return {r["id"] for r in pipeline.table(spark, domain).select("id").collect()}


def test_embedding_tables_hold_every_valid_row_of_the_files(pipeline, spark):
    from pyspark.sql import functions as F

    version = _manifest(pipeline.model_dir)["model_version"]
    rejects = pipeline.table(spark, "rejects")
    file_books = {goodreads_id(r) for r in pipeline.data.books}
    rejected_books = {r["id"] for r in rejects.filter("domain = 'books'").select("id").collect()}
    books = _valid_ids(pipeline, spark, "books")
    assert books and books == file_books - rejected_books
    n_movie_rows = len(pipeline.data.imdb) + len(pipeline.data.wiki)
    n_movie_rejects = rejects.filter("domain = 'movies'").count()
    movies = _valid_ids(pipeline, spark, "movies")
    assert len(movies) + n_movie_rejects == n_movie_rows
    for domain, ids in (("book_embeddings", books), ("movie_embeddings", movies)):
        emb = pipeline.table(spark, domain).select("id", "embedding", "model_version").collect()
        assert {r["id"] for r in emb} == ids and len(emb) == len(ids)
        assert {r["model_version"] for r in emb} == {version}
        vecs = np.array([r["embedding"] for r in emb], dtype=np.float64)
        assert vecs.shape == (len(ids), TINY_DIM)
        np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
        assert len({tuple(np.round(v, 5)) for v in vecs}) > len(ids) // 2   # not one constant vector
    assert pipeline.table(spark, "book_embeddings").agg(F.countDistinct("content_hash")).first()[0] == len(books)


def test_embed_full_rebuilds_the_table(pipeline, spark, tmp_path, in_process):
    """--full: an overwrite of the whole table, not a MERGE. (From a plain shell through spark-submit: the
    fixture.)"""
    before = spark.sql(f"DESCRIBE HISTORY delta.`{pipeline.warehouse / 'book_embeddings'}`") \
        .agg({"version": "max"}).first()[0]
    run = in_process("embed_books.py", "--full", conf=copy_conf(pipeline, tmp_path / "work"))   # on a copy
    assert run.code == 0, run
    path = tmp_path / "work" / "warehouse" / "book_embeddings"
    history = spark.sql(f"DESCRIBE HISTORY delta.`{path}`").orderBy("version", ascending=False).first()
    assert history["version"] == before + 1
    assert history["operation"] in ("WRITE", "CREATE OR REPLACE TABLE AS SELECT")   # an overwrite, not a MERGE
    n_books = len(_valid_ids(pipeline, spark, "books"))
    assert re.search(rf"embedded {n_books} books", run.log), run


def test_embed_delete_missing_false_keeps_rows_that_left_the_catalog(pipeline, spark, tmp_path, in_process):
    work = tmp_path / "work"
    shutil.copytree(pipeline.warehouse, work / "warehouse")
    data_dir, dropped = without_books(pipeline.data, tmp_path / "data", drop=2)
    gone = {goodreads_id(r) for r in dropped}
    emb_path = str(work / "warehouse" / "book_embeddings")
    assert gone <= {r["id"] for r in spark.read.format("delta").load(emb_path).collect()}
    conf = job_conf(work, data_dir, pipeline.encoder) + ["embed.delete_missing=false"]
    refused = in_process("embed_books.py", "--model-dir", str(pipeline.model_dir), conf=conf)
    assert refused.code == 2 and "--allow-deletes" in refused.log, refused   # 2 of the catalog's books: a shrink
    run = in_process("embed_books.py", "--model-dir", str(pipeline.model_dir), "--allow-deletes", conf=conf)
    assert run.code == 0, run
    catalog = {r["id"] for r in spark.read.format("delta").load(str(work / "warehouse" / "books")).collect()}
    kept = {r["id"] for r in spark.read.format("delta").load(emb_path).collect()}
    assert gone.isdisjoint(catalog)     # they left the catalog table ...
    assert gone <= kept                 # ... but their embeddings stay


# ------------------------------------------------------------------ score
def _brute_force(pipeline: Pipeline, spark, k: int) -> dict[str, list[tuple[str, float]]]:
    """Top-k by (score desc, book_id asc) over the embeddings, filters applied on the catalog columns and
    the fixture's links (resolved by title, year and author) excluded."""
    def side(emb, catalog, predicate):
        keep = {r["id"] for r in pipeline.table(spark, catalog).filter(predicate).select("id").collect()}
        rows = [r for r in pipeline.table(spark, emb).collect() if r["id"] in keep]
        return [r["id"] for r in rows], np.array([r["embedding"] for r in rows], dtype=np.float64)
    mids, mv = side("movie_embeddings", "movies", MOVIE_FILTER)
    bids, bv = side("book_embeddings", "books", BOOK_FILTER)
    movies = {(r["title"], r["year"]): r["id"] for r in pipeline.table(spark, "movies").collect()}
    books = {(r["title"], a): r["id"] for r in pipeline.table(spark, "books").collect() for a in (r["authors"] or [])}
    excluded = {(movies.get((link["movie_title"], int(link["movie_year"]))),
                 books.get((link["book_title"], link["book_author"])))
                for link in pipeline.data.links}
    scores = (mv / np.linalg.norm(mv, axis=1, keepdims=True)) @ (bv / np.linalg.norm(bv, axis=1, keepdims=True)).T
    out = {}
    for i, m in enumerate(mids):
        ranked = sorted((-scores[i, j], b) for j, b in enumerate(bids) if (m, b) not in excluded)
        out[m] = [(b, -s) for s, b in ranked[:k]]
    return out, excluded


def test_score_filters_on_catalog_columns_and_excludes_adaptation_pairs(pipeline, spark):
    k = len(pipeline.data.books)
    ref, excluded = _brute_force(pipeline, spark, k)
    recs = pipeline.table(spark, "recommendations").collect()
    got: dict[str, list] = {}
    for r in sorted(recs, key=lambda r: (r["movie_id"], r["rank"])):
        got.setdefault(r["movie_id"], []).append((r["book_id"], r["score"]))
    assert got.keys() == ref.keys()
    for m in ref:
        # k covers every book: the same books, in an order that is the reference's up to float32
        # rounding (the tiny random encoder puts many books within 1e-6 of each other)
        assert sorted(b for b, _ in got[m]) == sorted(b for b, _ in ref[m]), m
        exact = dict(ref[m])
        np.testing.assert_allclose([exact[b] for b, _ in got[m]], [s for _, s in ref[m]], atol=1e-5, err_msg=m)
        np.testing.assert_allclose([s for _, s in got[m]], [s for _, s in ref[m]], atol=1e-5, err_msg=m)
    # not vacuous: both filters removed items, and excluded links were candidates (k covers every book)
    assert 0 < len(ref) < pipeline.table(spark, "movie_embeddings").count()
    n_books = len({b for v in ref.values() for b, _ in v})
    assert 0 < n_books < pipeline.table(spark, "book_embeddings").count()
    live = {(m, b) for m, b in excluded if m in ref and b in {x for v in ref.values() for x, _ in v}}
    assert live and not live & {(r["movie_id"], r["book_id"]) for r in recs}
    summary = json.loads(re.search(r"score_all: (\{.*\})", pipeline.runs["pipeline"].log).group(1))
    assert (summary["movies"], summary["books"], summary["rows"]) == (len(ref), n_books, len(recs))


def test_score_all_flags_equal_the_settings(pipeline, spark, tmp_path, in_process):
    """jobs/score_all.py's --k, --movie-filter, --book-filter and --exclude-pairs score as the settings the
    pipeline's score_all step read (checked against the brute force above): the same table, rescored.
    (score_all.py through spark-submit: tests/test_cluster.py.)"""
    o = score_options(pipeline.data)
    run = in_process("score_all.py", "--k", o["k"], "--movie-filter", o["movie_filter"], "--book-filter",
                     o["book_filter"], "--exclude-pairs", o["exclude_pairs"],
                     conf=copy_conf(pipeline, tmp_path / "work") + [f"score.method={o['method']}",
                                                                           f"score.hubness={o['hubness']}"])
    assert run.code == 0, run
    path = tmp_path / "work" / "warehouse" / "recommendations"
    assert spark.sql(f"DESCRIBE HISTORY delta.`{path}`").count() == \
        spark.sql(f"DESCRIBE HISTORY delta.`{pipeline.warehouse / 'recommendations'}`").count() + 1
    assert _ranked(spark.read.format("delta").load(str(path))) == _ranked(pipeline.table(spark, "recommendations"))


def _ranked(recommendations) -> list[tuple]:
    return sorted(tuple(r) for r in recommendations.select("movie_id", "rank", "book_id", "score", "method").collect())


@pytest.mark.parametrize("defect,message", [("null_version", "no model_version (null)"),
                                            ("duplicate_id", "duplicate id(s)")])
def test_score_refuses_bad_embedding_tables(pipeline, spark, tmp_path, in_process, defect, message):
    from pyspark.sql import functions as F

    movies = pipeline.table(spark, "movie_embeddings")
    bad = (movies.withColumn("model_version", F.lit(None).cast("string")) if defect == "null_version"
           else movies.unionByName(movies.limit(1)))
    bad.write.format("delta").save(str(tmp_path / "bad"))
    out = tmp_path / "recommendations"
    run = in_process("score_all.py", conf=pipeline.conf + ["score.method=dense",
                                                           f"tables.movie_embeddings.path={tmp_path / 'bad'}",
                                                           f"tables.recommendations.path={out}"])
    assert run.code != 0, run
    assert message in run.log, run
    assert not out.exists()      # nothing written


# ------------------------------------------------------------------ sql
def _sections(out: str, statements) -> dict[str, str]:
    """The printed result of each statement (from its echo to the next one's)."""
    starts = [out.index(st.sql + ";") for st in statements]
    ends = starts[1:] + [len(out)]
    return {st.sql: out[a:b] for st, a, b in zip(statements, starts, ends)}


def _row_count(section: str) -> int:
    found = re.search(r"^\((\d+) rows?\)$", section, re.M)
    assert found, section
    return int(found.group(1))


def test_sql_file_runs_every_example_query_on_the_tables(pipeline, spark, in_process):
    """(jobs/sql.py's body through spark-submit: pipeline.py --sql, below.)"""
    from lfr.score.sql import split_sql

    statements = split_sql((ROOT / "conf" / "queries.sql").read_text(encoding="utf-8"))
    run = in_process("sql.py", "-f", "conf/queries.sql", "--max-rows", "100", conf=pipeline.conf)   # reads only
    assert run.code == 0, run
    sections = _sections(run.out, statements)
    recs = pipeline.table(spark, "recommendations")
    jp = pipeline.table(spark, "movies").filter("title = 'Jurassic Park'").select("id").collect()
    assert len(jp) == 1
    n_jp = recs.filter(recs.movie_id == jp[0]["id"]).count()
    by_title = [st for st in statements if "movie_title = 'Jurassic Park'" in st.sql][0]
    by_id = [st for st in statements if "movie_id = 'imdb:jurassic-park-1993'" in st.sql][0]
    assert n_jp > 0 and _row_count(sections[by_title.sql]) == n_jp == _row_count(sections[by_id.sql])
    run_q = [st for st in statements if "GROUP BY model_version, run_id" in st.sql][0]
    assert _row_count(sections[run_q.sql]) == 1 and f"| {recs.count()} " in sections[run_q.sql]
    novel_q = [st for st in statements if "LIKE concat(lower(movie_title)" in st.sql][0]
    assert _row_count(sections[novel_q.sql]) == min(20, _title_prefix_rows(pipeline, spark))
    for st in statements:
        if st.sql.lstrip().upper().startswith(("SELECT", "DESCRIBE")) and st is not novel_q:
            assert _row_count(sections[st.sql]) > 0, st.sql


def _title_prefix_rows(pipeline: Pipeline, spark) -> int:
    """Recommendations whose book title starts with the film's title (the example query's filter),
    counted from the tables (the tiny random model may recommend none)."""
    from pyspark.sql import functions as F

    recs = pipeline.table(spark, "recommendations")
    movies = pipeline.table(spark, "movies").select(F.col("id").alias("movie_id"), F.col("title").alias("mt"))
    books = pipeline.table(spark, "books").select(F.col("id").alias("book_id"), F.col("title").alias("bt"))
    joined = recs.join(movies, "movie_id").join(books, "book_id")
    return joined.filter(F.lower("bt").startswith(F.lower("mt"))).count()


# ------------------------------------------------------------------ evaluate
def _assert_report(pipeline: Pipeline, reports: Path, artifact: bool) -> None:
    """A report of every linked film; its trained row the given artifact (flagged) or a model per fold."""
    metrics = json.loads((reports / "metrics.json").read_text(encoding="utf-8"))
    assert ("given artifact" in (reports / "report.md").read_text(encoding="utf-8")) == artifact
    names = [m["method"] for m in metrics["methods"]]
    assert "text_only" in names and "lightfusionrec" in names, names
    linked_films = {(link["movie_title"], link["movie_year"]) for link in pipeline.data.links}
    assert len(metrics["per_movie"]) == len(linked_films)


def test_evaluate_a_saved_artifact(pipeline, tmp_path, in_process):
    """--artifact and --reports-dir. (jobs/evaluate.py's body through spark-submit, training a model per
    fold: the resumed pipeline below.)"""
    run = in_process("evaluate.py", "--artifact", "--reports-dir", str(tmp_path / "reports"), conf=pipeline.conf)
    assert run.code == 0, run
    _assert_report(pipeline, tmp_path / "reports", artifact=True)


def test_training_history_table_has_the_recipe_columns():
    """The train job prints the history of either recipe (contrastive epochs have no val_loss/val_auc)."""
    from types import SimpleNamespace

    from lfr.train.job import format_history

    paper = [{"epoch": 1, "train_loss": 0.5, "val_loss": 0.4, "val_auc": 0.75, "seconds": 1.2}]
    contrastive = [{"epoch": 0, "stage": "init", "train_loss": None, "val_mrr": 0.1},
                   {"epoch": 1, "stage": "links", "train_loss": 2.5, "val_mrr": 0.25}]
    text = format_history(SimpleNamespace(history=paper))
    assert text.splitlines()[0].split() == ["epoch", "train_loss", "val_loss", "val_auc", "seconds"]
    assert text.splitlines()[1].split() == ["1", "0.50000", "0.40000", "0.75000", "1.20000"]
    text = format_history(SimpleNamespace(history=contrastive))
    assert text.splitlines()[0].split() == ["epoch", "stage", "train_loss", "val_mrr"]
    assert [line.split() for line in text.splitlines()[1:]] == [["0", "init", "n/a", "0.10000"],
                                                               ["1", "links", "2.50000", "0.25000"]]


# ------------------------------------------------------------------ the pipeline job (one session)
def resumed_pipeline(pipeline: Pipeline, folder: Path) -> Run:
    return submit("pipeline.py", "--from", "embed_lexical", "--steps", "embed_lexical,score_all,evaluate",
                  "--sql", "SELECT method, count(*) AS n FROM lfr.recommendations GROUP BY method; "
                           "SELECT count(*) AS n FROM lfr.recommendations; "
                           "SELECT count(DISTINCT movie_title) AS titles FROM lfr.movie_book_recommendations",
                  conf=copy_conf(pipeline, folder / "work"))


def test_pipeline_stops_at_a_failed_step_and_resumes_with_from(pipeline, spark, tmp_path, in_process):
    """jobs/pipeline.py on copies of the fixture's work: a failing step stops the run with its exit code and
    names the steps not run (a verdict: in this process); ``--from`` resumes there and every step after it
    runs in ONE Spark session; ``--sql`` (jobs/sql.py's ``-e``) then runs statements against the registered
    tables and view."""
    failed = in_process("pipeline.py", "--steps", "embed_movies,embed_lexical,score_all",
                        conf=copy_conf(pipeline, tmp_path / "work") + [f"paths.model_dir={tmp_path / 'no_model'}"])
    run = resumed_pipeline(pipeline, tmp_path / "resumed")
    work = tmp_path / "resumed" / "work"
    assert failed.code == 2, failed
    assert "pipeline stopped: embed_movies exited with 2; not run: embed_lexical, score_all " \
           "(resume with --from embed_movies)" in failed.log, failed
    assert "score_all finished" not in failed.log

    assert run.code == 0, run
    assert re.search(r"embed_lexical finished .*score_all finished .*evaluate finished .*sql finished "
                     r".*pipeline finished", run.log, re.S), run
    _assert_report(pipeline, work / "reports", artifact=False)         # evaluate: paths.reports_dir of the copy
    assert len(re.findall(r"Spark \S+ session ", run.log)) == 1, run      # one session for all steps
    assert re.search(r"^\| hybrid\s+\| (\d+)\s+\|$", run.out, re.M), run   # the default method, scored just now
    # the statements saw the tables (and the view) as this run left them
    recs, movies = (spark.read.format("delta").load(str(work / "warehouse" / n)) for n in ("recommendations", "movies"))
    titles = recs.join(movies, recs.movie_id == movies.id).select("title").distinct().count()
    assert re.search(rf"^\| {recs.count()}\s+\|$", run.out, re.M), run
    assert re.search(rf"^\| {titles}\s+\|$", run.out, re.M), run
