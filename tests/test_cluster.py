"""The pipeline on a real Spark standalone cluster (scripts/cluster.sh: a master and two 1-core
workers, separate JVMs and work dirs, on free loopback ports), and under faults.

- both embed jobs at once on an empty warehouse, each on its own worker, one of them losing a Python
  worker mid-embedding (a test-side model loader, tests/faults.py, shipped with --py-files and chosen
  with spark.lfr.model.loader; the library has no test hook): both succeed, the retried task's rows equal
  the model's own output, the executors loaded the model from the archive Spark shipped into their
  work dirs;
- both jobs on ``model.runtime: onnx`` in the packed executor environment (``make executor-env``,
  ``--archives``): their Python workers run ``./env/bin/python`` and cannot import torch (checked inside
  their tasks by the test loaders), their vectors equal the torch fp32 model's within the parity bound,
  and score_all's lists equal those of the torch fp32 vectors;
- score_all run as the README's cluster command (wheel via --py-files, from outside the checkout):
  the exact top-k of the embeddings; the workers offer a GPU (a fake discovery script) and the job asks for
  one per task: each task receives its address, and with no CUDA the kernel runs on the CPU and says so;
- without a cluster (shared local session): a tampered artifact fails on the driver naming the file, before
  any table is written; concurrent creation of ``rejects`` is retried; tables of an older schema.
Small on purpose: a few dozen rows of the bundled sample, the tiny random DistilBERT artifact.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.jvm import SHORT_JVM, class_data_archive

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SAMPLE = ROOT / "data" / "sample"
SMALL_CONF = ["spark.sql.catalogImplementation=in-memory", "spark.sql.shuffle.partitions=2", "spark.ui.enabled=false",
              "spark.databricks.delta.snapshotPartitions=2", "embed.batch_size=8"]


@dataclass
class Cluster:
    url: str
    folder: Path


def small_sample(folder: Path, movies: int = 14, wiki: int = 8, books: int = 20) -> Path:
    """The first rows of each bundled sample file, in the same formats (the readers' real inputs)."""
    folder.mkdir(parents=True, exist_ok=True)
    imdb = pd.read_csv(SAMPLE / "movies_imdb_top1000.csv", dtype=str, keep_default_na=False)
    imdb.head(movies).to_csv(folder / "movies_imdb_top1000.csv", index=False)
    good = pd.read_csv(SAMPLE / "books_goodreads.csv", dtype=str, keep_default_na=False)
    good.head(books).to_csv(folder / "books_goodreads.csv", index=False)
    summaries = json.loads((SAMPLE / "movies_wikipedia_summaries.json").read_text(encoding="utf-8"))
    (folder / "movies_wikipedia_summaries.json").write_text(json.dumps(dict(list(summaries.items())[:wiki])))
    shutil.copy(SAMPLE / "adaptations_dev.csv", folder / "adaptations_dev.csv")
    return folder


def user_env(**extra: str) -> dict[str, str]:
    """A user's shell with the environment activated: no PYSPARK_*/PYTHONPATH exports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYSPARK_") and k != "PYTHONPATH"}
    env.update(PATH=f"{BIN}:{env.get('PATH', '')}", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               SPARK_LOCAL_IP="127.0.0.1", **extra)
    return env


#: GPU scheduling without a GPU: every worker reports one device, address "0" (scripts/gpu_discovery.sh's format)
FAKE_GPU = '#!/bin/sh\necho \'{"name": "gpu", "addresses": ["0"]}\'\n'
GPU_TASKS = ["spark.executor.resource.gpu.amount=1", "spark.task.resource.gpu.amount=1"]


def cds_log(folder: Path) -> str:
    """The JVM option that logs which class-data archive a JVM maps, one file per process in ``folder``."""
    return f"-Xlog:cds=info:file={folder}/cds-%p.log"


def cluster_script(folder: Path, action: str, timeout: int = 240) -> subprocess.CompletedProcess:
    fake = folder / "fake_gpu.sh"
    fake.write_text(FAKE_GPU)
    fake.chmod(0o755)
    env = user_env(LFR_CLUSTER_DIR=str(folder), LFR_CLUSTER_PYTHON=sys.executable,
                   SPARK_DAEMON_JAVA_OPTS=f"{SHORT_JVM} {cds_log(folder)}",
                   LFR_WORKER_GPUS="1", LFR_GPU_DISCOVERY=str(fake))
    return subprocess.run(["bash", str(ROOT / "scripts" / "cluster.sh"), action], env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cluster")
    try:
        proc = cluster_script(folder, "start")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        log = (folder / "logs" / "master.log").read_text()
        assert log.count("Registering worker 127.0.0.1") == 2, log[-2000:]
        yield Cluster((folder / "master.url").read_text().strip(), folder)
    finally:
        cluster_script(folder, "stop", timeout=120)


def submit(cluster: Cluster, script: str, job_conf: list[str], *, spark_conf: list[str] = (), cwd: Path = ROOT,
           py_files: str | None = None, archives: str | None = None) -> subprocess.Popen:
    """``spark-submit --master spark://... [--py-files ...] [--archives ...] script --conf ...`` (not awaited)."""
    cmd = ["spark-submit", "--master", cluster.url,
           "--conf", f"spark.executor.extraJavaOptions={SHORT_JVM} {cds_log(cluster.folder)}"]
    for c in spark_conf:
        cmd += ["--conf", c]
    if py_files:
        cmd += ["--py-files", py_files]
    if archives:
        cmd += ["--archives", archives]
    cmd.append(script)
    for c in job_conf:
        cmd += ["--conf", c]
    return subprocess.Popen(cmd, cwd=cwd, env=user_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, timeout: int = 1500) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"spark-submit timed out:\n{out[-3000:]}")
    assert proc.returncode == 0, out[-4000:]
    return out


@pytest.fixture(scope="module")
def work(tmp_path_factory, tiny_artifact) -> dict:
    base = tmp_path_factory.mktemp("cluster_work")
    data = small_sample(base / "data")
    conf = [f"paths.work_dir={base / 'work'}", f"paths.data_dir={data}", f"paths.model_dir={tiny_artifact}",
            *SMALL_CONF]
    return {"base": base, "conf": conf, "warehouse": base / "work" / "warehouse"}


def read_delta(spark, path: Path) -> pd.DataFrame:
    return spark.read.format("delta").load(str(path)).toPandas()


def executor_env() -> str:
    """The packed onnx executor environment (scripts/executor_env.sh: built once per pin set, cached)."""
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "executor_env.sh"), "--path"], capture_output=True, text=True,
                          timeout=600, env=user_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def test_both_embed_jobs_at_once_on_two_workers_survive_a_killed_python_worker(cluster, work, spark, tiny_model):
    from tests.faults import EXECUTOR_MARKS_ENV, KILL_ONCE_ENV

    marker, marks = work["base"] / "killed-once", work["base"] / "executor-marks"
    marks.mkdir()
    # both apps on the packed executor env and the onnx runtime (the loaders check that torch cannot be imported)
    packed = ["spark.cores.max=1", "spark.executor.cores=1", "spark.pyspark.python=./env/bin/python",
              f"spark.executorEnv.{EXECUTOR_MARKS_ENV}={marks}"]
    onnx_conf, env_archive = [*work["conf"], "model.runtime=onnx"], f"{executor_env()}#env"
    books = submit(cluster, "jobs/embed_books.py", onnx_conf, py_files="tests/faults.py", archives=env_archive,
                   spark_conf=[*packed, "spark.lfr.model.loader=faults:kill_worker_once",
                               f"spark.executorEnv.{KILL_ONCE_ENV}={marker}"])
    movies = submit(cluster, "jobs/embed_movies.py", onnx_conf, py_files="tests/faults.py", archives=env_archive,
                    spark_conf=[*packed, "spark.lfr.model.loader=faults:onnx_without_torch"])
    out_books, _ = finish(books), finish(movies)
    seen = [p.read_text().split() for p in marks.glob("worker-*.txt")]
    assert all(exe.endswith("/env/bin/python") and kind == "OnnxLightFusion" for exe, kind in seen), seen
    assert len(seen) >= 3, seen     # books: the killed worker and its successor; movies: at least one

    assert marker.exists(), "the fault loader never ran"
    assert "Lost task" in out_books, out_books[-3000:]          # the killed worker's task, then retried
    wh = work["warehouse"]
    for domain, table in (("books", "book_embeddings"), ("movies", "movie_embeddings")):
        catalog, emb = read_delta(spark, wh / domain), read_delta(spark, wh / table)
        assert sorted(emb["id"]) == sorted(catalog["id"]) and len(catalog) > 5
        expected = tiny_model.embed(list(catalog["title"]), list(catalog["description"]), list(catalog["genres"]))
        got = np.stack(emb.set_index("id").loc[catalog["id"], "embedding"].to_numpy())
        np.testing.assert_allclose(got, expected, atol=1e-4)      # a clean run's values: nothing lost or doubled
        assert (got * expected).sum(axis=1).min() >= 0.9999       # onnx vs torch fp32: the parity bound
        assert set(emb["model_version"]) == {tiny_model.model_version}
    rejects = read_delta(spark, wh / "rejects")
    assert not rejects.duplicated(["domain", "source", "id", "reason"]).any()
    # Each app ran on a worker of its own, and its executor loaded the model from the archive Spark shipped
    # into that executor's work dir (not from the driver's path).
    apps = {w: list((cluster.folder / w).glob("app-*")) for w in ("worker-1", "worker-2")}
    assert all(apps.values()), apps
    shipped = list(cluster.folder.glob(f"worker-*/app-*/*/lfr-model-{tiny_model.model_version}-*/manifest.json"))
    assert len(shipped) == 2, shipped


def test_score_all_as_the_readme_cluster_command_from_the_wheel(cluster, work, spark, tmp_path, tiny_model):
    if not (work["warehouse"] / "movie_embeddings").is_dir():
        pytest.skip("needs the embedding tables of the previous test")
    src = tmp_path / "src"                        # a copy: no build/ or egg-info left in the checkout
    for name in ("lfr", "udfs"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.py", "requirements.txt", "requirements-dev.txt"):
        shutil.copy(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), "."], check=True, capture_output=True, timeout=300, cwd=src)
    shutil.copytree(ROOT / "jobs", tmp_path / "jobs")                    # outside the checkout: the wheel's lfr
    wheel = "dist/lightfusionrec-0.1.0-py3-none-any.whl"
    assert (tmp_path / wheel).is_file()
    job_conf = [*work["conf"], "score.k=3", "score.method=dense", "score.hubness=none"]
    out = finish(submit(cluster, "jobs/score_all.py", job_conf,
                        cwd=tmp_path, py_files=wheel, spark_conf=["spark.cores.max=1", *GPU_TASKS]))  # one executor
    assert "executors run lfr from" not in out        # lfr came from the wheel, not shipped from a checkout
    stderr = "".join(p.read_text(errors="replace") for p in cluster.folder.glob("worker-*/app-*/*/stderr"))
    assert "assigned GPU(s) ['0'] but torch" in stderr and "falling back to CPU" in stderr, stderr[-3000:]

    wh = work["warehouse"]
    movies, books = read_delta(spark, wh / "movie_embeddings"), read_delta(spark, wh / "book_embeddings")
    recs = read_delta(spark, wh / "recommendations").sort_values(["movie_id", "rank"])
    m, b = np.stack(movies["embedding"]), np.stack(books["embedding"])
    scores = m @ b.T
    for i, movie_id in enumerate(movies["id"]):
        order = sorted(range(len(books)), key=lambda j: (-scores[i, j], books["id"][j]))[:3]
        got = recs[recs["movie_id"] == movie_id]
        assert list(got["book_id"]) == [books["id"][j] for j in order], movie_id
        np.testing.assert_allclose(got["score"], scores[i, order], atol=1e-5)
    # both catalogs were embedded on the onnx runtime (previous test): torch fp32 vectors give the same lists
    def torch_vectors(domain: str, ids) -> np.ndarray:
        catalog = read_delta(spark, wh / domain).set_index("id").loc[ids]
        return tiny_model.embed(list(catalog["title"]), list(catalog["description"]), list(catalog["genres"]))

    torch_scores = torch_vectors("movies", movies["id"]) @ torch_vectors("books", books["id"]).T
    for i, movie_id in enumerate(movies["id"]):
        order = sorted(range(len(books)), key=lambda j: (-torch_scores[i, j], books["id"][j]))[:3]
        assert list(recs[recs["movie_id"] == movie_id]["book_id"]) == [books["id"][j] for j in order], movie_id


def test_the_daemons_and_executors_map_the_class_data_archive(cluster):
    """scripts/setup.sh's archive (spark-defaults.conf) serves the master, the workers and the executors of the
    jobs above, not only the drivers (tests/test_jobs_e2e.py)."""
    if class_data_archive() is None:
        pytest.skip("setup named no class-data archive in spark-defaults.conf")
    logs = {p.name: p.read_text(encoding="utf-8") for p in cluster.folder.glob("cds-*.log")}
    assert len(logs) >= 3 + 3, sorted(logs)      # master, two workers; an executor per app above
    unmapped = sorted(name for name, text in logs.items() if "Mapped dynamic region" not in text)
    assert not unmapped, (unmapped, logs[unmapped[0]][-2000:] if unmapped else "")


# ------------------------------------------------------------------ faults without a cluster (local session)
def embed_cfg(data: Path):
    from lfr.settings import load_settings

    return load_settings(overrides=[f"paths.data_dir={data}", f"paths.work_dir={data.parent / 'work'}"])


def test_tampered_artifact_fails_naming_the_file_and_writes_no_table(spark, tiny_artifact, tmp_path):
    from lfr.embed import embed_catalog
    from lfr.settings import with_values

    model = tmp_path / "model"
    shutil.copytree(tiny_artifact, model)
    weights = model / "fusion.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 0xFF                                                    # one flipped byte, manifest untouched
    weights.write_bytes(bytes(raw))
    settings = with_values(embed_cfg(small_sample(tmp_path / "data", movies=4, wiki=2, books=6)), {
        "paths.model_dir": str(model), "embed.batch_size": 8, "embed.partitions": 1, "embed.ship_model": "archive"})
    with pytest.raises(Exception) as err:
        embed_catalog(spark, settings, "books")
    assert "fusion.safetensors" in str(err.value) and "tampered" in str(err.value)
    # refused on the driver before the job read its inputs: no table of the run was written
    assert not any(Path(spec.path).exists() for spec in (settings.tables.book_embeddings, settings.tables.books,
                                                          settings.tables.rejects))


def test_concurrent_creation_of_a_shared_table_is_retried(spark, tmp_path):
    from lfr.data.schema import REJECTS_SCHEMA
    from lfr.embed.pipeline import REJECT_KEYS, sync_table

    path = str(tmp_path / "rejects")
    frames = {d: spark.createDataFrame([(d, "src", f"{d}:{i}", "null_id", "{}", None) for i in range(5)],
                                       REJECTS_SCHEMA) for d in ("movies", "books")}
    errors: list[BaseException] = []

    def run(domain: str) -> None:
        try:
            sync_table(spark, frames[domain], path, REJECT_KEYS, scope={"domain": domain}, compare=[],
                       partition_by=["domain"])
        except BaseException as exc:  # noqa: BLE001 -- reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(d,)) for d in frames]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    got = spark.read.format("delta").load(path).groupBy("domain").count().collect()
    assert {r["domain"]: r["count"] for r in got} == {"movies": 5, "books": 5}


def test_older_catalog_table_is_rewritten_and_older_rejects_name_the_fix(spark, tmp_path):
    from pyspark.sql import functions as F

    from lfr.data.schema import CATALOG_SCHEMA, REJECTS_SCHEMA
    from lfr.embed.pipeline import REJECT_KEYS, sync_table
    from lfr.spark.delta import TableSchemaError

    rows = [("m1", "T", "d", ["Drama"], 1999, None, "generic", ["generic"], [])]
    new = spark.createDataFrame(rows, CATALOG_SCHEMA)
    old_path = str(tmp_path / "movies")
    new.drop("sources", "merged_ids").write.format("delta").save(old_path)   # as an older version wrote it
    assert sync_table(spark, new, old_path, ["id"]) == (1, 0)
    assert spark.read.format("delta").load(old_path).columns == new.columns

    rejects = spark.createDataFrame([("movies", "src", "x", "null_id", "{}", None)], REJECTS_SCHEMA)
    rej_path = str(tmp_path / "rejects")
    rejects.drop("raw").withColumn("extra", F.lit(1)).write.format("delta").partitionBy("domain").save(rej_path)
    with pytest.raises(TableSchemaError, match=r"(?s)rejects.*missing column 'raw'.*Delete the folder"):
        sync_table(spark, rejects, rej_path, REJECT_KEYS, scope={"domain": "movies"}, compare=[],
                   partition_by=["domain"])
