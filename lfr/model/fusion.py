"""Fusion heads: text features + genre vector -> one unit-length item embedding.

``model.head: residual`` (default, ``ResidualHead``)::

    t^ = t / ||t||                        the text-only embedding
    g' = W_g g + b_g                      project the genre vector to the text dimension
    e  = normalize(t^ + dW [t^ ; g'] + db)    dW, db initialised to ZERO, no ReLU

Why: at initialisation ``e == t^`` exactly, so an untrained (or barely trained)
model ranks exactly like the text-only baseline and training can only move it
away from there as far as the data justify (weight decay on dW pulls it back).
The paper's head below starts from a random projection followed by a ReLU that
zeroes about half the coordinates, which loses to its own text input.

``model.head: paper`` (``FusionHead``, arXiv 2410.15656, section 3)::

    g' = W_g g + b_g                      project the genre vector to the text dimension
    z  = ReLU(W_f [t ; g'] + b_f)         fuse text and projected genre
    e  = z / max(||z||, eps)              unit length, so dot product = cosine

Why the explicit zero-norm guard: after the ReLU a row can be all zeros (rare
with a trained head, possible with a random one); ``F.normalize``'s ``eps``
keeps such a row at zero instead of producing NaNs that would poison a whole
top-k.

Initialisation is seeded and does not touch torch's global RNG, so building a
model does not change other code's random streams.
"""
from __future__ import annotations

import os

import torch
from torch import nn
from torch.nn import functional as F

NORM_EPS = 1e-12


HEADS = ("residual", "paper")


class FusionHead(nn.Module):
    """The paper's Linear+ReLU head (``model.head: paper``)."""

    kind = "paper"

    def __init__(self, text_dim: int, genre_dim: int, output_dim: int | None = None, seed: int | None = None):
        super().__init__()
        self.text_dim = int(text_dim)
        self.genre_dim = int(genre_dim)
        self.output_dim = int(output_dim or text_dim)
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(int(seed))
            self.genre_proj = nn.Linear(self.genre_dim, self.text_dim)
            self.fuse = nn.Linear(2 * self.text_dim, self.output_dim)

    def forward(self, text: torch.Tensor, genre: torch.Tensor) -> torch.Tensor:
        """``text (n, text_dim)``, ``genre (n, genre_dim)`` -> unit rows ``(n, output_dim)``."""
        fused = torch.cat([text, self.genre_proj(genre)], dim=-1)
        return F.normalize(F.relu(self.fuse(fused)), p=2.0, dim=-1, eps=NORM_EPS)

    def config(self) -> dict:
        return {"kind": self.kind, "text_dim": self.text_dim, "genre_dim": self.genre_dim,
                "output_dim": self.output_dim}


class ResidualHead(nn.Module):
    """Identity-at-init residual head (``model.head: residual``; see the module doc)."""

    kind = "residual"

    def __init__(self, text_dim: int, genre_dim: int, output_dim: int | None = None, seed: int | None = None):
        super().__init__()
        self.text_dim = int(text_dim)
        self.genre_dim = int(genre_dim)
        if output_dim not in (None, self.text_dim):
            raise ValueError(f"model.head=residual keeps the text dimension ({self.text_dim}); "
                             f"model.output_dim={output_dim} needs model.head=paper")
        self.output_dim = self.text_dim
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(int(seed))
            self.genre_proj = nn.Linear(self.genre_dim, self.text_dim)
        self.delta = nn.Linear(2 * self.text_dim, self.text_dim)
        with torch.no_grad():
            self.delta.weight.zero_()
            self.delta.bias.zero_()

    def forward(self, text: torch.Tensor, genre: torch.Tensor) -> torch.Tensor:
        base = F.normalize(text, p=2.0, dim=-1, eps=NORM_EPS)
        update = self.delta(torch.cat([base, self.genre_proj(genre)], dim=-1))
        return F.normalize(base + update, p=2.0, dim=-1, eps=NORM_EPS)

    def decayed_parameters(self) -> list[nn.Parameter]:
        """The residual's weight: the only parameter training should pull towards zero (= text-only)."""
        return [self.delta.weight]

    def config(self) -> dict:
        return {"kind": self.kind, "text_dim": self.text_dim, "genre_dim": self.genre_dim,
                "output_dim": self.output_dim}


def make_head(kind: str, text_dim: int, genre_dim: int, output_dim: int | None = None,
              seed: int | None = None) -> nn.Module:
    """The head named by ``model.head``."""
    if kind == "residual":
        return ResidualHead(text_dim, genre_dim, output_dim, seed)
    if kind == "paper":
        return FusionHead(text_dim, genre_dim, output_dim, seed)
    raise ValueError(f"model.head must be one of {HEADS}, got {kind!r}")


def save_head(head: nn.Module, path: str | os.PathLike) -> dict:
    """The head module: its weights as safetensors; its config (kind and dims) goes to modules.json."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().clone() for k, v in head.state_dict().items()}
    save_file(state, str(path), metadata={"format": "pt"})
    return head.config()


def load_head(path: str | os.PathLike, config: dict) -> nn.Module:
    from safetensors.torch import load_file

    head = make_head(config["kind"], config["text_dim"], config["genre_dim"], config["output_dim"])
    head.load_state_dict(load_file(str(path)), strict=True)
    return head
