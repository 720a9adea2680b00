"""The report's intervals and paired differences (synthetic EvalResult: no model, no Spark)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lfr.eval.metrics import ranking_metrics
from lfr.eval.report import compute_intervals, format_tables, write_report
from lfr.eval.runner import EvalResult

KS = [1, 10, 100]


def _result(with_ranks: bool) -> EvalResult:
    """65 films, one link each, 500 books: text_only, a method equal to it, and a clearly better one."""
    rng = np.random.default_rng(0)
    n, n_books = 65, 500
    relevant = [np.array([j]) for j in rng.integers(0, n_books, size=n)]
    base = rng.normal(size=(n, n_books))
    better = base.copy()
    for i, rel in enumerate(relevant):
        better[i, rel] += 3.0
    scores = {"tfidf": rng.normal(size=(n, n_books)), "text_only": base, "same_as_text": base.copy(),
              "better": better}
    rows, ranks = [], {}
    for name, sc in scores.items():
        out = ranking_metrics(sc, relevant, ks=KS, return_ranks=True)
        ranks[name] = out.pop("ranks")
        rows.append({"method": name, "description": name, "seconds": 0.0, **out, "mae@all": 0.5, "rmse@all": 0.5,
                     "n_pairs": 4 * n})
    per_movie = pd.DataFrame({"movie": [f"film {i}" for i in range(n)], "book(s)": "b", "fold": 0,
                              **{m: [min(r) for r in ranks[m]] for m in scores}})
    links = {"n_links": n, "n_duplicates": 0, "n_missing_movie": 0, "n_missing_book": 0, "n_used": n}
    setup = {"ks": KS, "ndcg_k": 10, "seed": 13, "n_test_movies": n, "n_test_links": n, "n_links_usable": n,
             "n_books_catalog": n_books, "links": links, "n_unresolved_pairs": 0, "encoder": "x", "pooling": "mean",
             "protocol": "3-fold", "trained_model": "none", "fold_sizes": [], "n_eval_positive_pairs": n,
             "negatives_per_positive": 3, "n_eval_pairs": 4 * n, "train_seconds": 0.0, "missing_links": []}
    result = EvalResult(rows=rows, setup=setup, per_movie=per_movie,
                        ranking_columns=["recall@1", "recall@10", "recall@100", "mrr", "ndcg@10", "median_rank"],
                        error_columns=["mae@all", "rmse@all"])
    if with_ranks:
        result.ranks = ranks
    return result


@pytest.mark.parametrize("with_ranks", [True, False])
def test_intervals_match_the_table_and_compare_to_text_only(with_ranks):
    result = _result(with_ranks)
    iv = compute_intervals(result)
    assert iv["reference"] == "text_only" and iv["n_films"] == 65 and iv["exact"] is with_ranks
    assert iv["metrics"] == ["recall@1", "recall@10", "recall@100", "mrr", "ndcg@10"]
    for row in result.rows:
        for c in iv["metrics"]:
            got = iv["methods"][row["method"]][c]
            assert got["value"] == pytest.approx(row[c]) and got["lo"] <= got["value"] <= got["hi"]
    same = iv["paired"]["same_as_text"]
    assert all((same[c]["diff"], same[c]["lo"], same[c]["hi"]) == (0.0, 0.0, 0.0) for c in iv["metrics"])
    assert iv["paired"]["better"]["mrr"]["lo"] > 0 and not iv["paired"]["better"]["mrr"]["within_noise"]
    assert compute_intervals(result) == iv      # seeded


def test_report_markdown_json_and_printed_tables(tmp_path):
    result = _result(True)
    paths = write_report(result, tmp_path)
    md = open(paths["report"], encoding="utf-8").read()
    iv = compute_intervals(result)
    r10 = iv["methods"]["text_only"]["recall@10"]
    assert "| text_only | " in md and f"{r10['value']:.3f} [{r10['lo']:.3f}, {r10['hi']:.3f}]" in md
    assert ("## Paired differences against `text_only`" in md
            and "| same_as_text | +0.000 [+0.000, +0.000] (noise)" in md)
    assert "one-point (0.01) change of R@10 is noise" in md and "1/65 = 0.015" in md
    better = next(line for line in md.splitlines() if line.startswith("| better | +"))
    assert "(noise)" not in better.split("|")[5]      # Δ mrr (after method, R@1, R@10, R@100) is not noise
    data = json.load(open(paths["json"], encoding="utf-8"))
    assert data["intervals"]["reference"] == "text_only" and data["intervals"]["n_resamples"] == 2000
    by = {m["method"]: m for m in data["methods"]}
    assert by["text_only"]["ci"]["recall@10"] == pytest.approx([r10["lo"], r10["hi"]])
    assert by["same_as_text"]["vs_reference"]["mrr"]["within_noise"] is True
    printed = format_tables(result)
    assert "Paired difference against text_only" in printed and f"[{r10['lo']:.3f}, {r10['hi']:.3f}]" in printed
    with open(paths["plot"], "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_no_text_only_row_gives_intervals_without_differences():
    result = _result(False)
    result.rows = [r for r in result.rows if r["method"] != "text_only"]
    iv = compute_intervals(result)
    assert iv["reference"] is None and iv["paired"] == {} and set(iv["methods"]) == {"tfidf", "same_as_text", "better"}
    assert "Paired difference" not in format_tables(result)


def test_report_holds_both_protocols_rows_and_strict_minus_open(tmp_path):
    """``write_report({open, strict})``: one table with every method under both protocols (with intervals),
    strict - open paired over the films, each protocol's sections and figure; the json keeps both."""
    import copy

    from lfr.eval.report import protocol_differences

    opened, strict = _result(True), _result(True)
    opened.setup.update(text_protocol="open", masking=None, test_movie_ids=list(range(65)))
    strict.setup = {**copy.deepcopy(strict.setup), "text_protocol": "strict", "test_movie_ids": list(range(65)),
                    "masking": {"films_masked": 21, "films_linked": 65, "film_removals": 80, "books_masked": 30,
                                "books_linked": 65, "book_removals": 40}}
    strict.ranks["better"] = strict.ranks["text_only"]            # masking took away what "better" found
    for row in strict.rows:
        if row["method"] == "better":
            row.update({k: v for k, v in next(r for r in strict.rows if r["method"] == "text_only").items()
                        if k not in ("method", "description")})
    results = {"open": opened, "strict": strict}
    paths = write_report(results, tmp_path)
    md = open(paths["report"], encoding="utf-8").read()
    for p, r in results.items():
        iv = compute_intervals(r)["methods"]["better"]["recall@10"]
        assert f"| better | {p} | " in md and f"{iv['value']:.3f} [{iv['lo']:.3f}, {iv['hi']:.3f}]" in md
    assert "## Protocol `open`" in md and "## Protocol `strict`" in md and "### Ranking metrics" in md
    assert "Removed 80 phrases from 21 of the 65 linked films' texts" in md
    diffs = protocol_differences(results)
    assert diffs["tfidf"]["mrr"]["diff"] == 0.0 and diffs["better"]["mrr"]["hi"] < 0
    assert ("## Strict - open, paired over the same films" in md
            and "| same_as_text | +0.000 [+0.000, +0.000] (noise)" in md)
    data = json.load(open(paths["json"], encoding="utf-8"))
    assert data["protocol_order"] == ["open", "strict"] and data["setup"]["text_protocol"] == "open"
    assert [m["method"] for m in data["protocols"]["strict"]["methods"]] == [r["method"] for r in strict.rows]
    assert data["strict_minus_open"]["better"]["mrr"]["diff"] < 0
    for png in paths["plots"].values():
        with open(png, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    printed = format_tables(results)
    assert "| better | strict |" in printed and "Protocol strict:" in printed
