"""The model artifact on disk: file hashes, the manifest and ``model_version``.

Layout (sentence-transformers-like, no pickle anywhere)::

    <dir>/manifest.json          metadata + sha256 of every other file
    <dir>/modules.json           the parts in order, each with its path, type and own config (each part
                                 saves and loads itself, as sentence-transformers' modules do)
    <dir>/encoder/               Hugging Face folder: config.json, model.safetensors, tokenizer files
    <dir>/genre.bin              FastText binary model (fasttext.load_model parses it; not pickle)
    <dir>/fusion.safetensors     fusion head weights
    <dir>/onnx/                  LightFusionRec only: the same model for ``model.runtime: onnx`` (encoder.onnx,
                                 encoder.int8.onnx, tokenizer.json, the FastText arrays; lfr.model.export)

``model_version`` (precise definition)::

    body = manifest.json's object without its "model_version" key
    model_version = sha256( json.dumps(body, sort_keys=True, separators=(",", ":"),
                                       ensure_ascii=True, allow_nan=False).encode("utf-8") ).hexdigest()[:16]

Because ``body["files"]`` holds the sha256 of every other file in the
directory, this is a content hash of the whole directory (every file, plus all
manifest metadata: settings, training parameters, data fingerprint, metrics,
created_at). Two saves of the same weights therefore get different versions
when their metadata (e.g. created_at) differs; downstream, a version change
only ever causes a re-embedding, never a stale mix.

Loading verifies, before anything is parsed by torch/transformers/fasttext:
the manifest's ``model_version`` matches its body, every listed file exists
with the listed sha256, and no unlisted file is present (a stray weight file
could otherwise be picked up by a loader). Failures raise ``ArtifactError``
naming the file.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from lfr.errors import UsageError

MANIFEST = "manifest.json"
ENCODER_DIR = "encoder"
GENRE_FILE = "genre.bin"
FUSION_FILE = "fusion.safetensors"
MODULES = "modules.json"
FORMAT = "lightfusionrec-artifact/1"
VERSION_CHARS = 16
_CHUNK = 1 << 20


class ArtifactError(UsageError):
    """A model artifact is missing, incomplete, or does not match its manifest."""


class ArtifactMissing(ArtifactError):
    """There is no artifact where one was expected (nothing trained yet): a usage error, not corruption."""


def parse_manifest(text: str, where: str) -> dict[str, Any]:
    """The manifest object from its JSON text (read locally or through Spark); ``where`` names it in errors."""
    try:
        manifest = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"model artifact {where}: {MANIFEST} is not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(f"model artifact {where}: {MANIFEST} is not a {FORMAT} manifest")
    return manifest


def artifact_missing(root: str | os.PathLike, what: str) -> ArtifactMissing:
    """The one "nothing trained yet" error, naming the job that makes an artifact."""
    return ArtifactMissing(
        f"model artifact not found: {root} {what}. Train one first: spark-submit jobs/train.py "
        f"[--model-dir {root}], or pass --model-dir to an existing artifact.")


def read_manifest(root: str | os.PathLike) -> dict[str, Any]:
    """The manifest of the artifact folder ``root`` (not verified against the files: see ``verify_artifact``).

    Raises ``ArtifactMissing`` naming ``jobs/train.py`` when there is no artifact at all."""
    root = Path(root)
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise artifact_missing(root, "is not a directory" if not root.is_dir() else f"has no {MANIFEST}")
    try:
        text = mpath.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ArtifactError(f"model artifact {root}: {MANIFEST} is not valid JSON ({exc})") from exc
    return parse_manifest(text, str(root))


def model_version_of(manifest: Mapping[str, Any], where: str) -> str:
    try:
        return str(manifest["model_version"])
    except KeyError as exc:
        raise ArtifactError(f"model artifact {where}: {MANIFEST} has no model_version") from exc


def read_model_version(root: str | os.PathLike) -> str:
    """``model_version`` of the artifact at ``root`` (cheap: reads the manifest only)."""
    return model_version_of(read_manifest(root), str(root))


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def new_artifact_dir(root: str | os.PathLike) -> Path:
    """Create ``root`` for a new artifact, refusing an existing non-empty one: a save never mixes its
    files with another model's (``verify_artifact`` would refuse the result, or worse, accept it)."""
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(f"refusing to save the model into non-empty {root}; save to a new directory")
    root.mkdir(parents=True, exist_ok=True)
    return root


def source_sha256(manifest: Mapping[str, Any], folder: str | os.PathLike, names: Sequence[str]) -> dict[str, str]:
    """The sha256 of the encoder's source files ``names`` in ``folder``: kept from ``manifest`` when the
    model was loaded from an artifact (its encoder folder is a copy; the source may be gone or
    fine-tuned), else hashed now. Records where the weights came from, whichever model kind."""
    saved = (manifest.get("encoder") or {}).get("source_sha256")
    if saved:
        return dict(saved)
    return {name: sha256_file(Path(folder) / name) for name in names}


def jsonable(value: Any) -> Any:
    """Plain-JSON copy: numpy scalars/arrays -> python, paths -> str, non-finite floats -> None."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("utf-8")


def compute_model_version(manifest: Mapping[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != "model_version"}
    return hashlib.sha256(canonical_json(body)).hexdigest()[:VERSION_CHARS]


def list_files(root: str | os.PathLike) -> list[str]:
    """Every file under ``root`` except the manifest, as sorted '/'-separated relative paths."""
    root = Path(root)
    out = []
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            rel = (Path(dirpath) / name).relative_to(root).as_posix()
            if rel != MANIFEST:
                out.append(rel)
    return sorted(out)


def file_table(root: str | os.PathLike) -> dict[str, dict[str, Any]]:
    root = Path(root)
    return {rel: {"sha256": sha256_file(root / rel), "bytes": (root / rel).stat().st_size} for rel in list_files(root)}


def save_modules(path: str | os.PathLike, modules: Sequence[tuple[str, str, str, Callable[[Path], dict]]],
                 body: Callable[[], Mapping[str, Any]], extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write an artifact the way both model kinds do: a new folder, each module saved by itself (its
    ``(name, type, path, save)``; ``save(file)`` returns the module's config), ``modules.json`` in
    forward order, then the manifest (``body()`` is built after the modules are written). Returns the
    manifest."""
    root = new_artifact_dir(path)
    entries = [{"idx": i, "name": name, "type": kind, "path": rel, "config": save(root / rel)}
               for i, (name, kind, rel, save) in enumerate(modules)]
    (root / MODULES).write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return write_manifest(root, body(), extra)


def write_manifest(root: str | os.PathLike, body: Mapping[str, Any],
                   extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Add ``format``, ``files`` and ``model_version`` to ``body``; write ``manifest.json``.
    ``extra``: caller's keys (e.g. training metrics); a key of ``body`` or of the format is refused."""
    body = dict(body)
    for key, value in (extra or {}).items():
        if key in body or key in ("files", "format", "model_version"):
            raise ValueError(f"extra_manifest key {key!r} is reserved")
        body[key] = value
    manifest = jsonable(body)
    manifest["format"] = FORMAT
    manifest["files"] = file_table(root)
    manifest.pop("model_version", None)
    manifest["model_version"] = compute_model_version(manifest)
    with open(Path(root) / MANIFEST, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=2, sort_keys=True, allow_nan=False)
        fh.write("\n")
    return manifest


def verify_artifact(root: str | os.PathLike) -> dict[str, Any]:
    """Check the directory against its manifest; return the manifest or raise ``ArtifactError``."""
    root = Path(root)
    manifest = read_manifest(root)
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise ArtifactError(f"model artifact {root}: {MANIFEST} lists no files")
    expected_version = compute_model_version(manifest)
    if manifest.get("model_version") != expected_version:
        raise ArtifactError(
            f"model artifact {root}: {MANIFEST} was modified (its content hash is {expected_version}, "
            f"it claims model_version {manifest.get('model_version')!r})"
        )
    for rel, meta in sorted(files.items()):
        path = root / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            raise ArtifactError(f"model artifact {root}: {MANIFEST} lists an unsafe path {rel!r}")
        if not path.is_file():
            raise ArtifactError(f"model artifact {root}: missing file {rel}")
        actual = sha256_file(path)
        if actual != meta.get("sha256"):
            raise ArtifactError(
                f"model artifact {root}: file {rel} does not match the manifest "
                f"(sha256 {actual[:12]}..., expected {str(meta.get('sha256'))[:12]}...): corrupted or tampered"
            )
    extra = sorted(set(list_files(root)) - set(files))
    if extra:
        raise ArtifactError(f"model artifact {root}: unexpected file(s) not in the manifest: {', '.join(extra)}")
    return manifest
