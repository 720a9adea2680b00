"""``model.runtime: onnx``: the artifact's ONNX export run without torch, against the torch path.

The speed and the parity on the real encoder (500 real descriptions) are in bench/embed.py; here
the tiny random encoder checks the plumbing: the same vectors as torch fp32 (texts, windows,
pooling, genres, both heads), the FastText port against fasttext itself, no torch imported on
that path, and clear errors for what cannot run on it.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from lfr.errors import UsageError
from lfr.model import ArtifactError, GenreModel, build_model, load
from lfr.model.fasttext_np import NumpyGenreModel, fnv1a
from lfr.model.onnxrt import check_runtime, onnx_unready
from lfr.settings import with_values

ROOT = Path(__file__).resolve().parent.parent
LONG = ("A boy wizard goes to a school of magic, befriends two classmates and uncovers a plot against the "
        "headmaster while a dark lord gathers his followers in the forest beyond the lake. ")
DESCRIPTIONS = [LONG * (i % 4 + 1) + f"Item {i}." for i in range(24)] + ["", None, "Short.", "Ünïcödé — text"]
GENRES = [["Drama"], ["Épopée héroïque", "Drama"], None, [], ["Science Fiction", "Unseen Label"]] * 5 + [["Horror"]] * 3


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1)


@pytest.mark.parametrize("chunking,pooling,head", [("on", "cls", "residual"), ("off", "mean", "paper")])
def test_onnx_embeds_like_torch_fp32(tiny_model_cfg, toy_movies, toy_books, tmp_path, chunking, pooling, head):
    cfg = with_values(tiny_model_cfg, {"chunking": chunking, "pooling": pooling, "head": head, "max_length": 24,
                                       "chunk_overlap": 4 if chunking == "on" else 0, "precision": "fp32"})
    model = build_model(cfg, list(toy_movies["genres"]) + list(toy_books["genres"]))
    model.save(tmp_path / "a")
    torch_vecs = load(tmp_path / "a").embed(None, DESCRIPTIONS, GENRES, batch_size=5)
    onnx_model = load(tmp_path / "a", runtime="onnx")
    assert type(onnx_model).__name__ == "OnnxLightFusion"
    assert onnx_model.model_version == model.model_version and onnx_model.output_dim == model.output_dim
    if chunking == "on":   # long texts do make several windows on both paths
        rows, owner = onnx_model.text.token_windows(model.texts(None, DESCRIPTIONS))
        assert len(owner) > len(DESCRIPTIONS)
        assert rows["input_ids"] == model.text.token_windows(model.texts(None, DESCRIPTIONS))["input_ids"]
    onnx_vecs = onnx_model.embed(None, DESCRIPTIONS, GENRES, batch_size=7)
    assert onnx_vecs.dtype == np.float32 and onnx_vecs.shape == torch_vecs.shape
    np.testing.assert_allclose(np.linalg.norm(onnx_vecs, axis=1), 1.0, atol=1e-5)
    assert _cos(onnx_vecs, torch_vecs).min() >= 0.9999
    int8_model = load(tmp_path / "a", runtime="onnx", quantize="int8")
    int8 = int8_model.embed(None, DESCRIPTIONS, GENRES, batch_size=7)
    assert 0.98 < _cos(int8, torch_vecs).min() < 1.0 - 1e-7   # another model (int8 weights), close to fp32
    # an item's int8 vector does not depend on what else is embedded with it (per-tensor activation scales)
    alone = np.stack([int8_model.embed(None, [d], [g], batch_size=64)[0] for d, g in zip(DESCRIPTIONS, GENRES)])
    np.testing.assert_allclose(alone, int8, atol=1e-6)


def test_fasttext_port_equals_fasttext(tmp_path):
    corpus = [["Fantasy", "Young Adult"], ["Science Fiction", "Drama"], ["Drama", "Historical Fiction"],
              ["Comédie", "Drame"], ["Horror"]] * 10
    genre = GenreModel.train(corpus, dim=8, epochs=3, bucket=1000, seed=13)
    port = NumpyGenreModel.load(tmp_path / "g", genre.export_module(tmp_path / "g"))
    queries = [["Fantasy"], ["Sci-Fi", "Drama"], ["Comédie"], ["Épopée héroïque", "x"], [], None,
               ["Horror", "東京 noir"], ["a"], ["</s>"]]
    expected, has_expected = genre.vectors(queries)
    got, has = port.vectors(queries)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert has.tolist() == has_expected.tolist() and np.abs(got[3]).sum() > 0   # unseen labels get n-gram vectors
    # fastText's hash sign-extends each byte: differs from plain FNV-1a exactly on non-ASCII bytes
    assert fnv1a("abc") == 440920331 and fnv1a("é") != 0


def test_artifact_holds_the_export_and_onnx_loads_verify_it(tiny_artifact, tmp_path):
    manifest = json.loads((Path(tiny_artifact) / "manifest.json").read_text())
    for rel in ("onnx/encoder.onnx", "onnx/encoder.int8.onnx", "onnx/tokenizer.json", "onnx/genre.safetensors",
                "onnx/genre_words.json"):
        assert rel in manifest["files"], rel
    entry = next(e for e in json.loads((Path(tiny_artifact) / "modules.json").read_text()) if e["name"] == "onnx")
    assert entry["config"]["opset"] >= 17 and "torch.onnx.export" in entry["config"]["exporter"]
    bad = tmp_path / "bad"
    shutil.copytree(tiny_artifact, bad)
    with open(bad / "onnx" / "encoder.int8.onnx", "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\x01\x02")
    with pytest.raises(ArtifactError, match="encoder.int8.onnx"):
        load(bad, runtime="onnx", quantize="int8")


def test_what_cannot_run_on_onnx_is_refused_clearly():
    check_runtime("onnx", "int8", "auto")
    check_runtime("torch", "none", "bf16")
    with pytest.raises(UsageError, match="model.quantize=int8 needs model.runtime=onnx"):
        check_runtime("torch", "int8", "auto")
    with pytest.raises(UsageError, match="model.runtime=onnx runs fp32"):
        check_runtime("onnx", "none", "bf16")
    with pytest.raises(UsageError, match="model.runtime must be one of"):
        check_runtime("tensorrt", "none", "auto")
    assert "X-Cross has no ONNX export" in onnx_unready({"kind": "xcross", "files": {}})
    assert "no ONNX export" in onnx_unready({"files": {"encoder/model.safetensors": {}}})
    assert onnx_unready({"files": {"onnx/encoder.onnx": {}}}) == ""


def test_the_onnx_path_imports_no_torch_transformers_or_fasttext(tiny_artifact):
    """What an executor of the packed environment does (the readers' and the embedding UDFs' modules,
    then the model), in a process where what that environment lacks cannot be imported: torch,
    transformers, fasttext, and the driver's config stack and Delta API."""
    code = textwrap.dedent(f"""
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "transformers", "fasttext", "omegaconf", "yaml", "delta"):
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        import lfr.data.readers
        import lfr.embed.udf
        from lfr.embed.ship import ArtifactRef
        from lfr.embed.udf import ModelCache
        from lfr.model.artifact import read_model_version
        ref = ArtifactRef(read_model_version({str(tiny_artifact)!r}), "path", {str(tiny_artifact)!r}, runtime="onnx")
        model = ModelCache().get(ref)
        vecs = model.embed(None, ["A boy wizard.", None], [["Fantasy"], None], batch_size=2)
        assert vecs.shape[0] == 2
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "fasttext")))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
