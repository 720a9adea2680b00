"""spark-submit of a job from jobs/ works with the project's session factory and
writes a Delta table: this exercises the spark-defaults.conf that setup.sh writes."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_spark_submit_trivial_job_writes_delta(tmp_path):
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bindir}:{os.environ.get('PATH', '')}", "PYSPARK_PYTHON": sys.executable}
    proc = subprocess.run(
        [str(bindir / "spark-submit"), "jobs/smoke_delta.py", "--conf", f"paths.work_dir={tmp_path}",
         "--conf", "spark.master=local[1]"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    output = proc.stdout + proc.stderr    # spark-submit forwards the Python driver's stderr to stdout
    assert proc.returncode == 0, output[-3000:]
    assert "sum(square) = 285" in output
    assert (tmp_path / "warehouse" / "smoke" / "_delta_log").is_dir()


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

    assert jobkit.exit_code("t", lambda: None) == 0
    assert jobkit.exit_code("t", lambda: 2) == 2                  # a body's own usage verdict
    assert jobkit.exit_code("t", _raise(RuntimeError("boom"))) == 1
    for usage in (ConfigError("bad key"), ArtifactMissing("no model"), CatalogReadError("no file")):
        assert jobkit.exit_code("t", _raise(usage)) == 2


def test_bad_flags_and_bad_settings_exit_2_before_spark_starts(monkeypatch):
    started = []
    monkeypatch.setattr("lfr.spark.build_session", lambda cfg: started.append(cfg))
    body = lambda ctx: 0  # noqa: E731
    assert jobkit.run_job("t", body, argv=["--no-such-flag"]) == 2
    assert jobkit.run_job("t", body, argv=["--conf", "score.no_such_key=1"]) == 2
    assert jobkit.run_job("t", body, argv=["--help"]) == 0
    assert started == []
