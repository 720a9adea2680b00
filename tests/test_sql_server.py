"""scripts/sql_server.sh: Spark's Thrift JDBC server on the project's metastore, queried with beeline; with the
shared metastore (scripts/metastore.sh, Derby's network server) a job creates a table while the server runs
and beeline sees it at once.

One Thrift server start serves both checks (a JVM start is most of this module's time): the server runs on
the shared metastore, which serves the very database the warehouse's embedded-Derby process registered
its tables in (tests/warehouse.py), so the first query also shows that the two Derbys share one catalog.
"""
from __future__ import annotations

import re
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "sql_server.sh"
METASTORE = ROOT / "scripts" / "metastore.sh"
BIN = ROOT / ".venv" / "bin"
BEELINE = BIN / "beeline"
PROMPT = re.compile(r"^\d+: jdbc:hive2://\S+> ")   # beeline echoes its prompt before the -e result


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _beeline(url: str, query: str, run: dict) -> list[str]:
    activated = {**run["env"], "PATH": f"{BIN}:{run['env']['PATH']}"}   # as after `source .venv/bin/activate`
    out = subprocess.run([str(BEELINE), "-u", url, "--silent=true", "--outputformat=csv2", "-e", query],
                         timeout=600, **{**run, "env": activated})
    assert out.returncode == 0, out.stdout + out.stderr
    return [PROMPT.sub("", ln) for ln in out.stdout.splitlines() if ln.strip()]


def test_jdbc_server_on_the_shared_metastore_sees_a_new_jobs_table(registered_warehouse, tmp_path):
    from tests.warehouse import plain_env

    port = _free_port()
    metastore = registered_warehouse.work_dir / "metastore"
    env = plain_env(LFR_CONF=registered_warehouse.lfr_conf, LFR_SQL_PORT=str(port), LFR_SQL_START_TIMEOUT="1200")
    run = dict(cwd=ROOT, env=env, capture_output=True, text=True)
    derby_port, t = None, {"start": time.monotonic()}   # phase times, printed (pytest -rP)
    try:
        up = subprocess.run(["bash", str(METASTORE), "start"], timeout=300, **run)
        assert up.returncode == 0, up.stdout + up.stderr
        derby_port = int((metastore / "derby-server.port").read_text())
        assert f"metastore URL: jdbc:derby://127.0.0.1:{derby_port}/metastore_db" in up.stdout
        t["metastore-up"] = time.monotonic()
        start = subprocess.run(["bash", str(SCRIPT), "start"], timeout=1300, **run)
        assert start.returncode == 0, start.stdout + start.stderr
        assert f"metastore: the shared Derby network server (jdbc:derby://127.0.0.1:{derby_port}/" in start.stdout
        url = f"jdbc:hive2://127.0.0.1:{port}/lfr"
        assert f"JDBC URL: {url}" in start.stdout
        # the view the embedded-Derby process registered, served from the network server
        query = ("SELECT movie_title, rank, book_title FROM movie_book_recommendations "
                 "WHERE movie_title = 'Jurassic Park' ORDER BY rank")
        assert _beeline(url, query, run) == [
            "movie_title,rank,book_title", "Jurassic Park,1,Jurassic Park",
            "Jurassic Park,2,The Lost World", "Jurassic Park,3,Congo"]

        t["JDBC server + first query"] = time.monotonic()
        # A job (spark-submit, as a user runs it) creates and registers a new table while the server runs.
        job = subprocess.run(
            [str(BIN / "spark-submit"), str(ROOT / "jobs" / "sql.py"), "-e",
             f"CREATE TABLE lfr.shared_check USING DELTA LOCATION '{tmp_path / 'shared_check'}' "
             "AS SELECT 'Heat' AS movie_title, 7 AS n"],
            # as a user runs it: the environment activated (spark-submit finds SPARK_HOME with PATH's python3)
            timeout=900, **{**run, "env": {**env, "LFR_LOG_LEVEL": "INFO", "PATH": f"{BIN}:{env.get('PATH', '')}"}})
        log = job.stdout + job.stderr   # spark-submit forwards the driver's log to stdout
        assert job.returncode == 0, log[-4000:]
        assert f"(catalog: hive, shared metastore jdbc:derby://127.0.0.1:{derby_port}/" in log, log[-4000:]
        assert "in use by another process" not in log
        # ... and the running server's clients see it, no restart
        assert _beeline(url, "SELECT movie_title, n FROM lfr.shared_check", run) == ["movie_title,n", "Heat,7"]

        t["job + second query"] = time.monotonic()
        status = subprocess.run(["bash", str(SCRIPT), "status"], timeout=60, **run)
        assert status.returncode == 0 and "running" in status.stdout
    finally:
        stop = subprocess.run(["bash", str(SCRIPT), "stop"], timeout=120, **run)
        t["JDBC server stop"] = time.monotonic()
        down = subprocess.run(["bash", str(METASTORE), "stop"], timeout=120, **run)
        t["metastore-down"] = time.monotonic()
        marks = list(t.items())
        print("phases:", ", ".join(f"{name} {end - begin:.1f} s" for (_, begin), (name, end) in zip(marks, marks[1:])))
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert "stopped" in stop.stdout
    assert down.returncode == 0 and "stopped" in down.stdout, down.stdout + down.stderr
    for free in (port, derby_port):   # both ports are free again
        with socket.socket() as s:
            s.bind(("127.0.0.1", free))
    assert not (metastore / "sql-server.pid").exists()
    assert not any(metastore.glob("derby-server.p*"))   # no pid or port file: sessions use embedded Derby again
