"""SPARC as a plug-in of the decoding loop: selective, progressive attention recalibration.

Per sequence and decode step ``t`` (the official timeline, ``attn_util.py``):

1. the selected layer's last-query attention over the image span, ``a_t`` (mean over heads), is compared with the
   EMA of earlier steps: tokens with ``(a_t - ema) / ema >= tau`` are selected;
2. the EMA is updated after the selection: ``ema = (1 - beta) * a_t + beta * ema`` (initialised at the prefill
   from the last prompt token's row);
3. at step ``t + 1`` (one-step lag) the cached value vectors of the selected image tokens are multiplied by
   ``alpha`` in place, in layers ``start_layer..end_layer``, before attention; the cache keeps the product, so a
   token selected ``c`` times carries ``alpha ** c``.

State is per sequence (tensors of shape ``(B, N)``, ``N`` the longest image span of the batch), so batches with left
padding and different image lengths (LLaVA-NeXT) give each sequence its own selections. Arithmetic stays in the
model dtype, as the official fp16 code.

>>> generate(batch, GenerationConfig(), Sparc(SparcConfig(tau=1.5)))   # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from llava.attention import AttentionHook
from llava.generation import DecodingContext, DecodingMethod
from sparc.config import SparcConfig


DENSE_FRACTION = 16
"""Above 1/16 of the batch's image tokens selected in a step, the amplification multiplies the whole image span by
per-token factors (one kernel per layer) instead of indexing the selected rows (measured on CPU: 16-57 % faster
there, the same below)."""


class SparcHook(AttentionHook):
    """Selection at one layer, amplification of cached values in a layer range, one EMA per sequence."""

    def __init__(self, config: SparcConfig, image_start: torch.Tensor, image_len: torch.Tensor, record: bool = False):
        self.config = config
        width = int(image_len.max()) if image_len.numel() else 0
        offsets = torch.arange(width, device=image_start.device)
        self.positions = image_start[:, None] + offsets  # (B, N) cache positions of the image tokens
        self.valid = offsets < image_len[:, None]
        self.positions = torch.where(self.valid, self.positions, image_start[:, None])
        self.span = (int(self.positions.min()), int(self.positions.max()) + 1) if width else (0, 0)
        self.dense_above = int(self.valid.sum()) // DENSE_FRACTION
        self.ema: torch.Tensor | None = None
        self.pending: torch.Tensor | None = None  # (B, N) bool: selected at this step, used from the next one
        self.active: tuple[torch.Tensor, torch.Tensor] | None = None  # (rows, cache positions) to amplify now
        self.factor: torch.Tensor | None = None  # or, when many are selected, (B, 1, span, 1) factors of the span
        self.counts = torch.zeros_like(self.valid, dtype=torch.long)
        self.step = 0
        self.record = record
        self.selections: list[list[list[int]]] = [[] for _ in range(image_start.shape[0])]

    def begin_forward(self, step: int) -> None:
        self.step = step
        self.active = self.factor = None
        if self.pending is not None:
            rows, columns = self.pending.nonzero(as_tuple=True)
            positions = self.positions[rows, columns]
            if rows.numel() > self.dense_above:  # many tokens: one multiply over the image span beats indexing
                start, end = self.span
                factor = torch.ones(self.positions.shape[0], end - start, device=positions.device)
                factor[rows, positions - start] = self.config.alpha
                self.factor = factor[:, None, :, None]
            elif rows.numel():
                self.active = rows, positions
        self.pending = None

    def edit_values(self, layer_idx: int, value: torch.Tensor) -> None:
        if not self.config.start_layer <= layer_idx <= self.config.end_layer:
            return
        if self.factor is not None:  # factors are exactly 1.0 off the selection: those values stay bit-identical
            start, end = self.span
            value[:, :, start:end].mul_(self.factor)
        elif self.active is not None:
            rows, positions = self.active
            value[rows, :, positions] = value[rows, :, positions] * self.config.alpha

    def wants_attention(self, layer_idx: int) -> bool:
        return layer_idx == self.config.selected_layer

    def on_attention(self, layer_idx: int, row: torch.Tensor) -> None:
        attention = row.gather(1, self.positions)
        if self.step == 0 or self.ema is None:
            self.ema = attention
            return
        selected = ((attention - self.ema) / self.ema >= self.config.tau) & self.valid
        self.ema = (1 - self.config.beta) * attention + self.config.beta * self.ema
        self.pending = selected
        self.counts += selected
        if self.record:
            for index, mask in enumerate(selected.tolist()):
                self.selections[index].append([j for j, chosen in enumerate(mask) if chosen])


@dataclass(frozen=True)
class SparcTrace:
    """What SPARC did to one sequence: ``selections[k]``, the image-token indices (0-based in the image span) selected
    at decode step ``k + 1`` (amplified from step ``k + 2`` on); ``counts[j]``, how often token ``j`` was selected
    (its values carry ``alpha ** counts[j]``); ``image_len``, the length of the image span."""

    selections: list[list[int]]
    counts: list[int]
    image_len: int


class Sparc(DecodingMethod):
    """SPARC decoding; ``alpha == 1.0`` is plain decoding (the official code leaves the model unpatched then).

    With ``record=True``, :meth:`traces` gives after each batch one :class:`SparcTrace` per sequence.
    """

    def __init__(self, config: SparcConfig = SparcConfig(), record: bool = False):
        self.config = config
        self.record = record
        self.hook: SparcHook | None = None

    def begin(self, context: DecodingContext) -> None:
        self.config.validate(context.family.num_layers(context.model))
        prefill = context.prefill
        self.hook = SparcHook(self.config, prefill.image_start, prefill.image_len, self.record) if self.config.enabled else None

    def traces(self) -> list[SparcTrace]:
        """One :class:`SparcTrace` per sequence of the last batch (needs ``record=True`` and ``alpha != 1``)."""
        hook = self.hook
        if hook is None or not self.record:
            raise ValueError("no SPARC trace: build Sparc(config, record=True) with alpha != 1.0")
        lengths = hook.valid.sum(dim=1).tolist()
        return [SparcTrace(hook.selections[row], hook.counts[row, :length].tolist(), length)
                for row, length in enumerate(lengths)]
