"""The scoring job on Spark: exact vs brute force, exclusions, filters, atomicity, versions, SQL view."""
import collections
import importlib.util
import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.test_score_kernel import brute_force, data_with_ties

# Python workers must run this interpreter (pyarrow, torch); the session is created after import.

ROOT = Path(__file__).resolve().parent.parent
EMB_SCHEMA = "id string, title string, embedding array<float>, model_version string"
K = 12


def _job(name):
    if str(ROOT / "jobs") not in sys.path:            # jobs import their shared helpers as top-level modules
        sys.path.insert(0, str(ROOT / "jobs"))
    spec = importlib.util.spec_from_file_location(f"job_{name}", ROOT / "jobs" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rows(ids, vecs, prefix, version="v1"):
    out = []
    for i, (id_, v) in enumerate(zip(ids, vecs)):
        emb = None if v is None else [None if np.isnan(x) and i % 2 else float(x) for x in v]
        out.append((id_, f"{prefix} {id_}", emb, version))
    return out


def _with(settings, **score):
    """``settings`` with ``score.<key>`` values replaced (as a job's flags are folded in); the plain cosine
    (``score.hubness: none``, ``score.fused_hub_weight: 0``, ``score.lexical_hubness: none``) unless given: the
    brute forces here rank by it."""
    from lfr.settings import with_values

    score = {"hubness": "none", "fused_hub_weight": 0.0, "lexical_hubness": "none", **score}
    return with_values(settings, {f"score.{key}": value for key, value in score.items()})


def _library_args(settings, **score) -> dict:
    """``settings`` / ``guards`` of a library call of ``score_recommendations``, built from the yaml."""
    from lfr.spark.guards import Guards

    return {"settings": _with(settings, **score).score, "guards": Guards.from_settings(settings.guards)}


@pytest.fixture(scope="module")
def env(spark, tmp_path_factory):
    """Embedding tables (Delta) with ties, duplicates and invalid rows, plus settings pointing at them."""
    from lfr.settings import load_settings
    from lfr.spark.delta import write_table

    tmp = tmp_path_factory.mktemp("score")
    rng = np.random.default_rng(11)
    movie_ids, mv, book_ids, bv = data_with_ties(rng, n_movies=60, n_books=150, d=16)
    mv[59] = 0.0                                  # zero vector: dropped, counted
    bv[149, 3] = np.nan                           # NaN element: dropped, counted
    movies = _rows(movie_ids, mv, "Movie")
    books = _rows(book_ids, bv, "Book") + [("bnull", "Book null", None, "v1")]
    settings = load_settings(overrides=[f"paths.work_dir={tmp}", "tables.database=lfr_score_test"])
    t = settings.tables
    write_table(spark.createDataFrame(movies, EMB_SCHEMA), t.movie_embeddings.path, mode="overwrite")
    write_table(spark.createDataFrame(books, EMB_SCHEMA), t.book_embeddings.path, mode="overwrite")
    invalid = lambda rows: {r[0] for r in rows if r[2] is None or not np.all(np.isfinite(np.array(r[2], dtype=float)))  # noqa: E731
                            or not np.any(np.array(r[2], dtype=float))}
    return {"settings": settings, "tmp": tmp, "movie_ids": movie_ids, "mv": mv, "book_ids": book_ids, "bv": bv,
            "invalid_movies": invalid(movies), "invalid_books": invalid(books)}


def _read(spark, path):
    out = {}
    for r in spark.read.format("delta").load(path).orderBy("movie_id", "rank").collect():
        out.setdefault(r.movie_id, []).append((r.book_id, r.score, r.rank))
    return out


def test_job_exact_with_exclusions_filter_and_view(spark, env, capsys, caplog):
    settings, tmp = env["settings"], env["tmp"]
    movie_ids, mv, book_ids, bv = env["movie_ids"], env["mv"], env["book_ids"], env["bv"]
    # exclude each movie's unconstrained #1 and #3 (so the kept list must reach deeper than k)
    free = brute_force(movie_ids, mv, book_ids, bv, K)
    excluded = {(m, lst[i][0]) for m, lst in free.items() for i in (0, 2)}
    pair_file = tmp / "exclude.csv"
    pair_file.write_text("movie_id,book_id\n" + "".join(f"{m},{b}\n" for m, b in sorted(excluded)))
    keep_books = np.array([not b.endswith("5") for b in book_ids])   # book_filter drops ids ending in 5

    argv = ["--conf", f"paths.work_dir={tmp}", "--conf", "tables.database=lfr_score_test",
            "--conf", "score.method=dense", "--conf", "score.hubness=none",   # the brute force's plain cosine
            "--k", str(K), "--movie-block-rows", "30", "--book-block-rows", "20",   # ~10-row book blocks < k
            "--exclude-pairs", str(pair_file), "--book-filter", "id NOT LIKE '%5'"]
    score_all = _job("score_all")
    with caplog.at_level("INFO", logger="lfr"):
        assert score_all.run_job("score_all", score_all.main, score_all.add_args, argv=argv) == 0
    summary = json.loads(next(r.getMessage() for r in caplog.records
                              if r.getMessage().startswith("score_all: {")).split(": ", 1)[1])

    path = settings.tables.recommendations.path
    df = spark.read.format("delta").load(path)
    assert [(f.name, f.dataType.simpleString()) for f in df.schema.fields] == [
        ("movie_id", "string"), ("rank", "int"), ("book_id", "string"), ("score", "float"),
        ("model_version", "string"), ("lexical_version", "string"), ("method", "string"),
        ("method_params", "string"), ("run_id", "string"), ("scored_at", "timestamp")]
    meta = df.selectExpr("count(DISTINCT run_id) AS runs", "min(model_version) AS v", "count(*) AS n",
                         "min(method) AS method", "count(lexical_version) AS lv").first()
    assert meta.runs == 1 and meta.v == "v1" and meta.method == "dense" and meta.lv == 0

    got = _read(spark, path)
    ref = brute_force(movie_ids, mv, book_ids[keep_books], bv[keep_books], K, exclude=excluded)
    assert set(got) == set(ref) and "m0059" not in got            # zero-vector movie dropped
    # the run's counts, derived from the fixture: invalid rows dropped and counted, the filter applied first
    filtered = [b for b in [*book_ids, "bnull"] if not b.endswith("5")]
    bad_books = env["invalid_books"] & set(filtered)
    assert env["invalid_movies"] == {"m0059"} and len(bad_books) == 2
    assert (summary["movies"], summary["movies_invalid"]) == (len(movie_ids) - 1, 1)
    assert (summary["books"], summary["books_invalid"]) == (len(filtered) - len(bad_books), len(bad_books))
    assert summary["rows"] == meta.n == sum(len(v) for v in ref.values()) == len(ref) * K
    assert summary["k"] == K and summary["model_version"] == "v1" and summary["dim"] == 16
    for m in ref:
        assert [b for b, _, _ in got[m]] == [b for b, _ in ref[m]], m
        assert [r for _, _, r in got[m]] == list(range(1, K + 1))
        np.testing.assert_allclose([s for _, s, _ in got[m]], [s for _, s in ref[m]], atol=1e-6)
        assert not {(m, b) for b, _, _ in got[m]} & excluded
    # hub statistics of the written lists, recounted here from the brute-force reference
    occurrence = collections.Counter(b for lst in ref.values() for b, _ in lst[:min(10, K)])
    hub_book, most = sorted(occurrence.items(), key=lambda x: (-x[1], x[0]))[0]
    hubs = summary["hubs"]
    assert (hubs["films"], hubs["books"], hubs["top"]) == (len(ref), summary["books"], min(10, K))
    assert (hubs["hub_book"], hubs["max_occurrence"]) == (hub_book, most)
    assert hubs["never_recommended"] == pytest.approx(1 - len(occurrence) / summary["books"], abs=1e-6)
    # ties: movies 2..5 equal the duplicated books -> bit-identical scores, smallest id first
    dups = sorted(b for b in book_ids[[3, 10, 77, 140]] if not b.endswith("5") and ("m0002", b) not in excluded)
    assert len(dups) >= 2 and [b for b, _, _ in got["m0002"][:len(dups)]] == dups
    assert len({s for _, s, _ in got["m0002"][:len(dups)]}) == 1
    for lst in got.values():                                      # equal scores always in id order
        assert all(a[0] < b[0] for a, b in zip(lst, lst[1:]) if a[1] == b[1])

    # the view, registered again by jobs/sql.py (a fresh session would need it)
    sql = _job("sql")
    q = ("SELECT movie_title, rank, book_title, score FROM lfr_score_test.movie_book_recommendations "
         "WHERE movie_title = 'Movie m0007' ORDER BY rank")
    capsys.readouterr()
    assert sql.run_job("sql", sql.main, sql.add_args, argv=["--conf", f"paths.work_dir={tmp}",
                                                            "--conf", "tables.database=lfr_score_test", "-e", q]) == 0
    printed = capsys.readouterr().out
    assert f"Book {ref['m0007'][0][0]}" in printed and "(12 rows)" in printed
    rows = spark.sql(q).collect()
    assert [r.book_title for r in rows] == [f"Book {b}" for b, _ in ref["m0007"]]


def test_failed_run_leaves_previous_version_readable(spark, env):
    from delta.tables import DeltaTable

    from lfr.score import run_score
    from lfr.settings import load_settings

    # its own table (not the one the previous test wrote): a good run first, then the failing one
    settings = _with(load_settings(overrides=[f"paths.work_dir={env['tmp']}", "tables.database=lfr_score_atomic",
                                              f"tables.recommendations.path={env['tmp'] / 'atomic_recommendations'}"]),
                     k=5, method="dense", movie_block_rows=30, book_block_rows=20)
    path = settings.tables.recommendations.path
    run_score(spark, settings)
    before_version = DeltaTable.forPath(spark, path).history(1).first()["version"]
    before = _read(spark, path)
    target = env["bv"][40] / np.linalg.norm(env["bv"][40])

    def failing_kernel(q, b, k, **kw):
        from lfr.score.kernel import block_topk
        out = block_topk(q, b, k, **kw)            # real work first: other block pairs succeed
        if np.any(np.abs(b - target.astype(np.float32)).max(axis=1) < 1e-6):
            raise RuntimeError("injected failure in one block pair")
        return out

    with pytest.raises(Exception, match="injected failure"):
        run_score(spark, settings, kernel=failing_kernel)
    assert DeltaTable.forPath(spark, path).history(1).first()["version"] == before_version
    assert _read(spark, path) == before


def test_mismatched_versions_and_dimensions_are_refused(spark, tmp_path):
    from lfr.score import ModelVersionMismatch, score_recommendations
    from lfr.settings import load_settings

    lib = _library_args(load_settings(), method="dense", k=1)

    def df(rows):
        return spark.createDataFrame(rows, EMB_SCHEMA)
    m = df([("m1", "a", [1.0, 0.0], "model-A")])
    b = df([("b1", "x", [1.0, 0.0], "model-B")])
    out = str(tmp_path / "recs")
    with pytest.raises(ModelVersionMismatch, match="'model-A'.*'model-B'"):
        score_recommendations(spark, m, b, out, **lib)
    mixed = df([("b1", "x", [1.0, 0.0], "model-A"), ("b2", "y", [0.0, 1.0], "model-C")])
    with pytest.raises(ModelVersionMismatch, match="book embeddings mix 2 model versions.*'model-A'.*'model-C'"):
        score_recommendations(spark, m, mixed, out, **lib)
    from lfr.score import ScoringError
    with pytest.raises(ScoringError, match="movie embeddings have dimension 2, book embeddings 3"):
        score_recommendations(spark, m, df([("b1", "x", [1.0, 0.0, 0.0], "model-A")]), out, **lib)
    ragged = df([("b1", "x", [1.0, 0.0], "model-A"), ("b2", "y", [1.0, 0.0, 1.0], "model-A")])
    with pytest.raises(ScoringError, match="book embeddings have lengths 2..3"):
        score_recommendations(spark, m, ragged, out,
                              **_library_args(load_settings(), method="dense", k=1, book_block_rows=100))
    assert not os.path.exists(out)


def test_a_run_covering_fewer_films_is_refused_unless_allowed(spark, env, caplog):
    """The films guard: 30% of the movie embeddings gone -> score_all exits 2 before writing (the table keeps
    its Delta version); --allow-deletes writes it, and the commit records the films before/after/deleted."""
    from delta.tables import DeltaTable

    from lfr.score import ShrinkRefused, run_score, score_recommendations
    from lfr.settings import load_settings
    from lfr.spark.delta import write_table

    tmp = env["tmp"]
    conf = [f"paths.work_dir={tmp}", "tables.database=lfr_score_guard", "score.method=dense",
            f"tables.recommendations.path={tmp / 'guard_recommendations'}"]
    settings = load_settings(overrides=conf)
    path = settings.tables.recommendations.path
    first = run_score(spark, _with(settings, k=5, movie_block_rows=30, book_block_rows=20))
    assert first.films == {"before": 0, "after": 59, "deleted": 0}           # 60 movies, one zero vector
    movies = spark.read.format("delta").load(settings.tables.movie_embeddings.path)
    fewer = movies.where("CAST(substr(id, 2) AS INT) % 10 >= 3")             # m0000..m0059: 18 films gone
    write_table(fewer, str(tmp / "fewer_movies"), mode="overwrite")
    version = DeltaTable.forPath(spark, path).history(1).first()["version"]

    argv = [a for c in conf + [f"tables.movie_embeddings.path={tmp / 'fewer_movies'}"] for a in ("--conf", c)]
    argv += ["--k", "5", "--movie-block-rows", "30", "--book-block-rows", "20"]
    score_all = _job("score_all")
    with caplog.at_level("ERROR", logger="lfr"):
        assert score_all.run_job("score_all", score_all.main, score_all.add_args, argv=argv) == 2
    refused = next(r.getMessage() for r in caplog.records if "refusing to shrink" in r.getMessage())
    assert f"recommendations ({path}): 59 films before, 41 after, 18 deleted from " in refused, refused
    assert "--allow-deletes" in refused and "Nothing was written" in refused
    assert DeltaTable.forPath(spark, path).history(1).first()["version"] == version
    with pytest.raises(ShrinkRefused):                     # a library call with the configured guards too
        score_recommendations(spark, fewer, spark.read.format("delta").load(settings.tables.book_embeddings.path),
                              path, **_library_args(settings, k=5))
    assert DeltaTable.forPath(spark, path).history(1).first()["version"] == version

    assert score_all.run_job("score_all", score_all.main, score_all.add_args, argv=argv + ["--allow-deletes"]) == 0
    assert DeltaTable.forPath(spark, path).history(1).first()["version"] == version + 1
    assert spark.read.format("delta").load(path).select("movie_id").distinct().count() == 41
    meta = json.loads(spark.sql("DESCRIBE HISTORY lfr_score_guard.recommendations").first()["userMetadata"])
    assert meta["films"] == {"before": 59, "after": 41, "deleted": 18} and meta["method"] == "dense"
    assert meta["missing_sides"] is None


def test_the_merge_gets_a_task_per_two_million_candidate_rows(spark, monkeypatch):
    """Large runs hash their candidates by movie into more merge tasks than spark.sql.shuffle.partitions (a
    100k x 1M run put 7.8M rows into each of 8 tasks and ran out of execution memory); the result is the same."""
    from lfr.score import blocks

    rows = [(f"m{i % 7}", f"b{i:03d}", float(i % 11)) for i in range(120)]
    cands = spark.createDataFrame(rows, blocks.CANDIDATE_SCHEMA)
    monkeypatch.setattr(blocks, "MERGE_ROWS_PER_TASK", 4)
    split = blocks.merge_candidates(cands, 3, rows=120)
    assert re.search(r"hashpartitioning\(movie_id#\d+, 30\), REPARTITION_BY_NUM",
                     split._jdf.queryExecution().executedPlan().toString())
    plain = blocks.merge_candidates(cands, 3)
    assert sorted(map(tuple, split.collect())) == sorted(map(tuple, plain.collect()))
    assert len(plain.collect()) == 7 * 3
