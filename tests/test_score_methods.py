"""Scoring methods as strategies (lfr.score.methods): one dispatch from the settings, the yaml's values and
nothing else, the same configuration on the library path and the job path. No Spark session."""
import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_packaged_conf_gives_the_strategy_with_the_yamls_values():
    from omegaconf import OmegaConf

    from lfr.config import default_conf_file
    from lfr.score.methods import Convex, scoring_method
    from lfr.settings import load_settings

    yaml = OmegaConf.to_container(OmegaConf.load(default_conf_file()[0]))["score"]
    method = scoring_method(load_settings(environ={}).score)
    assert isinstance(method, Convex) and (yaml["method"], yaml["fusion"]) == ("hybrid", "convex")
    assert (method.alpha, method.missing_side) == (yaml["alpha"], yaml["missing_side"])
    hub = {"hubness": yaml["hubness"], "hub_k": yaml["hub_k"], "hub_weight": yaml["hub_weight"],
           "hub_score": "cosine - hub_weight * r(book), r = mean cosine of the book's hub_k nearest films"}
    bookz = {"lexical_hubness": "bookz",
             "lexical_score": "the movie's lexical z-score, standardised per book over all scored movies"}
    assert (yaml["lexical_hubness"], yaml["fused_hub_weight"]) == ("bookz", 0) and method.bookz
    assert method.params() == {"fusion": "convex", "alpha": yaml["alpha"],
                               "normalisation": "z-score per movie over all scored books", **hub, **bookz}
    assert method.tables == ("movie_embeddings", "book_embeddings", "movie_lexical", "book_lexical")


@pytest.mark.parametrize("method,fusion,cls,params", [
    ("dense", "rrf", "Dense", {"score": "cosine"}),              # the fusion only matters for the hybrid
    ("lexical", "convex", "Lexical", {"score": "cosine"}),
    ("hybrid", "rrf", "Rrf", {"fusion": "rrf", "rrf_k": 30,
                              "ranks": "competition ranks per method over all scored books (ties share the best)"}),
])
def test_one_dispatch_from_method_and_fusion(method, fusion, cls, params):
    from lfr.score import methods
    from lfr.settings import load_settings

    score = load_settings(overrides=[f"score.method={method}", f"score.fusion={fusion}", "score.rrf_k=30",
                                     "score.hubness=none"], environ={}).score
    strategy = methods.scoring_method(score)
    assert type(strategy) is getattr(methods, cls) and strategy.params() == params
    assert strategy.name == method


@pytest.mark.parametrize("key,value,match", [
    ("method", "sparse", "score.method must be one of"), ("fusion", "max", "score.fusion must be one of"),
    ("alpha", 1.5, r"score.alpha must be in \[0, 1\]"), ("k", 0, "score.k must be positive"),
    ("book_block_rows", -1, "score.book_block_rows must be positive"),
    ("missing_side", "guess", "score.missing_side must be one of"),
    ("precision", "fp16", "score.precision must be one of"),
    ("hubness", "zscore", "score.hubness must be one of"), ("hub_k", 0, "score.hub_k must be positive"),
    ("hub_weight", 1.5, r"score.hub_weight must be in \[0, 1\]"),
    ("fused_hub_weight", -0.5, "score.fused_hub_weight must be >= 0"),
    ("lexical_hubness", "csls", "score.lexical_hubness must be one of"),
    ("fused_hub_weight", 0.25, "score.lexical_hubness and score.fused_hub_weight are two corrections"),
])
def test_bad_settings_are_usage_errors_naming_the_key(key, value, match):
    from lfr.errors import UsageError
    from lfr.score.methods import scoring_method
    from lfr.settings import load_settings, with_values

    with pytest.raises(UsageError, match=match):
        scoring_method(with_values(load_settings(environ={}).score, {key: value}))


def test_the_job_folds_its_flags_into_the_settings_it_passes(monkeypatch):
    """jobs/score_all.py: flags -> the same Settings as ``load_settings(overrides=...)``; unset flags keep the yaml."""
    import lfr.score
    from lfr.settings import load_settings

    if str(ROOT / "jobs") not in sys.path:
        sys.path.insert(0, str(ROOT / "jobs"))
    spec = importlib.util.spec_from_file_location("job_score_all_flags", ROOT / "jobs" / "score_all.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    seen = []
    monkeypatch.setattr(lfr.score, "run_score", lambda spark, settings: seen.append(settings) or _Result())
    parser = argparse.ArgumentParser()
    job.add_args(parser)
    args = parser.parse_args(["--k", "5", "--book-filter", "year >= 2000", "--allow-deletes"])
    base = load_settings(environ={})
    assert job.main(job.JobContext(args, base, None)) == 0
    assert seen == [load_settings(overrides=["score.k=5", "score.book_filter=year >= 2000",
                                             "guards.allow_deletes=true"], environ={})]


class _Result:
    def as_dict(self) -> dict:
        return {}


def test_a_strategys_pair_kernel_travels_to_the_workers():
    """The mapInArrow function holds the strategy's bound kernel: it pickles, and runs the same kernel."""
    from functools import partial

    from pyspark import cloudpickle

    from lfr.score.blocks import BlockPair, BlockStats
    from lfr.score.hubs import Hubness
    from lfr.score.kernel import block_topk, normalize_rows
    from lfr.score.methods import Dense

    rng = np.random.default_rng(3)
    q, _ = normalize_rows(rng.normal(size=(4, 8)))
    b, _ = normalize_rows(rng.normal(size=(9, 8)))
    pair = BlockPair(0, 0, None, q, None, None, None, b, None, None, None, 1)
    dense = Dense(precision="bf16-screen", hubness=Hubness("none", 10, 0.5))
    kernel = cloudpickle.loads(cloudpickle.dumps(partial(dense.pair_kernel, n=3, kernel=None)))
    for got, ref in zip(kernel(pair), block_topk(q, b, 3, threads=1, precision="fp32")):
        np.testing.assert_array_equal(got, ref)
    assert BlockStats.from_row(None) == BlockStats(0, 0, 0, 0, None, None)
