"""The X-Cross evaluation's report: a table with 95% bootstrap intervals, paired differences, the
data-fraction curve (table + PNG). Written next to the main evaluation report, never over it:
``xcross_report.md``, ``xcross_metrics.json``, ``xcross_curve.png``."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd

from lfr.eval.metrics import ranking_intervals
from lfr.eval.report import markdown_table
from lfr.eval.xcross import LINK_TRAINED, XCrossEvaluation

NDCG_K = 10


def headline_k(ev: XCrossEvaluation) -> str:
    """``recall@10`` (or the largest k evaluated when 10 is not one of ``eval.ks``)."""
    ks = [int(k) for k in ev.setup["ks"]]
    return f"recall@{10 if 10 in ks else max(ks)}"


def _ci(iv: dict) -> str:
    if any(math.isnan(float(iv[k])) for k in ("value", "lo", "hi")):
        return "n/a"
    return f"{iv['value']:.3f} [{iv['lo']:.3f}, {iv['hi']:.3f}]"


def _diff(d: dict) -> str:
    if math.isnan(float(d["diff"])):
        return "n/a"
    return f"{d['diff']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]" + (" (noise)" if d["within_noise"] else "")


def intervals_at(ev: XCrossEvaluation, fraction: float, reference: str | None) -> dict:
    """``ranking_intervals`` of every method evaluated at ``fraction`` (fold-independent rows count
    at every fraction: they never see links)."""
    order = {m: i for i, m in enumerate(ev.descriptions)}
    ranks = {m: r for (m, q), r in sorted(ev.ranks.items(), key=lambda kv: (order.get(kv[0][0], 99), kv[0]))
             if q == fraction or (m not in LINK_TRAINED and q == 1.0)}
    ref = reference if reference in ranks else None
    return ranking_intervals(ranks, ref, ks=ev.setup["ks"], ndcg_k=NDCG_K, seed=ev.setup["seed"])


def main_table(ev: XCrossEvaluation, iv: dict) -> str:
    records = []
    for method, metrics in iv["methods"].items():
        n = sum(1 for r in ev.ranks.get((method, 1.0), []) if r)
        records.append({"method": method, **{m: _ci(metrics[m]) for m in iv["metrics"]}, "films": n,
                        "what": ev.descriptions.get(method, "")})
    return markdown_table(pd.DataFrame(records), int_columns=("films",))


def difference_table(iv: dict, rk: str) -> str:
    records = [{"method": m, **{f"Δ {k}": _diff(d[k]) for k in ("mrr", rk)}}
               for m, d in iv["paired"].items() if m != iv["reference"]]
    return markdown_table(pd.DataFrame(records))


def curve_records(ev: XCrossEvaluation) -> list[dict]:
    """MRR and Recall@10 (with intervals) of every link-trained method at every finished fraction."""
    out, rk = [], headline_k(ev)
    for fraction in sorted({q for (_, q) in ev.ranks}):
        iv = intervals_at(ev, fraction, None)
        for method in LINK_TRAINED:
            if method in iv["methods"] and (method, fraction) in ev.ranks:
                out.append({"method": method, "fraction": fraction,
                            "mrr": iv["methods"][method]["mrr"], "recall@k": iv["methods"][method][rk]})
    return out


def plot_curve(records: list[dict], flat: dict, path: str | os.PathLike) -> str:
    """MRR vs fraction of training links, error bars = 95% intervals; link-free rows as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method in LINK_TRAINED:
        pts = sorted((r["fraction"], r["mrr"]) for r in records if r["method"] == method)
        if pts:
            x = [100 * q for q, _ in pts]
            y = [v["value"] for _, v in pts]
            err = [[v["value"] - v["lo"] for _, v in pts], [v["hi"] - v["value"] for _, v in pts]]
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=method)
    for (method, value), style in zip(flat.items(), ("--", ":", "-.")):
        ax.axhline(value, linestyle=style, color="grey", label=f"{method} (no links)")
    ax.set_xlabel("% of each fold's training films (their links) used")
    ax.set_ylabel("MRR (held-out films)")
    ax.set_xticks([25, 50, 75, 100])
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


def write_xcross_report(ev: XCrossEvaluation, out_dir: str | os.PathLike) -> dict[str, str]:
    """``xcross_report.md`` / ``xcross_metrics.json`` / ``xcross_curve.png`` under ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    iv_text, iv_x = intervals_at(ev, 1.0, "text_only"), intervals_at(ev, 1.0, "xcross")
    records = curve_records(ev)
    flat = {m: iv_text["methods"][m]["mrr"]["value"] for m in ("text_only", "adapters_only") if m in iv_text["methods"]}
    paths = {"report": str(out / "xcross_report.md"), "metrics": str(out / "xcross_metrics.json")}
    if records:
        paths["curve"] = plot_curve(records, flat, out / "xcross_curve.png")
    s = ev.setup
    lines = ["# X-Cross evaluation (lfr.eval.xcross)", "",
             f"{s['protocol']}; {s['n_linked_films']} linked films, {s['n_links_usable']} links; each held-out film "
             f"ranks {s['n_candidate_books']} of {s['n_books_catalog']} books; {s.get('max_length')} tokens per item. "
             "Values: mean over films [95% bootstrap interval].", "", "## Rows (100% of the training links)", "",
             main_table(ev, iv_text), "", "## Paired differences against text_only (per film)", "",
             difference_table(iv_text, headline_k(ev)), "", "## Paired differences against xcross", "",
             difference_table(iv_x, headline_k(ev)), "",
             "## Data-fraction curve", ""]
    lines.append(markdown_table(pd.DataFrame([{"method": r["method"], "links %": int(round(100 * r["fraction"])),
                                               "MRR": _ci(r["mrr"]), headline_k(ev): _ci(r["recall@k"])}
                                              for r in records]))
                 if records else "(no fraction finished)")
    Path(paths["report"]).write_text("\n".join(lines) + "\n", encoding="utf-8")
    Path(paths["metrics"]).write_text(json.dumps({"setup": s, "intervals": iv_text, "paired_xcross": iv_x["paired"],
                                                  "curve": records}, indent=2, default=str), encoding="utf-8")
    return paths
