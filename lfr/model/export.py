"""The ONNX export of a LightFusionRec artifact (module ``onnx`` of its ``modules.json``).

Why in the artifact: ``model.runtime: onnx`` executors run the text encoder under ONNX Runtime
and the genre vectors and fusion head in numpy, importing no torch, transformers or fasttext
(``lfr.model.onnxrt``). What they need is written here, at save time, by the process that has
torch, and every file is covered by the manifest's sha256s like the rest of the artifact:

    onnx/encoder.onnx          the encoder's final hidden states (fp32; dynamic batch and length)
    onnx/encoder.int8.onnx     the same, weights quantized to int8 per channel (``model.quantize: int8``;
                               onnxruntime's dynamic quantization: activations quantized per batch)
    onnx/tokenizer.json        the tokenizer the torch path uses (its fast backend, saved)
    onnx/genre.safetensors, onnx/genre_words.json   the FastText arrays (``lfr.model.fasttext_np``)

The fusion head's weights are the artifact's ``fusion.safetensors`` (numpy reads them).
The exporter is torch's TorchScript-based ``torch.onnx.export(dynamo=False)``: it needs no
onnxscript and handles the encoders used here; opset and exporter are recorded in the config.
"""
from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import shutil
import warnings
from pathlib import Path

import torch

log = logging.getLogger(__name__)

ONNX_DIR = "onnx"   # the module's folder in the artifact (name and path in modules.json)
OPSET = 17
ENCODER_FILE = "encoder.onnx"
INT8_FILE = "encoder.int8.onnx"
TOKENIZER_FILE = "tokenizer.json"
GENRE_DIR = "."   # the genre arrays sit next to the encoder files
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
SAMPLE_TEXTS = ("A short text.", "A longer text, so that the example batch needs padding on one row.")


class _HiddenStates(torch.nn.Module):
    """The encoder with positional inputs and one output: what the ONNX graph computes."""

    def __init__(self, model: torch.nn.Module, names: tuple[str, ...]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, inputs))).last_hidden_state


def export_lightfusion(text, genre, folder: str | os.PathLike) -> dict:
    """Write ``folder`` (the ``onnx`` module) from a ``TextEncoder`` and a ``GenreModel``; returns its config."""
    config = export_text(text, folder)
    config["genre"] = genre.export_module(Path(folder) / GENRE_DIR)
    return config


def export_text(text, folder: str | os.PathLike) -> dict:
    """The text encoder's files of the ``onnx`` module (fp32 + int8 graphs, tokenizer) and their config."""
    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder = Path(folder)
    folder.mkdir()
    names = tuple(n for n in MODEL_INPUTS if n in text._accepted_inputs)
    sample = text.tokenizer(list(SAMPLE_TEXTS), padding=True, return_tensors="pt")
    args = tuple(sample[n] for n in names)
    axes = {n: {0: "batch", 1: "tokens"} for n in (*names, "last_hidden_state")}
    was_training = text.model.training
    text.model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")   # tracer warnings about python-side shape checks: shapes are dynamic
            torch.onnx.export(_HiddenStates(text.model, names), args, str(folder / ENCODER_FILE),
                              input_names=list(names), output_names=["last_hidden_state"], dynamic_axes=axes,
                              opset_version=OPSET, do_constant_folding=True, dynamo=False)
    finally:
        text.model.train(was_training)
    with _quiet_root_logger():  # its advice to run shape pre-processing concerns convolution models
        quantize_dynamic(str(folder / ENCODER_FILE), str(folder / INT8_FILE), per_channel=True,
                         weight_type=QuantType.QInt8)
    text.tokenizer.backend_tokenizer.save(str(folder / TOKENIZER_FILE))
    log.info("exported the text encoder to ONNX (opset %d, fp32 + int8) in %s", OPSET, folder)
    return {"encoder": ENCODER_FILE, "int8": INT8_FILE, "tokenizer": TOKENIZER_FILE, "inputs": list(names),
            "output": "last_hidden_state", "opset": OPSET, "exporter": f"torch.onnx.export(dynamo=False), torch "
            f"{torch.__version__.split('+')[0]}", "quantization": f"onnxruntime {onnxruntime.__version__} "
            "quantize_dynamic(per_channel=True, weight_type=QInt8)", "pad_id": int(text.tokenizer.pad_token_id or 0),
            "special_tokens": int(text.tokenizer.num_special_tokens_to_add(pair=False))}


_VIEWS: dict[tuple, str] = {}


def onnx_text_view(text, quantize: str):
    """``text`` (a frozen ``TextEncoder``) as the ``OnnxTextEncoder`` that ``model.runtime: onnx`` runs:
    what the evaluation embeds with to measure that runtime (``eval`` with ``model.runtime=onnx``).
    A frozen encoder is exported once per process; a fine-tuned one each time."""
    import tempfile

    from lfr.model.onnxrt import OnnxTextEncoder

    key = (text.folder, text.model_type) if not text.finetuned else None
    folder = _VIEWS.get(key) if key else None
    if folder is None:
        tmp = tempfile.mkdtemp(prefix="lfr-onnx-view-")
        atexit.register(shutil.rmtree, tmp, True)
        folder = str(Path(tmp) / "onnx")
        config = export_text(text, folder)
        (Path(folder) / "config.json").write_text(json.dumps(config), encoding="utf-8")
        if key:
            _VIEWS[key] = folder
    config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    settings = {"dim": text.dim, "pooling": text.pooling, "max_length": text.max_length, "chunking": text.chunking,
                "overlap": text.chunk_overlap, "chunk_pooling": text.chunk_pooling}
    return OnnxTextEncoder(Path(folder), config, settings, quantize)


@contextlib.contextmanager
def _quiet_root_logger():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
