"""X-Cross mechanics on the tiny random DistilBERT (tests/fixtures_model.py): adapters, integrator,
artifact. Embeddings of a random encoder mean nothing: only exact equalities and plumbing are
asserted here."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from lfr.config import ConfigError
from lfr.model import LayerIntegrator
from lfr.model.artifact import ArtifactError
from lfr.model.xcross import DOMAINS, build_xcross, load
from lfr.settings import load_settings, with_values

FILMS = ["Astronauts and a rogue computer travel to Jupiter.", "Two students fall in love despite their families.",
         "A gang plans the perfect robbery.", ""]
BOOKS = ["A spaceship returns to Jupiter to find out what went wrong.", "Love letters exchanged in Paris.",
         "Thieves break into a bank vault.", "Recipes for every day."]


def _randomise(params, seed: int, scale: float = 0.5) -> None:
    """Non-zero weights (LoRA B starts at zero, the integrator at zero: both would be no-ops)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in params:
            p.copy_(torch.randn(p.shape, generator=gen) * scale)


def _adapters(model, domain):
    return list(model.adapter_parameters(domain).values())


def _build(encoder: str, precision: str = "fp32", max_length: int = 64):
    s = load_settings(environ={})
    return build_xcross(with_values(s.xcross, {"encoder": encoder, "max_length": max_length}),
                        with_values(s.model, {"precision": precision}))


@pytest.fixture()
def xmodel(tiny_encoder_dir):
    model = _build(tiny_encoder_dir)
    for i, d in enumerate(DOMAINS):
        _randomise(_adapters(model, d), seed=10 + i)
    return model


def _reference(tiny_encoder_dir, model, domain, texts):
    """Plain transformers + peft with ONE adapter (no mixed batches, no integrator), mean pooled."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel

    base = AutoModel.from_pretrained(tiny_encoder_dir, dtype=torch.float32, use_safetensors=True)
    cfg = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_lin", "v_lin"])
    ref = get_peft_model(base, cfg, adapter_name=domain)
    own = model.adapter_parameters(domain)
    with torch.no_grad():
        for name, p in ref.base_model.model.named_parameters():
            if ".lora_" in name:
                p.copy_(own[name])
    ref.eval()
    enc = model.tokenize(texts)
    with torch.inference_mode():
        hidden = ref.base_model.model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    vec = ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)).numpy()
    return vec / np.linalg.norm(vec, axis=1, keepdims=True)


def test_adapters_are_lora_rank8_on_query_value(xmodel):
    names = list(xmodel.adapter_parameters("film"))
    assert names and all(".q_lin." in n or ".v_lin." in n for n in names)
    assert {tuple(p.shape) for p in xmodel.adapter_parameters("book").values()} == {(8, 32), (32, 8)}
    assert not any(p.requires_grad for p in xmodel.net.parameters())


def test_untrained_xcross_is_base_encoder_with_the_items_domain_adapter(tiny_encoder_dir, xmodel):
    assert xmodel.integrator.is_identity()
    for domain, texts in (("film", FILMS), ("book", BOOKS)):
        integrated = xmodel.embed(None, texts, None, batch_size=8, domain=domain, integrate=True)
        own_stream = xmodel.embed(None, texts, None, batch_size=8, domain=domain, integrate=False)
        np.testing.assert_array_equal(integrated, own_stream)
        np.testing.assert_allclose(integrated, _reference(tiny_encoder_dir, xmodel, domain, texts), rtol=0, atol=1e-6)


def test_adapters_change_only_their_own_domains_outputs(xmodel):
    before = {d: xmodel.embed(None, FILMS, None, domain=d, integrate=True) for d in DOMAINS}
    _randomise(_adapters(xmodel, "book"), seed=99)
    after = {d: xmodel.embed(None, FILMS, None, domain=d, integrate=True) for d in DOMAINS}
    np.testing.assert_array_equal(after["film"], before["film"])
    assert np.abs(after["book"] - before["book"]).max() > 1e-3
    _randomise(_adapters(xmodel, "film"), seed=98)
    np.testing.assert_array_equal(xmodel.embed(None, FILMS, None, domain="book", integrate=True), after["book"])


def test_trained_integrator_mixes_the_other_domains_stream(xmodel):
    _randomise(xmodel.integrator.parameters(), seed=5, scale=0.01)
    assert not xmodel.integrator.is_identity()
    films = xmodel.embed(None, FILMS, None, domain="film")  # 'auto' now integrates
    assert np.abs(films - xmodel.embed(None, FILMS, None, domain="film", integrate=False)).max() > 1e-4
    _randomise(_adapters(xmodel, "book"), seed=77)
    assert np.abs(films - xmodel.embed(None, FILMS, None, domain="film")).max() > 1e-4


def test_layer_integrator_formula():
    torch.manual_seed(0)
    streams = torch.randn(2, 3, 5, 4)
    layer = LayerIntegrator(dim=4, n_domains=2)
    assert torch.equal(layer(streams), streams)
    with torch.no_grad():
        layer.mix.bias.copy_(torch.tensor([1.0, -0.5, 0.25, 2.0]))  # s_film-1, s_book-1, g_film<-book, g_book<-film
    out = layer(streams)
    torch.testing.assert_close(out[0], 2.0 * streams[0] + 0.25 * streams[1])
    torch.testing.assert_close(out[1], 0.5 * streams[1] + 2.0 * streams[0])


def test_embed_contract_and_domain_view(xmodel):
    vecs = xmodel.embed(["t"] * 4, BOOKS, [["x"], None, [], ["y"]], batch_size=3, domain="books")
    assert vecs.dtype == np.float32 and vecs.shape == (4, xmodel.output_dim)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-6)
    view = xmodel.for_domain("book")
    np.testing.assert_array_equal(view.embed(["t"] * 4, BOOKS, [None] * 4, 3), vecs)
    with pytest.raises(ValueError, match="domain"):
        xmodel.embed(None, BOOKS, None)
    with pytest.raises(ValueError, match="genre lists"):
        xmodel.embed(None, BOOKS, [None], domain="book")


def test_save_load_round_trip(tmp_path, xmodel):
    _randomise(xmodel.integrator.parameters(), seed=3, scale=0.01)
    version = xmodel.save(tmp_path / "x", extra_manifest={"training": {"note": "test"}})
    loaded = load(tmp_path / "x")
    assert loaded.model_version == version and loaded.manifest["kind"] == "xcross"
    assert loaded.for_domain("film").model_version == version
    for d, texts in (("film", FILMS), ("book", BOOKS)):
        np.testing.assert_array_equal(loaded.embed(None, texts, None, domain=d),
                                      xmodel.embed(None, texts, None, domain=d))
    with pytest.raises(FileExistsError):
        xmodel.save(tmp_path / "x")


def test_tampered_or_foreign_artifact_is_refused(tmp_path, xmodel, tiny_artifact):
    xmodel.save(tmp_path / "x")
    bad = tmp_path / "bad"
    shutil.copytree(tmp_path / "x", bad)
    data = bytearray((bad / "adapters" / "book.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (bad / "adapters" / "book.safetensors").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="adapters/book.safetensors"):
        load(bad)
    with pytest.raises(ArtifactError, match="kind"):
        load(tiny_artifact)


def test_catalog_router_sends_each_catalog_to_its_stream(xmodel):
    from lfr.eval.xcross import CatalogRouter

    router = CatalogRouter(xmodel, FILMS, integrate=True)
    assert router.domain_of(FILMS) == "film" and router.domain_of(BOOKS) == "book"
    np.testing.assert_array_equal(router.embed(None, BOOKS, None, 4), xmodel.embed(None, BOOKS, None, domain="book"))
    np.testing.assert_array_equal(router.embed(None, FILMS[:3], None, 4),
                                  xmodel.embed(None, FILMS[:3], None, domain="film"))


def test_model_precision_is_honoured(tmp_path, tiny_encoder_dir, xmodel):
    """``model.precision`` reaches X-Cross as it reaches LightFusionRec's encoder: bf16 autocast when
    it resolves to bf16 (the integrators too), saved as asked, overridden by the run's at load."""
    from lfr.train.xcross import xcross_settings

    bf16 = _build(tiny_encoder_dir, "bf16")
    for d in DOMAINS:
        for p, q in zip(_adapters(bf16, d), _adapters(xmodel, d)):
            p.data.copy_(q)
    _randomise(xmodel.integrator.parameters(), seed=5, scale=0.01)
    bf16.integrator.load_state_dict(xmodel.integrator.state_dict())
    seen = []
    hook = bf16.integrator.layers[0].mix.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    a, b = xmodel.embed(None, FILMS, None, domain="film"), bf16.embed(None, FILMS, None, domain="film")
    hook.remove()
    assert bf16.precision == "bf16" and xmodel.precision == "fp32" and set(seen) == {torch.bfloat16}
    assert a.dtype == b.dtype == np.float32 and np.abs(a - b).max() > 1e-4   # an ignored precision gives fp32's
    assert (np.sum(a * b, axis=1) > 0.99).all()
    bf16.save(tmp_path / "b")
    assert load(tmp_path / "b").manifest["precision"] == "bf16" and load(tmp_path / "b").precision == "bf16"
    as_fp32 = load(tmp_path / "b", precision="fp32")                          # the run's precision wins
    assert as_fp32.precision == "fp32"
    np.testing.assert_array_equal(as_fp32.embed(None, FILMS, None, domain="film"), a)
    with pytest.raises(ValueError, match="model.precision"):
        _build(tiny_encoder_dir, "fp16")
    base = load_settings(environ={})
    assert xcross_settings(with_values(base, {"model.precision": "bf16"}))[0]["precision"] == "bf16"
    with pytest.raises(ConfigError, match="unknown setting 'precision'"):
        with_values(base, {"xcross.precision": "bf16"})                       # one key for both kinds


def test_saved_as_modules_and_older_artifacts_still_load(tmp_path, xmodel, tiny_artifact):
    import json

    from lfr.model import LightFusionModel, XCrossModel
    from lfr.model import load as load_any
    from lfr.model.artifact import MANIFEST, MODULES, write_manifest
    from lfr.model.lightfusion import load as load_lightfusion

    _randomise(xmodel.integrator.parameters(), seed=3, scale=0.01)
    xmodel.save(tmp_path / "x")
    modules = json.loads((tmp_path / "x" / MODULES).read_text())
    assert [(m["name"], m["type"], m["path"]) for m in modules] == [
        ("encoder", "xcross_encoder", "encoder"), ("adapter_film", "lora_adapter", "adapters/film.safetensors"),
        ("adapter_book", "lora_adapter", "adapters/book.safetensors"),
        ("integrator", "xcross_integrator", "integrator.safetensors")]
    assert modules[1]["config"]["lora_r"] == 8 and modules[3]["config"]["layers"] == len(xmodel.layers)
    expected = xmodel.embed(None, FILMS, None, domain="film")
    assert isinstance(load_any(tmp_path / "x"), XCrossModel) and isinstance(load_any(tiny_artifact), LightFusionModel)
    with pytest.raises(ArtifactError, match="kind"):
        load_lightfusion(tmp_path / "x")

    def resave(folder, edit):
        """The artifact with ``edit`` applied and its manifest rewritten (as an older save would have it)."""
        shutil.copytree(tmp_path / "x", folder)
        edit(folder)
        body = json.loads((folder / MANIFEST).read_text())
        (folder / MANIFEST).unlink()
        write_manifest(folder, {k: v for k, v in body.items() if k not in ("files", "format", "model_version")})
        return folder

    legacy = resave(tmp_path / "legacy", lambda f: (f / MODULES).unlink())     # the layout before modules.json
    np.testing.assert_array_equal(load(legacy).embed(None, FILMS, None, domain="film"), expected)
    escaping = [{**m, "path": "../x/integrator.safetensors"} if m["name"] == "integrator" else m for m in modules]
    bad = resave(tmp_path / "bad", lambda f: (f / MODULES).write_text(json.dumps(escaping)))
    with pytest.raises(ArtifactError, match="integrator"):
        load(bad)


def test_long_texts_are_cut_into_windows_as_the_text_encoder_cuts_them(tmp_path, tiny_encoder_dir):
    """model.chunking reaches X-Cross: an untrained X-Cross (no-op adapters) embeds a text longer than
    max_length exactly as LightFusionRec's text encoder does with the same chunking settings, the saved
    artifact keeps them, and an artifact saved without them embeds truncated texts (as it always did)."""
    import json

    from lfr.model.artifact import MANIFEST, MODULES, write_manifest
    from lfr.model.text import TextEncoder

    s = load_settings(environ={})
    chunked = {"precision": "fp32", "chunking": "on", "chunk_overlap": 4, "chunk_pooling": "length"}
    model = build_xcross(with_values(s.xcross, {"encoder": tiny_encoder_dir, "max_length": 16}),
                         with_values(s.model, chunked))
    long_texts = [" ".join(FILMS * 3), BOOKS[0], " ".join(BOOKS * 2)]
    plain = TextEncoder(tiny_encoder_dir, pooling="mean", max_length=16, precision="fp32", chunking="on",
                        chunk_overlap=4, chunk_pooling="length")
    assert len(plain.token_windows(long_texts[:1])["input_ids"]) > 2       # really cut into windows
    want = plain.encode(long_texts)
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    for domain in DOMAINS:
        np.testing.assert_allclose(model.embed(None, long_texts, None, batch_size=2, domain=domain), want,
                                   rtol=0, atol=1e-6)
    assert model.embed(None, [], None, domain="film").shape == (0, model.dim) == plain.encode([]).shape
    truncated = build_xcross(with_values(s.xcross, {"encoder": tiny_encoder_dir, "max_length": 16}),
                             with_values(s.model, {**chunked, "chunking": "off"}))
    off = truncated.embed(None, long_texts, None, domain="film")
    assert np.abs(off[0] - want[0]).max() > 1e-3                            # the windows matter

    model.save(tmp_path / "x")
    again = load(tmp_path / "x")
    assert {k: again.settings[k] for k in chunked if k != "precision"} == {k: v for k, v in chunked.items()
                                                                           if k != "precision"}
    np.testing.assert_array_equal(again.embed(None, long_texts, None, domain="book"),
                                  model.embed(None, long_texts, None, domain="book"))
    older = tmp_path / "older"                                              # saved before X-Cross chunked
    shutil.copytree(tmp_path / "x", older)
    modules = json.loads((older / MODULES).read_text())
    for m in modules:
        if m["name"] == "encoder":
            m["config"] = {k: v for k, v in m["config"].items() if not k.startswith("chunk")}
    (older / MODULES).write_text(json.dumps(modules))
    body = json.loads((older / MANIFEST).read_text())
    (older / MANIFEST).unlink()
    write_manifest(older, {k: v for k, v in body.items() if k not in ("files", "format", "model_version")})
    np.testing.assert_allclose(load(older).embed(None, long_texts, None, domain="film"), off, rtol=0, atol=1e-6)
