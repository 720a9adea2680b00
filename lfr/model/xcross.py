"""``XCrossModel``: one base encoder, a LoRA adapter per domain, the layer-wise integrator.

Why one network with mixed-adapter batches: the domain "models" of X-Cross share every base
weight and differ only by their LoRA adapters, so the streams are the rows of one batch, each
row routed to its domain's adapter (peft's ``adapter_names`` mixed-batch forward, injected by a
pre-hook on every LoRA layer). With integration on, a batch of ``B`` items becomes ``n*B`` rows
(one copy per domain stream); a forward hook after every transformer layer hands the ``n``
streams to that layer's integrator and writes the refined states back, so they feed the next
layer. An item's embedding is the mean-pooled final state of ITS domain's stream, L2-normalised
(384-d for MiniLM, like LightFusionRec's output). Genres are accepted and ignored: X-Cross is a
text model.

Same interface as ``LightFusionModel`` where the pipeline touches it (``embed``, ``texts``,
``encode_text``, ``model_version``, ``output_dim``), plus the item's ``domain`` ('film' or
'book'), given per call or bound once with ``for_domain``. Pooling, layer finding, length-sorted
batching, ``model.precision`` (bf16 autocast where it resolves to bf16) and ``model.chunking``
(a long text cut into ``max_length`` windows whose vectors are pooled) are the text encoder's
(``lfr.model.text``, ``lfr.model.windows``), so both model kinds compute features the same way.

Artifact: the parts in ``modules.json`` as LightFusionRec's (``encoder`` folder, one LoRA adapter
per domain, the integrator), each with its own config; an artifact saved before ``modules.json``
has the same files at fixed paths and its settings in the manifest, and still loads.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import inspect
import json
import logging
import os
import shutil
import warnings
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from safetensors.torch import load_file as load_safetensors
from safetensors.torch import save_file as save_safetensors

from lfr.model.artifact import (
    ENCODER_DIR,
    MANIFEST,
    MODULES,
    ArtifactError,
    save_modules,
    source_sha256,
    verify_artifact,
)
from lfr.model.integrator import Integrator
from lfr.model.text import (
    POOLINGS,
    autocast_for,
    check_chunking,
    encoder_files,
    length_batches,
    make_texts,
    pool_hidden,
    pool_windows,
    resolve_encoder,
    resolve_precision,
    token_windows,
    transformer_layers,
    window_weights,
)
from lfr.settings import ModelSettings, XCrossSettings

log = logging.getLogger(__name__)

KIND = "xcross"
DOMAINS = ("film", "book")
DOMAIN_ALIASES = {"film": "film", "movie": "film", "movies": "film", "book": "book", "books": "book"}
ADAPTER_DIR = "adapters"
INTEGRATOR_FILE = "integrator.safetensors"
UNSAVED = "unsaved"
#: LoRA targets (attention query and value projections) per Hugging Face ``model_type``.
LORA_TARGETS = {"bert": ["query", "value"], "distilbert": ["q_lin", "v_lin"]}
#: The model settings an X-Cross model is built with: the ``xcross`` section's model keys, plus the
#: ``model`` section's ``FROM_MODEL`` keys (one key for both kinds); values come from conf/lfr.yaml.
MODEL_KEYS = ("encoder", "pooling", "max_length", "include_title", "lora_r", "lora_alpha", "lora_dropout",
              "target_modules", "seed", "precision", "chunking", "chunk_overlap", "chunk_pooling")
#: The ``model`` section's keys X-Cross takes (one key for both kinds): how it runs and cuts texts.
FROM_MODEL = ("precision", "chunking", "chunk_overlap", "chunk_pooling")
#: Keys that are not X-Cross's own settings in the manifest's ``xcross`` section.
NOT_SAVED = ("encoder", *FROM_MODEL)
#: How an artifact saved before X-Cross cut long texts into windows embeds: truncated, as it always did.
UNCHUNKED = {"chunking": "off", "chunk_overlap": 0, "chunk_pooling": "mean"}
#: The text encoder settings the encoder module's config holds.
ENCODER_KEYS = ("pooling", "max_length", "include_title", "chunking", "chunk_overlap", "chunk_pooling")
#: The settings an adapter's module config holds (the rest of the adapter is its weights).
ADAPTER_KEYS = ("lora_r", "lora_alpha", "lora_dropout", "target_modules", "seed")
#: Module types of ``modules.json`` (a fixed table: never an import path read from a file).
ENCODER_TYPE, ADAPTER_TYPE, INTEGRATOR_TYPE = "xcross_encoder", "lora_adapter", "xcross_integrator"


def domain_name(domain: str | None) -> str:
    """'film' | 'book' for a domain name (movies/books accepted); a clear error otherwise."""
    key = DOMAIN_ALIASES.get(str(domain).lower()) if domain is not None else None
    if key is None:
        raise ValueError(f"X-Cross embeds an item with its domain's adapter: domain must be one of "
                         f"{sorted(DOMAIN_ALIASES)}, got {domain!r} (pass domain= or use model.for_domain(...))")
    return key


class XCrossModel:
    """Build with ``build_xcross``, restore with ``load``; train with ``lfr.train.xcross``."""

    kind = KIND

    def __init__(self, folder: str | os.PathLike, settings: Mapping[str, Any], name: str | None = None,
                 manifest: Mapping[str, Any] | None = None):
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        missing = [k for k in MODEL_KEYS if k not in settings]
        if missing:
            raise ValueError(f"X-Cross model settings lack {', '.join(missing)}")
        self.settings = dict(settings)
        if self.settings["pooling"] not in POOLINGS:
            raise ValueError(f"xcross.pooling must be one of {POOLINGS}, got {self.settings['pooling']!r}")
        self.settings["chunking"] = check_chunking(self.settings["chunking"], self.settings["chunk_overlap"],
                                                   self.settings["chunk_pooling"], self.settings["max_length"])
        self.requested_precision = str(self.settings["precision"])   # what the config / manifest asks for
        self.precision, why = resolve_precision(self.requested_precision)   # what this machine runs
        log.debug("X-Cross precision %s (%s)", self.precision, why)
        self.folder, self.name = str(folder), name or Path(folder).name
        self.manifest: dict[str, Any] = dict(manifest or {})
        self.model_version: str = str(self.manifest.get("model_version", UNSAVED))
        self.tokenizer = AutoTokenizer.from_pretrained(self.folder)
        self.net, base_config = self._build_net()
        self.model_type = str(getattr(base_config, "model_type", "unknown"))
        self.net.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.dim = int(getattr(base_config, "hidden_size", None) or getattr(base_config, "dim"))
        self.layers = transformer_layers(self.net)
        self.integrator = Integrator(self.dim, len(self.layers), len(DOMAINS))
        self._accepted = set(inspect.signature(self.net.forward).parameters)
        self._names: list[str] | None = None
        self._streams = 1
        self._install_hooks()

    def _build_net(self) -> tuple[torch.nn.Module, Any]:
        """The base encoder with one seeded, zero-initialised (no-op) LoRA adapter per domain injected."""
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModel

        base = AutoModel.from_pretrained(self.folder, dtype=torch.float32, use_safetensors=True)
        model_type = str(getattr(base.config, "model_type", "unknown"))
        targets = self.settings["target_modules"] or LORA_TARGETS.get(model_type)
        if not targets:
            raise ValueError(f"no default LoRA targets for model_type {model_type!r}: set xcross.target_modules")
        self.settings["target_modules"] = list(targets)
        lora = LoraConfig(r=int(self.settings["lora_r"]), lora_alpha=int(self.settings["lora_alpha"]),
                          lora_dropout=float(self.settings["lora_dropout"]), target_modules=list(targets), bias="none")
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # peft asks transformers a deprecated question
            torch.manual_seed(int(self.settings["seed"]))
            peft_model = get_peft_model(base, lora, adapter_name=DOMAINS[0])
            for d in DOMAINS[1:]:
                peft_model.add_adapter(d, lora)
        return peft_model.base_model.model, base.config  # the transformer with LoRA layers injected

    # -- routing hooks ---------------------------------------------------
    def _install_hooks(self) -> None:
        from peft.tuners.lora import LoraLayer

        for module in self.net.modules():
            if isinstance(module, LoraLayer):
                module.register_forward_pre_hook(self._route_rows, with_kwargs=True)
        for i, layer in enumerate(self.layers):
            layer.register_forward_hook(partial(self._integrate_layer, i))

    def _route_rows(self, module, args, kwargs):
        if self._names is None:
            raise RuntimeError("X-Cross layers run only inside XCrossModel.hidden_states (rows need a domain)")
        kwargs["adapter_names"] = self._names
        return args, kwargs

    def _integrate_layer(self, index: int, module, args, output):
        if self._streams == 1:
            return output
        hidden = output[0] if isinstance(output, tuple) else output
        n = self._streams
        shape = hidden.shape
        mixed = self.integrator.layers[index](hidden.reshape(n, shape[0] // n, *shape[1:])).reshape(shape)
        return (mixed, *output[1:]) if isinstance(output, tuple) else mixed

    # -- forward ---------------------------------------------------------
    @property
    def output_dim(self) -> int:
        return self.dim

    @property
    def include_title(self) -> bool:
        return bool(self.settings["include_title"])

    def adapter_parameters(self, domain: str) -> dict[str, torch.nn.Parameter]:
        """The LoRA parameters of one domain's adapter, by name."""
        tag = f".{domain_name(domain)}."
        return {n: p for n, p in self.net.named_parameters() if ".lora_" in n and tag in n}

    def tokenize(self, texts: Sequence[str], max_length: int | None = None) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt",
                             max_length=int(max_length or self.settings["max_length"]))
        return {k: v for k, v in enc.items() if k in self._accepted}

    def use_integration(self, integrate: bool | str) -> bool:
        """``'auto'``: integrate unless the integrator is still the identity (then the domain's own
        stream alone gives the same states for half the work)."""
        return (not self.integrator.is_identity()) if integrate == "auto" else bool(integrate)

    def hidden_states(self, enc: Mapping[str, torch.Tensor], domains: Sequence[str],
                      integrate: bool | str = "auto") -> torch.Tensor:
        """Final hidden states ``(B, T, dim)`` of each row's own domain stream (bf16 under a bf16 precision)."""
        domains = [domain_name(d) for d in domains]
        n, rows = len(DOMAINS), len(domains)
        if self.use_integration(integrate):
            inputs = {k: v.repeat(n, *([1] * (v.dim() - 1))) for k, v in enc.items()}
            names, streams = [d for d in DOMAINS for _ in range(rows)], n
        else:
            inputs, names, streams = dict(enc), domains, 1
        self._names, self._streams = names, streams
        try:
            with autocast_for(self.precision):
                out = self.net(**inputs).last_hidden_state
        finally:
            self._names, self._streams = None, 1
        if streams > 1:
            pick = torch.tensor([DOMAINS.index(d) for d in domains])
            out = out.reshape(n, rows, *out.shape[1:])[pick, torch.arange(rows)]
        return out

    def pooled(self, enc: Mapping[str, torch.Tensor], domains: Sequence[str],
               integrate: bool | str = "auto") -> torch.Tensor:
        """Pooled (un-normalised) float32 features ``(B, dim)``; differentiable when grad is enabled."""
        return pool_hidden(self.hidden_states(enc, domains, integrate), enc["attention_mask"],
                           self.settings["pooling"])

    def forward(self, texts: Sequence[str], domain: str, integrate: bool | str = "auto",
                max_length: int | None = None) -> torch.Tensor:
        """Pooled features of ``texts`` of one domain, with grad (training)."""
        return self.pooled(self.tokenize(texts, max_length), [domain] * len(texts), integrate)

    # -- inference -------------------------------------------------------
    def texts(self, titles: Sequence[str | None] | None, descriptions: Sequence[str | None]) -> list[str]:
        return make_texts(titles, descriptions, self.include_title)

    def encode_text(self, texts: Sequence[str | None], batch_size: int = 64, domain: str | None = None,
                    integrate: bool | str = "auto") -> np.ndarray:
        """Pooled float32 ``(n, dim)`` features (not normalised), in input order; batches are
        formed in token-length order (little padding), as the text encoder's."""
        dom = domain_name(domain)
        texts = ["" if not isinstance(t, str) else t for t in texts]
        s = self.settings
        windows = token_windows(self.tokenizer, texts, int(s["max_length"]), s["chunking"], int(s["chunk_overlap"]),
                                self._accepted)
        owner = np.asarray(windows.pop("overflow_to_sample_mapping"), dtype=np.int64)
        vecs = np.zeros((len(owner), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for idx, batch in length_batches(windows, batch_size, self.tokenizer.pad_token_id):
                vecs[idx] = self.pooled(batch, [dom] * len(idx), integrate).numpy()
        weight = window_weights(windows.get("input_ids", []), self.tokenizer.num_special_tokens_to_add(pair=False))
        return pool_windows(vecs, owner, weight, len(texts), s["chunk_pooling"])

    def embed(self, titles: Sequence[str | None] | None, descriptions: Sequence[str | None],
              genres: Sequence | None = None, batch_size: int = 64, domain: str | None = None,
              integrate: bool | str = "auto") -> np.ndarray:
        """Unit-length ``float32 (n, output_dim)`` embeddings of items of one ``domain``."""
        if genres is not None and len(genres) != len(descriptions):
            raise ValueError(f"{len(genres)} genre lists for {len(descriptions)} descriptions")
        vecs = self.encode_text(self.texts(titles, descriptions), batch_size, domain, integrate)
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        return (vecs / np.maximum(norms, 1e-12)).astype(np.float32)

    def for_domain(self, domain: str, integrate: bool | str = "auto") -> "DomainView":
        """This model bound to one domain: the plain pipeline interface (``embed(titles,
        descriptions, genres, batch_size)``) for the items of that catalog."""
        return DomainView(self, domain_name(domain), integrate)

    # -- persistence -----------------------------------------------------
    def save(self, path: str | os.PathLike, extra_manifest: Mapping[str, Any] | None = None) -> str:
        """Write the artifact to ``path`` (new or empty dir); returns ``model_version``."""
        self.manifest = save_modules(path, self._modules(), self._manifest_body, extra_manifest)
        self.model_version = self.manifest["model_version"]
        log.info("saved X-Cross model %s to %s", self.model_version, path)
        return self.model_version

    def _modules(self) -> list[tuple[str, str, str, Callable[[Path], dict]]]:
        """``(name, type, path in the artifact, save function)`` of each part, in forward order."""
        adapters = [(f"adapter_{d}", ADAPTER_TYPE, f"{ADAPTER_DIR}/{d}.safetensors", partial(self._save_adapter, d))
                    for d in DOMAINS]
        return [("encoder", ENCODER_TYPE, ENCODER_DIR, self._save_encoder), *adapters,
                ("integrator", INTEGRATOR_TYPE, INTEGRATOR_FILE, self._save_integrator)]

    def _save_encoder(self, folder: Path) -> dict:
        """The base encoder's files, copied (X-Cross never changes a base weight)."""
        folder.mkdir()
        for name in encoder_files(self.folder):
            shutil.copyfile(Path(self.folder) / name, folder / name)
        return {"name": self.name, "model_type": self.model_type, **{k: self.settings[k] for k in ENCODER_KEYS}}

    def _save_adapter(self, domain: str, file: Path) -> dict:
        file.parent.mkdir(exist_ok=True)
        state = {n: p.detach().contiguous().clone() for n, p in self.adapter_parameters(domain).items()}
        save_safetensors(state, str(file), metadata={"format": "pt"})
        return {"domain": domain, **{k: self.settings[k] for k in ADAPTER_KEYS}}

    def _save_integrator(self, file: Path) -> dict:
        state = {k: v.detach().contiguous().clone() for k, v in self.integrator.state_dict().items()}
        save_safetensors(state, str(file), metadata={"format": "pt"})
        return {"dim": self.dim, "layers": len(self.layers), "domains": list(DOMAINS)}

    def _manifest_body(self) -> dict[str, Any]:
        src = Path(self.folder)
        n_adapter = sum(p.numel() for p in self.adapter_parameters(DOMAINS[0]).values())
        return {
            "kind": KIND,
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "encoder": {"name": self.name, "model_type": self.model_type, "finetuned": False,
                        "source_path": self.settings.get("encoder_source_path", str(src)),
                        "source_sha256": source_sha256(self.manifest, src, encoder_files(src))},
            "xcross": {k: self.settings[k] for k in MODEL_KEYS if k not in NOT_SAVED},
            "domains": list(DOMAINS),
            "precision": self.requested_precision,  # resolved per machine at load (auto -> fp32|bf16)
            "dims": {"hidden": self.dim, "output": self.output_dim, "layers": len(self.layers)},
            "parameters": {"adapter_per_domain": n_adapter, "integrator": self.integrator.n_parameters()},
        }


class DomainView:
    """An ``XCrossModel`` bound to one domain (what an embedding job for that catalog holds)."""

    def __init__(self, model: XCrossModel, domain: str, integrate: bool | str = "auto"):
        self.model, self.domain, self.integrate = model, domain, integrate
        self.kind, self.model_version, self.output_dim = model.kind, model.model_version, model.output_dim

    def texts(self, titles, descriptions) -> list[str]:
        return self.model.texts(titles, descriptions)

    def encode_text(self, texts, batch_size: int = 64) -> np.ndarray:
        return self.model.encode_text(texts, batch_size, self.domain, self.integrate)

    def embed(self, titles, descriptions, genres=None, batch_size: int = 64) -> np.ndarray:
        return self.model.embed(titles, descriptions, genres, batch_size, self.domain, self.integrate)


def xcross_model_settings(xcross: XCrossSettings, model: ModelSettings) -> dict[str, Any]:
    """The settings an X-Cross model is built with: ``xcross``'s model keys, the encoder of ``model``
    when ``xcross.encoder`` is null, and ``model``'s precision and chunking (``FROM_MODEL``: one key for
    both kinds, so both embed a long text the same way)."""
    s = {k: getattr(xcross, k) for k in MODEL_KEYS if k not in FROM_MODEL}
    s["encoder"] = s["encoder"] or model.encoder
    return {**s, **{k: getattr(model, k) for k in FROM_MODEL}}


def build_xcross(xcross: XCrossSettings, model: ModelSettings) -> XCrossModel:
    """A fresh X-Cross model: base encoder, zero-initialised (no-op) LoRA adapters, identity integrator.

    Parameters
    ----------
    xcross, model : lfr.settings.XCrossSettings, lfr.settings.ModelSettings
        The ``xcross`` and ``model`` sections (``load_settings()``; see ``xcross_model_settings``).

    Returns
    -------
    XCrossModel
        Unsaved; ``lfr.train.xcross.train`` trains its adapters and integrator.
    """
    s = xcross_model_settings(xcross, model)
    name, folder = resolve_encoder(s["encoder"])
    s["encoder_source_path"] = folder
    return XCrossModel(folder, s, name=name)


def load(path: str | os.PathLike, precision: str | None = None) -> XCrossModel:
    """Verify the artifact at ``path`` (every file's sha256, no stray files), then load it (no pickle).

    ``precision`` overrides the saved ``model.precision`` (as for LightFusionRec); either is resolved
    for this machine's CPU. Reads ``modules.json`` when the artifact has one, else the fixed layout
    of the artifacts saved before it."""
    root = Path(path)
    m = verify_artifact(root)
    if m.get("kind") != KIND:
        raise ArtifactError(f"model artifact {root}: kind {m.get('kind', 'lightfusionrec')!r} is not {KIND!r}")
    parts = _module_entries(root, m)
    try:
        settings = {**UNCHUNKED, **m["xcross"], **_module_settings(parts), "encoder": m["encoder"]["name"],
                    "encoder_source_path": m["encoder"]["source_path"], "precision": precision or m["precision"]}
        model = XCrossModel(parts["encoder"]["path"], settings, name=m["encoder"]["name"], manifest=m)
        for d in DOMAINS:
            _load_params(model.adapter_parameters(d), parts[f"adapter_{d}"]["path"], root)
        model.integrator.load_state_dict(load_safetensors(str(parts["integrator"]["path"])), strict=True)
    except (KeyError, TypeError) as exc:
        raise ArtifactError(f"model artifact {root}: {MANIFEST} lacks {exc}") from exc
    if model.dim != m["dims"]["hidden"]:
        raise ArtifactError(f"model artifact {root}: encoder width {model.dim} differs from the manifest's {m['dims']}")
    return model


_TYPES = {"encoder": ENCODER_TYPE, **{f"adapter_{d}": ADAPTER_TYPE for d in DOMAINS}, "integrator": INTEGRATOR_TYPE}


def _module_entries(root: Path, manifest: Mapping[str, Any]) -> dict[str, dict]:
    """``{part name: entry with an absolute path}``: from ``modules.json`` (each part's path inside the
    artifact and of the expected type), or the fixed layout of an artifact saved before it."""
    if not (root / MODULES).is_file():
        legacy = {"encoder": ENCODER_DIR, **{f"adapter_{d}": f"{ADAPTER_DIR}/{d}.safetensors" for d in DOMAINS},
                  "integrator": INTEGRATOR_FILE}
        return {name: {"path": root / rel, "config": {}} for name, rel in legacy.items()}
    where = f"model artifact {root}: {MODULES}"
    try:
        entries = {e["name"]: e for e in json.loads((root / MODULES).read_text(encoding="utf-8"))}
        out = {}
        for name, kind in _TYPES.items():
            e = entries[name]
            path = (root / e["path"]).resolve()
            if not path.is_relative_to(root.resolve()) or e["type"] != kind or not isinstance(e["config"], dict):
                raise ArtifactError(f"{where}: module {name!r} has path {e['path']!r} / type {e['type']!r}")
            out[name] = {"path": path, "config": e["config"]}
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ArtifactError):
            raise
        raise ArtifactError(f"{where} is not a valid X-Cross module list ({type(exc).__name__}: {exc})") from exc
    return out


def _module_settings(parts: Mapping[str, dict]) -> dict[str, Any]:
    """The settings the parts' own configs hold (empty for an artifact without ``modules.json``)."""
    enc, adapter = parts["encoder"]["config"], parts[f"adapter_{DOMAINS[0]}"]["config"]
    return {**{k: enc[k] for k in ENCODER_KEYS if k in enc},
            **{k: adapter[k] for k in ADAPTER_KEYS if k in adapter}}


def _load_params(params: Mapping[str, torch.nn.Parameter], file: Path, root: Path) -> None:
    state = load_safetensors(str(file))
    if set(state) != set(params):
        rel = Path(file).resolve().relative_to(root.resolve())
        raise ArtifactError(f"model artifact {root}: {rel} does not hold this model's adapter "
                            f"({len(set(state) ^ set(params))} mismatched tensor names)")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(state[name])


@contextlib.contextmanager
def trainable(params):
    """Make ``params`` trainable for the block (everything else stays frozen)."""
    params = list(params)
    for p in params:
        p.requires_grad_(True)
    try:
        yield params
    finally:
        for p in params:
            p.requires_grad_(False)
