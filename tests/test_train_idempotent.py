"""jobs/train.py does not retrain (and so does not invalidate every embedding) when nothing changed."""
from pathlib import Path

import pandas as pd

from lfr.settings import load_settings
from lfr.train.job import inputs_key


def _frames():
    movies = pd.DataFrame({"id": ["m1", "m2"], "title": ["A", "B"], "description": ["x", "y"],
                           "genres": [["Drama"], []]})
    books = pd.DataFrame({"id": ["b1"], "title": ["C"], "description": ["z"], "genres": [["Fiction"]]})
    pairs = pd.DataFrame({"movie_id": ["m1"], "book_id": ["b1"]})
    return movies, books, pairs


def test_inputs_key_changes_with_data_and_settings_only():
    cfg = load_settings(environ={})
    movies, books, pairs = _frames()
    key = inputs_key(movies, books, pairs, cfg)
    # row order does not matter
    assert inputs_key(movies.iloc[::-1], books, pairs, cfg) == key
    changed = movies.copy()
    changed.loc[0, "description"] = "x2"
    assert inputs_key(changed, books, pairs, cfg) != key
    assert inputs_key(movies, books, None, cfg) != key
    assert inputs_key(movies, books, pairs, load_settings(overrides=["train.lr=1e-3"], environ={})) != key


def test_inputs_key_changes_with_the_training_code(monkeypatch):
    import lfr.train.job as job

    cfg = load_settings(environ={})
    movies, books, pairs = _frames()
    key = inputs_key(movies, books, pairs, cfg)
    assert inputs_key(movies, books, pairs, cfg) == key
    monkeypatch.setattr(job, "training_code_digest", lambda kind: "0" * 64)
    assert inputs_key(movies, books, pairs, cfg) != key


def test_code_digest_follows_every_source_file(tmp_path):
    """A copy of the package digests like the package; an edited, added or renamed file changes it."""
    import shutil

    import lfr.model
    from lfr.digest import code_digest, sources_digest

    src = tmp_path / "model"
    shutil.copytree(Path(lfr.model.__file__).parent, src, ignore=shutil.ignore_patterns("__pycache__"))
    (src / "notes.txt").write_text("not source")                    # not a .py file: ignored
    assert sources_digest({"lfr.model": src}) == code_digest(["lfr.model"])
    before = sources_digest({"lfr.model": src})
    (src / "fusion.py").write_text((src / "fusion.py").read_text() + "\n# a fix\n")
    edited = sources_digest({"lfr.model": src})
    assert edited != before
    (src / "fusion.py").rename(src / "fusion2.py")
    assert sources_digest({"lfr.model": src}) not in (before, edited)
    assert code_digest(["lfr.model", "lfr.train"]) == code_digest(["lfr.train", "lfr.model"])


class _FakeModel:
    """Publishes a one-file artifact with the manifest the job writes (no training needed)."""

    def save(self, path, extra_manifest=None):
        from lfr.model.artifact import write_manifest

        Path(path).mkdir(parents=True)
        (Path(path) / "weights.bin").write_bytes(b"w")
        return write_manifest(path, {"kind": "fake"}, extra_manifest)["model_version"]


def test_the_job_skips_unchanged_and_retrains_after_a_code_change(monkeypatch, tmp_path):
    """run_training: nothing changed -> no training; the training code changed -> trained again
    without --force."""
    from types import SimpleNamespace

    import lfr.train.job as job

    cfg = load_settings(environ={})
    monkeypatch.setattr(job, "collect_inputs", lambda spark, cfg, **kw: _frames())
    trained = []

    def fake_train(kind, movies, books, positives, cfg, progress):
        trained.append(kind)
        result = SimpleNamespace(model=_FakeModel(), manifest_extra=lambda: {"recipe": "fake"},
                                 settings={"recipe": "fake"}, pair_stats={}, seconds=0.0)
        return result, "history"

    monkeypatch.setattr(job, "_train", fake_train)
    model_dir = str(tmp_path / "model")
    result, v1 = job.run_training(None, cfg, model_dir=model_dir)
    assert result is not None and trained == ["lightfusionrec"]
    assert job.run_training(None, cfg, model_dir=model_dir) == (None, v1)     # nothing changed: skipped
    assert trained == ["lightfusionrec"]
    real = job.training_code_digest("lightfusionrec")
    monkeypatch.setattr(job, "training_code_digest", lambda kind: real[::-1])  # a fix to the training code
    result, v2 = job.run_training(None, cfg, model_dir=model_dir)
    assert result is not None and v2 != v1 and len(trained) == 2
    assert job.run_training(None, cfg, model_dir=model_dir) == (None, v2)
