"""The jobs' shared CLI glue (jobs/jobkit.py): one exit-code convention, bad flags and settings refused
before Spark starts. (spark-submit of a job writing Delta, from two clones: tests/test_two_clones.py.)"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- one exit-code convention (no Spark needed)
sys.path.insert(0, str(ROOT / "jobs"))   # spark-submit puts the script's folder on sys.path the same way
import jobkit  # noqa: E402


def _raise(exc: BaseException):
    def run():
        raise exc
    return run


def test_exit_codes_ok_failure_usage():
    from lfr.config import ConfigError
    from lfr.data.readers import CatalogReadError
    from lfr.model.artifact import ArtifactMissing
    from lfr.score.checks import ScoringError
    from lfr.spark.guards import ShrinkRefused

    assert jobkit.exit_code("t", lambda: None) == 0
    assert jobkit.exit_code("t", lambda: 2) == 2                  # a body's own usage verdict
    assert jobkit.exit_code("t", _raise(RuntimeError("boom"))) == 1
    for usage in (ConfigError("bad key"), ArtifactMissing("no model"), CatalogReadError("no file"),
                  ShrinkRefused("would delete 30%"), ScoringError("run jobs/embed_lexical.py first")):
        assert jobkit.exit_code("t", _raise(usage)) == 2


def test_bad_flags_and_bad_settings_exit_2_before_spark_starts(monkeypatch):
    started = []
    monkeypatch.setattr("lfr.spark.build_session", lambda cfg: started.append(cfg))
    body = lambda ctx: 0  # noqa: E731
    assert jobkit.run_job("t", body, argv=["--no-such-flag"]) == 2
    assert jobkit.run_job("t", body, argv=["--conf", "score.no_such_key=1"]) == 2
    assert jobkit.run_job("t", body, argv=["--help"]) == 0
    assert started == []


# ---------------------------------------------------------------- jobs/pipeline.py: which steps, in what order
def test_pipeline_selects_steps_in_pipeline_order():
    import pytest

    import pipeline
    from lfr.config import ConfigError

    assert pipeline.selected_steps(",".join(pipeline.STEPS)) == list(pipeline.STEPS)
    assert pipeline.selected_steps("score_all,train") == ["train", "score_all"]     # pipeline order, not flag order
    assert pipeline.selected_steps(",".join(pipeline.STEPS), start="embed_lexical") == [
        "embed_lexical", "score_all", "evaluate"]
    assert pipeline.selected_steps("train,evaluate", start="embed_books") == ["evaluate"]
    with pytest.raises(ConfigError, match="unknown step.*'score'"):
        pipeline.selected_steps("train,score")
    # every step runs with its job's own default flags (no flag of a step is required)
    for step in pipeline.STEPS:
        assert not isinstance(jobkit.parse_args(step, pipeline.STEPS[step][1], []), int), step
