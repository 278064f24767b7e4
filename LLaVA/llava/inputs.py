"""Prefill inputs: per-sequence embeddings with their image span, and left-padded batches of them.

The language model never sees the ``-200`` placeholder: each family builds the prefill ``inputs_embeds`` itself
(text embeddings with the image features spliced in), so original checkpoints keep their 32000-row vocabulary, and
every method knows, per sequence, exactly where the image sits.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

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
    """One sequence: ``embeds`` ``(L, D)`` and its image span ``[image_start, image_start + image_len)``."""

    embeds: torch.Tensor
    image_start: int
    image_len: int

    def __post_init__(self) -> None:
        if self.image_len and not 0 <= self.image_start <= self.image_start + self.image_len <= self.embeds.shape[0]:
            raise ValueError(f"image span {self.image_start}+{self.image_len} outside a sequence of {self.embeds.shape[0]}")


@dataclass
class Prefill:
    """A left-padded batch for the language model's first forward.

    ``image_start`` holds each sequence's image start in padded coordinates (pad count + start in the sequence), so
    the same numbers index the KV cache.
    """

    inputs_embeds: torch.Tensor  # (B, L, D)
    attention_mask: torch.Tensor  # (B, L), 1 = token, 0 = left padding
    position_ids: torch.Tensor  # (B, L)
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
        return cls(
            inputs_embeds=embeds,
            attention_mask=mask,
            position_ids=positions_from_mask(mask),
            image_start=torch.tensor(starts, device=first.device),
            image_len=torch.tensor(lens, device=first.device),
        )

    def to_sequences(self) -> list[SequenceInputs]:
        """Undo the padding (used to rebuild a batch after editing embeddings)."""
        sequences = []
        for row in range(self.batch_size):
            pad = int(self.attention_mask.shape[1] - self.lengths[row])
            sequences.append(
                SequenceInputs(self.inputs_embeds[row, pad:], int(self.image_start[row]) - pad, int(self.image_len[row]))
            )
        return sequences


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count only real tokens (left padding gets position 1, as in transformers' generate)."""
    positions = attention_mask.long().cumsum(dim=-1) - 1
    return positions.masked_fill(attention_mask == 0, 1)


@dataclass
class PromptBatch:
    """What a batch is made of (prompts, images and the tools to embed them), so that a method can build variants of
    it (a noised image, no image) with the same family code as the main input."""

    model: Any
    tokenizer: Any
    image_processor: Any
    prompts: Sequence[str]
    images: Images | None

    def __post_init__(self) -> None:
        if self.images is not None and len(self.images.pixel_values) != len(self.prompts):
            raise ValueError(f"{len(self.prompts)} prompts but {len(self.images.pixel_values)} images")

    def encode(self, images: Images | None = None, text_only: bool = False) -> Prefill:
        """The left-padded prefill of this batch, with other ``images`` or none at all (``text_only``)."""
        from llava.model.families import family_of  # families builds on this module

        if text_only:
            images = None
        elif images is None:
            images = self.images
        family = family_of(self.model)
        return Prefill.from_sequences(family.embed(self.model, self.tokenizer, self.prompts, images, self.image_processor))
