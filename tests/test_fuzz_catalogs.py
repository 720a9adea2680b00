"""Damaged catalog files (tests/fuzz_catalogs.py) through the real readers and validation.

For every file the readers can open, every record the parser produced ends either in the valid
catalog (passing every row check) or in the rejects with a reason and its raw text: parsed records
== valid items (+ rows merged into them) + rejects, and nothing raises. A file that cannot be used
at all (missing, empty, no expected columns) is a ``CatalogReadError`` naming the file, which the
jobs turn into exit code 2 and one log line (jobs/jobkit.py), never a stack trace.
"""
from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from tests.fuzz_catalogs import FuzzCase, all_cases

ACCOUNTING: dict[str, tuple[int, int, int, int]] = {}   # case -> (written, parsed, valid + merged, rejected)
# The damage is found where it is (a reason each of these cases' rejects must include).
EXPECTED_REASON = {"huge_description": "oversized_description", "invalid_utf8": "invalid_text",
                   "nul_bytes": "invalid_text", "truncated_records": "malformed_row",
                   "mixed_delimiters": "malformed_row", "wiki_cut_json": "malformed_row",
                   "wiki_nul_and_replacement": "invalid_text"}


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict[str, FuzzCase]:
    made = {c.name: c for c in all_cases(tmp_path_factory.mktemp("fuzz"))}
    assert sorted(made) == sorted(CASE_NAMES)
    return made


CASE_NAMES = ["truncated_file", "truncated_records", "mixed_delimiters", "semicolon_file", "invalid_utf8",
              "nul_bytes", "huge_description", "thousand_columns", "empty_file", "header_only", "missing_file",
              "imdb_truncated", "wiki_nul_and_replacement", "wiki_cut_json", "random_7_0", "random_7_1"]


def cfg_for(case: FuzzCase) -> dict:
    return {"catalogs": {case.domain: [{"reader": case.reader, "path": str(case.path)}]},
            "validation": {"max_description_chars": 20000, "min_description_chars": 1, "dedupe_editions": True,
                           "merge_sources": True}}


@pytest.mark.parametrize("name", CASE_NAMES)
def test_every_record_ends_valid_or_rejected_with_a_reason(spark, cases, name):
    from lfr.data import load_catalog
    from lfr.data.readers import CatalogReadError, read_source

    case = cases[name]
    cfg = cfg_for(case)
    if case.unreadable:
        with pytest.raises(CatalogReadError) as err:
            load_catalog(spark, cfg, case.domain)
        assert case.path.name in str(err.value)
        ACCOUNTING[name] = (case.records, 0, 0, 0)
        return
    valid, rejects = load_catalog(spark, cfg, case.domain)
    parsed = read_source(spark, cfg["catalogs"][case.domain][0]).count()
    n_valid = valid.count()
    merged = valid.select(F.coalesce(F.sum(F.size("merged_ids")), F.lit(0))).first()[0]
    bad_rejects = rejects.filter(F.col("reason").isNull() | (F.col("reason") == "") | F.col("raw").isNull()).count()
    n_rejected = rejects.count()
    assert bad_rejects == 0
    assert n_valid + merged + n_rejected == parsed, (n_valid, merged, n_rejected, parsed)
    invalid_valid = valid.filter(
        (F.length("description") < 1) | (F.length("description") > 20000) | (F.col("id") == "")
        | F.col("description").rlike("[\\x00\\uFFFD]") | F.col("title").rlike("[\\x00\\uFFFD]")).count()
    assert invalid_valid == 0
    reasons = {r for row in rejects.select("reason").collect() for r in row["reason"].split(",")}
    assert EXPECTED_REASON.get(name, "") in reasons | {""}, reasons
    if name == "thousand_columns":
        assert n_valid == case.records                  # extra columns are ignored, every row kept
    ACCOUNTING[name] = (case.records, parsed, n_valid + merged, n_rejected)


def test_accounting_summary():
    """Rows tried / accounted for over every case run above (printed with -s; kept in the README)."""
    if not ACCOUNTING:
        pytest.skip("no case ran")
    written = sum(v[0] for v in ACCOUNTING.values())
    parsed = sum(v[1] for v in ACCOUNTING.values())
    accounted = sum(v[2] + v[3] for v in ACCOUNTING.values())
    for name, (w, p, v, r) in sorted(ACCOUNTING.items()):
        print(f"{name:26} written {w:3}  parsed {p:3}  valid {v:3}  rejected {r:3}")
    print(f"total: {written} records written, {parsed} parsed, {accounted} accounted for (valid + rejected)")
    assert accounted == parsed
