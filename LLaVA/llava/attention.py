"""The one hook point inside the language model's attention.

We register two attention functions with transformers' ``AttentionInterface`` (and the matching mask builders with
``AttentionMaskInterface``, without which left-padded batches silently lose their mask): ``llava_hooked_sdpa``
wraps SDPA (the fast path), ``llava_hooked_eager`` is eager attention with the official code's arithmetic
(transformers 4.31 / 4.37: scores divided by ``sqrt(head_dim)``, softmax in float32, cast back). Both receive the full
cached keys and values (the cache's own storage, before ``repeat_kv``) and, when a forward is called with
``attn_hook=...``, let an :class:`AttentionHook`

(a) edit cached value vectors in place before attention (SPARC's amplification),
(b) read the softmax attention row of the last query, averaged over heads, for the layers it asks for (SPARC's
    selection, AvisC's blind tokens), computed from that layer's query and keys only; no ``output_attentions``,
    no eager model, and
(c) edit the last query's pre-softmax scores (scaled, mask added) in place, for the layers it asks for (PAI's
    ``A + alpha * |A|`` over the image span). Eager attention edits its own score row; on SDPA the last query's
    row alone is computed (the last query times the keys), edited and attended with the eager arithmetic, while
    every other query stays on SDPA: the model is never switched to eager.

Keys and values may also come as :class:`KVGroups` (rows with caches of different lengths, from the decoding loop's
grouped cache): attention then runs once per group, each with its own padding mask and no padding to the longest
group, and the hook sees the first group only (the main rows, with any branch rows laid out like them). Eager
attention keeps its ``(B, H, Q, S)`` scores and probabilities in reusable buffers (:class:`Workspace`), so a long
prefill does not allocate, hand back to the operating system and fault in again score-sized tensors in every layer.

>>> class Rows(AttentionHook):
...     def wants_attention(self, layer_idx): return layer_idx == 0
...     def on_attention(self, layer_idx, row): self.row = row
>>> # decoder(inputs_embeds=..., attn_hook=Rows())  ->  hook.row is (batch, kv_length)
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
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

    head_reduction: str = "mean"
    """How :meth:`on_attention` rows are reduced over heads: ``"mean"`` (SPARC, AvisC) or ``"max"`` (OPERA)."""

    query_rows: str = "last"
    """Which queries' rows :meth:`on_attention` receives: ``"last"`` (``(B, S)``) or ``"all"`` (``(B, Q, S)``: OPERA's
    candidates, several queries in one forward)."""

    def wants_attention(self, layer_idx: int) -> bool:
        """Whether :meth:`on_attention` should receive this layer's last-query attention row."""
        return False

    def on_attention(self, layer_idx: int, row: torch.Tensor) -> None:
        """``row`` ``(B, S)``: softmax attention of the last query over all keys (``(B, Q, S)``, every query, when
        :attr:`query_rows` is ``"all"``), reduced over heads as :attr:`head_reduction` says (model dtype)."""

    def wants_scores(self, layer_idx: int) -> bool:
        """Whether :meth:`edit_scores` should edit this layer's last-query scores."""
        return False

    def edit_scores(self, layer_idx: int, scores: torch.Tensor) -> None:
        """Edit ``scores`` ``(B, H, S)`` in place: the last query's pre-softmax attention logits over all keys, scaled
        and with the attention mask added (model dtype), as the official eager code holds them before its softmax.
        The rows read by :meth:`on_attention` are those of the unedited scores."""


class Workspace:
    """Reusable scratch tensors by name, dtype and device: one flat buffer each, grown to the largest size asked for
    and kept, so repeated large temporaries (eager attention's prefill scores: ``(B, H, L, L)``, 49 MB per layer for
    8 prompts of 617 tokens on the tiny model) come from memory that stays mapped, instead of being mapped, faulted
    in page by page and unmapped again in every layer (glibc serves blocks over 32 MB with ``mmap`` always).

    Tensors under ``min_bytes`` are left to the allocator, which reuses small freed blocks without returning them to
    the operating system (decode steps fault less than one page per token) and hands them out faster than a view of
    a kept buffer. Only used without autograd; inference-mode buffers are kept apart (they cannot be written
    outside it). Not thread-safe: one forward at a time per process.
    """

    def __init__(self, min_bytes: int = 2**20) -> None:
        self.min_bytes = min_bytes
        self._buffers: dict[tuple[Any, ...], torch.Tensor] = {}

    def take(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor | None:
        """An uninitialised tensor of ``shape`` (a view of the kept buffer), or ``None`` (allocate as usual) for a
        small tensor or while autograd records."""
        numel = math.prod(shape)
        if numel * dtype.itemsize < self.min_bytes or torch.is_grad_enabled():
            return None
        key = (name, dtype, device, torch.is_inference_mode_enabled())
        buffer = self._buffers.get(key)
        if buffer is None or buffer.numel() < numel:
            buffer = self._buffers[key] = torch.empty(numel, dtype=dtype, device=device)
        return buffer[:numel].view(shape)

    def clear(self) -> None:
        """Drop every buffer (their memory goes back to the allocator)."""
        self._buffers.clear()


WORKSPACE = Workspace()
"""Eager attention's score and probability buffers."""


def attention_scores(
    query: torch.Tensor, key: torch.Tensor, scaling: float, out: torch.Tensor | None = None
) -> torch.Tensor:
    """``query @ key^T`` scaled as the official eager code does (divided by ``sqrt(head_dim)``), in the model dtype;
    written into ``out`` when given (same values: the scaling is done in place on the product)."""
    scores = torch.matmul(query, key.transpose(-1, -2), out=out)
    dim = query.shape[-1]
    return scores.div_(math.sqrt(dim)) if math.isclose(scaling, dim**-0.5) else scores.mul_(scaling)


ScoreEdit = Callable[[torch.Tensor], None]
"""Edits the last query's scores ``(B, H, S)`` in place (an :meth:`AttentionHook.edit_scores` bound to a layer)."""


def eager_attention(
    module: torch.nn.Module, query, key, value, attention_mask, scaling: float, dropout: float = 0.0,
    edit_last_scores: ScoreEdit | None = None, **kwargs
) -> tuple[torch.Tensor, None]:
    """Eager attention with the official arithmetic (``QK^T / sqrt(d)``, mask added, ``edit_last_scores`` applied to
    the last query's row, float32 softmax cast back); returns ``(output (B, Q, H, D), None)``: the probabilities live
    in :data:`WORKSPACE` and are overwritten by the next layer, so none are returned (the hook reads rows)."""
    groups = module.num_key_value_groups
    shape = (*query.shape[:3], key.shape[2])
    scores = attention_scores(query, repeat_kv(key, groups), scaling, WORKSPACE.take("scores", shape, query.dtype, query.device))
    if attention_mask is not None:
        scores.add_(attention_mask)
    if edit_last_scores is not None:
        edit_last_scores(scores[:, :, -1, :])
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32, out=WORKSPACE.take("probs", shape, torch.float32, query.device))
    probs = torch.nn.functional.dropout(probs.to(query.dtype), p=dropout, training=module.training)
    return torch.matmul(probs, repeat_kv(value, groups)).transpose(1, 2).contiguous(), None


HEAD_REDUCTIONS = ("mean", "max")
QUERY_ROWS = ("last", "all")


def query_attention(
    query: torch.Tensor, key: torch.Tensor, attention_mask: torch.Tensor | None, scaling: float,
    head_reduction: str = "mean", query_rows: str = "last",
) -> torch.Tensor:
    """Softmax attention rows over all keys, reduced over heads (``mean`` or ``max``): the last query's ``(B, S)``
    (``query_rows="last"``) or every query's ``(B, Q, S)`` (``"all"``).

    ``query`` ``(B, H, Q, D)``, ``key`` ``(B, H_kv, S, D)`` (grouped-query heads handled without repeating keys),
    ``attention_mask`` 4-D boolean (``True`` = attend) or additive, or ``None`` (causal: the queries are the last
    ``Q`` positions). Arithmetic as in the official eager code: scores in the model dtype (:func:`attention_scores`),
    softmax in float32, probabilities cast back to the model dtype, then the mean (or max) over heads.
    """
    if head_reduction not in HEAD_REDUCTIONS:
        raise ValueError(f"unknown head reduction {head_reduction!r}; expected one of {', '.join(HEAD_REDUCTIONS)}")
    if query_rows not in QUERY_ROWS:
        raise ValueError(f"unknown query rows {query_rows!r}; expected one of {', '.join(QUERY_ROWS)}")
    if query_rows == "last":
        query = query[:, :, -1:]
    scores = query_scores(query, key, scaling).float()  # (B, H, Q, S)
    queries, length = scores.shape[2:]
    if attention_mask is not None:
        mask = attention_mask[:, :, -queries:, -length:]  # (B, 1, Q, S)
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask.float()
    elif queries > 1:
        positions = torch.arange(length, device=scores.device)
        scores = scores.masked_fill(positions > positions[length - queries:, None], float("-inf"))
    probs = scores.softmax(dim=-1).to(query.dtype)
    rows = probs.mean(dim=1) if head_reduction == "mean" else probs.amax(dim=1)  # (B, Q, S)
    return rows[:, -1] if query_rows == "last" else rows


def query_scores(query: torch.Tensor, key: torch.Tensor, scaling: float) -> torch.Tensor:
    """``(B, H, Q, S)``: scaled scores of the queries over all keys (:func:`attention_scores`, model dtype),
    grouped-query heads handled without repeating keys (query head ``h`` uses key head ``h // (H / H_kv)``, as
    ``repeat_kv``)."""
    batch, kv_heads, length, dim = key.shape
    heads, queries = query.shape[1], query.shape[2]
    grouped = query.reshape(batch, kv_heads, heads // kv_heads * queries, dim)
    return attention_scores(grouped, key, scaling).reshape(batch, heads, queries, length)


def _last_row(attention_mask: torch.Tensor, length: int) -> torch.Tensor:
    """The last query's row ``(B, 1, S)`` of a 4-D attention mask ``(B, 1, Q, >= S)``."""
    return attention_mask[:, :, -1, -length:]


def sdpa_attention_edited(
    module: torch.nn.Module, query, key, value, attention_mask, edit_last_scores: ScoreEdit, scaling: float | None = None,
    **kwargs
) -> tuple[torch.Tensor, None]:
    """SDPA for every query but the last, whose pre-softmax scores are edited; returns ``(output (B, Q, H, D), None)``.

    The last query's scores (:func:`query_scores`, the mask added as eager adds it: ``finfo.min`` where a
    boolean mask hides a key) are edited in place by ``edit_last_scores`` and that query attends with the official
    eager arithmetic (float32 softmax cast back, times the values): one row of ``QK^T`` that an edit needs anyway,
    not a second SDPA call. At decode steps that row is the whole query; at a prefill it replaces SDPA's last row.
    """
    scaling = scaling or module.scaling
    scores = query_scores(query[:, :, -1:], key, scaling)[:, :, 0]  # (B, H, S)
    if attention_mask is not None:
        row = _last_row(attention_mask, key.shape[2])
        scores = scores.masked_fill(~row, torch.finfo(scores.dtype).min) if row.dtype == torch.bool else scores + row
    edit_last_scores(scores)
    last = _attend(scores, value)
    if query.shape[2] == 1:
        return last, None
    output, _ = sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
    output[:, -1:] = last
    return output, None


def _attend(scores: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """One query's output ``(B, 1, H, D)`` from its scores ``(B, H, S)`` and ``value`` ``(B, H_kv, S, D)``: float32
    softmax cast back to the model dtype, times the values (grouped-query heads without repeating values)."""
    batch, kv_heads, length, dim = value.shape
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
    output = torch.matmul(probs.reshape(batch, kv_heads, -1, length), value)  # (B, H_kv, G, D)
    return output.reshape(batch, 1, -1, dim)


@dataclass
class KVGroups:
    """One layer's cached keys and values as groups of rows with their own lengths (what a grouped cache's ``update``
    returns): group ``i`` holds rows ``rows[i]`` of the forward, ``keys[i]`` / ``values[i]`` ``(b_i, H_kv, S_i, D)``
    and ``padding[i]``, its ``(b_i, S_i)`` boolean padding mask (``True`` = token), or ``None`` when no row of the
    group is padded. Attention runs per group, so a short group attends over its own length only."""

    rows: list[slice]
    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    padding: list[torch.Tensor | None]


def _sdpa_padding_mask(padding: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A ``(b, S)`` boolean padding mask as SDPA takes it for one query: ``(b, 1, 1, S)``, ``True`` = attend."""
    return padding[:, None, None, :]


def _eager_padding_mask(padding: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A ``(b, S)`` boolean padding mask as eager attention adds it: ``0`` where attended, ``finfo.min`` elsewhere."""
    zero = torch.zeros((), dtype=dtype, device=padding.device)
    return torch.where(padding, zero, torch.finfo(dtype).min)[:, None, None, :]


def _hooked(
    base: Callable[..., Any], edited: Callable[..., Any], padding_mask: Callable[[torch.Tensor, torch.dtype], torch.Tensor]
) -> Callable[..., Any]:
    """The hooked attention function around ``base``; ``edited`` is ``base`` with a last-query score edit, and
    ``padding_mask`` turns a group's ``(b, S)`` padding mask into the mask ``base`` takes."""

    def attention(module: torch.nn.Module, query, key, value, attention_mask, attn_hook: AttentionHook | None = None, **kwargs):
        if isinstance(key, KVGroups):
            outputs = [
                attention(module, query[rows], keys, values,
                          None if padding is None else padding_mask(padding, query.dtype),
                          attn_hook if index == 0 else None, **kwargs)[0]
                for index, (rows, keys, values, padding) in enumerate(zip(key.rows, key.keys, key.values, key.padding))
            ]
            return torch.cat(outputs), None
        if attn_hook is not None:
            layer_idx = module.layer_idx
            attn_hook.edit_values(layer_idx, value)
            if attn_hook.wants_attention(layer_idx):
                scaling = kwargs.get("scaling") or module.scaling
                row = query_attention(query, key, attention_mask, scaling, attn_hook.head_reduction,
                                      attn_hook.query_rows)
                attn_hook.on_attention(layer_idx, row)
            if attn_hook.wants_scores(layer_idx):
                edit = functools.partial(attn_hook.edit_scores, layer_idx)
                return edited(module, query, key, value, attention_mask, edit_last_scores=edit, **kwargs)
        return base(module, query, key, value, attention_mask, **kwargs)

    attention.__name__ = f"hooked_{base.__name__}"
    return attention


def register() -> None:
    """Register the hooked attention functions and their mask builders (idempotent)."""
    AttentionInterface.register(HOOKED_SDPA, _hooked(sdpa_attention_forward, sdpa_attention_edited, _sdpa_padding_mask))
    AttentionMaskInterface.register(HOOKED_SDPA, sdpa_mask)
    AttentionInterface.register(HOOKED_EAGER, _hooked(eager_attention, eager_attention, _eager_padding_mask))
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
