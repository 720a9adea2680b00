"""JVM and Spark settings the tests' short-lived Spark processes share (why: docs/BENCHMARKS.md, measured)."""

#: the C1 JIT alone (no C2): the tests' JVMs are short-lived and run each query once, where C1 takes less CPU for
#: the same results. Used by every spark-submit driver (SPARK_SUBMIT_OPTS, tests/conftest.py) and the cluster's
#: daemons and executors (tests/test_cluster.py); not by the shared in-process session, where C2 pays off.
C1_ONLY = "-XX:TieredStopAtLevel=1"

#: interpreted expressions, no whole-stage codegen: the tests run hundreds of small queries once each, where
#: compiling the generated Java costs more than it saves. Same results. The shared session, the e2e jobs and the
#: warehouse fixture use it; the cluster tests, make demo and the benches keep Spark's default (codegen), so CI
#: still runs the jobs the default way.
NO_CODEGEN = ("spark.sql.codegen.wholeStage=false", "spark.sql.codegen.factoryMode=NO_CODEGEN")
