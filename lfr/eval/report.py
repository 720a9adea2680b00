"""Writes the evaluation: ``report.md`` (tables + protocol), ``metrics.png`` and ``metrics.json``.

Every ranking metric is shown with its 95% bootstrap interval over films, and every method
with its paired difference against text-only on the same films (``lfr.eval.metrics``
"Intervals"): with a few dozen linked films, point estimates alone overstate what the data
can tell apart.

With several text protocols (``eval.protocols``: ``open``, ``strict``; ``run_protocols``) the
report opens with one table holding every method under every protocol and the paired
difference strict - open per method, then each protocol's full sections. ``metrics.json`` keeps
the first protocol's payload at the top level (what older readers expect) and every protocol's
under ``protocols``; ``metrics.png`` is the first protocol's figure, ``metrics_<protocol>.png``
the others'.

Each protocol also gets a "Hubs" table (``hub_table``; ``hubs`` in ``metrics.json``): per method, how
its top-10 lists over every film of the catalog concentrate on a few books, and each hub-aware
``_csls`` row's paired difference against its plain row (``setup.csls_vs_plain``)."""
from __future__ import annotations

import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from lfr.eval.metrics import (
    BOOTSTRAP_LEVEL,
    BOOTSTRAP_RESAMPLES,
    paired_difference,
    per_film_metrics,
    ranking_intervals,
)
from lfr.eval.runner import EvalResult

REPORT_MD = "report.md"
REPORT_PNG = "metrics.png"
REPORT_JSON = "metrics.json"
REFERENCE_METHOD = "text_only"   # paired differences are against the frozen text encoder alone
HEADLINE_COLUMNS = ("recall@1", "recall@10", "recall@100", "mrr")
PROTOCOL_TEXT = {
    "open": "descriptions as the catalogs give them (a film's text may name its book and author)",
    "strict": "each linked film's text without its book's title and author names, each linked book's text "
              "without its film's title (lfr.eval.masking), for every method, model and fold",
}


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(v):
        return "n/a"
    return f"{v:.3f}"


def markdown_table(frame: pd.DataFrame, int_columns: tuple[str, ...] = ()) -> str:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, row in frame.iterrows():
        cells = []
        for c in cols:
            v = row[c]
            if c in int_columns and v is not None and not (isinstance(v, float) and math.isnan(v)):
                cells.append(f"{v:g}" if isinstance(v, float) else str(v))
            elif isinstance(v, str):
                cells.append(v.replace("|", "\\|"))
            else:
                cells.append(_fmt(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _film_ranks(result: EvalResult) -> tuple[dict[str, list[list[int]]], bool]:
    """Per method, per held-out film, the ranks of its linked books, and whether they are all of them.

    The runner's ``ranks`` when it gives them; else the per-film best ranks of ``per_movie``
    (exact for every metric when each film has one link, as in the shipped pair files)."""
    ranks = getattr(result, "ranks", None)
    if ranks:
        return {m: [list(r) for r in per] for m, per in ranks.items()}, True
    methods = [r["method"] for r in result.rows if r["method"] in result.per_movie.columns]
    best = {m: [[] if pd.isna(v) else [int(v)] for v in result.per_movie[m]] for m in methods}
    return best, False


def compute_intervals(result: EvalResult, n_resamples: int = BOOTSTRAP_RESAMPLES,
                      level: float = BOOTSTRAP_LEVEL) -> dict:
    """``lfr.eval.metrics.ranking_intervals`` of the result's per-film ranks (seed: the evaluation's),
    against ``REFERENCE_METHOD`` when it is one of the rows; plus ``n_films`` and ``exact``."""
    s = result.setup
    ranks, exact = _film_ranks(result)
    reference = REFERENCE_METHOD if REFERENCE_METHOD in ranks else None
    out = ranking_intervals(ranks, reference, ks=s.get("ks", [1, 10, 100]), ndcg_k=int(s.get("ndcg_k", 10)),
                            n_resamples=n_resamples, seed=int(s.get("seed", 13)), level=level)
    out["n_films"] = int(sum(1 for r in next(iter(ranks.values()), []) if r))
    out["exact"] = exact
    return out


def _ci(iv: dict) -> str:
    if iv is None or any(math.isnan(float(iv[k])) for k in ("lo", "hi")):
        return _fmt(None if iv is None else iv.get("value"))
    return f"{_fmt(iv['value'])} [{_fmt(iv['lo'])}, {_fmt(iv['hi'])}]"


def _signed(v: float) -> str:
    return "n/a" if math.isnan(float(v)) else f"{float(v):+.3f}"


def ranking_table(result: EvalResult, intervals: dict | None = None) -> str:
    """Ranking metrics; a metric averaged over films reads ``value [low, high]`` (95% bootstrap)."""
    cols = ["method", *result.ranking_columns, "n_evaluated"]
    with_ci = set((intervals or {}).get("metrics", []))
    records = []
    for r in result.rows:
        rec = {c: r.get(c) for c in cols}
        for c in with_ci & set(cols):
            rec[c] = _ci(intervals["methods"].get(r["method"], {}).get(c))
        records.append(rec)
    return markdown_table(pd.DataFrame(records, columns=cols), int_columns=("median_rank", "n_evaluated"))


def difference_table(intervals: dict) -> str:
    """Per method: mean per-film difference to the reference, its 95% interval, "(noise)" when it crosses 0."""
    ref, names = intervals.get("reference"), intervals["metrics"]
    records = []
    for method, diffs in intervals["paired"].items():
        rec = {"method": method}
        for c in names:
            d = diffs[c]
            if method == ref:
                rec[f"Δ {c}"] = "reference"
            else:
                rec[f"Δ {c}"] = (f"{_signed(d['diff'])} [{_signed(d['lo'])}, {_signed(d['hi'])}]"
                                 + (" (noise)" if d["within_noise"] else ""))
        records.append(rec)
    return markdown_table(pd.DataFrame(records, columns=["method", *[f"Δ {c}" for c in names]]))


def noise_lines(intervals: dict) -> list[str]:
    """What the intervals mean for this evaluation's size, in words."""
    n = intervals["n_films"]
    lines = [f"95% percentile bootstrap over the {n} evaluated films ({intervals['n_resamples']} resamples, seed "
             f"{intervals['seed']}); differences are paired (the same resampled films for both methods)."]
    if n:
        lines.append(f"With {n} films one film moves Recall@k by 1/{n} = {1 / n:.3f}: a one-point (0.01) change of "
                     "R@10 is noise, below what this data can resolve. A difference whose interval contains 0 is "
                     "marked (noise): the data cannot tell the two methods apart.")
    if not intervals.get("exact", True):
        lines.append("Intervals use each film's best-ranked link (the runner gave no full ranks): exact when every "
                     "film has one link.")
    return lines


def hub_table(result: EvalResult) -> str:
    """Per method, its top-10 lists over every film of the catalog: the most recommended book and the
    share of films it reaches, the share of books never recommended, Gini and skew of the k-occurrence."""
    cols = {"method": "method", "hub_max_occurrence": "films (max)", "hub_max_share": "max share",
            "hub_title": "most recommended book", "hub_never_recommended": "never recommended", "hub_gini": "Gini",
            "hub_skew": "skew"}
    records = [{label: r.get(c) for c, label in cols.items()} for r in result.rows
               if r.get("hub_max_share") is not None]
    return markdown_table(pd.DataFrame(records, columns=list(cols.values())), int_columns=("films (max)",))


def hub_lines(result: EvalResult) -> list[str]:
    """The "Hubs" section: what is counted, the table, each hub-aware row against its plain one."""
    h = result.setup.get("hubs") or {}
    if not any(r.get("hub_max_share") is not None for r in result.rows):
        return []
    lines = [f"Each method's top-{h.get('top', 10)} list for every one of the {h.get('films')} films of the catalog "
             f"(not only the held-out ones) against all {h.get('books')} books; a book's k-occurrence is the number "
             "of lists it is in. Trained rows differ per fold: every statistic is the mean over folds, the book is "
             "the fold's most recommended one where it was in the most lists. `_csls` rows: cosine - "
             f"{h.get('hub_weight')} r(book), r(book) = mean cosine of the book's {h.get('hub_k')} nearest films "
             f"(`score.hubness: csls`; this run's setting: `{h.get('hubness')}`). `_fused` row: the hybrid's score "
             f"h - {h.get('fused_hub_weight')} r_h(book), r_h = the mean of the book's {h.get('hub_k')} highest h "
             "(`score.fused_hub_weight`). `_bookz` row: `hybrid_csls` with its lexical z-scores standardised per book "
             "over the catalog's films (`score.lexical_hubness: bookz`).", "", hub_table(result), ""]
    diffs = result.setup.get("csls_vs_plain") or {}
    if diffs:
        cols = list(next(iter(diffs.values())))
        lines += ["Hub-aware - plain (and `_bookz` vs `_fused`), paired over the same held-out films [95% "
                  "interval]; (noise): the interval contains 0.", "",
                  difference_table({"metrics": cols, "paired": diffs, "reference": None}), ""]
    return lines


def error_table(result: EvalResult) -> str:
    cols = ["method", *result.error_columns, "n_pairs"]
    frame = pd.DataFrame([{c: r.get(c) for c in cols} for r in result.rows], columns=cols)
    return markdown_table(frame, int_columns=("n_pairs",))


def as_protocols(results) -> dict[str, EvalResult]:
    """One ``EvalResult`` or ``{protocol: EvalResult}`` as the latter (a single result is keyed by its
    setup's ``text_protocol``), so every writer handles both."""
    if isinstance(results, EvalResult):
        return {results.setup.get("text_protocol") or "open": results}
    return dict(results)


def protocol_differences(results: dict[str, EvalResult]) -> dict:
    """Per method: the paired per-film difference strict - open of the headline metrics with its 95%
    interval (``{method: {metric: {diff, lo, hi, within_noise, n_films}}}``); ``{}`` unless both
    protocols ran on the same films in the same order (they do: same links, folds and seed)."""
    if not {"open", "strict"} <= set(results):
        return {}
    o, st = results["open"], results["strict"]
    if o.setup.get("test_movie_ids") != st.setup.get("test_movie_ids"):
        return {}
    (ro, _), (rs, _) = _film_ranks(o), _film_ranks(st)
    ks, ndcg_k, seed = o.setup.get("ks", [1, 10, 100]), int(o.setup.get("ndcg_k", 10)), int(o.setup.get("seed", 13))
    out = {}
    for m in [m for m in ro if m in rs]:
        po, ps = per_film_metrics(ro[m], ks, ndcg_k), per_film_metrics(rs[m], ks, ndcg_k)
        out[m] = {c: paired_difference(ps[c], po[c], seed=seed) for c in HEADLINE_COLUMNS if c in po}
    return out


def headline_table(results: dict[str, EvalResult], intervals: dict[str, dict]) -> str:
    """Every method under every protocol, one row each: the headline metrics ``value [low, high]``."""
    order: list[str] = []
    for r in results.values():
        order += [row["method"] for row in r.rows if row["method"] not in order]
    cols = [c for c in HEADLINE_COLUMNS if c in next(iter(intervals.values()))["metrics"]]
    records = []
    for method in order:
        for p, iv in intervals.items():
            if method in iv["methods"]:
                records.append({"method": method, "protocol": p,
                                **{c: _ci(iv["methods"][method].get(c)) for c in cols}})
    return markdown_table(pd.DataFrame(records, columns=["method", "protocol", *cols]))


def _summary_lines(results: dict[str, EvalResult], intervals: dict[str, dict], diffs: dict) -> list[str]:
    """The opening of a report with several protocols: what each one reads, the joint table, strict - open."""
    lines = ["## Protocols", *[f"- `{p}`: {PROTOCOL_TEXT.get(p, p)}." for p in results], "",
             "## Ranking by protocol", "Value [95% bootstrap interval over films]; the same films, folds and seed "
             "under every protocol.", "", headline_table(results, intervals), ""]
    if diffs:
        cols = list(next(iter(diffs.values())))
        lines += ["## Strict - open, paired over the same films",
                  "What each method loses when the texts no longer name the answer [95% interval]; (noise): the "
                  "interval contains 0.", "", difference_table({"metrics": cols, "paired": diffs, "reference": None}),
                  ""]
    return lines


def format_tables(result, intervals: dict | None = None) -> str:
    """The tables as Markdown (what the job prints): ranking with intervals, paired differences, errors;
    with several protocols the joint table and strict - open first, then each protocol's tables."""
    results = as_protocols(result)
    if len(results) == 1:
        return _format_one(next(iter(results.values())), intervals)
    ivs = {p: compute_intervals(r) for p, r in results.items()}
    parts = ["\n".join(_summary_lines(results, ivs, protocol_differences(results)))]
    parts += [f"Protocol {p}:\n\n" + _format_one(r, ivs[p]) for p, r in results.items()]
    return "\n\n".join(parts)


def _format_one(result: EvalResult, intervals: dict | None = None) -> str:
    s = result.setup
    intervals = intervals if intervals is not None else compute_intervals(result)
    head = (f"Held-out films: {s['n_test_movies']} ({s['n_test_links']} links) of {s['n_links_usable']} usable "
            f"links; ranked against {s['n_books_catalog']} books; seed {s['seed']}.")
    parts = [head, "Ranking (higher is better; median_rank lower is better; [95% bootstrap interval over films])",
             ranking_table(result, intervals)]
    if intervals["paired"]:
        parts += [f"Paired difference against {intervals['reference']} on the same films (method - "
                  f"{intervals['reference']}, [95% interval])", difference_table(intervals)]
    parts += [" ".join(noise_lines(intervals)), "Error on the most confident pairs (lower is better)",
              error_table(result)]
    hubs = hub_lines(result)
    if hubs:
        parts += ["Hubs (top-10 lists over every film of the catalog)", "\n".join(hubs).strip()]
    return "\n\n".join(parts)


def _yerr(intervals: dict | None, method: str, cols: list[str], vals: list[float]):
    """Error bars (distance to the interval's ends) for the metrics that have an interval."""
    ivs = ((intervals or {}).get("methods") or {}).get(method) or {}
    lo = [max(0.0, v - ivs[c]["lo"]) if c in ivs and not math.isnan(ivs[c]["lo"]) else 0.0 for c, v in zip(cols, vals)]
    hi = [max(0.0, ivs[c]["hi"] - v) if c in ivs and not math.isnan(ivs[c]["hi"]) else 0.0 for c, v in zip(cols, vals)]
    return [lo, hi] if any(lo) or any(hi) else None


def plot(result: EvalResult, path: str | os.PathLike, intervals: dict | None = None) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [r["method"] for r in result.rows]
    rank_cols = [c for c in result.ranking_columns if c != "median_rank"]
    err_cols = result.error_columns
    fig, axes = plt.subplots(1, 2, figsize=(14, 5),
                             gridspec_kw={"width_ratios": [len(rank_cols), max(1, len(err_cols))]})
    for ax, cols, title in (
            (axes[0], rank_cols, "Ranking over the full book catalog (higher is better; 95% intervals)"),
            (axes[1], err_cols, "MAE / RMSE on most confident pairs (lower is better)")):
        x = np.arange(len(cols))
        width = 0.8 / max(1, len(methods))
        for i, r in enumerate(result.rows):
            vals = [np.nan_to_num(float(r.get(c, np.nan)), nan=0.0) for c in cols]
            ax.bar(x + (i - (len(methods) - 1) / 2) * width, vals, width, label=r["method"],
                   yerr=_yerr(intervals, r["method"], cols, vals), capsize=2, error_kw={"elinewidth": 0.8})
        ax.set_xticks(x)
        ax.set_xticklabels(cols, rotation=30, ha="right")
        ax.set_ylim(0, 1.05)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8, loc="upper left")
    s = result.setup
    fig.suptitle(f"LightFusionRec ablation ({s.get('text_protocol') or 'open'} texts): {s['n_test_movies']} held-out "
                 f"films, {s['n_books_catalog']} books", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(float(value)) else float(value)
    return value


def _training_lines(training: dict) -> list[str]:
    lines = []
    for name, runs in training.items():
        if not runs:
            continue
        settings = ", ".join(f"{k}={v}" for k, v in (runs[0].get("settings") or {}).items())
        per = [_fold_training(i, r) for i, r in enumerate(runs)]
        checked = "" if name == "xcross" else " (trainer's own by-film validation)"
        lines.append(f"  - `{name}` ({settings}): " + "; ".join(per) + f"{checked}.")
    return lines


def _fold_training(i: int, run: dict) -> str:
    """One fold's training, as the trainer measured it."""
    m = run.get("metrics") or {}
    kept = f" (kept epoch {m['best_epoch']} of {m.get('epochs_run')})" if "best_epoch" in m else ""
    if "integrator_steps" in m:      # eval.xcross: the integrators on the fold's links (no validation split)
        loss = m.get("integrator_loss") or [None, None]
        return (f"fold {i}: {m.get('links')} links, {m['integrator_steps']} steps, loss {_fmt(loss[0])} -> "
                f"{_fmt(loss[1])}, {run.get('seconds')}s")
    if "val_mrr" in m:      # contrastive recipe: validation MRR, no pair loss
        return f"fold {i}: val_mrr {_fmt(m.get('initial_val_mrr'))} -> {_fmt(m.get('val_mrr'))}{kept}"
    return (f"fold {i}: val_loss {_fmt(m.get('initial_val_loss'))} -> {_fmt(m.get('val_loss'))}, "
            f"val_auc {_fmt(m.get('initial_val_auc'))} -> {_fmt(m.get('val_auc'))}{kept}")


def _difference_section(intervals: dict) -> list[str]:
    lines = []
    if intervals["paired"]:
        lines = [f"## Paired differences against `{intervals['reference']}`",
                 f"Per-film difference (method - {intervals['reference']}) averaged over the same films "
                 "[95% bootstrap interval]; (noise): the interval contains 0.", "", difference_table(intervals), ""]
    return lines + [*noise_lines(intervals), ""]


def _rows_with_intervals(result: EvalResult, intervals: dict) -> list[dict]:
    """The table rows plus ``ci`` ({metric: [low, high]}) and ``vs_reference`` (paired differences)."""
    out = []
    for r in result.rows:
        ivs = intervals["methods"].get(r["method"], {})
        row = {**r, "ci": {c: [iv["lo"], iv["hi"]] for c, iv in ivs.items()}}
        if r["method"] in intervals["paired"]:
            row["vs_reference"] = intervals["paired"][r["method"]]
        out.append(row)
    return out


def _protocol_lines(s: dict) -> list[str]:
    links = s["links"]
    return [
        "## Protocol",
        f"- Ground truth: {links['n_links']} distinct movie->book links given, {s['n_links_usable']} usable "
        f"({links['n_missing_movie']} with the movie missing from the catalog, {links['n_missing_book']} with the "
        f"book missing, {links['n_duplicates']} duplicates; {s['n_unresolved_pairs']} pair-file rows could not be "
        "resolved to catalog ids).",
        f"- Held out by film: {s['protocol']}, seed {s['seed']}. The fusion model is {s['trained_model']}; "
        f"every method is evaluated on the {s['n_test_links']} links of the {s['n_test_movies']} held-out films "
        "only, so no evaluated link is a training positive. Folds: "
        + "; ".join(f"{fi['test_movies']} films evaluated, trained on {fi['train_links']} links of "
                    f"{fi['train_movies']} films" for fi in s["fold_sizes"]) + ".",
        f"- Ranking: each held-out film scores all {s['n_books_catalog']} books by cosine; the rank of its linked "
        "book(s) gives Recall@k, MRR (best-ranked link), nDCG@10 (binary relevance), median best rank, averaged "
        "over films. Ties are ranked pessimistically (a book tied with others is placed after them). Films "
        "without a resolvable link are excluded and counted.",
        f"- Error metrics: {s['n_eval_positive_pairs']} held-out links (label 1) plus "
        f"{s['negatives_per_positive']} random non-linked books per link (label 0, seeded), {s['n_eval_pairs']} "
        "pairs. Prediction p = clip(cosine, 0, 1); confidence = |p - 0.5|; MAE/RMSE of p against the label on the "
        "most confident fraction of the pairs.",
        f"- Training: {s['train_seconds']} s in all.",
        *_training_lines(s.get("training") or {}),
        *_text_protocol_lines(s),
    ]


def _text_protocol_lines(s: dict) -> list[str]:
    p, m = s.get("text_protocol") or "open", s.get("masking")
    line = f"- Texts (`{p}` protocol): {PROTOCOL_TEXT.get(p, p)}."
    if m:
        line += (f" Removed {m['film_removals']} phrases from {m['films_masked']} of the {m['films_linked']} linked "
                 f"films' texts and {m['book_removals']} from {m['books_masked']} of the {m['books_linked']} linked "
                 "books' texts.")
    return [line]


def _result_sections(result: EvalResult, intervals: dict, png: str) -> list[str]:
    """One protocol's sections: protocol, ranking, paired differences, errors, methods, per film, notes."""
    s, hubs = result.setup, hub_lines(result)
    md = [*_protocol_lines(s), "", "## Ranking metrics", "Value [95% bootstrap interval over films].", "",
          ranking_table(result, intervals), "", *_difference_section(intervals),
          "## MAE / RMSE on the most confident predictions", error_table(result), "",
          *(["## Hubs", *hubs] if hubs else []),
          "## Methods", *[f"- `{r['method']}`: {r['description']} ({r['seconds']} s)" for r in result.rows], "",
          "## Per held-out film: rank of the linked book (best rank if several)",
          markdown_table(result.per_movie, int_columns=tuple(r["method"] for r in result.rows)), ""]
    if result.notes:
        md += ["## Notes", *[f"- {n}" for n in result.notes], ""]
    if s["missing_links"]:
        md += ["## Links not in the catalog", *[f"- {m} -> {b}: {why}" for m, b, why in s["missing_links"]], ""]
    return md + ["Small held-out sets make these numbers noisy (one film moves Recall@1 by 1/n): compare methods "
                 "on the same split only, by their paired differences.", "", f"![metrics]({png})", ""]


def _payload(result: EvalResult, intervals: dict) -> dict:
    hubs = [{"method": r["method"], **{c: r.get(c) for c in result.hub_columns}} for r in result.rows]
    return {"setup": result.setup, "notes": result.notes, "methods": _rows_with_intervals(result, intervals),
            "intervals": intervals, "per_movie": result.per_movie.to_dict(orient="records"),
            "hubs": hubs if result.hub_columns else []}


def write_report(results, out_dir: str | os.PathLike) -> dict:
    """Write ``report.md``, ``metrics.png`` (+ ``metrics_<protocol>.png``) and ``metrics.json`` into
    ``out_dir`` (local path) for one ``EvalResult`` or ``{protocol: EvalResult}`` (``run_protocols``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = as_protocols(results)
    first = next(iter(results))
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    ivs = {p: compute_intervals(r) for p, r in results.items()}
    diffs = protocol_differences(results)
    pngs = {p: REPORT_PNG if p == first else f"metrics_{p}.png" for p in results}
    s = results[first].setup
    md = ["# LightFusionRec evaluation", "", f"Generated {created}. Encoder `{s['encoder']}` ({s['pooling']} "
          "pooling). Every method embeds descriptions and genres only, never the title field; a description "
          "can still name the answer, which the `strict` protocol removes.", ""]
    if len(results) > 1:
        md += _summary_lines(results, ivs, diffs)
    for p, r in results.items():
        part = _result_sections(r, ivs[p], pngs[p])
        if len(results) > 1:   # each protocol's sections one level down
            part = [f"## Protocol `{p}`", "", *[("#" + x if x.startswith("## ") else x) for x in part]]
        md += part
    paths = {"report": str(out / REPORT_MD), "plot": str(out / REPORT_PNG), "json": str(out / REPORT_JSON),
             "plots": {p: str(out / name) for p, name in pngs.items()}}
    Path(paths["report"]).write_text("\n".join(md), encoding="utf-8")
    for p, r in results.items():
        plot(r, paths["plots"][p], ivs[p])
    payloads = {p: _payload(r, ivs[p]) for p, r in results.items()}
    doc = {"created": created, **payloads[first], "protocol_order": list(results), "protocols": payloads,
           "strict_minus_open": diffs}
    Path(paths["json"]).write_text(json.dumps(_json_safe(doc), indent=2), encoding="utf-8")
    return paths
