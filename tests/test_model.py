"""Model unit tests on the tiny random encoder (fast; no semantic assertions)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lfr.config import ConfigError
from lfr.model import ArtifactError, FusionHead, GenreModel, build_model, load, normalise_genres
from lfr.settings import with_values


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


GENRE_CORPUS = (
    [["Science Fiction", "Space Opera", "Adventure"], ["Sci-Fi", "Space Opera", "Action"],
     ["Science Fiction", "Adventure", "Action"]] * 20
    + [["Romance", "Drama", "Love Story"], ["Romance", "Comedy", "Love Story"], ["Drama", "Romance"]] * 20
    + [["Cooking", "Nonfiction"], ["Cooking", "Food"], []] * 5
)


def test_normalise_genres():
    assert normalise_genres([" Historical  Fiction", "historical fiction", "Sci-Fi", None, ""]) == [
        "historical_fiction", "sci-fi"]
    assert normalise_genres(None) == [] and normalise_genres(float("nan")) == []
    assert normalise_genres(np.array(["Drama", "Crime"], dtype=object)) == ["drama", "crime"]
    assert normalise_genres("Drama") == ["drama"]


def test_genre_model_similarity_and_empty():
    gm = GenreModel.train(GENRE_CORPUS, dim=16, epochs=30, bucket=2000, seed=7)
    vecs, has = gm.vectors([["Science Fiction", "Adventure"], ["Sci-Fi", "Space Opera"], ["Cooking"], [], None])
    assert vecs.shape == (5, 16) and vecs.dtype == np.float32
    assert has.tolist() == [True, True, True, False, False]
    assert not vecs[3].any() and not vecs[4].any()
    assert _cos(vecs[0], vecs[1]) > _cos(vecs[0], vecs[2])
    # Deterministic (thread=1 + seed): the same corpus gives the same vectors.
    again, _ = GenreModel.train(GENRE_CORPUS, dim=16, epochs=30, bucket=2000, seed=7).vectors([["Romance"]])
    first, _ = gm.vectors([["Romance"]])
    np.testing.assert_array_equal(first, again)


def test_genre_model_needs_some_genres():
    with pytest.raises(ValueError, match="no item"):
        GenreModel.train([[], None], dim=4, epochs=1, bucket=1000)
    with pytest.raises(ValueError, match="too small"):
        GenreModel.train([["drama"]], dim=4, epochs=1, bucket=100)


def test_fusion_head_shapes_and_unit_norm():
    head = FusionHead(text_dim=12, genre_dim=5, output_dim=7, seed=1)
    gen = torch.Generator().manual_seed(3)   # seeded inputs: every row has a non-zero ReLU output
    out = head(torch.randn(9, 12, generator=gen), torch.randn(9, 5, generator=gen))
    assert out.shape == (9, 7)
    np.testing.assert_allclose(out.norm(dim=1).detach().numpy(), 1.0, atol=1e-5)   # unit rows, none all-zero
    assert torch.unique(out.detach(), dim=0).shape[0] == 9                        # distinct inputs, distinct rows
    # Zero-norm guard: an all-zero ReLU output stays zero, no NaN.
    with torch.no_grad():
        head.fuse.weight.zero_()
        head.fuse.bias.fill_(-1.0)
    zero = head(torch.randn(2, 12), torch.randn(2, 5))
    assert torch.isfinite(zero).all() and not zero.any()
    # Seeded init is reproducible and leaves the global RNG alone.
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    a, b = FusionHead(4, 3, seed=5), FusionHead(4, 3, seed=5)
    assert torch.equal(torch.rand(1), before)
    assert torch.equal(a.fuse.weight, b.fuse.weight) and a.output_dim == 4


def test_embed_contract(tiny_model):
    m = tiny_model
    titles = ["A", None, "C"]
    descs = ["A crime story in a big city.", None, ""]
    genres = [["Crime", "Drama"], None, np.array(["Sci-Fi"], dtype=object)]
    out = m.embed(titles, descs, genres, batch_size=2)
    assert out.shape == (3, m.output_dim) == (3, 32) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    feats = m.encode_text(["hello", None])
    assert feats.shape == (2, m.text_dim) and feats.dtype == np.float32
    gv, has = m.genre_vectors([["Crime"], []])
    assert gv.shape == (2, m.genre_dim) and has.tolist() == [True, False]
    assert len(m.model_version) == 16 and m.model_version != "unsaved"
    # Batch size does not change results beyond float rounding.
    np.testing.assert_allclose(m.embed(titles, descs, genres, batch_size=64), out, atol=1e-5)


def test_distilbert_path_drops_token_type_ids(tiny_model):
    enc = tiny_model.text
    assert enc.model_type == "distilbert" and enc.pooling == "cls"
    assert "token_type_ids" not in enc.tokenize(["two words"])
    ids = enc.tokenize(["word " * 500])["input_ids"]
    assert ids.shape[1] == enc.max_length == 64  # explicit truncation


def test_mean_pooling_and_bf16(tiny_model_cfg, tiny_encoder_dir):
    from lfr.model import TextEncoder

    fp32 = TextEncoder(tiny_encoder_dir, pooling="mean", max_length=32, precision="fp32")
    bf16 = TextEncoder(tiny_encoder_dir, pooling="mean", max_length=32, precision="bf16")
    texts = ["short", "a somewhat longer text with more tokens in it", ""]
    seen = []   # the bf16 path must really run: the encoder's layers compute in bfloat16 under autocast
    hook = bf16.model.transformer.layer[0].attention.q_lin.register_forward_hook(
        lambda _m, _i, output: seen.append(output.dtype))
    a, b = fp32.encode(texts, batch_size=2), bf16.encode(texts)
    hook.remove()
    assert bf16.precision == "bf16" and seen and set(seen) == {torch.bfloat16}
    assert np.abs(a - b).max() > 1e-4          # bf16 rounding shows: an ignored precision gives fp32's numbers
    assert a.dtype == b.dtype == np.float32
    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert (cos > 0.99).all()
    # Mean pooling ignores padding: alone or next to a long text, same vector.
    alone = fp32.encode(["short"])
    np.testing.assert_allclose(alone[0], a[0], atol=1e-5)


def test_precision_auto_decision():
    from lfr.model.text import resolve_precision

    avx2 = {"capability": "AVX2", "avx512_bf16": False, "amx_bf16": False}
    avx512 = {"capability": "AVX512", "avx512_bf16": False, "amx_bf16": False}
    sapphire = {"capability": "AVX512", "avx512_bf16": True, "amx_bf16": True}
    cooper = {"capability": "AVX512", "avx512_bf16": True, "amx_bf16": False}
    assert resolve_precision("auto", avx2)[0] == "fp32"
    assert resolve_precision("auto", avx512)[0] == "fp32"  # AVX-512 without the BF16 extension: emulated
    assert (resolve_precision("auto", sapphire)
            == ("bf16", "auto: CPU capability AVX512 with native amx_bf16+avx512_bf16"))
    assert resolve_precision("auto", cooper)[0] == "bf16"
    assert "AVX2" in resolve_precision("auto", avx2)[1]
    # Native flags but the dispatch capped below them (ATEN_CPU_CAPABILITY / ONEDNN_MAX_CPU_ISA): emulated.
    assert resolve_precision("auto", {**cooper, "capability": "AVX2"}) == (
        "fp32", "auto: CPU capability AVX2, native avx512_bf16 unused (torch dispatch capped at AVX2): "
                "emulated bf16 is slower")
    assert resolve_precision("auto", {**sapphire, "onednn_max_isa": "AVX2"})[0] == "fp32"
    assert resolve_precision("auto", {**sapphire, "onednn_max_isa": "AVX512_CORE_VNNI"})[0] == "fp32"
    assert resolve_precision("auto", {**sapphire, "onednn_max_isa": "AVX512_CORE_AMX"})[0] == "bf16"
    assert resolve_precision("auto", {**cooper, "onednn_max_isa": "ALL"})[0] == "bf16"
    # Explicit settings win whatever the CPU.
    assert resolve_precision("bf16", avx2)[0] == "bf16" and resolve_precision("fp32", sapphire)[0] == "fp32"
    with pytest.raises(ValueError, match="model.precision"):
        resolve_precision("fp16", avx2)


def test_precision_auto_is_saved_as_requested_and_resolved_at_load(tiny_model_cfg, toy_movies, tmp_path, caplog,
                                                                    monkeypatch):
    import logging

    from lfr.model import text as text_mod

    monkeypatch.setattr(text_mod, "cpu_bf16_capability",
                        lambda: {"capability": "AVX2", "avx512_bf16": False, "amx_bf16": False})
    monkeypatch.setattr(text_mod, "_LOGGED_PRECISION", set())
    with caplog.at_level(logging.INFO, logger="lfr.model.text"):
        m = build_model(with_values(tiny_model_cfg, {"precision": "auto"}), list(toy_movies["genres"]))
        build_model(with_values(tiny_model_cfg, {"precision": "auto"}), list(toy_movies["genres"]))
    assert m.text.requested_precision == "auto" and m.text.precision == "fp32"
    logged = [r.getMessage() for r in caplog.records if "precision" in r.getMessage()]
    assert len(logged) == 1 and "AVX2" in logged[0]  # once per process
    m.save(tmp_path / "a")
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["precision"] == "auto"
    monkeypatch.setattr(text_mod, "cpu_bf16_capability",
                        lambda: {"capability": "AVX512", "avx512_bf16": True, "amx_bf16": True})
    assert load(tmp_path / "a").text.precision == "bf16"  # the loading machine decides
    assert load(tmp_path / "a", precision="fp32").text.precision == "fp32"


def test_save_load_round_trip(tiny_artifact, tiny_model_cfg, tmp_path):
    m = load(tiny_artifact)
    args = (["x", "y"], ["A heist movie.", "Love in Paris."], [["Crime"], ["Romance", "Comedy"]])
    first = m.embed(*args)
    manifest = json.loads((Path(tiny_artifact) / "manifest.json").read_text())
    assert manifest["model_version"] == m.model_version
    assert set(manifest["files"]) >= {"genre.bin", "fusion.safetensors", "encoder/config.json",
                                      "encoder/model.safetensors"}
    assert manifest["pooling"] == "cls" and manifest["dims"] == {"text": 32, "genre": 8, "output": 32}
    assert manifest["training"]["fixture"]
    # Re-saving a loaded model gives an artifact that embeds identically.
    out = tmp_path / "resaved"
    version = m.save(out)
    np.testing.assert_array_equal(load(out).embed(*args), first)
    assert version == json.loads((out / "manifest.json").read_text())["model_version"]
    with pytest.raises(FileExistsError):
        m.save(out)


def _copy(src: str, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_tampered_weights_refused(tiny_artifact, tmp_path):
    art = _copy(tiny_artifact, tmp_path / "a")
    data = bytearray((art / "fusion.safetensors").read_bytes())
    data[-1] ^= 0x01
    (art / "fusion.safetensors").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="fusion.safetensors"):
        load(art)


def _resign(art: Path) -> None:
    """Re-write the manifest over the folder's current files (as a legitimate save would)."""
    from lfr.model.artifact import write_manifest

    body = json.loads((art / "manifest.json").read_text())
    (art / "manifest.json").unlink()
    write_manifest(art, {k: v for k, v in body.items() if k not in ("files", "format", "model_version")})


def test_each_part_saves_itself_in_modules_json(tiny_artifact, tmp_path):
    modules = json.loads((Path(tiny_artifact) / "modules.json").read_text())
    assert [(e["idx"], e["name"], e["type"], e["path"]) for e in modules] == [
        (0, "text", "text_encoder", "encoder"), (1, "genre", "fasttext_genre", "genre.bin"),
        (2, "head", f"head_{load(tiny_artifact).head.kind}", "fusion.safetensors"),
        (3, "onnx", "onnx_export", "onnx")]   # model.runtime: onnx (tests/test_onnx_runtime.py)
    text, genre, head = (e["config"] for e in modules[:3])
    assert text["pooling"] == "cls" and text["max_length"] > 0 and genre == {"dim": 8}
    assert (head["text_dim"], head["genre_dim"], head["output_dim"]) == (32, 8, 32)
    args = (None, ["A heist movie.", "Love in Paris."], [["Crime"], ["Romance"]])
    expected = load(tiny_artifact).embed(*args)

    legacy = _copy(tiny_artifact, tmp_path / "legacy")      # saved before modules.json: same model
    (legacy / "modules.json").unlink()
    _resign(legacy)
    np.testing.assert_array_equal(load(legacy).embed(*args), expected)

    for bad, match in ((dict(modules[2], type="pickle"), "type 'pickle'"),
                       (dict(modules[2], path="../../etc/passwd"), "path"),
                       ({k: v for k, v in modules[1].items() if k != "config"}, "not a valid module list")):
        art = _copy(tiny_artifact, tmp_path / f"bad{len(list(tmp_path.iterdir()))}")
        entries = [bad if e["name"] == bad["name"] else e for e in modules]
        (art / "modules.json").write_text(json.dumps(entries))
        _resign(art)
        with pytest.raises(ArtifactError, match=f"modules.json.*{match}"):
            load(art)


def test_tampered_manifest_missing_and_extra_files_refused(tiny_artifact, tmp_path):
    art = _copy(tiny_artifact, tmp_path / "m")
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["pooling"] = "mean"
    (art / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="manifest.json was modified"):
        load(art)

    art2 = _copy(tiny_artifact, tmp_path / "g")
    (art2 / "genre.bin").unlink()
    with pytest.raises(ArtifactError, match="missing file genre.bin"):
        load(art2)

    art3 = _copy(tiny_artifact, tmp_path / "x")
    (art3 / "encoder" / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(ArtifactError, match="pytorch_model.bin"):
        load(art3)

    with pytest.raises(ArtifactError, match="not a directory"):
        load(tmp_path / "nope")


def test_build_model_settings(tiny_model_cfg, toy_movies):
    with pytest.raises(ConfigError, match="unknown setting 'poolng'"):
        with_values(tiny_model_cfg, {"poolng": "cls"})
    with pytest.raises(TypeError, match="ModelSettings"):   # no partial dicts: the yaml is the one default
        build_model({"encoder": "default"}, list(toy_movies["genres"]))
    with pytest.raises(FileNotFoundError, match="encoder folder not found"):
        build_model(with_values(tiny_model_cfg, {"encoder": "/nonexistent/enc"}), list(toy_movies["genres"]))
    m = build_model(with_values(tiny_model_cfg, {"include_title": True, "output_dim": 16, "head": "paper"}),
                    list(toy_movies["genres"]))
    assert m.output_dim == 16 and m.model_version == "unsaved"
    assert m.texts(["Dune", None], ["Spice.", None]) == ["Dune. Spice.", ""]
    with pytest.raises(ValueError, match="model.head=paper"):
        build_model(with_values(tiny_model_cfg, {"output_dim": 16}), list(toy_movies["genres"]))
    with pytest.raises(ValueError, match="model.head"):
        build_model(with_values(tiny_model_cfg, {"head": "mlp"}), list(toy_movies["genres"]))


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_untrained_residual_head_is_exactly_text_only(tiny_model_cfg, toy_movies, toy_books):
    corpus = list(toy_movies["genres"]) + list(toy_books["genres"])
    m = build_model(tiny_model_cfg, corpus)  # default head: residual
    assert m.head.kind == "residual" and m.output_dim == m.text_dim
    feats = {}
    for name, frame in (("movies", toy_movies), ("books", toy_books)):
        text = m.encode_text(list(frame["description"]))
        gvec, _ = m.genre_vectors(list(frame["genres"]))
        feats[name] = (text, m.embed_features(text, gvec))
    for text, emb in feats.values():
        np.testing.assert_allclose(emb, _l2(text), atol=1e-6)
    fused = feats["movies"][1] @ feats["books"][1].T
    text_only = _l2(feats["movies"][0]) @ _l2(feats["books"][0]).T
    np.testing.assert_array_equal(np.argsort(-fused, axis=1, kind="stable"),
                                  np.argsort(-text_only, axis=1, kind="stable"))
    # Moving the residual moves the embedding (it is not a constant identity).
    with torch.no_grad():
        m.head.delta.weight.normal_(0.0, 0.1)
    text, _ = feats["movies"]
    gvec, _ = m.genre_vectors(list(toy_movies["genres"]))
    assert np.abs(m.embed_features(text, gvec) - _l2(text)).max() > 1e-3


def _perturbed(cfg, corpus, head):
    m = build_model(with_values(cfg, {"head": head}), corpus)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        with torch.no_grad():
            for p in m.head.parameters():
                p.add_(0.05 * torch.randn_like(p))
    return m


@pytest.mark.parametrize("head", ["residual", "paper"])
def test_save_load_each_head(tiny_model_cfg, toy_movies, tmp_path, head):
    corpus = list(toy_movies["genres"])
    m = _perturbed(tiny_model_cfg, corpus, head)
    args = (None, ["A heist movie.", "Love in Paris."], [["Crime"], ["Romance"]])
    m.save(tmp_path / head)
    manifest = json.loads((tmp_path / head / "manifest.json").read_text())
    assert manifest["head"] == {"kind": head, "text_dim": 32, "genre_dim": 8, "output_dim": 32}
    assert manifest["chunking"] == {"mode": "on", "overlap": 0, "pooling": "length"}   # conf/lfr.yaml's
    back = load(tmp_path / head)
    assert back.head.kind == head
    np.testing.assert_array_equal(back.embed(*args), m.embed(*args))


def test_legacy_artifact_loads_with_the_paper_head(tiny_model_cfg, toy_movies, tmp_path):
    from lfr.model.artifact import write_manifest

    legacy = with_values(tiny_model_cfg, {"chunking": "off", "chunk_pooling": "mean"})   # before chunking existed
    m = _perturbed(legacy, list(toy_movies["genres"]), "paper")
    m.save(tmp_path / "old")
    manifest = json.loads((tmp_path / "old" / "manifest.json").read_text())
    for key in ("head", "chunking", "files", "format", "model_version"):
        manifest.pop(key)  # what an artifact written before heads and chunking existed looks like
    write_manifest(tmp_path / "old", manifest)
    back = load(tmp_path / "old")
    assert back.head.kind == "paper" and back.text.chunking == "off"
    args = (None, ["A heist movie."], [["Crime"]])
    np.testing.assert_array_equal(back.embed(*args), m.embed(*args))


def test_pool_windows():
    from lfr.model import pool_windows

    vecs = np.array([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0], [0.0, 4.0]], dtype=np.float32)
    owner = np.array([0, 0, 1, 2])
    weight = np.array([3.0, 1.0, 7.0, 2.0], dtype=np.float32)
    np.testing.assert_allclose(pool_windows(vecs, owner, weight, 3, "mean"), [[2.0, 1.0], [5.0, 5.0], [0.0, 4.0]])
    np.testing.assert_allclose(pool_windows(vecs, owner, weight, 3, "length"), [[1.5, 0.5], [5.0, 5.0], [0.0, 4.0]])
    with pytest.raises(ValueError, match="chunk_pooling"):
        pool_windows(vecs, owner, weight, 3, "max")


def test_chunking_windows_and_pooling(tiny_encoder_dir):
    from lfr.model import TextEncoder

    kw = dict(pooling="mean", max_length=16, precision="fp32")
    off = TextEncoder(tiny_encoder_dir, **kw)
    on = TextEncoder(tiny_encoder_dir, chunking="on", chunk_overlap=4, **kw)
    short = "a short text"
    long = " ".join(f"word{i} story of a ship and its crew" for i in range(12))
    # Shorter than one window: exactly the unchunked vector.
    np.testing.assert_array_equal(on.encode([short]), off.encode([short]))
    vecs, owner, weight = on.encode_windows([short, long])
    n_long = int((owner == 1).sum())
    assert (owner == 0).sum() == 1 and n_long >= 3
    assert weight.max() == 14 and (weight >= 1).all()  # 16 tokens minus [CLS] and [SEP]
    ids = on.token_windows([long])["input_ids"]
    assert all(len(w) <= 16 for w in ids) and ids[0][-5:-1] == ids[1][1:5]  # consecutive windows share 4 tokens
    assert ids[0] == off.token_windows([long])["input_ids"][0]  # the first window is the truncated text
    pooled = on.encode([short, long])
    np.testing.assert_allclose(pooled[1], vecs[owner == 1].mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(pooled[0], off.encode([short])[0], atol=1e-6)
    assert np.abs(pooled[1] - off.encode([long])[0]).max() > 1e-4  # the tail of the text counts
    weighted = TextEncoder(tiny_encoder_dir, chunking="on", chunk_overlap=4, chunk_pooling="length",
                           **kw).encode([long])
    w = weight[owner == 1]
    np.testing.assert_allclose(weighted[0], (vecs[owner == 1] * w[:, None]).sum(0) / w.sum(), atol=1e-5)
    with pytest.raises(ValueError, match="model.chunking"):
        TextEncoder(tiny_encoder_dir, chunking="yes", **kw)
