"""The LightFusionRec fusion head (arXiv 2410.15656, section 3).

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

import torch
from torch import nn
from torch.nn import functional as F

NORM_EPS = 1e-12


class FusionHead(nn.Module):
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
