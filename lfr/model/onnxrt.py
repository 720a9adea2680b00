"""``model.runtime: onnx``: a LightFusionRec artifact run by ONNX Runtime and numpy, without torch.

Why: an executor on the torch path needs the project's whole environment (torch's PyPI build
alone is gigabytes); on this path it needs onnxruntime, tokenizers, safetensors, numpy, pandas
and pyarrow (``requirements-executor.txt``, packed by ``make executor-env``). Nothing here or
in what it imports imports torch, transformers or fasttext (``tests/test_onnx_runtime.py``
checks that in a process where they cannot be imported).

The same contract as the torch path (``LightFusionModel.embed``): the same texts
(``make_texts``), the same tokenizer (the artifact's ``onnx/tokenizer.json``, saved from the
one the torch path uses) with the same truncation and windows (``model.chunking``), batches
in token-length order, the same pooling of tokens and of windows (``lfr.model.windows``),
FastText's genre vectors (``lfr.model.fasttext_np``), the same fusion head (numpy, from the
head module's safetensors), unit-length float32 rows. Parity with torch fp32: docs/BENCHMARKS.md.

Precision: ONNX Runtime runs fp32 on CPUs (``model.precision: auto`` -> fp32 here, an explicit
``bf16`` is refused); ``model.quantize: int8`` runs the artifact's int8 copy of the encoder.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from lfr.errors import UsageError
from lfr.model.artifact import MODULES, ArtifactError, verify_artifact
from lfr.model.fasttext_np import NumpyGenreModel
from lfr.model.genre import GenreInput
from lfr.model.windows import length_order, make_texts, pad_rows, pool_tokens, pool_windows, window_weights

log = logging.getLogger(__name__)

RUNTIMES = ("torch", "onnx")
QUANTIZATIONS = ("none", "int8")
ONNX_MODULE = "onnx"   # the export's name in modules.json (lfr.model.export)
NORM_EPS = 1e-12


def check_runtime(runtime: str, quantize: str, precision: str) -> None:
    """``model.runtime`` / ``model.quantize`` / ``model.precision`` that can run together, or a
    ``UsageError`` naming the settings (checked on the driver before any task starts)."""
    if runtime not in RUNTIMES:
        raise UsageError(f"model.runtime must be one of {RUNTIMES}, got {runtime!r}")
    if quantize not in QUANTIZATIONS:
        raise UsageError(f"model.quantize must be one of {QUANTIZATIONS}, got {quantize!r}")
    if runtime == "torch" and quantize != "none":
        raise UsageError(f"model.quantize={quantize} needs model.runtime=onnx (the torch path runs the "
                         "encoder as saved)")
    if runtime == "onnx" and precision == "bf16":
        raise UsageError("model.runtime=onnx runs fp32 (int8 with model.quantize=int8): set model.precision "
                         "to auto or fp32, or model.runtime=torch for bf16")


class OnnxTextEncoder:
    """The text half of ``TextEncoder.encode`` on ONNX Runtime: the same windows, batches and pooling.

    Built from an exported folder (``lfr.model.export``): ``model.onnx``-side files plus the text
    settings the artifact was saved with. ``folder``/``precision``/``finetuned`` mirror the torch
    encoder's attributes so feature caches (evaluation, training memo) key it apart from torch's."""

    def __init__(self, folder: Path, config: Mapping[str, Any], text: Mapping[str, Any], quantize: str):
        from tokenizers import Tokenizer

        self.config, self.quantize = dict(config), quantize
        self.onnx_folder = Path(folder)
        self.folder = f"{folder}#{quantize}"   # a cache key: not the torch encoder's folder
        self.precision = "int8" if quantize == "int8" else "fp32"
        self.finetuned = False
        self.dim = int(text["dim"])
        self.pooling, self.max_length = str(text["pooling"]), int(text["max_length"])
        self.chunking = text.get("chunking", "off")
        self.chunk_overlap, self.chunk_pooling = int(text.get("overlap", 0)), text.get("chunk_pooling", "mean")
        self.tokenizer = Tokenizer.from_file(str(self.onnx_folder / self.config["tokenizer"]))
        self.tokenizer.no_padding()
        stride = self.chunk_overlap if self.chunking == "on" else 0
        self.tokenizer.enable_truncation(self.max_length, stride=stride, strategy="longest_first", direction="right")
        self.session, self.threads = None, 0
        self.set_num_threads(1)

    def set_num_threads(self, threads: int) -> None:
        """ONNX Runtime's intra-op threads (a task's ``spark.task.cpus``); a new session when it changes."""
        import onnxruntime as ort

        threads = max(1, int(threads))
        if self.session is not None and threads == self.threads:
            return
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        name = self.config["int8"] if self.quantize == "int8" else self.config["encoder"]
        self.session = ort.InferenceSession(str(self.onnx_folder / name), opts, providers=["CPUExecutionProvider"])
        self.threads = threads

    def token_windows(self, texts: Sequence[str]) -> tuple[dict[str, list], np.ndarray]:
        """Model inputs per window and the text each window belongs to, as ``TextEncoder.token_windows``."""
        rows: dict[str, list] = {n: [] for n in self.config["inputs"]}
        owner: list[int] = []
        for i, enc in enumerate(self.tokenizer.encode_batch(list(texts)) if texts else []):
            for win in [enc] + (list(enc.overflowing) if self.chunking == "on" else []):
                rows["input_ids"].append(win.ids)
                if "attention_mask" in rows:
                    rows["attention_mask"].append(win.attention_mask)
                if "token_type_ids" in rows:
                    rows["token_type_ids"].append(win.type_ids)
                owner.append(i)
        return rows, np.asarray(owner, dtype=np.int64)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Pooled float32 text features ``(n, dim)``, one per text, in input order.

        One window per run, whatever ``batch_size`` says: int8 quantizes activations with one scale per
        input tensor, so in a batch a window's result would depend on the windows (and padding) beside
        it, while alone an item gets the same vector wherever and with whatever it is embedded; and on
        CPUs ONNX Runtime ran faster so at fp32 too (no padding; docs/BENCHMARKS.md)."""
        rows, owner = self.token_windows(texts)
        weight = window_weights(rows["input_ids"], int(self.config["special_tokens"]))
        vecs = np.zeros((len(owner), self.dim), dtype=np.float32)
        for idx in length_order(rows, 1) if len(owner) else []:
            batch = pad_rows({k: [v[i] for i in idx] for k, v in rows.items()}, self.config["pad_id"])
            (hidden,) = self.session.run([self.config["output"]], batch)
            vecs[idx] = pool_tokens(hidden, batch["attention_mask"], self.pooling)
        return pool_windows(vecs, owner, weight, len(texts), self.chunk_pooling)


class OnnxLightFusion:
    """``embed`` of a LightFusionRec artifact under ONNX Runtime; ``load`` builds it."""

    def __init__(self, root: Path, manifest: Mapping[str, Any], modules: Mapping[str, dict], quantize: str):
        from safetensors.numpy import load_file

        self.root, self.manifest, self.quantize = root, dict(manifest), quantize
        self.model_version = str(manifest["model_version"])
        self.output_dim = int(manifest["dims"]["output"])
        self.include_title = bool(manifest["include_title"])
        chunking = manifest.get("chunking") or {}
        text = {"dim": manifest["dims"]["text"], "pooling": manifest["pooling"], "max_length": manifest["max_length"],
                "chunking": chunking.get("mode", "off"), "overlap": chunking.get("overlap", 0),
                "chunk_pooling": chunking.get("pooling", "mean")}
        entry = modules[ONNX_MODULE]
        folder = root / entry["path"]
        self.text = OnnxTextEncoder(folder, entry["config"], text, quantize)
        self.genre = NumpyGenreModel.load(folder, entry["config"]["genre"])
        self.head = {k: v.astype(np.float32) for k, v in load_file(str(root / modules["head"]["path"])).items()}
        self.head_kind = modules["head"]["config"]["kind"]

    def set_num_threads(self, threads: int) -> None:
        self.text.set_num_threads(threads)

    def fuse(self, text: np.ndarray, genre: np.ndarray) -> np.ndarray:
        """The fusion head of ``lfr.model.fusion`` in numpy: unit float32 rows."""
        h = self.head
        projected = genre @ h["genre_proj.weight"].T + h["genre_proj.bias"]
        if self.head_kind == "residual":
            base = _unit(text)
            out = base + np.concatenate([base, projected], axis=1) @ h["delta.weight"].T + h["delta.bias"]
        else:
            out = np.maximum(np.concatenate([text, projected], axis=1) @ h["fuse.weight"].T + h["fuse.bias"], 0.0)
        return _unit(out)

    def embed(self, titles: Sequence[str | None] | None, descriptions: Sequence[str | None],
              genres: Sequence[GenreInput], batch_size: int = 64) -> np.ndarray:
        """Unit-length ``float32 (n, output_dim)`` embeddings of items (``LightFusionModel.embed``)."""
        if len(genres) != len(descriptions):
            raise ValueError(f"{len(genres)} genre lists for {len(descriptions)} descriptions")
        texts = make_texts(titles, descriptions, self.include_title)
        gvec, _ = self.genre.vectors(genres)
        return self.fuse(self.text.encode(texts, batch_size), gvec).astype(np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32, copy=False)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), NORM_EPS)


def onnx_unready(manifest: Mapping[str, Any]) -> str:
    """Why the artifact of ``manifest`` cannot run under ``model.runtime: onnx`` ('' when it can):
    read from the manifest alone, so the driver refuses before shipping, wherever the artifact is."""
    kind = manifest.get("kind", "lightfusionrec")
    if kind != "lightfusionrec":
        return (f"model.runtime=onnx runs LightFusionRec artifacts; this one is {kind!r} (X-Cross has no ONNX "
                "export: use model.runtime=torch)")
    if f"{ONNX_MODULE}/encoder.onnx" not in (manifest.get("files") or {}):
        return ("no ONNX export (saved before model.runtime=onnx existed): retrain it with jobs/train.py, or use "
                "model.runtime=torch")
    return ""


def load(path: str | os.PathLike, precision: str | None = None, quantize: str | None = None) -> OnnxLightFusion:
    """The artifact at ``path`` (verified against its manifest) for ONNX Runtime, or a clear error when
    it has no ONNX export (X-Cross; a LightFusionRec artifact saved before the export existed)."""
    root, quantize = Path(path), quantize or "none"
    manifest = verify_artifact(root)
    check_runtime("onnx", quantize, precision or "auto")
    why = onnx_unready(manifest)
    if why:
        raise ArtifactError(f"model artifact {root}: {why}")
    try:
        modules = {e["name"]: e for e in json.loads((root / MODULES).read_text(encoding="utf-8"))}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"model artifact {root}: {MODULES} is missing or invalid ({exc})") from exc
    for name in (ONNX_MODULE, "head"):
        if name not in modules or not (root / modules[name]["path"]).resolve().is_relative_to(root.resolve()):
            raise ArtifactError(f"model artifact {root}: {MODULES} has no module {name!r} inside the artifact")
    log.info("model %s on ONNX Runtime (%s, fp32 activations) [pid %d]", manifest["model_version"],
             "int8 weights" if quantize == "int8" else "fp32", os.getpid())
    return OnnxLightFusion(root, manifest, modules, quantize)
