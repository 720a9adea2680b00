"""``LightFusionModel``: text encoder + FastText genres + fusion head, with save/load.

One object serves training (``fuse`` on precomputed features), the driver and
the Spark executors (``embed``). ``embed`` is a pure function of the artifact
and the inputs, so the same item gets the same vector wherever it is embedded
(up to float rounding of batch composition).

Text input: the description (``None`` -> ``""``); with ``include_title`` the
text is ``"<title>. <description>"``. The paper embeds descriptions only, and
titles make adaptation links (same title on both sides) trivially easy, which
would inflate evaluation, hence ``include_title: false`` by default.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from safetensors.torch import load_file as load_safetensors

from lfr.model.artifact import (
    ENCODER_DIR,
    FUSION_FILE,
    GENRE_FILE,
    MANIFEST,
    MODULES,
    ArtifactError,
    save_modules,
    source_sha256,
    verify_artifact,
)
from lfr.model.export import ONNX_DIR, export_lightfusion
from lfr.model.fusion import load_head, make_head, save_head
from lfr.model.genre import GenreInput, GenreModel
from lfr.model.text import TextEncoder, encoder_files, make_texts, resolve_encoder
from lfr.settings import ModelSettings

log = logging.getLogger(__name__)

#: Settings an artifact saved before they existed was built with (old manifests lack the keys).
LEGACY_SETTINGS: dict[str, Any] = {"head": "paper", "chunking": "off", "chunk_overlap": 0, "chunk_pooling": "mean"}
_HEAD_CHUNK = 8192
UNSAVED = "unsaved"
KIND = "lightfusionrec"


class LightFusionModel:
    """The fused movie/book embedder. Build with ``build_model``, restore with ``load``."""

    def __init__(self, text: TextEncoder, genre: GenreModel, head: torch.nn.Module, settings: Mapping[str, Any],
                 manifest: Mapping[str, Any] | None = None):
        self.text = text
        self.genre = genre
        self.head = head
        self.settings = dict(settings)
        self.manifest: dict[str, Any] = dict(manifest or {})
        self.model_version: str = str(self.manifest.get("model_version", UNSAVED))
        self.head.eval()

    # -- dimensions ------------------------------------------------------
    @property
    def output_dim(self) -> int:
        return self.head.output_dim

    @property
    def text_dim(self) -> int:
        return self.text.dim

    @property
    def genre_dim(self) -> int:
        return self.genre.dim

    @property
    def include_title(self) -> bool:
        return bool(self.settings["include_title"])

    # -- features --------------------------------------------------------
    def texts(self, titles: Sequence[str | None] | None, descriptions: Sequence[str | None]) -> list[str]:
        return make_texts(titles, descriptions, self.include_title)

    def encode_text(self, texts: Sequence[str | None], batch_size: int = 64) -> np.ndarray:
        """Frozen-encoder features ``float32 (n, text_dim)``; ``None`` -> ``""``."""
        return self.text.encode(["" if not isinstance(t, str) else t for t in texts], batch_size=batch_size)

    def genre_vectors(self, genres: Sequence[GenreInput]) -> tuple[np.ndarray, np.ndarray]:
        """``(float32 (n, genre_dim), bool (n,) has_genres)``; no genres -> zero row."""
        return self.genre.vectors(genres)

    def fuse(self, text_features: torch.Tensor, genre_features: torch.Tensor) -> torch.Tensor:
        """The head on feature tensors (differentiable; used by training)."""
        return self.head(text_features, genre_features)

    def embed(self, titles: Sequence[str | None] | None, descriptions: Sequence[str | None],
              genres: Sequence[GenreInput], batch_size: int = 64) -> np.ndarray:
        """Unit-length ``float32 (n, output_dim)`` embeddings of items."""
        n = len(descriptions)
        if len(genres) != n:
            raise ValueError(f"{len(genres)} genre lists for {n} descriptions")
        text = self.encode_text(self.texts(titles, descriptions), batch_size=batch_size)
        gvec, _ = self.genre_vectors(genres)
        return self.embed_features(text, gvec)

    def embed_features(self, text: np.ndarray, gvec: np.ndarray) -> np.ndarray:
        out = np.zeros((len(text), self.output_dim), dtype=np.float32)
        self.head.eval()
        with torch.inference_mode():
            for s in range(0, len(text), _HEAD_CHUNK):
                t = torch.from_numpy(np.ascontiguousarray(text[s:s + _HEAD_CHUNK], dtype=np.float32))
                g = torch.from_numpy(np.ascontiguousarray(gvec[s:s + _HEAD_CHUNK], dtype=np.float32))
                out[s:s + _HEAD_CHUNK] = self.head(t, g).numpy()
        return out

    # -- persistence -----------------------------------------------------
    def save(self, path: str | os.PathLike, extra_manifest: Mapping[str, Any] | None = None) -> str:
        """Write the self-contained artifact to ``path`` (new or empty dir); returns model_version.

        ``extra_manifest`` (training params, data fingerprint, metrics, ...) is
        stored at the manifest's top level; it may not override the model's own keys.
        """
        self.manifest = save_modules(path, self._modules(), self._manifest_body, extra_manifest)
        self.model_version = self.manifest["model_version"]
        log.info("saved LightFusionRec model %s to %s", self.model_version, path)
        return self.model_version

    def _modules(self) -> list[tuple[str, str, str, Any]]:
        """``(name, type, path in the artifact, save function)`` of each part, in forward order."""
        return [("text", "text_encoder", ENCODER_DIR, self.text.save_module),
                ("genre", "fasttext_genre", GENRE_FILE, self.genre.save_module),
                ("head", f"head_{self.head.kind}", FUSION_FILE, lambda path: save_head(self.head, path)),
                # model.runtime: onnx (lfr.model.onnxrt) runs these files; the torch path ignores them
                ("onnx", "onnx_export", ONNX_DIR, lambda path: export_lightfusion(self.text, self.genre, path))]

    def _manifest_body(self) -> dict[str, Any]:
        s = self.settings
        src = Path(self.text.folder)
        source_hashes = source_sha256(self.manifest, src, encoder_files(src))
        return {
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "encoder": {
                "name": self.text.name,
                "source_path": s.get("encoder_source_path", str(src)),
                "model_type": self.text.model_type,
                "finetuned": bool(self.text.finetuned or s.get("encoder_finetuned", False)),
                "source_sha256": source_hashes,
            },
            "pooling": self.text.pooling,
            "max_length": self.text.max_length,
            "chunking": {"mode": self.text.chunking, "overlap": self.text.chunk_overlap,
                         "pooling": self.text.chunk_pooling},
            "head": self.head.config(),
            "precision": self.text.requested_precision,  # resolved per machine at load (auto -> fp32|bf16)
            "include_title": self.include_title,
            "dims": {"text": self.text_dim, "genre": self.genre_dim, "output": self.output_dim},
            "genre_model": {k: s[k] for k in ("genre_dim", "genre_epochs", "genre_bucket")},
            "seed": s["seed"],
        }


def build_model(settings: ModelSettings, genre_corpus: Sequence[GenreInput]) -> LightFusionModel:
    """A model with a trained FastText genre model and an untrained (seeded) fusion head.

    Parameters
    ----------
    settings : lfr.settings.ModelSettings
        The ``model`` section (``load_settings().model``, changed with ``with_values``).
    genre_corpus : sequence of genre lists
        The genre lists of the items of both catalogs (the FastText model's training corpus).

    Returns
    -------
    LightFusionModel
        Unsaved (``model_version == "unsaved"``); ``lfr.train.train`` trains its head.

    Example
    -------
    >>> model = build_model(load_settings().model, [["Drama"], ["Fantasy", "Drama"]])  # doctest: +SKIP
    """
    if not isinstance(settings, ModelSettings):
        raise TypeError(f"build_model takes lfr.settings.ModelSettings, got {type(settings).__name__}")
    s = settings.as_dict()
    name, folder = resolve_encoder(s["encoder"])
    text = _text_encoder(folder, s, name)
    genre = GenreModel.train(genre_corpus, dim=s["genre_dim"], epochs=s["genre_epochs"],
                             bucket=s["genre_bucket"], seed=s["seed"])
    head = make_head(s["head"], text.dim, genre.dim, s["output_dim"], seed=s["seed"])
    s["encoder_source_path"] = folder
    return LightFusionModel(text, genre, head, s)


def _text_encoder(folder: str | os.PathLike, s: Mapping[str, Any], name: str) -> TextEncoder:
    return TextEncoder(folder, pooling=s["pooling"], max_length=s["max_length"], precision=s["precision"], name=name,
                       chunking=s["chunking"], chunk_overlap=s["chunk_overlap"], chunk_pooling=s["chunk_pooling"])


def load(path: str | os.PathLike, precision: str | None = None) -> LightFusionModel:
    """Verify the artifact at ``path`` against its manifest, then load it (no pickle).

    Each part loads itself from its entry in ``modules.json`` (type from a fixed table, never an
    import path read from the file). ``precision`` overrides the saved one; the saved one (default
    ``auto``) is resolved for this machine's CPU (``lfr.model.text.resolve_precision``), so an
    artifact trained on an AMX host runs fp32 on an AVX2-only executor.
    """
    root = Path(path)
    m = verify_artifact(root)
    if m.get("kind", KIND) != KIND:  # lfr.model.load dispatches on the kind; this loads LightFusionRec only
        raise ArtifactError(f"model artifact {root}: kind {m.get('kind')!r} is not {KIND!r} (use lfr.model.load)")
    settings = _settings_of(root, m, precision)
    if (root / MODULES).is_file():
        text, genre, head = _load_modules(root, settings["precision"])
    else:  # saved before modules.json: the layout is fixed, the settings are in the manifest
        text = _text_encoder(root / ENCODER_DIR, settings, m["encoder"]["name"])
        genre = GenreModel.load(root / GENRE_FILE)
        try:
            head = make_head(settings["head"], text.dim, genre.dim, m["dims"]["output"])
        except ValueError as exc:
            raise ArtifactError(f"model artifact {root}: {exc}") from exc
        head.load_state_dict(load_safetensors(str(root / FUSION_FILE)), strict=True)
    dims = m["dims"]
    if (text.dim, genre.dim, head.output_dim) != (dims["text"], dims["genre"], dims["output"]):
        raise ArtifactError(f"model artifact {root}: dims {text.dim}/{genre.dim}/{head.output_dim} differ from the "
                            f"manifest's {dims}")
    return LightFusionModel(text, genre, head, settings, manifest=m)


_MODULE_LOADERS = {
    "text_encoder": lambda path, config, precision: TextEncoder.load_module(path, config, precision),
    "fasttext_genre": lambda path, config, precision: GenreModel.load_module(path, config),
    "head_residual": lambda path, config, precision: load_head(path, config),
    "head_paper": lambda path, config, precision: load_head(path, config),
}


def _load_modules(root: Path, precision: str) -> tuple[TextEncoder, GenreModel, torch.nn.Module]:
    """The parts listed in ``modules.json`` (text, genre, head), each from its own path and config."""
    where = f"model artifact {root}: {MODULES}"
    try:
        entries = {e["name"]: e for e in json.loads((root / MODULES).read_text(encoding="utf-8"))}
        parts = []
        for name in ("text", "genre", "head"):
            e = entries[name]
            path = (root / e["path"]).resolve()
            if not path.is_relative_to(root.resolve()) or e["type"] not in _MODULE_LOADERS:
                raise ArtifactError(f"{where}: module {name!r} has path {e['path']!r} / type {e['type']!r}")
            parts.append(_MODULE_LOADERS[e["type"]](path, e["config"], precision))
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ArtifactError):
            raise
        raise ArtifactError(f"{where} is not a valid module list ({type(exc).__name__}: {exc})") from exc
    return parts[0], parts[1], parts[2]


def _settings_of(root: Path, m: Mapping[str, Any], precision: str | None) -> dict[str, Any]:
    """The model settings an artifact was built with, from its manifest (old manifests lack some keys)."""
    try:
        chunking = m.get("chunking") or {}
        return {
            "kind": KIND,
            **LEGACY_SETTINGS,
            "head": (m.get("head") or {}).get("kind", LEGACY_SETTINGS["head"]),
            "chunking": chunking.get("mode", LEGACY_SETTINGS["chunking"]),
            "chunk_overlap": chunking.get("overlap", LEGACY_SETTINGS["chunk_overlap"]),
            "chunk_pooling": chunking.get("pooling", LEGACY_SETTINGS["chunk_pooling"]),
            "encoder": m["encoder"]["name"],
            "pooling": m["pooling"],
            "max_length": m["max_length"],
            "include_title": m["include_title"],
            "precision": precision or m["precision"],
            "output_dim": m["dims"]["output"],
            "seed": m["seed"],
            **m["genre_model"],
            "encoder_source_path": m["encoder"]["source_path"],
            "encoder_finetuned": m["encoder"]["finetuned"],
            "freeze_encoder": not m["encoder"]["finetuned"],
        }
    except (KeyError, TypeError) as exc:
        raise ArtifactError(f"model artifact {root}: {MANIFEST} lacks {exc}") from exc
