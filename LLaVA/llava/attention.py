"""The one hook point inside the language model's attention.

We register two attention functions with transformers' ``AttentionInterface`` (and the matching mask builders with
``AttentionMaskInterface``, without which left-padded batches silently lose their mask): ``llava_hooked_sdpa``
wraps SDPA (the fast path), ``llava_hooked_eager`` is eager attention with the official code's arithmetic
(transformers 4.31 / 4.37: scores divided by ``sqrt(head_dim)``, softmax in float32, cast back). Both receive the full
cached keys and values (the cache's own storage, before ``repeat_kv``) and, when a forward is called with
``attn_hook=...``, let an :class:`AttentionHook`

(a) edit cached value vectors in place before attention (SPARC's amplification), and
(b) read the softmax attention row of the last query, averaged over heads, for the layers it asks for (SPARC's
    selection, AvisC's blind tokens), computed from that layer's query and keys only; no ``output_attentions``,
    no eager model.

>>> class Rows(AttentionHook):
...     def wants_attention(self, layer_idx): return layer_idx == 0
...     def on_attention(self, layer_idx, row): self.row = row
>>> # decoder(inputs_embeds=..., attn_hook=Rows())  ->  hook.row is (batch, kv_length)
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, eager_mask, sdpa_mask

HOOKED_SDPA = "llava_hooked_sdpa"
HOOKED_EAGER = "llava_hooked_eager"
ATTENTION_IMPLEMENTATIONS = {"sdpa": HOOKED_SDPA, "eager": HOOKED_EAGER}


class AttentionHook:
    """What a method does inside attention; override what you need. Called once per layer per forward."""

    def begin_forward(self, step: int) -> None:
        """Called by the decoding loop before each forward: ``0`` is the prefill, ``t`` decode step ``t``."""

    def edit_values(self, layer_idx: int, value: torch.Tensor) -> None:
        """Edit ``value`` ``(B, H_kv, S, D)`` in place; it is the KV cache's storage, so edits persist."""

    def wants_attention(self, layer_idx: int) -> bool:
        """Whether :meth:`on_attention` should receive this layer's last-query attention row."""
        return False

    def on_attention(self, layer_idx: int, row: torch.Tensor) -> None:
        """``row`` ``(B, S)``: softmax attention of the last query over all keys, mean over heads (model dtype)."""


def attention_scores(query: torch.Tensor, key: torch.Tensor, scaling: float) -> torch.Tensor:
    """``query @ key^T`` scaled as the official eager code does (divided by ``sqrt(head_dim)``), in the model dtype."""
    scores = torch.matmul(query, key.transpose(-1, -2))
    dim = query.shape[-1]
    return scores / math.sqrt(dim) if math.isclose(scaling, dim**-0.5) else scores * scaling


def eager_attention(
    module: torch.nn.Module, query, key, value, attention_mask, scaling: float, dropout: float = 0.0, **kwargs
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager attention with the official arithmetic; returns ``(output (B, Q, H, D), probabilities)``."""
    groups = module.num_key_value_groups
    scores = attention_scores(query, repeat_kv(key, groups), scaling)
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = torch.nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    probs = torch.nn.functional.dropout(probs, p=dropout, training=module.training)
    return torch.matmul(probs, repeat_kv(value, groups)).transpose(1, 2).contiguous(), probs


def last_query_attention(
    query: torch.Tensor, key: torch.Tensor, attention_mask: torch.Tensor | None, scaling: float
) -> torch.Tensor:
    """Softmax attention row of the last query over all keys, averaged over heads: ``(B, S)``.

    ``query`` ``(B, H, Q, D)``, ``key`` ``(B, H_kv, S, D)`` (grouped-query heads handled without repeating keys).
    Arithmetic as in the official eager code: scores in the model dtype (:func:`attention_scores`), softmax in
    float32, probabilities cast back to the model dtype, then the mean over heads.
    """
    batch, kv_heads, length, dim = key.shape
    heads = query.shape[1]
    q_last = query[:, :, -1, :].reshape(batch, kv_heads, heads // kv_heads, dim)
    scores = attention_scores(q_last, key, scaling).float()  # (B, H_kv, G, S)
    if attention_mask is not None:
        mask = attention_mask[:, :, -1:, -length:]  # (B, 1, 1, S)
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask.float()
    probs = scores.softmax(dim=-1).to(query.dtype)
    return probs.reshape(batch, heads, length).mean(dim=1)


def _hooked(base: Callable[..., Any]) -> Callable[..., Any]:
    def attention(module: torch.nn.Module, query, key, value, attention_mask, attn_hook: AttentionHook | None = None, **kwargs):
        if attn_hook is not None:
            layer_idx = module.layer_idx
            attn_hook.edit_values(layer_idx, value)
            if attn_hook.wants_attention(layer_idx):
                scaling = kwargs.get("scaling") or module.scaling
                attn_hook.on_attention(layer_idx, last_query_attention(query, key, attention_mask, scaling))
        return base(module, query, key, value, attention_mask, **kwargs)

    attention.__name__ = f"hooked_{base.__name__}"
    return attention


def register() -> None:
    """Register the hooked attention functions and their mask builders (idempotent)."""
    AttentionInterface.register(HOOKED_SDPA, _hooked(sdpa_attention_forward))
    AttentionMaskInterface.register(HOOKED_SDPA, sdpa_mask)
    AttentionInterface.register(HOOKED_EAGER, _hooked(eager_attention))
    AttentionMaskInterface.register(HOOKED_EAGER, eager_mask)


def hooked_name(attn: str) -> str:
    """The registered name for ``"sdpa"`` or ``"eager"`` (hooked names pass through)."""
    if attn in ATTENTION_IMPLEMENTATIONS.values():
        return attn
    try:
        return ATTENTION_IMPLEMENTATIONS[attn]
    except KeyError:
        raise ValueError(f"unknown attention implementation {attn!r}; expected sdpa or eager") from None


register()
