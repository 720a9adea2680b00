"""Does merging a film's two movie sources help? text-only and TF-IDF, merge_sources on vs off.

Not a speed benchmark: a quality measurement of ``validation.merge_sources`` on the linked
films (issue 9, item 1). Both catalogs are loaded twice (merge on / off); the linked films'
descriptions are the only thing that differs (the books are the same), so the books are
encoded once. Every linked film ranks the FULL book catalog; the report gives each metric
with its 95% bootstrap interval over films and the paired difference on - off.

    python bench/merge_sources.py --data ../shared/data [--conf model.chunking=on] [--cache /tmp/lfr_merge]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from lfr.eval import baselines  # noqa: E402
from lfr.eval.metrics import paired_difference, per_film_metrics, ranking_intervals, ranking_metrics, resolve_links  # noqa: E402
from lfr.settings import load_settings, with_values  # noqa: E402

KS = [1, 10, 100]


def load_variant(spark, cfg, merge: bool):
    from lfr.data import collect_driver_inputs

    inputs = collect_driver_inputs(spark, with_values(cfg, {"validation.merge_sources": merge}))
    return inputs.movies, inputs.books, inputs.links


def cached_features(model, texts: list[str], cache_dir: Path, tag: str) -> np.ndarray:
    key = hashlib.sha256(json.dumps([tag, texts]).encode()).hexdigest()[:16]
    path = cache_dir / f"{key}.npy"
    if path.exists():
        return np.load(path)
    feats = np.asarray(model.encode_text(texts, batch_size=32), dtype=np.float32)
    np.save(path, feats)
    return feats


def ranks_of(m: np.ndarray, b: np.ndarray, relevant) -> list[list[int]]:
    return ranking_metrics(baselines.score_matrix(m, b), relevant, ks=KS, return_ranks=True)["ranks"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data/sample")
    ap.add_argument("--conf", action="append", default=[])
    ap.add_argument("--cache", default="/tmp/lfr_merge_cache")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(int(os.environ.get("LFR_THREADS", "1")))
    from lfr.model import build_model
    from lfr.spark import build_session

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    cfg = load_settings(overrides=[f"paths.data_dir={Path(args.data).resolve()}", "spark.master=local[2]",
                                 "spark.driver.memory=2g", *args.conf])
    spark = build_session(cfg)
    spark.sparkContext.setLogLevel("ERROR")
    variants = {name: load_variant(spark, cfg, merge) for name, merge in (("merged", True), ("imdb_only", False))}
    spark.stop()
    movies0, books0, _ = variants["merged"]
    model = build_model(with_values(cfg.model, {"include_title": False}),
                        baselines.genre_lists(movies0) + baselines.genre_lists(books0))
    merged_desc = dict(zip(movies0["id"], movies0["description"]))
    keys = ("encoder", "pooling", "max_length", "chunking", "chunk_overlap", "chunk_pooling")
    tag = json.dumps({k: getattr(cfg.model, k) for k in keys}, sort_keys=True)
    ranks: dict[str, list] = {}
    for name, (movies, books, links) in variants.items():
        films = sorted(links["movie_id"].unique())
        eval_movies = movies.set_index("id").loc[films].reset_index()
        relevant, _ = resolve_links(zip(links["movie_id"], links["book_id"]), films, books["id"].tolist())
        b_text = cached_features(model, baselines.descriptions(books), cache, tag)
        m_text = cached_features(model, baselines.descriptions(eval_movies), cache, tag)
        ranks[f"text_only/{name}"] = ranks_of(baselines.l2_normalize(m_text), baselines.l2_normalize(b_text), relevant)
        tfidf = baselines.tfidf_method(baselines.descriptions(movies) + baselines.descriptions(books))
        ranks[f"tfidf/{name}"] = ranks_of(*tfidf.embed(eval_movies, books), relevant)
        n_merged = int(sum(merged_desc.get(i) != d for i, d in zip(eval_movies["id"], eval_movies["description"])))
        print(f"{name}: {len(movies)} films, {len(books)} books, {len(links)} links over {len(films)} films "
              f"({n_merged} linked films whose text differs from the merged variant's)")
    report(ranks)


def report(ranks: dict) -> None:
    iv = ranking_intervals(ranks, None, ks=KS, ndcg_k=10, seed=13)
    for method, values in iv["methods"].items():
        print(f"{method:22s} " + "  ".join(f"{m} {v['value']:.3f} [{v['lo']:.3f}, {v['hi']:.3f}]"
                                           for m, v in values.items()))
    for scorer in ("text_only", "tfidf"):
        on = per_film_metrics(ranks[f"{scorer}/merged"], KS, 10)
        off = per_film_metrics(ranks[f"{scorer}/imdb_only"], KS, 10)
        diffs = {m: paired_difference(on[m], off[m], seed=13) for m in on}
        print(f"{scorer} merged - imdb_only: " + "  ".join(
            f"{m} {d['diff']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]{' (noise)' if d['within_noise'] else ''}"
            for m, d in diffs.items()))


if __name__ == "__main__":
    main()
