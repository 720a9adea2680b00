"""Damaged catalog files (tests/fuzz_catalogs.py) through the real readers and validation.

The fuzzer's own list of written records is the ground truth. A file expected to be usable must
account for every record it holds, by id: each written record ends exactly once in the valid catalog,
merged into an item (``merged_ids``), or in the rejects as its own row with a reason -- never two
records in one row (the parser folding records together) and no row that is no record. A file that
cannot be used as a whole is a ``CatalogReadError`` naming the file, which the jobs turn into exit
code 2 before any table is written (tests/test_guards.py).
"""
from __future__ import annotations

import re
from collections import Counter

import pytest

from tests.fuzz_catalogs import ACCOUNTED, ERROR, FuzzCase, all_cases

ACCOUNTING: dict[str, tuple[int, int, int]] = {}   # case -> (written, valid + merged, rejected)
CASE_NAMES = ["truncated_file", "truncated_records", "mixed_delimiters", "semicolon_file", "invalid_utf8",
              "nul_bytes", "huge_description", "thousand_columns", "stray_quote", "empty_file", "header_only",
              "header_only_allowed", "missing_file", "imdb_truncated", "wiki_nul_and_replacement", "wiki_cut_json",
              "wiki_cut_in_half", "wiki_empty_object", "random_7_0", "random_7_1"]


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict[str, FuzzCase]:
    made = {c.name: c for c in all_cases(tmp_path_factory.mktemp("fuzz"))}
    assert sorted(made) == sorted(CASE_NAMES)
    return made


def cfg_for(case: FuzzCase):
    """The packaged conf (its validation rules) reading only the case's file."""
    from lfr.settings import load_settings, with_values

    return with_values(load_settings(environ={}), {"catalogs": {case.domain: [
        {"reader": case.reader, "path": str(case.path), "allow_empty": case.allow_empty}]}})


def owner(case: FuzzCase, reject) -> str:
    """The written record a reject row is: its id, else the one written id its raw text names."""
    if reject["id"] in case.ids:
        return reject["id"]
    named = [i for i in set(case.ids) if re.search(rf"/book/show/{i.split(':', 1)[1]}(?!\d)", reject["raw"] or "")]
    assert len(named) == 1, f"reject {reject['raw'][:200]!r} is {len(named)} written records: {named}"
    return named[0]


def account(case: FuzzCase, valid, rejects) -> dict[str, list[str]]:
    """Written id -> where it ended ("valid", "merged" or its reject reason); asserts each exactly once."""
    ended: dict[str, list[str]] = {}
    for row in valid:
        ended.setdefault(row["id"], []).append("valid")
        for mid in row["merged_ids"]:
            ended.setdefault(mid, []).append("merged")
    for row in rejects:
        assert row["reason"] and row["raw"], row
        ended.setdefault(owner(case, row), []).append(row["reason"])
    written = Counter(case.ids)
    assert Counter({i: len(v) for i, v in ended.items()}) == written, (ended, written)
    return ended


@pytest.mark.parametrize("name", CASE_NAMES)
def test_every_written_record_is_accounted_for_or_the_file_is_refused(spark, cases, name):
    from lfr.data import load_catalog
    from lfr.data.readers import CatalogReadError

    case = cases[name]
    if case.expect == ERROR:
        with pytest.raises(CatalogReadError) as err:
            load_catalog(spark, cfg_for(case), case.domain)
        assert case.path.name in str(err.value)
        ACCOUNTING[name] = (case.records, 0, 0)
        return
    assert case.expect == ACCOUNTED
    valid_df, rejects_df = load_catalog(spark, cfg_for(case), case.domain)
    valid, rejects = valid_df.collect(), rejects_df.collect()
    ended = account(case, valid, rejects)
    for rid, reason in case.damaged.items():
        assert reason in ended[rid][0].split(","), (rid, ended[rid])
    if case.exact:
        assert all(ended[i] == ["valid"] for i in case.ids if i not in case.damaged), ended
    for row in valid:                       # nothing invalid passes as valid
        assert 1 <= len(row["description"]) <= 20000 and row["id"]
        assert "\x00" not in row["description"] + row["title"] and "\ufffd" not in row["description"] + row["title"]
    ACCOUNTING[name] = (case.records, len(valid) + sum(len(r["merged_ids"]) for r in valid), len(rejects))


def test_accounting_summary():
    """Records written / accounted for over every case run above (printed with -s)."""
    if not ACCOUNTING:
        pytest.skip("no case ran")
    for name, (w, v, r) in sorted(ACCOUNTING.items()):
        print(f"{name:26} written {w:3}  valid+merged {v:3}  rejected {r:3}")
    usable = [k for k, (w, v, r) in ACCOUNTING.items() if v + r]
    assert all(ACCOUNTING[k][0] == ACCOUNTING[k][1] + ACCOUNTING[k][2] for k in usable)
