"""Two clones on one machine share the cached environment (.venv), which holds no copy of the project:
each clone's jobs must run that clone's code, on the driver and on the executors, started from any
directory with no PYTHONPATH (scripts/setup.sh, jobs/jobkit.py, lfr.spark.ship_library)."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _clone(dest: Path, mark: str) -> Path:
    for part in ("lfr", "jobs", "conf"):
        shutil.copytree(ROOT / part, dest / part, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy2(ROOT / "setup.py", dest / "setup.py")
    with open(dest / "lfr" / "__init__.py", "a", encoding="utf-8") as fh:
        fh.write(f"\nCLONE_MARK = {mark!r}  # test_two_clones\n")
    return dest


def _start_smoke(clone: Path, cwd: Path, work: Path, *conf: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"   # spark-submit itself, as a user runs it
    args = ["spark-submit", str(clone / "jobs" / "smoke_delta.py"), "--conf", f"paths.work_dir={work}"]
    for c in conf:
        args += ["--conf", c]
    return subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_each_clone_runs_its_own_code_on_driver_and_executors(tmp_path):
    """Both clones at once, from a third directory: clone a with the default persistent (Derby) catalog
    under its work dir, clone b with none; each writes and reads back its Delta table."""
    a, b = _clone(tmp_path / "a", "a"), _clone(tmp_path / "b", "b")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    procs = {a: _start_smoke(a, elsewhere, tmp_path / "work_a"),
             b: _start_smoke(b, elsewhere, tmp_path / "work_b", "paths.metastore_dir=null")}
    shipped_zips = set()
    for clone, proc in procs.items():
        out, _ = proc.communicate(timeout=900)
        assert proc.returncode == 0, out[-3000:]
        driver = re.search(r"driver imports lfr from (\S+)", out).group(1)
        assert Path(driver).resolve() == (clone / "lfr" / "__init__.py").resolve()
        shipped = re.search(r"executors run lfr from (\S+) \(shipped as (\S+)\)", out)
        assert Path(shipped.group(1)).resolve() == (clone / "lfr").resolve()
        executors = re.findall(r"executors import lfr from (\S+) \| (\S+)", out)
        assert executors, out[-2000:]
        for path, python in executors:
            # the zip this driver shipped, not a copy elsewhere
            assert f"/{shipped.group(2)}/lfr/__init__.py" in path
            assert Path(python).resolve() == Path(sys.executable).resolve()   # the product's worker interpreter
        assert "sum(square) = 285" in out
        assert (tmp_path / f"work_{clone.name}" / "warehouse" / "smoke" / "_delta_log").is_dir()
        shipped_zips.add(shipped.group(2))
    assert len(shipped_zips) == 2        # the clones' code differs (CLONE_MARK): each shipped its own
    assert (tmp_path / "work_a" / "metastore" / "metastore_db").is_dir()      # a's catalog persisted
    assert not (tmp_path / "work_b" / "metastore").exists()
