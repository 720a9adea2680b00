"""bench/xcross_sample.py: the ablation's resume file is keyed by everything its ranks depend on."""
import importlib.util
from argparse import Namespace
from pathlib import Path

import pandas as pd

from lfr.settings import with_values

ROOT = Path(__file__).resolve().parent.parent


def _bench():
    spec = importlib.util.spec_from_file_location("xcross_sample", ROOT / "bench" / "xcross_sample.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_resume_key_changes_with_data_settings_seeds_and_code(tmp_path, monkeypatch):
    mod = _bench()
    for name in mod.INPUT_FILES:
        frame = pd.DataFrame({"id": [f"{name}1", f"{name}2"], "description": ["a", "b"]})
        frame.to_parquet(tmp_path / f"{name}.parquet")
    settings = mod.bench_settings(64, cache_dir=str(tmp_path / "adapter_cache"))
    assert settings.eval.distilbert_path is None and settings.xcross.max_length == settings.model.max_length == 64
    args = Namespace(candidates=200, eval_max_length=64, fractions="1.0", methods="")

    def key(settings=settings, args=args, batch_size=32):
        return mod.ablation_key(tmp_path, settings, args, batch_size)

    base = key()
    assert key() == base and len(base) == 16
    assert key(settings=with_values(settings, {"xcross.cache_dir": "/elsewhere"})) == base   # a location, not a setting
    assert key(args=Namespace(**{**vars(args), "methods": "text_only"})) == base   # only chooses rows
    changed = [
        key(settings=with_values(settings, {"eval.seed": settings.eval.seed + 1})),             # a seed
        key(settings=with_values(settings, {"xcross.adapter_steps": 21})),                      # a setting
        key(args=Namespace(**{**vars(args), "candidates": 0})),
        key(args=Namespace(**{**vars(args), "eval_max_length": 32})),
        key(batch_size=16),
    ]
    pd.DataFrame({"id": ["links1"], "description": ["a"]}).to_parquet(tmp_path / "links.parquet")
    changed.append(key())                                                  # the data
    monkeypatch.setattr("lfr.digest.code_digest", lambda packages: "changed")
    changed.append(key())                                                  # the code
    assert len({base, *changed}) == len(changed) + 1


def test_the_cached_inputs_are_keyed_by_the_catalog_files_and_settings(tmp_path):
    import shutil

    from lfr.settings import load_settings

    mod = _bench()
    data = tmp_path / "data"
    shutil.copytree(ROOT / "data" / "sample", data)
    settings = load_settings(overrides=[f"paths.data_dir={data}"], environ={})
    base = mod.inputs_source_key(settings)
    assert mod.inputs_source_key(load_settings(overrides=[f"paths.data_dir={data}"], environ={})) == base
    assert mod.inputs_source_key(with_values(settings, {"validation.min_description_chars": 2})) != base
    pairs = data / "adaptations_dev.csv"
    pairs.write_text(pairs.read_text() + "\n")
    assert mod.inputs_source_key(settings) != base
