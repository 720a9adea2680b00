"""A small job whose JVM leaves a class-data-sharing archive of the classes a job loads (scripts/setup.sh).

setup.sh runs it once per Java + Spark install, through ``spark-submit`` with
``-XX:ArchiveClassesAtExit``: Spark, Delta (write, MERGE, history), SQL and the Arrow path of a
pandas UDF, so that every later driver JVM maps those classes instead of loading and verifying them
(docs/BENCHMARKS.md: what it saves per JVM start). It reads and writes only a temporary folder.
"""
import shutil
import tempfile

from delta.tables import DeltaTable
from pyspark.sql import SparkSession


def to_lengths(batches):
    for pdf in batches:
        pdf["n"] = pdf["v"].map(len)
        yield pdf[["id", "n"]]


def main() -> None:
    folder = tempfile.mkdtemp(prefix="lfr-cds-")
    spark = (SparkSession.builder.appName("lfr-cds-warmup").master("local[2]")
             .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "2").getOrCreate())
    try:
        path = f"{folder}/t"
        def rows(first: int, end: int, value: str):
            return spark.range(first, end).selectExpr(
                "cast(id AS string) AS id", f"array(cast(id AS float), {value}f) AS v", "id % 7 AS g")

        rows(0, 200, "1.0").write.format("delta").save(path)
        update = rows(150, 260, "2.0")
        (DeltaTable.forPath(spark, path).alias("t").merge(update.alias("s"), "t.id <=> s.id")
         .whenMatchedUpdateAll().whenNotMatchedInsertAll().whenNotMatchedBySourceDelete().execute())
        table = spark.read.format("delta").load(path)
        table.mapInPandas(to_lengths, "id string, n long").join(table, "id").groupBy("g").count().collect()
        table.createOrReplaceTempView("t")
        spark.sql("SELECT g, count(*) AS n FROM t GROUP BY g ORDER BY g").collect()
        spark.sql(f"DESCRIBE HISTORY delta.`{path}`").collect()
    finally:
        spark.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
