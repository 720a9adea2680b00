"""X-Cross vs text-only on the bundled sample, and X-Cross's cost (not a test).

    nice -n 5 .venv/bin/python bench/xcross_sample.py                 # inputs -> eval -> cost
    nice -n 5 .venv/bin/python bench/xcross_sample.py --only cost --n 200

1. inputs: the validated sample catalogs (with book authors; a film found in both movie sources
   is one item with both texts) and the resolved links, collected once with Spark and cached as
   parquet under --out (collected again when the sample files, their settings or lfr.data change).
2. eval: ``lfr.eval.runner.run_evaluation`` (3-fold CV by film) with X-Cross as the trained row
   (``lfr.eval.xcross.make_train_fn``); the same call gives the text-only, TF-IDF and genre
   rows. ``--ablation`` adds a second call with the adapters-only model (integrator untrained).
   Both models truncate at --max-length tokens (the text-only row too, for a fair comparison).
3. cost: items/s of embedding N book descriptions with the plain encoder (what LightFusionRec's
   text side runs) vs X-Cross (integrated: 2 streams; own stream only), same threads, and the
   X-Cross training time per stage (from the eval run).
Results: --out/{eval.json, eval_<row>.txt, cost.json}. The machine is shared: say so when quoting.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
log = logging.getLogger("bench.xcross")
ABLATION_BATCH_SIZE = 32
INPUT_FILES = ("movies", "books", "links")
# What computes a (method, fraction, fold) result of the ablation: a change to any of it is a new resume file.
ABLATION_CODE = ("lfr.eval", "lfr.model", "lfr.train")


def inputs_source_key(settings) -> str:
    """Digest of what the cached inputs are made from: the local catalog and pair files, the
    ``catalogs``/``validation`` settings and the ``lfr.data`` code that reads and validates them."""
    from lfr.digest import code_digest, files_digest, settings_digest

    catalogs = settings.catalogs
    paths = [src["path"] for domain in ("movies", "books") for src in catalogs.get(domain) or []]
    local = [p for p in [*paths, catalogs.get("pairs")] if p and os.path.isfile(p)]
    return settings_digest({"catalogs": catalogs, "validation": settings.validation.as_dict(),
                            "files": files_digest(local), "code": code_digest(["lfr.data"])})[:16]


def collect_inputs(out: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The validated inputs, collected with Spark once and cached as parquet under ``out``; collected
    again when the catalog files, their settings or the reading code changed (``inputs_source_key``)."""
    from lfr.settings import load_settings

    settings = load_settings(overrides=["spark.driver.memory=1g", "spark.sql.shuffle.partitions=2"])
    files = {k: out / f"{k}.parquet" for k in INPUT_FILES}
    key, key_file = inputs_source_key(settings), out / "inputs.key"
    fresh = key_file.is_file() and key_file.read_text(encoding="utf-8").strip() == key
    if not (fresh and all(f.is_file() for f in files.values())):
        from lfr.data import collect_driver_inputs
        from lfr.spark import build_session

        spark = build_session(settings)
        inputs = collect_driver_inputs(spark, settings, book_columns=("authors",))
        spark.stop()
        out.mkdir(parents=True, exist_ok=True)
        for name, frame in (("movies", inputs.movies), ("books", inputs.books), ("links", inputs.links)):
            frame.to_parquet(files[name])
        key_file.write_text(key + "\n", encoding="utf-8")
    frames = {k: pd.read_parquet(f) for k, f in files.items()}
    for k in ("movies", "books"):
        frames[k]["genres"] = frames[k]["genres"].map(lambda g: list(g) if g is not None else [])
    frames["books"]["authors"] = frames["books"]["authors"].map(lambda a: list(a) if a is not None else None)
    return frames["movies"], frames["books"], frames["links"]


def bench_settings(max_length: int, cache_dir: str | None = None):
    """The project's settings (conf/lfr.yaml) with both encoders truncating at ``max_length``, 3 folds,
    no DistilBERT rows and a short X-Cross training budget; ``cache_dir``: the adapter cache."""
    from lfr.settings import load_settings, with_values

    settings = load_settings(overrides=["eval.distilbert_path=null"])
    return with_values(settings, {
        "model.max_length": max_length, "model.precision": "fp32",
        "eval.folds": 3, "eval.ks": [1, 10, 100],
        "xcross.max_length": max_length, "xcross.adapter_steps": 20, "xcross.integrator_steps": 8,
        "xcross.integrator_batch_size": 12, "xcross.cache_dir": cache_dir,
    })


def run_eval(movies, books, links, args, out: Path) -> dict:
    from lfr.eval.runner import run_evaluation
    from lfr.eval.xcross import make_train_fn

    settings = bench_settings(args.max_length, cache_dir=str(out / "adapter_cache"))
    results = {}
    variants = [("xcross", True)] + ([("xcross_adapters_only", False)] if args.ablation else [])
    for name, integrate in variants:
        t0 = time.time()
        res = run_evaluation(movies, books, links, settings, train_fn=make_train_fn(integrate_stage=integrate),
                             trained_label=name)
        table = res.table()
        results[name] = {"table": json.loads(table.to_json(orient="records")), "training": res.setup["training"],
                         "train_seconds": res.setup["train_seconds"], "wall_seconds": round(time.time() - t0, 1),
                         "n_test_movies": res.setup["n_test_movies"], "protocol": res.setup["protocol"]}
        (out / "eval.json").write_text(json.dumps(results, indent=2, default=str))
        (out / f"eval_{name}.txt").write_text(table.to_string(index=False))
        print(table.to_string(index=False), flush=True)
    return results


def ablation_key(out: Path, settings, args, batch_size: int) -> str:
    """The ablation's resume-file key: a digest of the input files, every setting that changes a
    result (the settings with their seeds, candidates, tokens per item, batch size), this script and
    the library code that computes the ranks. A rerun after any change starts a new file instead of
    reusing ranks computed from other data, settings or code. Not in it: --methods and --fractions,
    which only choose rows (the file holds one entry per method, fraction and fold)."""
    from lfr.digest import code_digest, files_digest, settings_digest

    values = settings.as_dict()
    values["xcross"] = {k: v for k, v in values["xcross"].items() if k != "cache_dir"}  # a location only
    parts = {
        "data": files_digest(out / f"{name}.parquet" for name in INPUT_FILES),
        "settings": settings_digest({"settings": values, "candidates": args.candidates,
                                     "eval_max_length": args.eval_max_length, "batch_size": batch_size}),
        "code": code_digest(ABLATION_CODE),
        "script": files_digest([Path(__file__)]),
    }
    return settings_digest(parts)[:16]


def run_ablation(movies, books, links, args, out: Path) -> dict:
    """X-Cross, its ablations and the data-fraction curve (``lfr.eval.xcross.evaluate_xcross``),
    resumable (progress file under --out); report under --out/ablation."""
    from lfr.eval.xcross import METHODS, evaluate_xcross
    from lfr.eval.xcross_report import write_xcross_report

    # the adapters as trained for the sample eval (cached)
    settings = bench_settings(args.max_length, cache_dir=str(out / "adapter_cache"))
    fractions = [float(q) for q in args.fractions.split(",")]
    methods = args.methods.split(",") if args.methods else list(METHODS)
    key = ablation_key(out, settings, args, batch_size=ABLATION_BATCH_SIZE)
    ev = evaluate_xcross(movies, books, links, settings, fractions=fractions, candidates=args.candidates or None,
                         methods=methods,
                         max_length=args.eval_max_length, batch_size=ABLATION_BATCH_SIZE,
                         progress_path=out / f"ablation_progress_{key}.jsonl")
    paths = write_xcross_report(ev, out / "ablation")
    print(Path(paths["report"]).read_text(), flush=True)
    return paths


def run_cost(books: pd.DataFrame, args, out: Path) -> dict:
    import torch

    from lfr.model.text import TextEncoder, resolve_encoder
    from lfr.model.xcross import DOMAINS, build_xcross
    from lfr.settings import with_values

    texts = [d for d in books["description"] if isinstance(d, str) and d][: args.n]
    name, folder = resolve_encoder("default")
    plain = TextEncoder(folder, pooling="mean", max_length=args.max_length, precision="fp32", name=name)
    settings = bench_settings(args.max_length)
    xc = build_xcross(settings.xcross, with_values(settings.model, {"encoder": "default"}))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # non-trivial weights: a trained model costs the same as these
        for d in DOMAINS:
            for p in xc.adapter_parameters(d).values():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.01)
        for p in xc.integrator.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 1e-4)
    runs = {"plain_encoder": lambda: plain.encode(texts, batch_size=32),
            "xcross_integrated": lambda: xc.encode_text(texts, 32, domain="book", integrate=True),
            "xcross_own_stream": lambda: xc.encode_text(texts, 32, domain="book", integrate=False)}
    cost = {"n_items": len(texts), "threads": args.threads, "max_length": args.max_length,
            "load_average": os.getloadavg(), "items_per_s": {}}
    for label, fn in runs.items():
        best = min(_timed(fn) for _ in range(args.repeats))
        cost["items_per_s"][label] = round(len(texts) / best, 1)
        print(f"{label}: {len(texts) / best:.1f} items/s", flush=True)
    cost["load_average_after"] = os.getloadavg()
    (out / "cost.json").write_text(json.dumps(cost, indent=2))
    return cost


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "work" / "xcross"))
    ap.add_argument("--only", choices=["inputs", "eval", "cost", "ablation"], default=None)
    ap.add_argument("--candidates", type=int, default=200, help="ablation: books ranked per film (0: all)")
    ap.add_argument("--eval-max-length", type=int, default=64, help="ablation: tokens per item")
    ap.add_argument("--fractions", default="1.0,0.25,0.5,0.75", help="ablation: fractions of the training links")
    ap.add_argument("--methods", default="", help="ablation: comma-separated rows to run (default: all)")
    ap.add_argument("--ablation", action="store_true")
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    movies, books, links = collect_inputs(out)
    n_two = int(movies["description"].str.contains("\n\n", regex=False).sum())
    print(f"inputs: {len(movies)} films ({n_two} with two texts), {len(books)} books, {len(links)} links")
    if args.only in (None, "eval"):
        run_eval(movies, books, links, args, out)
    if args.only == "ablation":
        run_ablation(movies, books, links, args, out)
    if args.only in (None, "cost"):
        run_cost(books, args, out)


if __name__ == "__main__":
    main()
