"""``python -m lfr.spark [--conf K=V ...] [--get paths.x]``: the project's Spark settings as ``key=value``
lines, for launchers that are not Python (scripts/spark_sql.sh, scripts/sql_server.sh)."""
from lfr.spark.session import main

raise SystemExit(main())
