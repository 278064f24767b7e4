"""AvisC's blind-token detection, per sequence, from the prefill attention of the last prompt token.

1. Each layer's share of attention on the image: the sum of its (head-averaged) attention over the image tokens,
   normalised over layers.
2. Layers taken by share, largest first, while the cumulative share stays below ``layer_gamma``, plus one
   (``k = #{prefix sums < gamma} + 1``; the official code normalises the shares once more before the cumsum).
3. The attention of the chosen layers, averaged: tokens at or above ``mean + lamb * std`` (unbiased std) are
   *blind* (they soak up attention); the others, the **non-blind** tokens, are what the second branch masks.

>>> import torch
>>> shares = torch.tensor([0.1, 0.6, 0.3])
>>> select_layers(shares, 0.5).tolist()      # 0.6 alone already reaches 0.5
[1]
>>> select_layers(shares, 0.8).tolist()      # 0.6 < 0.8, 0.9 >= 0.8: two layers
[1, 2]
>>> non_blind_tokens(torch.tensor([[0.1, 0.1, 0.1, 0.7]]), lamb=1.0).tolist()
[0, 1, 2]
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


def layer_shares(attention: torch.Tensor) -> torch.Tensor:
    """``attention`` ``(L, N)`` (each layer's attention over the image tokens) -> each layer's share ``(L,)``."""
    totals = torch.stack([layer.sum() for layer in attention])  # one full reduction per layer, as the official code
    return totals / totals.sum()


def select_layers(shares: torch.Tensor, layer_gamma: float) -> torch.Tensor:
    """Indices of the layers with the largest shares, largest first, as the official ``count_top_p`` + ``topk``."""
    normalised = shares / shares.sum()
    k = int((torch.cumsum(torch.sort(normalised, descending=True).values, dim=0) < layer_gamma).sum()) + 1
    return torch.topk(shares.float(), k, dim=0).indices


def non_blind_tokens(attention: torch.Tensor, lamb: float) -> torch.Tensor:
    """Image-token indices below ``mean + std * lamb`` of the layer-averaged attention (``attention`` ``(k, N)``)."""
    averaged = attention.mean(dim=0)
    return torch.where(averaged < averaged.mean() + averaged.std() * lamb)[0]


@dataclass
class BlindTokens:
    """What AvisC found for one sequence: the layer shares, the chosen layers and the tokens it masks."""

    shares: torch.Tensor
    layers: torch.Tensor
    attention: torch.Tensor  # (N,) layer-averaged attention over the image tokens
    masked: torch.Tensor  # indices of the non-blind image tokens


def find_blind_tokens(attention: torch.Tensor, layer_gamma: float, lamb: float) -> BlindTokens:
    """``attention`` ``(L, N)``: every layer's last-query attention over this sequence's image tokens."""
    shares = layer_shares(attention)
    layers = select_layers(shares, layer_gamma)
    chosen = torch.stack([attention[i] for i in layers])
    return BlindTokens(shares, layers, chosen.mean(dim=0), non_blind_tokens(chosen, lamb))
