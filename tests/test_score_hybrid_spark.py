"""score.method lexical / hybrid on Spark: exact vs brute force over all books, method recorded, clear refusals."""
import json

import numpy as np
import pytest

from tests.test_score_hybrid_kernel import brute_hybrid, brute_lexical, brute_rrf, catalog

EMB_SCHEMA = "id string, title string, embedding array<float>, model_version string"
LEX_SCHEMA = ("id string, title string, term_indices array<int>, term_weights array<float>, "
              "lexical_version string, vocab_size int")
K = 7


def _lex_rows(ids, lex, prefix, version="lex1", vocab=40):
    return [(i, f"{prefix} {i}", [int(x) for x in t], [float(x) for x in w], version, vocab)
            for i, (t, w) in zip(ids, lex)]


def _emb_rows(ids, vecs, prefix):
    return [(i, f"{prefix} {i}", [float(x) for x in v], "v1") for i, v in zip(ids, vecs)]


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
    from lfr.settings import load_settings
    from lfr.spark.delta import write_table

    tmp = tmp_path_factory.mktemp("hybrid")
    movie_ids, mv, m_lex, book_ids, bv, b_lex = catalog(seed=21, n_movies=40, n_books=60)
    settings = load_settings(overrides=[f"paths.work_dir={tmp}", "tables.database=lfr_hybrid_test"])
    t = settings.tables
    for key, rows, schema in (("movie_embeddings", _emb_rows(movie_ids, mv, "Movie"), EMB_SCHEMA),
                              ("book_embeddings", _emb_rows(book_ids, bv, "Book"), EMB_SCHEMA),
                              ("movie_lexical", _lex_rows(movie_ids, m_lex, "Movie"), LEX_SCHEMA),
                              ("book_lexical", _lex_rows(book_ids, b_lex, "Book"), LEX_SCHEMA)):
        write_table(spark.createDataFrame(rows, schema), getattr(t, key).path, mode="overwrite")
    return {"settings": settings, "tmp": tmp, "data": (movie_ids, mv, m_lex, book_ids, bv, b_lex)}


def _read(spark, path):
    out = {}
    for r in spark.read.format("delta").load(path).orderBy("movie_id", "rank").collect():
        out.setdefault(r.movie_id, []).append((r.book_id, r.score))
    return out


def _assert_same(got, ref):
    assert set(got) == set(ref)
    for m in ref:
        assert [b for b, _ in got[m]] == [b for b, _ in ref[m]], m
        np.testing.assert_allclose([s for _, s in got[m]], [s for _, s in ref[m]], rtol=1e-6, atol=1e-6)


def test_lexical_and_hybrid_runs_equal_brute_force_and_record_the_method(spark, env):
    from lfr.score import run_score

    settings = env["settings"]
    movie_ids, mv, m_lex, book_ids, bv, b_lex = env["data"]
    path = settings.tables.recommendations.path

    res = run_score(spark, _with(settings, k=K, method="lexical", movie_block_rows=15, book_block_rows=25))
    assert res.method == "lexical" and res.lexical_version == "lex1" and res.model_version is None
    _assert_same(_read(spark, path), brute_lexical(movie_ids, m_lex, book_ids, b_lex, K))
    assert res.movies_invalid == len([1 for t, _ in m_lex if len(t) == 0])      # no terms: dropped, counted

    res = run_score(spark, _with(settings, k=K, method="hybrid", movie_block_rows=15, book_block_rows=25))
    assert (res.method, res.model_version, res.lexical_version) == ("hybrid", "v1", "lex1")
    got = _read(spark, path)
    alpha = float(settings.score.alpha)                    # the configured default
    _assert_same(got, brute_hybrid(movie_ids, mv, m_lex, book_ids, bv, b_lex, K, alpha))
    dup = sorted(book_ids[[7, 11, 40]])                    # identical books: bit-identical scores, id order
    assert [b for b, _ in got["m003"][:3]] == dup and len({s for _, s in got["m003"][:3]}) == 1

    rows = spark.sql("SELECT DISTINCT method, method_params, model_version, lexical_version "
                     "FROM lfr_hybrid_test.movie_book_recommendations").collect()
    assert len(rows) == 1 and rows[0].method == "hybrid" and rows[0].lexical_version == "lex1"
    assert json.loads(rows[0].method_params) == {"alpha": alpha, "fusion": "convex",
                                                 "normalisation": "z-score per movie over all scored books"}
    titled = spark.sql("SELECT book_title FROM lfr_hybrid_test.movie_book_recommendations "
                       "WHERE movie_id = 'm003' ORDER BY rank").collect()
    assert [r.book_title for r in titled[:3]] == [f"Book {b}" for b in dup]


def test_missing_lexical_tables_and_mixed_versions_are_refused(spark, env, tmp_path):
    from lfr.score import ModelVersionMismatch, ScoringError, run_score, score_recommendations
    from lfr.settings import load_settings
    from lfr.spark.delta import write_table

    settings = load_settings(overrides=[f"paths.work_dir={tmp_path}", "tables.database=lfr_hybrid_empty"])
    t = settings.tables
    src = env["settings"].tables
    for key in ("movie_embeddings", "book_embeddings"):
        write_table(spark.read.format("delta").load(getattr(src, key).path), getattr(t, key).path, mode="overwrite")
    with pytest.raises(ScoringError, match="movie_lexical.*jobs/embed_lexical.py"):
        run_score(spark, _with(settings, method="hybrid"))

    lex = spark.read.format("delta").load(src.book_lexical.path)
    mixed = lex.limit(5).unionByName(lex.limit(3).selectExpr("id", "title", "term_indices", "term_weights",
                                                             "'lex2' AS lexical_version", "vocab_size"))
    movies = spark.read.format("delta").load(src.movie_lexical.path)
    lexical = _library_args(settings, method="lexical")
    with pytest.raises(ModelVersionMismatch, match="book lexical features mix 2 lexical versions"):
        score_recommendations(spark, None, None, str(tmp_path / "r"), **lexical,
                              movie_lexical=movies, book_lexical=mixed)
    other_vocab = lex.selectExpr("id", "title", "term_indices", "term_weights", "lexical_version", "50 AS vocab_size")
    with pytest.raises(ScoringError, match="disagree on vocab_size"):
        score_recommendations(spark, None, None, str(tmp_path / "r"), **lexical,
                              movie_lexical=movies, book_lexical=other_vocab)

    # The hybrid checks all four tables in ONE query (fewer Spark jobs than the two single checks),
    # with the same results and errors.
    from pyspark.sql import functions as F

    from lfr.score.checks import check_hybrid_inputs, check_inputs, check_lexical_inputs

    emb = {key: spark.read.format("delta").load(getattr(src, key).path)
           for key in ("movie_embeddings", "book_embeddings")}

    def last_job() -> int:        # job ids count up; the tracker forgets old jobs (spark.ui.retainedJobs)
        return max(spark.sparkContext.statusTracker().getJobIdsForGroup(), default=-1)

    def jobs(run) -> tuple[int, object]:
        before = last_job()
        out = run()
        return last_job() - before, out
    n_single, single = jobs(lambda: (check_inputs(emb["movie_embeddings"], emb["book_embeddings"]),
                                     check_lexical_inputs(movies, lex)))
    n_hybrid, (dense_check, lexical_check) = jobs(lambda: check_hybrid_inputs(
        emb["movie_embeddings"], emb["book_embeddings"], movies, lex))
    assert (dense_check, lexical_check) == single and 0 < n_hybrid < n_single
    (mv, m_rows, b_rows), (lv, vocab, lm_rows, lb_rows) = dense_check, lexical_check
    assert (m_rows, b_rows) == (emb["movie_embeddings"].count(), emb["book_embeddings"].count())
    assert (lm_rows, lb_rows, vocab) == (movies.count(), lex.count(), lex.first()["vocab_size"])
    assert mv == emb["book_embeddings"].first()["model_version"] and lv == lex.first()["lexical_version"]
    with pytest.raises(ModelVersionMismatch, match="book lexical features mix 2 lexical versions"):
        check_hybrid_inputs(emb["movie_embeddings"], emb["book_embeddings"], movies, mixed)
    with pytest.raises(ScoringError, match="disagree on vocab_size"):
        check_hybrid_inputs(emb["movie_embeddings"], emb["book_embeddings"], movies, other_vocab)
    with pytest.raises(ModelVersionMismatch, match="movie embeddings are model_version .* but book embeddings"):
        check_hybrid_inputs(emb["movie_embeddings"].withColumn("model_version", F.lit("other")),
                            emb["book_embeddings"], movies, lex)


def test_rrf_run_equals_brute_force_and_retries_unproven_movies(spark, env, monkeypatch, caplog):
    """score.fusion=rrf: the exact RRF top-k over all books (competition ranks, ties), with exclusions; a
    tiny first candidate count forces the retry rounds (re-blocked unproven movies)."""
    import logging

    import pandas as pd

    from lfr.score import rrf, run_score

    movie_ids, mv, m_lex, book_ids, bv, b_lex = env["data"]
    settings = _with(env["settings"], fusion="rrf", rrf_k=30)
    path = settings.tables.recommendations.path
    excluded = {(movie_ids[i], book_ids[(5 * i) % len(book_ids)]) for i in range(0, len(movie_ids), 2)}
    ex_file = env["tmp"] / "rrf_exclude.csv"
    pd.DataFrame(sorted(excluded), columns=["movie_id", "book_id"]).to_csv(ex_file, index=False)
    monkeypatch.setattr(rrf, "RRF_FIRST_N", 2)
    with caplog.at_level(logging.INFO, logger="lfr.score.rrf"):
        res = run_score(spark, _with(settings, k=K, method="hybrid", movie_block_rows=15, book_block_rows=25,
                                     exclude_pairs=str(ex_file)))
    _assert_same(_read(spark, path), brute_rrf(movie_ids, mv, m_lex, book_ids, bv, b_lex, K, 30, exclude=excluded))
    assert json.loads(res.method_params)["fusion"] == "rrf" and json.loads(res.method_params)["rrf_k"] == 30
    assert sum(r.getMessage().startswith("score rrf: round") for r in caplog.records) > 1   # n=7 proved not all


def test_hub_aware_runs_equal_brute_force_and_store_each_books_hub_score(spark, env, monkeypatch):
    """score.hubness=csls, over several blocks: dense, convex (also with each correction of the fused score) and
    rrf (forced retries: re-blocked films are augmented too) give the brute-force top-k of ``cos - w r(book)``;
    ``book_hubs`` holds each r(book)."""
    from lfr.score import rrf, run_score
    from lfr.score.kernel import normalize_rows
    from tests.test_score_csls import hub_rows
    from tests.test_score_hybrid_kernel import bookz_scores, brute_hybrid_rows, fused_offsets, hybrid_scores, ranked
    from tests.test_score_precision import exact32

    movie_ids, mv, m_lex, book_ids, bv, b_lex = env["data"]
    hub = {"hubness": "csls", "hub_k": 5, "hub_weight": 0.5}            # every _with call: it defaults to none
    settings = _with(env["settings"], k=K, movie_block_rows=15, book_block_rows=25, **hub)
    path, hubs_path = settings.tables.recommendations.path, settings.tables.book_hubs.path
    qa, ba, r = hub_rows(normalize_rows(mv)[0], normalize_rows(bv)[0], hub_k=5, weight=0.5)

    res = run_score(spark, _with(settings, method="dense", **hub))
    got = _read(spark, path)
    _assert_same(got, ranked(movie_ids, book_ids, exact32(qa, ba), K))
    assert json.loads(res.method_params)["hubness"] == "csls" and "hub pass" in res.phases
    assert res.dim == mv.shape[1]                      # the embeddings' dimension, not the augmented rows
    hubs = {row.book_id: row for row in spark.read.format("delta").load(hubs_path).collect()}
    np.testing.assert_allclose([hubs[b].hub_r for b in book_ids], r, rtol=0, atol=1e-7)
    occurrences = {b: sum(b in [x for x, _ in lst] for lst in got.values()) for b in book_ids}
    assert {b: hubs[b].occurrences for b in book_ids} == occurrences
    assert {h.run_id for h in hubs.values()} == {res.run_id}
    meta = json.loads(spark.sql(f"DESCRIBE HISTORY delta.`{hubs_path}` LIMIT 1").first().userMetadata)
    assert meta["hubs"]["max_occurrence"] == max(occurrences.values()) and meta["hub_k"] == 5

    alpha = float(settings.score.alpha)
    run_score(spark, _with(settings, method="hybrid", **hub))
    _assert_same(_read(spark, path), brute_hybrid_rows(movie_ids, qa, m_lex, book_ids, ba, b_lex, K, alpha))

    # score.fused_hub_weight: one more pass (each book's top hybrid scores over all films), then the offsets
    res = run_score(spark, _with(settings, method="hybrid", fused_hub_weight=0.5, **hub))
    want = brute_hybrid_rows(movie_ids, qa, m_lex, book_ids, ba, b_lex, K, alpha, fused=(5, 0.5))
    _assert_same(_read(spark, path), want)
    assert want != brute_hybrid_rows(movie_ids, qa, m_lex, book_ids, ba, b_lex, K, alpha)
    off = fused_offsets(hybrid_scores(qa, m_lex, ba, b_lex, alpha)[0].astype(np.float32), 5, 0.5)
    hubs = {row.book_id: row for row in spark.read.format("delta").load(hubs_path).collect()}
    np.testing.assert_allclose([hubs[b].fused_offset for b in book_ids], off, rtol=1e-6)
    np.testing.assert_allclose([hubs[b].hub_r for b in book_ids], r, rtol=0, atol=1e-7)
    assert json.loads(res.method_params)["fused_hub_weight"] == 0.5

    # score.lexical_hubness: bookz: one pass of the lexical product (each book's statistics of the films' z-scores)
    res = run_score(spark, _with(settings, method="hybrid", lexical_hubness="bookz", **hub))
    got = _read(spark, path)
    h64, _, book_z = bookz_scores(qa, m_lex, ba, b_lex, alpha)
    _assert_same(got, ranked(movie_ids, book_ids, h64.astype(np.float32), K))
    hubs = {row.book_id: row for row in spark.read.format("delta").load(hubs_path).collect()}   # each book's (P, T)
    np.testing.assert_allclose([(hubs[b].lexical_scale, hubs[b].lexical_shift) for b in book_ids], book_z, rtol=1e-9)
    assert all(hubs[b].fused_r is None for b in book_ids)
    np.testing.assert_allclose([hubs[b].hub_r for b in book_ids], r, rtol=0, atol=1e-7)
    assert got != brute_hybrid_rows(movie_ids, qa, m_lex, book_ids, ba, b_lex, K, alpha)
    assert json.loads(res.method_params)["lexical_hubness"] == "bookz" and "fused_hub_weight" not in res.method_params

    monkeypatch.setattr(rrf, "RRF_FIRST_N", 2)
    run_score(spark, _with(settings, method="hybrid", fusion="rrf", rrf_k=30, **hub))
    _assert_same(_read(spark, path), brute_rrf(movie_ids, qa, m_lex, book_ids, ba, b_lex, K, 30, normalize=False))


def _one_sided(spark, env):
    """The fixture's four tables with ids on one side only: m005, m006 and book #2 lose their embedding,
    m007 and book #3 their lexical row; the arrays the brute force sees (the missing side empty)."""
    movie_ids, mv, m_lex, book_ids, bv, b_lex = env["data"]
    mv, bv, m_lex, b_lex = mv.copy(), bv.copy(), list(m_lex), list(b_lex)
    no_emb_m, no_lex_m, no_emb_b, no_lex_b = {5, 6}, {7}, {2}, {3}
    empty = (np.empty(0, np.int32), np.empty(0, np.float32))
    tables = {
        "movies": spark.createDataFrame(
            [r for i, r in enumerate(_emb_rows(movie_ids, mv, "Movie")) if i not in no_emb_m], EMB_SCHEMA),
        "books": spark.createDataFrame(
            [r for i, r in enumerate(_emb_rows(book_ids, bv, "Book")) if i not in no_emb_b], EMB_SCHEMA),
        "movie_lexical": spark.createDataFrame(
            [r for i, r in enumerate(_lex_rows(movie_ids, m_lex, "Movie")) if i not in no_lex_m], LEX_SCHEMA),
        "book_lexical": spark.createDataFrame(
            [r for i, r in enumerate(_lex_rows(book_ids, b_lex, "Book")) if i not in no_lex_b], LEX_SCHEMA)}
    for i in no_emb_m:
        mv[i] = 0.0
    for i in no_emb_b:
        bv[i] = 0.0
    for i in no_lex_m:
        m_lex[i] = empty
    for i in no_lex_b:
        b_lex[i] = empty
    return tables, (movie_ids, mv, m_lex, book_ids, bv, b_lex)


def test_ids_on_one_side_only_are_refused_by_default_with_counts_and_the_jobs_to_run(spark, env, tmp_path):
    """score.missing_side: fail (conf/lfr.yaml): nothing is written, the error (exit code 2) names the counts,
    sample ids and the jobs that write the missing rows."""
    from lfr.errors import UsageError
    from lfr.score import MissingSideError, score_recommendations

    tables, _ = _one_sided(spark, env)
    book_ids = env["data"][3]
    out = tmp_path / "recs"
    with pytest.raises(MissingSideError) as err:
        score_recommendations(spark, tables["movies"], tables["books"], str(out),
                              **_library_args(env["settings"], k=K, method="hybrid"),
                              movie_lexical=tables["movie_lexical"], book_lexical=tables["book_lexical"])
    msg = str(err.value)
    assert isinstance(err.value, UsageError)
    assert ("movies: 1 with an embedding but no lexical row (e.g. m007), 2 with a lexical row but no embedding "
            "(e.g. m005, m006) (37 on both sides)") in msg, msg
    assert (f"books: 1 with an embedding but no lexical row (e.g. {book_ids[3]}), 1 with a lexical row but no "
            f"embedding (e.g. {book_ids[2]}) (58 on both sides)") in msg, msg
    assert "Run jobs/embed_movies.py and jobs/embed_books.py and jobs/embed_lexical.py" in msg, msg
    assert "score.missing_side=use_present" in msg and not out.exists()


@pytest.mark.parametrize("fusion", ["convex", "rrf", "bookz"])
def test_use_present_scores_every_item_with_the_side_it_has(spark, env, tmp_path, fusion):
    """score.missing_side: use_present: every movie on either side gets k books, equal to the brute force
    with the missing side empty (zero vector / no terms); the counts are in the result and the commit.
    ``bookz``: the convex hybrid with score.lexical_hubness: bookz (a film without terms: lexical z 0)."""
    from lfr.score import score_recommendations
    from lfr.score.kernel import normalize_rows
    from tests.test_score_hybrid_kernel import bookz_scores, ranked

    tables, data = _one_sided(spark, env)
    movie_ids, mv, m_lex, book_ids, bv, b_lex = data
    out = str(tmp_path / "recs")
    alpha = 0.8
    bookz = fusion == "bookz"
    lib = _library_args(env["settings"], k=K, method="hybrid", fusion="convex" if bookz else fusion, alpha=alpha,
                        rrf_k=30, movie_block_rows=15, book_block_rows=25, missing_side="use_present",
                        lexical_hubness="bookz" if bookz else "none")
    res = score_recommendations(spark, tables["movies"], tables["books"], out, **lib,
                                movie_lexical=tables["movie_lexical"], book_lexical=tables["book_lexical"])
    got = _read(spark, out)
    if bookz:
        h64 = bookz_scores(normalize_rows(mv)[0], m_lex, normalize_rows(bv)[0], b_lex, alpha)[0]
        ref = ranked(movie_ids, book_ids, h64.astype(np.float32), K)
    elif fusion == "convex":
        ref = brute_hybrid(movie_ids, mv, m_lex, book_ids, bv, b_lex, K, alpha)
    else:
        ref = brute_rrf(movie_ids, mv, m_lex, book_ids, bv, b_lex, K, 30)
    _assert_same(got, ref)
    assert set(got) == set(movie_ids) and all(len(v) == K for v in got.values())
    assert {book_ids[2], book_ids[3]} & {b for v in got.values() for b, _ in v}     # one-sided books recommended
    assert (res.movies, res.books, res.movies_invalid, res.books_invalid) == (40, 60, 0, 0)
    expected = {"missing_side": "use_present",
                "movies": {"both": 37, "missing_lexical": 1, "missing_embedding": 2,
                           "missing_lexical_sample": ["m007"], "missing_embedding_sample": ["m005", "m006"]},
                "books": {"both": 58, "missing_lexical": 1, "missing_embedding": 1,
                          "missing_lexical_sample": [book_ids[3]], "missing_embedding_sample": [book_ids[2]]}}
    assert res.missing_sides == expected
    meta = json.loads(spark.sql(f"DESCRIBE HISTORY delta.`{out}`").first()["userMetadata"])
    assert meta["missing_sides"] == expected and meta["run_id"] == res.run_id
    assert meta["films"] == res.films == {"before": 0, "after": 40, "deleted": 0}


def test_use_present_from_the_config_keeps_exclusions_of_one_sided_films(spark, env, tmp_path):
    """The job path: score.missing_side from the config, a movie_id,book_id pair file resolved against both
    sides (a film without an embedding keeps its exclusions), the counts visible from SQL."""
    import pandas as pd

    from lfr.score import run_score
    from lfr.settings import load_settings
    from lfr.spark.delta import write_table

    tables, data = _one_sided(spark, env)
    movie_ids, mv, m_lex, book_ids, bv, b_lex = data
    settings = load_settings(overrides=[f"paths.work_dir={tmp_path}", "tables.database=lfr_hybrid_sides",
                                        "score.missing_side=use_present", "score.fusion=convex"])
    t = settings.tables
    for key, name in (("movie_embeddings", "movies"), ("book_embeddings", "books"), ("movie_lexical", "movie_lexical"),
                      ("book_lexical", "book_lexical")):
        write_table(tables[name], getattr(t, key).path, mode="overwrite")
    free = brute_hybrid(movie_ids, mv, m_lex, book_ids, bv, b_lex, K, float(settings.score.alpha))
    excluded = {("m005", free["m005"][0][0]), ("m007", free["m007"][1][0]), ("m010", free["m010"][0][0])}
    pair_file = tmp_path / "exclude.csv"
    pd.DataFrame(sorted(excluded), columns=["movie_id", "book_id"]).to_csv(pair_file, index=False)

    res = run_score(spark, _with(settings, k=K, method="hybrid", movie_block_rows=15, book_block_rows=25,
                                 exclude_pairs=str(pair_file)))
    _assert_same(_read(spark, t.recommendations.path),
                 brute_hybrid(movie_ids, mv, m_lex, book_ids, bv, b_lex, K, float(settings.score.alpha),
                              exclude=excluded))
    assert res.missing_sides["movies"]["missing_embedding_sample"] == ["m005", "m006"]
    meta = json.loads(spark.sql("DESCRIBE HISTORY lfr_hybrid_sides.recommendations").first()["userMetadata"])
    assert meta["missing_sides"] == res.missing_sides and meta["films"]["after"] == len(movie_ids)


def _scanned(df) -> set:
    """The columns ``df``'s plan reads from cached tables (every ``InMemoryTableScan [...]`` node's list)."""
    import re

    plan = df._jdf.queryExecution().executedPlan().toString()
    return {re.sub(r"#\d+L?$", "", a.strip()) for cols in re.findall(r"InMemoryTableScan \[([^\]]*)\]", plan)
            for a in cols.split(",")}


def test_each_pass_over_the_pairs_ships_only_the_block_parts_it_decodes(spark, env):
    """The hybrid's blocks hold dense rows and CSR; a pass that decodes one part must not read the other from the
    cached blocks (the JVM would ship it to Python with every pair): Spark prunes it below the cartesian product."""
    from lfr.score.blocks import CANDIDATE_SCHEMA, lexical_moments, map_pairs, plan_blocks
    from lfr.score.methods import Frames, scoring_method

    settings = _with(env["settings"], method="hybrid")
    t = settings.tables
    read = [spark.read.format("delta").load(getattr(t, key).path)
            for key in ("movie_embeddings", "book_embeddings", "movie_lexical", "book_lexical")]
    inputs = scoring_method(settings.score).prepare(Frames(*read), settings.score)
    blocks = plan_blocks(spark, inputs.movies, inputs.books, (inputs.movie_rows, inputs.book_rows), inputs.spec,
                         (15, 25), False)
    unused = lambda pair: None  # noqa: E731  (the plans are only read, never run)
    try:
        lexical = _scanned(lexical_moments(blocks.pairs(), blocks.vocab))
        dense = _scanned(map_pairs(blocks.book_pairs(), unused, blocks.dim, None, CANDIDATE_SCHEMA))
        both = _scanned(map_pairs(blocks.pairs(), unused, blocks.dim, blocks.vocab, CANDIDATE_SCHEMA))
    finally:
        blocks.unpersist()
    assert {"terms", "weights", "indptr"} <= lexical and "vec" not in lexical
    assert "vec" in dense and not {"terms", "weights", "indptr"} & dense
    assert {"vec", "terms", "weights", "indptr"} <= both


def test_the_side_count_runs_beside_the_input_check_in_its_job_group_and_the_checks_refusal_wins(spark, monkeypatch):
    """``_checked_and_counted``: the count runs in another thread that keeps the caller's job group (progress
    reporting looks its jobs up by group); the check's refusal is raised first, the count's error otherwise."""
    from lfr.score import methods
    from lfr.score.checks import ScoringError

    sc, seen = spark.sparkContext, {}

    def count(*args):
        seen["group"] = sc.getLocalProperty("spark.jobGroup.id")
        raise RuntimeError("count failed")

    def refuse(*args):
        raise ScoringError("check refused")

    monkeypatch.setattr(methods, "count_sides", count)
    previous = sc.getLocalProperty("spark.jobGroup.id")
    sc.setLocalProperty("spark.jobGroup.id", "lfr-test-group")
    try:
        monkeypatch.setattr(methods, "check_hybrid_inputs", refuse)
        with pytest.raises(ScoringError, match="check refused"):
            methods._checked_and_counted(None, None, None, None, "fail")
        assert seen["group"] == "lfr-test-group"
        monkeypatch.setattr(methods, "check_hybrid_inputs", lambda *args: "checked")
        with pytest.raises(RuntimeError, match="count failed"):
            methods._checked_and_counted(None, None, None, None, "fail")
    finally:
        sc.setLocalProperty("spark.jobGroup.id", previous)
