"""Distributed embedding: the UDF vs the driver-side model, and the incremental pipeline."""
from __future__ import annotations

import json
import os
import re
import shutil
from typing import Iterator

import numpy as np
import pandas as pd
import pytest

from lfr.embed import EMBEDDINGS_SCHEMA, ArtifactMissing, ArtifactRef, embed_catalog, ship_artifact
from lfr.embed.udf import ModelCache, embed_column
from lfr.settings import with_values
from lfr.spark.guards import ShrinkRefused


def _rows(frame: pd.DataFrame) -> list[tuple]:
    # pandas 3 holds a missing description as NaN, which createDataFrame would turn into the string 'nan'
    text = lambda v: v if isinstance(v, str) else None  # noqa: E731
    return [(r.id, text(r.title), text(r.description), list(r.genres) if isinstance(r.genres, (list, tuple)) else None)
            for r in frame.itertuples()]


def test_udf_equals_driver_embed(spark, tiny_artifact, tiny_model, tiny_model_cfg, toy_movies, toy_books):
    from udfs.embed import embed_column  # the public face re-exports lfr.embed.udf

    rows = _rows(toy_movies) + _rows(toy_books)  # includes a None description, [] and None genres
    df = spark.createDataFrame(rows, "id string, title string, description string, genres array<string>").repartition(2)
    ref = ship_artifact(spark, tiny_artifact, "archive")  # the cluster default: an archive added to the SparkContext
    assert ref.mode == "archive" and ref.model_version == tiny_model.model_version
    assert ship_artifact(spark, tiny_artifact, "archive") is ref  # shipped once per session
    out = df.select("id", embed_column(ref, batch_size=4).alias("e")).toPandas().set_index("id")
    assert (df.select(embed_column(ref, batch_size=4)).schema.fields[0].dataType
            == EMBEDDINGS_SCHEMA["embedding"].dataType)
    by_id = {r[0]: r for r in rows}
    ids = list(out.index)
    expected = tiny_model.embed([by_id[i][1] for i in ids], [by_id[i][2] for i in ids], [by_id[i][3] for i in ids],
                                batch_size=64)
    got = np.stack(out["e"].to_list()).astype(np.float32)
    assert got.shape == expected.shape == (len(rows), tiny_model.output_dim)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)

    # the embed job's model.precision travels with the ref and the executors run it (here bf16,
    # explicit, so on any CPU): equal to the driver's bf16 model, not to the artifact's fp32
    from lfr.embed.pipeline import _ship
    from lfr.model import load

    bf16_ref = _ship(spark, tiny_artifact, "archive", with_values(tiny_model_cfg, {"precision": "bf16"}))
    assert bf16_ref.precision == "bf16" and bf16_ref.model_version == ref.model_version
    got16 = np.stack(df.select("id", embed_column(bf16_ref, batch_size=4).alias("e")).toPandas()
                     .set_index("id").loc[ids, "e"].to_list()).astype(np.float32)
    driver16 = load(tiny_artifact, precision="bf16").embed(
        [by_id[i][1] for i in ids], [by_id[i][2] for i in ids], [by_id[i][3] for i in ids], batch_size=4)
    np.testing.assert_allclose(got16, driver16, atol=1e-5)
    assert np.abs(got16 - expected).max() > 3e-5   # bf16 did run: fp32 would match to ~1e-7

    # model.runtime: onnx travels the same way: the executors run the artifact's ONNX export (fp32), the
    # torch fp32 vectors within float rounding; int8 is another model, close but not equal
    onnx_ref = _ship(spark, tiny_artifact, "archive", with_values(tiny_model_cfg, {"runtime": "onnx"}))
    assert (onnx_ref.runtime, onnx_ref.quantize, onnx_ref.model_version) == ("onnx", "none", ref.model_version)
    got_onnx = np.stack(df.select("id", embed_column(onnx_ref, batch_size=4).alias("e")).toPandas()
                        .set_index("id").loc[ids, "e"].to_list()).astype(np.float32)
    assert (got_onnx * expected).sum(axis=1).min() >= 0.9999
    int8_cfg = with_values(tiny_model_cfg, {"runtime": "onnx", "quantize": "int8"})
    int8_ref = _ship(spark, tiny_artifact, "archive", int8_cfg)
    got8 = np.stack(df.select("id", embed_column(int8_ref, batch_size=4).alias("e")).toPandas()
                    .set_index("id").loc[ids, "e"].to_list()).astype(np.float32)
    assert 0.98 < (got8 * expected).sum(axis=1).min() and np.abs(got8 - got_onnx).max() > 1e-5


def test_missing_model_is_a_clear_error(spark, tmp_path):
    with pytest.raises(ArtifactMissing, match="jobs/train.py"):
        ship_artifact(spark, str(tmp_path / "nothing-here"), "archive")


def test_model_cache_loads_once_and_evicts_the_oldest(tiny_artifact, tiny_model):
    cache = ModelCache(max_models=1)
    ref = ArtifactRef(tiny_model.model_version, "path", tiny_artifact)
    assert cache.get(ref) is cache.get(ref) and cache.loads == 1
    assert cache.versions() == [tiny_model.model_version]
    with pytest.raises(RuntimeError, match="changed while the job ran"):
        cache.get(ArtifactRef("0" * 16, "path", tiny_artifact))
    assert cache.versions() == [tiny_model.model_version] and cache.loads == 1


def test_the_runs_precision_wins_over_the_artifacts(tiny_artifact, tiny_model):
    """``--conf model.precision=...`` of an embed job reaches the executors' model (the manifest
    keeps the training run's value); one cached model per (version, precision)."""
    from lfr.model.artifact import read_manifest

    assert read_manifest(tiny_artifact)["precision"] != "bf16"
    cache = ModelCache()
    saved = cache.get(ArtifactRef(tiny_model.model_version, "path", tiny_artifact))
    bf16 = cache.get(ArtifactRef(tiny_model.model_version, "path", tiny_artifact, precision="bf16"))
    fp32 = cache.get(ArtifactRef(tiny_model.model_version, "path", tiny_artifact, precision="fp32"))
    assert bf16.text.precision == "bf16" and fp32.text.precision == "fp32"
    assert saved.text.requested_precision == read_manifest(tiny_artifact)["precision"]
    assert cache.loads == 3 and cache.versions() == [tiny_model.model_version] * 2  # max_models=2: oldest evicted


@pytest.fixture(scope="module")
def faults_on_executors(spark):
    """tests/faults.py on the Python workers' path, importable there as ``faults`` (as on a cluster)."""
    spark.sparkContext.addPyFile(os.path.join(os.path.dirname(__file__), "faults.py"))
    return "faults"


FAULT_ROWS = [("b1", "Fine", "A fine book.", ["Fiction"]), ("b2", "BAD", "A broken one.", []),
              ("b3", "Also fine", "Another book.", None)]


def test_the_udf_loads_through_the_refs_loader_and_checks_a_healthy_output(spark, tiny_artifact, tiny_model,
                                                                          faults_on_executors):
    ref = ship_artifact(spark, tiny_artifact, mode="path", loader="faults:healthy")
    assert ref.dim == tiny_model.output_dim == 32 and ref.loader == "faults:healthy"
    df = spark.createDataFrame(FAULT_ROWS, "id string, title string, description string, genres array<string>")
    got = np.stack([r["e"] for r in df.coalesce(1).select(embed_column(ref, batch_size=2).alias("e")).collect()])
    np.testing.assert_array_equal(got, np.eye(32, dtype=np.float32)[:3])   # the fake model's vectors, unchanged


@pytest.mark.parametrize("loader, violation", [
    ("short_output", "2 vectors for a batch of 3 rows"),
    ("wrong_dimension", "a vector of shape (31,), the artifact's dimension is 32"),
    ("nan_vector", "NaN or infinite"),
    ("zero_vector", "all-zero vector"),
])
def test_a_broken_model_output_fails_the_task_naming_the_item(spark, tiny_artifact, faults_on_executors, loader,
                                                             violation):
    """Like predict_batch_udf: rows out = rows in, the artifact's dimension, finite, non-zero -- or the
    task fails with the item id (the model here: tests/faults.py, through the loader hook)."""
    ref = ship_artifact(spark, tiny_artifact, mode="path", loader=f"{faults_on_executors}:{loader}")
    df = spark.createDataFrame(FAULT_ROWS, "id string, title string, description string, genres array<string>")
    with pytest.raises(Exception) as err:
        df.coalesce(1).select("id", embed_column(ref, ids="id", batch_size=2).alias("e")).collect()
    msg = str(err.value)
    assert "EmbeddingOutputError" in msg and violation in msg, msg[-2000:]
    assert "'b2'" in msg and ("'b1'" in msg) == (loader == "short_output")   # the bad item (the batch: its rows)


def test_output_check_without_spark():
    from lfr.embed.udf import EmbeddingOutputError, checked_vectors

    good = np.eye(3, dtype=np.float64)
    assert checked_vectors(good, ["a", "b", "c"], 3, "v").dtype == np.float32
    assert checked_vectors([[1, 0], [0, 2]], ["a", "b"], 2, "v").shape == (2, 2)      # a list of rows
    cases = [(good[:, :2], "item 'a': a vector of shape (2,)"), (np.full((3, 3), np.inf), "items 'a', 'b', 'c'"),
             ([[1, 0, 0], "xyz", [0, 0, 1]], "item 'b': the vector is not numbers"), (None, "None vectors")]
    for vecs, message in cases:
        with pytest.raises(EmbeddingOutputError, match=re.escape(message)):
            checked_vectors(vecs, ["a", "b", "c"], 3, "v")


def test_the_loader_comes_from_the_session_and_is_checked(spark, tiny_artifact, tiny_model):
    from lfr.embed.ship import DEFAULT_LOADER, LOADER_CONF
    from lfr.errors import UsageError

    assert ship_artifact(spark, tiny_artifact, mode="path").loader == DEFAULT_LOADER
    spark.conf.set(LOADER_CONF, "faults:healthy")
    try:
        assert ship_artifact(spark, tiny_artifact, mode="path").loader == "faults:healthy"
        spark.conf.set(LOADER_CONF, "not a loader")
        with pytest.raises(UsageError, match="module:function"):
            ship_artifact(spark, tiny_artifact, mode="path")
    finally:
        spark.conf.unset(LOADER_CONF)
    with pytest.raises(RuntimeError, match="cannot import no_such_module on this worker"):
        ModelCache().get(ArtifactRef(tiny_model.model_version, "path", tiny_artifact, loader="no_such_module:load"))


def _write_catalog(path, rows):
    pd.DataFrame(rows, columns=["id", "title", "description", "genres"]).to_csv(path, index=False)


def _versions(spark, path) -> int:
    from delta.tables import DeltaTable

    return DeltaTable.forPath(spark, path).history().count()


def _new_version_of(artifact: str, dest: str) -> str:
    """A copy of the artifact with different manifest metadata -> a different, valid model_version."""
    from lfr.model import compute_model_version

    shutil.copytree(artifact, dest)
    mpath = os.path.join(dest, "manifest.json")
    manifest = json.loads(open(mpath, encoding="utf-8").read())
    manifest["note"] = "retrained"
    manifest["model_version"] = compute_model_version(manifest)
    with open(mpath, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh)
    return manifest["model_version"]


def test_incremental_pipeline(spark, tmp_path, tiny_artifact, tiny_model):
    from lfr.model.artifact import read_manifest
    from lfr.settings import load_settings, with_values

    src = tmp_path / "books.csv"
    rows = [(f"b{i}", f"Book {i}", f"Description of book number {i}.", "Fiction|Drama" if i % 2 else "")
            for i in range(6)]
    rows += [("b6", "No text", "", "Fiction"), ("b1", "Same id", "dup", "")]
    _write_catalog(src, rows)
    wh = tmp_path / "wh"
    settings = load_settings(overrides=[
        f"paths.warehouse={wh}", "tables.database=lfr_test_embed", "validation.max_description_chars=1000",
        "embed.batch_size=4", "embed.partitions=null", "embed.ship_model=archive", "embed.delete_missing=true",
        f"model.precision={read_manifest(tiny_artifact)['precision']}"])   # the driver model's: results compare
    settings = with_values(settings, {"catalogs": {"books": [{"reader": "generic", "path": str(src),
                                                              "genres_sep": "|"}]}})
    tables = {k: getattr(settings.tables, k).as_dict() for k in ("books", "book_embeddings", "rejects")}
    assert tables["book_embeddings"]["path"] == str(wh / "book_embeddings")

    def run(model_dir=tiny_artifact):
        return embed_catalog(spark, with_values(settings, {"paths.model_dir": model_dir}), "books")

    emb_path = tables["book_embeddings"]["path"]

    s1 = run()
    assert (s1.read, s1.valid, s1.rejected, s1.embedded, s1.unchanged) == (8, 6, 2, 6, 0)
    assert s1.rejected_by_reason == {"empty_description": 1, "duplicate_id": 1}
    t1 = spark.read.format("delta").load(emb_path).toPandas().set_index("id")
    assert sorted(t1.index) == [f"b{i}" for i in range(6)] and set(t1.model_version) == {tiny_model.model_version}
    assert spark.table("lfr_test_embed.book_embeddings").count() == 6
    assert spark.table("lfr_test_embed.rejects").count() == 2

    # unchanged rerun: nothing embedded, no Delta commit anywhere
    before = {k: _versions(spark, t["path"]) for k, t in tables.items()}
    s2 = run()
    assert (s2.embedded, s2.unchanged, s2.deleted, s2.table_written) == (0, 6, 0, False)
    assert {k: _versions(spark, t["path"]) for k, t in tables.items()} == before

    # one description changed, one item gone: one row re-embedded, one deleted, the rest untouched
    rows2 = [r for r in rows if r[0] != "b5"]
    rows2[2] = ("b2", "Book 2", "A completely new description.", "")
    _write_catalog(src, rows2)
    with pytest.raises(ShrinkRefused):            # one of six books: more than the guards allow ...
        run()
    assert {k: _versions(spark, t["path"]) for k, t in tables.items()} == before
    settings = with_values(settings, {"guards.allow_deletes": True})   # ... until the run accepts it
    s3 = run()
    assert (s3.embedded, s3.deleted, s3.unchanged) == (1, 1, 4)
    assert _versions(spark, emb_path) == before["book_embeddings"] + 1
    t3 = spark.read.format("delta").load(emb_path).toPandas().set_index("id")
    assert sorted(t3.index) == [f"b{i}" for i in range(5)]
    for i in (0, 1, 3, 4):
        assert t3.loc[f"b{i}", "embedded_at"] == t1.loc[f"b{i}", "embedded_at"]
        assert t3.loc[f"b{i}", "content_hash"] == t1.loc[f"b{i}", "content_hash"]
    assert t3.loc["b2", "embedded_at"] > t1.loc["b2", "embedded_at"]
    assert t3.loc["b2", "content_hash"] != t1.loc["b2", "content_hash"]
    expected = tiny_model.embed(["Book 2"], ["A completely new description."], [[]])[0]
    np.testing.assert_allclose(np.asarray(t3.loc["b2", "embedding"]), expected, atol=1e-5)
    assert spark.read.format("delta").load(tables["rejects"]["path"]).count() == 2  # no duplicated rejects

    # a new model version re-embeds everything
    new_dir = str(tmp_path / "model-v2")
    v2 = _new_version_of(tiny_artifact, new_dir)
    s4 = run(new_dir)
    assert (s4.embedded, s4.unchanged, s4.model_version) == (5, 0, v2)
    t4 = spark.read.format("delta").load(emb_path).toPandas()
    assert set(t4.model_version) == {v2} and len(t4) == 5


def test_rejects_sync_of_one_domain_leaves_the_other_domain_alone(spark, tmp_path):
    """Both embed jobs write the one rejects table: a domain's sync inserts, keeps and deletes only its
    own rows (``scope``), whatever the other domain holds."""
    from datetime import datetime, timezone

    from lfr.data.schema import REJECTS_SCHEMA
    from lfr.embed.pipeline import REJECT_KEYS
    from lfr.spark.sync import sync_table

    path = str(tmp_path / "rejects")

    def rejects(domain, ids, when):
        return spark.createDataFrame(
            [(domain, "src", i, "empty_description", json.dumps({"id": i}), when) for i in ids], REJECTS_SCHEMA)

    def sync(domain, ids, when):
        return sync_table(spark, rejects(domain, ids, when), path, REJECT_KEYS, scope={"domain": domain},
                          compare=[], partition_by=["domain"])

    def table():
        return {(r["domain"], r["id"]): r["rejected_at"] for r in spark.read.format("delta").load(path).collect()}

    t0, t1 = datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2026, 2, 1, tzinfo=timezone.utc)
    assert sync("movies", ["m1", "m2"], t0) == (2, 0)
    assert sync("books", ["b1", "b2", "b3"], t0) == (3, 0)
    movies_before = {k: v for k, v in table().items() if k[0] == "movies"}
    # books: b1 fixed at the source, b3 kept (first-seen time kept), b4 new; the movies partition untouched
    assert sync("books", ["b3", "b4", "b2"], t1) == (1, 1)
    after = table()
    assert {k: v for k, v in after.items() if k[0] == "movies"} == movies_before
    assert {k[1] for k in after if k[0] == "books"} == {"b2", "b3", "b4"}
    assert after[("books", "b3")] == movies_before[("movies", "m1")] and after[("books", "b4")] > after[("books", "b3")]
    # every book fixed: the books partition empties, the movies rows stay
    assert sync("books", [], t1) == (0, 3)
    assert set(table()) == {("movies", "m1"), ("movies", "m2")}


def test_model_loaded_once_per_python_worker_across_batches_and_tasks(spark, tiny_artifact):
    """Many Arrow batches over more tasks than workers: each Python worker process loads the model once.

    The probe is the embedding UDF's own path (``load_cached`` + ``model.embed`` on the shipped
    artifact) asked for its model on EVERY batch, reporting the worker's pid, its cache's load
    count and the task: a cache that reloads shows a growing count within one pid."""
    from pyspark.sql.functions import pandas_udf

    from lfr.embed.udf import load_cached

    ref = ship_artifact(spark, tiny_artifact, "archive")

    @pandas_udf("string")
    def probe(batches: Iterator[tuple[pd.Series, pd.Series]]) -> Iterator[pd.Series]:
        import os

        from pyspark import TaskContext

        from lfr.embed import udf as worker_udf

        task = TaskContext.get().partitionId()
        for n, (ids, texts) in enumerate(batches):
            model = load_cached(ref)
            assert model.embed(list(ids), list(texts), [[]] * len(ids)).shape == (len(ids), 32)
            yield ids.map(lambda _: f"{os.getpid()} {worker_udf._CACHE.loads} {task}:{n}")

    rows = [(f"x{i}", f"Description number {i} of a book.") for i in range(48)]
    df = spark.createDataFrame(rows, "id string, description string").repartition(8)
    key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    old = spark.conf.get(key)
    spark.conf.set(key, "3")
    try:
        out = [r["p"].split() for r in df.select(probe("id", "description").alias("p")).collect()]
    finally:
        spark.conf.set(key, old)
    loads, batches, tasks = {}, {}, {}
    for pid, n_loads, batch in out:
        loads.setdefault(pid, set()).add(int(n_loads))
        batches.setdefault(pid, set()).add(batch)
        tasks.setdefault(pid, set()).add(batch.split(":")[0])
    assert sum(map(len, batches.values())) >= 16          # 48 rows in Arrow batches of <= 3
    assert max(map(len, tasks.values())) > 1               # a worker served several tasks (worker reuse)
    for pid in loads:
        assert len(loads[pid]) == 1 and min(loads[pid]) >= 1, (pid, sorted(loads[pid]), len(batches[pid]))
