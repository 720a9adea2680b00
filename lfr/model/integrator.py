"""The X-Cross layer-wise integrator (arXiv 2504.20859, Sec. 3; our reading, see docs/XCROSS.md).

At layer ``l`` every domain stream ``m`` (the base encoder run with domain ``m``'s LoRA adapter)
has produced hidden states ``h_m`` (per token). The integrator

1. concatenates them per token: ``c = [h_1; ...; h_n]``                       (paper eq. 2)
2. maps the concatenation linearly: ``z = W c + b``                           (paper eq. 3)
   ``z`` holds one scaling factor per domain (``s_m = 1 + z_m``) and one interaction term per
   ordered pair of different domains (``g_mk``);
3. refines every stream: ``h'_m = s_m * h_m + sum_{k != m} g_mk * h_k``, which feeds layer ``l+1``.

``W = 0, b = 0`` is the initialisation, so an untrained integrator is exactly the identity
(``1 * h + 0 * h_k == h`` in floating point): untrained X-Cross equals the base encoder with
each item's own domain adapter. Scaling factors and interaction terms are per token and computed
from the states themselves, so the mix is dynamic (input dependent), as the paper describes.
"""
from __future__ import annotations

import torch
from torch import nn


class LayerIntegrator(nn.Module):
    """The integrator of one layer for ``n_domains`` streams of width ``dim``."""

    def __init__(self, dim: int, n_domains: int):
        super().__init__()
        if n_domains < 2:
            raise ValueError("an integrator mixes at least two domain streams")
        self.n = int(n_domains)
        self.mix = nn.Linear(self.n * int(dim), self.n * self.n)
        nn.init.zeros_(self.mix.weight)
        nn.init.zeros_(self.mix.bias)

    def forward(self, streams: torch.Tensor) -> torch.Tensor:
        """``streams``: ``(n, batch, tokens, dim)`` -> refined streams of the same shape."""
        n = self.n
        if streams.shape[0] != n:
            raise ValueError(f"expected {n} domain streams, got {streams.shape[0]}")
        concat = torch.cat(list(streams), dim=-1)            # (B, T, n*dim)
        z = self.mix(concat)                                  # (B, T, n*n)
        scale, inter = 1.0 + z[..., :n], z[..., n:]
        out = []
        for m in range(n):
            refined = scale[..., m:m + 1] * streams[m]
            others = [k for k in range(n) if k != m]
            for j, k in enumerate(others):
                refined = refined + inter[..., m * (n - 1) + j:m * (n - 1) + j + 1] * streams[k]
            out.append(refined)
        return torch.stack(out)

    def is_identity(self) -> bool:
        return bool(torch.count_nonzero(self.mix.weight) == 0 and torch.count_nonzero(self.mix.bias) == 0)


class Integrator(nn.Module):
    """One ``LayerIntegrator`` per transformer layer."""

    def __init__(self, dim: int, n_layers: int, n_domains: int):
        super().__init__()
        self.layers = nn.ModuleList(LayerIntegrator(dim, n_domains) for _ in range(int(n_layers)))

    def is_identity(self) -> bool:
        return all(layer.is_identity() for layer in self.layers)

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
