"""JVM and Spark settings the tests' short-lived Spark processes share (why: docs/BENCHMARKS.md, measured)."""

#: the C1 JIT alone (no C2): the tests' JVMs are short-lived and run each query once, where C1 takes less CPU for
#: the same results. Used by every spark-submit driver (SPARK_SUBMIT_OPTS, tests/conftest.py) and the cluster's
#: daemons and executors (tests/test_cluster.py); not by the shared in-process session, where C2 pays off (late).
C1_ONLY = "-XX:TieredStopAtLevel=1"

#: no bytecode verification of the classes loaded from the installed jars (the JDK's own are not verified
#: either): a short JVM loads some 20,000 of Spark's classes once each
NO_VERIFY = "-XX:+UnlockDiagnosticVMOptions -XX:-BytecodeVerificationRemote"

#: C2 only for code that stays hot (ten times the default tier-4 invocation and loop thresholds): the JIT took
#: about half of the shared session's CPU over two Spark-heavy modules (JFR; docs/BENCHMARKS.md), most of it
#: on code that runs a few thousand times in the whole suite
C2_LATE = ("-XX:Tier4InvocationThreshold=50000 -XX:Tier4MinInvocationThreshold=6000 -XX:Tier4CompileThreshold=150000 "
           "-XX:Tier4BackEdgeThreshold=400000")

#: the options of the tests' short-lived JVMs (SPARK_SUBMIT_OPTS, the cluster's daemons and executors)
SHORT_JVM = f"{C1_ONLY} {NO_VERIFY}"
#: the options of the shared in-process session (tests/conftest.py)
SHARED_JVM = f"{NO_VERIFY} {C2_LATE}"

#: interpreted expressions, no whole-stage codegen: the tests run hundreds of small queries once each, where
#: compiling the generated Java costs more than it saves. Same results. The shared session, the e2e jobs and the
#: warehouse fixture use it; the cluster tests, make demo and the benches keep Spark's default (codegen), so CI
#: still runs the jobs the default way.
NO_CODEGEN = ("spark.sql.codegen.wholeStage=false", "spark.sql.codegen.factoryMode=NO_CODEGEN")


def class_data_archive():
    """The class-data archive scripts/setup.sh named in pyspark's spark-defaults.conf (``Path``), or None when it
    named none (``LFR_CDS=0``, or a failed warm-up job, which setup reports with its log)."""
    import re
    from pathlib import Path

    import pyspark

    defaults = (Path(pyspark.__file__).parent / "conf" / "spark-defaults.conf").read_text(encoding="utf-8")
    found = re.search(r"^spark\.driver\.defaultJavaOptions .*-XX:SharedArchiveFile=(\S+)", defaults, re.M)
    return Path(found.group(1)) if found else None
