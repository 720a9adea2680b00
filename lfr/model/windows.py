"""Torch-free text preparation: the strings an encoder sees, and one vector per text from its windows.

Why a module without torch: the ONNX runtime (``lfr.model.onnxrt``) runs on executors whose
environment has no torch, and both runtimes must cut and pool texts the same way, so the one
implementation lives here and ``lfr.model.text`` re-exports it.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

CHUNKINGS = ("off", "on")
CHUNK_POOLINGS = ("mean", "length")


def make_texts(titles: Sequence[str | None] | None, descriptions: Sequence[str | None],
               include_title: bool) -> list[str]:
    """The strings the encoder sees, one per item."""
    descs = ["" if not isinstance(d, str) else d for d in descriptions]
    if not include_title:
        return descs
    if titles is None:
        titles = [None] * len(descs)
    if len(titles) != len(descs):
        raise ValueError(f"{len(titles)} titles for {len(descs)} descriptions")
    out = []
    for t, d in zip(titles, descs):
        t = t.strip() if isinstance(t, str) else ""
        out.append(f"{t}. {d}" if t and d else (t or d))
    return out


def check_chunking(chunking: str | bool, chunk_overlap: int, chunk_pooling: str, max_length: int) -> str:
    """The ``model.chunking`` value (``on``/``off``) after checking the three chunking settings; both
    model kinds cut texts the same way, so they check them the same way."""
    if isinstance(chunking, bool):  # YAML 1.1 reads a bare on/off as a boolean
        chunking = "on" if chunking else "off"
    if chunking not in CHUNKINGS:
        raise ValueError(f"model.chunking must be one of {CHUNKINGS}, got {chunking!r}")
    if chunk_pooling not in CHUNK_POOLINGS:
        raise ValueError(f"model.chunk_pooling must be one of {CHUNK_POOLINGS}, got {chunk_pooling!r}")
    if not 0 <= int(chunk_overlap) <= int(max_length) // 2:
        raise ValueError(f"model.chunk_overlap must be in [0, max_length/2], got {chunk_overlap}")
    return chunking


def token_windows(tokenizer, texts: Sequence[str], max_length: int, chunking: str, chunk_overlap: int,
                  accepted: set[str]) -> dict[str, list]:
    """Tokenizer windows of ``texts``: ``input_ids`` (+ the other inputs in ``accepted``) per window and
    ``overflow_to_sample_mapping`` (the text of each window). Chunking off: one window per text (the
    truncated text); on: consecutive windows of ``max_length`` tokens sharing ``chunk_overlap``."""
    texts = list(texts)
    if not texts:   # the tokenizer cannot take an empty batch
        return {"input_ids": [], "overflow_to_sample_mapping": []}
    if chunking == "off":
        enc = dict(tokenizer(texts, truncation=True, max_length=max_length))
        enc["overflow_to_sample_mapping"] = list(range(len(texts)))
    else:
        enc = dict(tokenizer(texts, truncation=True, max_length=max_length, stride=chunk_overlap,
                             return_overflowing_tokens=True))
    keep = [k for k in enc if k in accepted or k == "overflow_to_sample_mapping"]
    return {k: list(enc[k]) for k in keep}


def window_weights(input_ids: Sequence[Sequence[int]], n_special: int) -> np.ndarray:
    """Content tokens per window (at least 1): the ``length`` chunk pooling's weights."""
    return np.array([max(1, len(w) - n_special) for w in input_ids], dtype=np.float32)


def pool_windows(vecs: np.ndarray, owner: np.ndarray, weight: np.ndarray, n: int, how: str = "mean") -> np.ndarray:
    """One vector per text from its window vectors: plain mean (``mean``) or weighted by each
    window's content tokens (``length``: with mean pooling, close to the mean over all tokens).
    A text with one window gets that window's vector unchanged."""
    if how not in CHUNK_POOLINGS:
        raise ValueError(f"model.chunk_pooling must be one of {CHUNK_POOLINGS}, got {how!r}")
    out = np.zeros((n, vecs.shape[1]), dtype=np.float32)
    if len(owner) == n and np.array_equal(owner, np.arange(n)):
        out[:] = vecs
        return out
    w = weight.astype(np.float64) if how == "length" else np.ones(len(owner))
    acc = np.zeros((n, vecs.shape[1]), dtype=np.float64)
    np.add.at(acc, owner, vecs.astype(np.float64) * w[:, None])
    total = np.bincount(owner, weights=w, minlength=n)
    out[:] = acc / np.maximum(total, 1e-12)[:, None]
    return out


def pool_tokens(hidden: np.ndarray, attention_mask: np.ndarray, pooling: str) -> np.ndarray:
    """Float32 ``(B, dim)`` from final states ``(B, T, dim)``: ``cls`` (first token) or ``mean``
    (attention-mask weighted mean), as ``lfr.model.text.pool_hidden`` does for torch tensors."""
    hidden = hidden.astype(np.float32, copy=False)
    if pooling == "cls":
        return np.ascontiguousarray(hidden[:, 0])
    mask = attention_mask.astype(np.float32)[:, :, None]
    return (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1.0)


def length_order(rows: dict[str, list], batch_size: int) -> Iterator[list[int]]:
    """Row indices of tokenized ``rows`` in batches of ``batch_size`` formed in token-length order:
    little padding, and every row is computed under its own attention mask (sentence-transformers'
    ``encode`` sorts the same way)."""
    order = np.argsort([len(r) for r in rows["input_ids"]], kind="stable").tolist()
    size = max(1, int(batch_size))
    for start in range(0, len(order), size):
        yield order[start:start + size]


def pad_rows(rows: dict[str, list[list[int]]], pad_id: int | None) -> dict[str, np.ndarray]:
    """Right-pad token lists to the batch's longest as int64 arrays (pad id for ids, 0 for masks and
    types), as the tokenizer's own ``padding=True`` does."""
    width = max(len(r) for r in rows["input_ids"])
    out = {}
    for key, lists in rows.items():
        fill = (pad_id or 0) if key == "input_ids" else 0
        block = np.full((len(lists), width), fill, dtype=np.int64)
        for i, r in enumerate(lists):
            block[i, :len(r)] = r
        out[key] = block
    return out
