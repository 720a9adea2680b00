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
