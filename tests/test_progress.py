"""lfr.spark.progress (the progress lines of a long action) and the embed job's bounded partitions."""
import logging
import time
from types import SimpleNamespace

from lfr.embed.pipeline import embed_partitions
from lfr.spark.progress import GROUP_KEY, progress, progress_line, tasks_done


def test_embed_partitions_bound_the_rows_of_a_task():
    spark = SimpleNamespace(sparkContext=SimpleNamespace(defaultParallelism=2))
    assert embed_partitions(spark, 200_000, 64, None, 5000) == 40          # a 200k-row catalog: 40 tasks
    assert embed_partitions(spark, 666, 64, None, 5000) == 2               # small: the cluster's parallelism
    assert embed_partitions(spark, 200_000, 64, None, None) == 2           # no bound: parallelism only
    assert embed_partitions(spark, 200_000, 64, 7, 5000) == 7              # an explicit count wins
    assert embed_partitions(spark, 100, 64, None, 10) == 2                 # never more than one per batch
    assert embed_partitions(spark, 0, 64, None, 5000) == 1


def test_progress_line_estimates_the_time_left_once_a_task_is_done():
    assert progress_line("embed books", 0, 40, 90) == "embed books: 0/40 tasks done (0%), 1.5 min elapsed"
    assert progress_line("embed books", 10, 40, 600) == \
        "embed books: 10/40 tasks done (25%), 10.0 min elapsed, about 30.0 min left"
    assert progress_line("x", 40, 40, 60).endswith("(100%), 1.0 min elapsed")


def test_progress_reports_the_tasks_of_the_block_and_restores_the_job_group(spark, caplog):
    sc = spark.sparkContext
    sc.setLocalProperty(GROUP_KEY, "outer")

    def slow(rows):
        time.sleep(0.4)
        return rows
    try:
        with caplog.at_level(logging.INFO, logger="lfr.spark.progress"):
            with progress(spark, "demo action", interval=0.2) as group:
                assert sc.getLocalProperty(GROUP_KEY) == group
                assert sc.parallelize(range(60), 6).mapPartitions(slow).count() == 60
        assert sc.getLocalProperty(GROUP_KEY) == "outer"
        done, total = tasks_done(sc.statusTracker(), group)
        assert (done, total) == (6, 6)
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("demo action: ")]
        assert lines and all("/6 tasks done" in line for line in lines), lines
        assert tasks_done(sc.statusTracker(), "no-such-group") == (0, 0)
    finally:
        sc.setLocalProperty(GROUP_KEY, None)
