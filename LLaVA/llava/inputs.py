"""Prefill inputs: per-sequence embeddings with their image span and positions, and left-padded batches of them.

The language model never sees the ``-200`` placeholder: each family builds the prefill ``inputs_embeds`` itself
(text embeddings with the image features spliced in), so original checkpoints keep their 32000-row vocabulary, and
every method knows, per sequence, exactly where the image sits.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass
class Images:
    """Preprocessed images of a batch: one pixel tensor per image and the original ``(width, height)`` sizes."""

    pixel_values: list[torch.Tensor]
    sizes: list[tuple[int, int]]

    def map(self, fn: Callable[[int, torch.Tensor], torch.Tensor]) -> "Images":
        """The same images with ``fn(row, pixels)`` applied to each (e.g. VCD's diffusion noise)."""
        return Images([fn(row, p) for row, p in enumerate(self.pixel_values)], list(self.sizes))


@dataclass
class SequenceInputs:
    """One sequence: ``embeds`` ``(L, D)``, its image span ``[image_start, image_start + image_len)`` and, where
    positions are not simply ``0 .. L-1``, its ``positions``: ``(3, L)`` for multimodal rotary positions (Qwen2-VL's
    M-RoPE: temporal, height, width), ``None`` for the usual 1-D ones."""

    embeds: torch.Tensor
    image_start: int
    image_len: int
    positions: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.image_len and not 0 <= self.image_start <= self.image_start + self.image_len <= self.embeds.shape[0]:
            raise ValueError(f"image span {self.image_start}+{self.image_len} outside a sequence of {self.embeds.shape[0]}")
        if self.positions is not None and (self.positions.dim() != 2 or self.positions.shape[1] != self.embeds.shape[0]):
            raise ValueError(f"positions {tuple(self.positions.shape)} for a sequence of {self.embeds.shape[0]}")

    @property
    def next_position(self) -> int:
        """The position of a token appended after the sequence (last position + 1: M-RoPE's text positions go on
        from the largest position of the image)."""
        return int(self.positions.max()) + 1 if self.positions is not None else self.embeds.shape[0]

    def extended(self, embeds: torch.Tensor) -> "SequenceInputs":
        """This sequence followed by the text embeddings ``embeds`` ``(T, D)`` (generated tokens), their positions
        going on from :attr:`next_position`."""
        positions = None
        if self.positions is not None:
            steps = torch.arange(embeds.shape[0], device=self.positions.device) + self.next_position
            positions = torch.cat([self.positions, steps.expand(self.positions.shape[0], -1)], dim=1)
        return SequenceInputs(torch.cat([self.embeds, embeds]), self.image_start, self.image_len, positions)


PAD_POSITION = 1
"""Position id of left padding (as transformers' ``generate``; masked out, so any value gives the same outputs)."""


@dataclass
class Prefill:
    """A left-padded batch for the language model's first forward.

    ``position_ids`` is ``(B, L)`` (1-D positions) or ``(3, B, L)`` (M-RoPE, when any sequence has 3-D positions).
    ``image_start`` holds each sequence's image start in padded coordinates (pad count + start in the sequence), so
    the same numbers index the KV cache.
    """

    inputs_embeds: torch.Tensor  # (B, L, D)
    attention_mask: torch.Tensor  # (B, L), 1 = token, 0 = left padding
    position_ids: torch.Tensor  # (B, L) or (3, B, L)
    image_start: torch.Tensor  # (B,)
    image_len: torch.Tensor  # (B,)

    @property
    def batch_size(self) -> int:
        return self.inputs_embeds.shape[0]

    @property
    def padded(self) -> bool:
        """Whether any sequence is shorter than the batch (then the attention mask is needed)."""
        return not bool(self.attention_mask.all())

    @property
    def lengths(self) -> torch.Tensor:
        """Number of real (non-pad) tokens per sequence."""
        return self.attention_mask.sum(dim=1)

    @property
    def next_positions(self) -> torch.Tensor:
        """``(B,)``: the position of each row's first generated token (its largest position + 1; the length for 1-D
        positions)."""
        if self.position_ids.dim() == 2:
            return self.lengths
        real = self.position_ids.masked_fill(self.attention_mask[None] == 0, -1)
        return real.amax(dim=(0, 2)) + 1

    @classmethod
    def from_sequences(cls, sequences: list[SequenceInputs]) -> "Prefill":
        """Left-pad ``sequences`` to one batch (pad embeddings are zeros and masked out)."""
        if not sequences:
            raise ValueError("no sequences to batch")
        length = max(s.embeds.shape[0] for s in sequences)
        first = sequences[0].embeds
        embeds = first.new_zeros(len(sequences), length, first.shape[-1])
        mask = torch.zeros(len(sequences), length, dtype=torch.long, device=first.device)
        starts, lens = [], []
        for row, sequence in enumerate(sequences):
            pad = length - sequence.embeds.shape[0]
            embeds[row, pad:] = sequence.embeds
            mask[row, pad:] = 1
            starts.append(pad + sequence.image_start)
            lens.append(sequence.image_len)
        positions = positions_from_mask(mask)
        if any(s.positions is not None for s in sequences):
            positions = positions[None].repeat(3, 1, 1)
            for row, sequence in enumerate(sequences):
                if sequence.positions is not None:
                    positions[:, row, length - sequence.embeds.shape[0]:] = sequence.positions.to(positions.device)
        return cls(
            inputs_embeds=embeds,
            attention_mask=mask,
            position_ids=positions,
            image_start=torch.tensor(starts, device=first.device),
            image_len=torch.tensor(lens, device=first.device),
        )

    def to_sequences(self) -> list[SequenceInputs]:
        """Undo the padding (used to rebuild a batch after editing embeddings)."""
        sequences = []
        for row in range(self.batch_size):
            pad = int(self.attention_mask.shape[1] - self.lengths[row])
            positions = self.position_ids[:, row, pad:] if self.position_ids.dim() == 3 else None
            sequences.append(SequenceInputs(self.inputs_embeds[row, pad:], int(self.image_start[row]) - pad,
                                            int(self.image_len[row]), positions))
        return sequences


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count only real tokens (left padding gets :data:`PAD_POSITION`, as in transformers'
    generate)."""
    positions = attention_mask.long().cumsum(dim=-1) - 1
    return positions.masked_fill(attention_mask == 0, PAD_POSITION)
