"""scripts/sql_server.sh: Spark's Thrift JDBC server on the project's metastore, queried with beeline."""
from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "sql_server.sh"
BEELINE = ROOT / ".venv" / "bin" / "beeline"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_jdbc_server_serves_the_recommendations_view(registered_warehouse):
    from tests.warehouse import plain_env

    port = _free_port()
    env = plain_env(LFR_CONF=registered_warehouse.lfr_conf, LFR_SQL_PORT=str(port), LFR_SQL_START_TIMEOUT="1200")
    run = dict(cwd=ROOT, env=env, capture_output=True, text=True)
    try:
        start = subprocess.run(["bash", str(SCRIPT), "start"], timeout=1300, **run)
        assert start.returncode == 0, start.stdout + start.stderr
        url = f"jdbc:hive2://127.0.0.1:{port}/lfr"
        assert f"JDBC URL: {url}" in start.stdout
        query = ("SELECT movie_title, rank, book_title FROM movie_book_recommendations "
                 "WHERE movie_title = 'Jurassic Park' ORDER BY rank")
        activated = {**env, "PATH": f"{BEELINE.parent}:{env['PATH']}"}   # as after `source .venv/bin/activate`
        out = subprocess.run([str(BEELINE), "-u", url, "--silent=true", "--outputformat=csv2", "-e", query],
                             timeout=600, **{**run, "env": activated})
        assert out.returncode == 0, out.stdout + out.stderr
        prompt = re.compile(r"^\d+: jdbc:hive2://\S+> ")   # beeline echoes its prompt before the -e result
        lines = [prompt.sub("", ln) for ln in out.stdout.splitlines() if ln.strip()]
        assert lines == ["movie_title,rank,book_title", "Jurassic Park,1,Jurassic Park",
                         "Jurassic Park,2,The Lost World", "Jurassic Park,3,Congo"], out.stdout
        status = subprocess.run(["bash", str(SCRIPT), "status"], timeout=60, **run)
        assert status.returncode == 0 and "running" in status.stdout
    finally:
        stop = subprocess.run(["bash", str(SCRIPT), "stop"], timeout=120, **run)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert "stopped" in stop.stdout
    with socket.socket() as s:  # the port is free again
        s.bind(("127.0.0.1", port))
    assert not (registered_warehouse.work_dir / "metastore" / "sql-server.pid").exists()
