"""AvisC, VCD and M3ID as plug-ins of ``llava.generation``: one contrastive decoder, the second branch batched with
the main one.

Each method builds one extra branch after the main prefill and contrasts its logits ``l2`` with the main ones ``l``:

- **AvisC**: the image with only its *blind* tokens kept (the non-blind ones' post-projector embeddings replaced
  by zeros / ones / noise), ``(1 + alpha) * l - alpha * l2``;
- **VCD**: the image with diffusion noise (step 500), same contrast;
- **M3ID**: no image at all (text only), ``lc + (1 - g_t) / g_t * (lc - lu)`` on log-probabilities with
  ``g_t = exp(-lambda * t)``.

Then every method keeps only the tokens whose *original* logit is within ``log(beta)`` of the best one; where the
branch yields NaN, the step falls back to the original logits (as the official sampler).

>>> generate(batch, GenerationConfig(do_sample=True), Avisc(AviscConfig(cd_alpha=2.5)), generators)  # doctest: +SKIP
"""
from __future__ import annotations

import math

import torch

from avisc.blind import BlindTokens, find_blind_tokens
from avisc.config import DIFFUSION_STEPS, AviscConfig, ContrastConfig, M3idConfig, VcdConfig
from llava.attention import AttentionHook
from llava.generation import DecodingContext, DecodingMethod
from llava.inputs import Prefill



def diffusion_schedule(num_steps: int = DIFFUSION_STEPS) -> tuple[torch.Tensor, torch.Tensor]:
    """VCD's schedule: ``(sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t))`` for each step ``t`` (sigmoid betas)."""
    betas = torch.sigmoid(torch.linspace(-6, 6, num_steps)) * (0.5e-2 - 1e-5) + 1e-5
    alphas_prod = torch.cumprod(1 - betas, dim=0)
    return torch.sqrt(alphas_prod), torch.sqrt(1 - alphas_prod)


def add_diffusion_noise(pixels: torch.Tensor, noise_step: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``sqrt(a_t) * x + sqrt(1 - a_t) * noise`` on normalised pixels (VCD's forward diffusion at ``noise_step``)."""
    signal, noise_scale = diffusion_schedule()
    device = generator.device if generator is not None else pixels.device  # a generator draws on its own device
    noise = torch.randn(pixels.shape, generator=generator, dtype=pixels.dtype, device=device).to(pixels.device)
    return signal[noise_step] * pixels + noise_scale[noise_step] * noise


class ContrastiveDecoding(DecodingMethod):
    """Shared by VCD, M3ID and AvisC: one extra branch, its logits contrasted with the main ones, the cutoff.

    ``config`` is the method's config (:mod:`avisc.config`); ``alpha`` is its ``cd_alpha`` (M3ID has none: it
    overrides :meth:`contrast`)."""

    def __init__(self, config: ContrastConfig):
        self.config = config
        self.log_beta = float(torch.log(torch.tensor(config.cd_beta)))  # float32, as the official cutoff

    @property
    def alpha(self) -> float:
        return self.config.cd_alpha

    def contrast(self, step: int, logits: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        return (1 + self.alpha) * logits - self.alpha * other

    def combine(self, step: int, logits: torch.Tensor, branch_logits: list[torch.Tensor]) -> torch.Tensor:
        other = branch_logits[0]
        other = torch.where(other.amax(dim=-1, keepdim=True).isnan(), logits, other)  # a NaN row: plain logits
        cutoff = self.log_beta + logits.amax(dim=-1, keepdim=True)
        return self.contrast(step, logits, other).masked_fill(logits < cutoff, float("-inf"))


class Vcd(ContrastiveDecoding):
    """Visual contrastive decoding: the second branch sees the image with diffusion noise."""

    config: VcdConfig

    def branches(self, context: DecodingContext) -> list[Prefill]:
        images = context.batch.images
        if images is None:
            raise ValueError("VCD needs images")
        generators = context.generators
        noised = images.map(
            lambda row, pixels: add_diffusion_noise(pixels, self.config.noise_step, generators[row] if generators else None)
        )
        return [context.batch.encode(noised)]


class M3id(ContrastiveDecoding):
    """M3ID: contrast with the text-only prompt, weighted by ``(1 - g_t) / g_t``, ``g_t = exp(-lambda * t)``."""

    config: M3idConfig

    def contrast(self, step: int, logits: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        gamma = math.exp(-self.config.m3id_lambda * step)
        conditioned, unconditioned = torch.log_softmax(logits, dim=-1), torch.log_softmax(other, dim=-1)
        return conditioned + ((1 - gamma) / gamma) * (conditioned - unconditioned)

    def branches(self, context: DecodingContext) -> list[Prefill]:
        return [context.batch.encode(text_only=True)]


class PrefillAttention(AttentionHook):
    """Keeps every layer's last-query attention row (head mean) at the prefill, and nothing afterwards."""

    def __init__(self) -> None:
        self.rows: dict[int, torch.Tensor] = {}
        self.active = False

    def begin_forward(self, step: int) -> None:
        self.active = step == 0

    def wants_attention(self, layer_idx: int) -> bool:
        return self.active

    def on_attention(self, layer_idx: int, row: torch.Tensor) -> None:
        self.rows[layer_idx] = row


class Avisc(ContrastiveDecoding):
    """AvisC: contrast with the image whose non-blind tokens are masked (found once, at the prefill).

    After each batch, ``found`` holds the :class:`~avisc.blind.BlindTokens` of every sequence.
    """

    def __init__(self, config: AviscConfig):
        super().__init__(config)
        self.found: list[BlindTokens] = []

    def begin(self, context: DecodingContext) -> None:
        self.hook = PrefillAttention()
        self.found = []

    def branches(self, context: DecodingContext) -> list[Prefill]:
        prefill = context.prefill
        rows = torch.stack([self.hook.rows[i] for i in sorted(self.hook.rows)])  # (L, B, S)
        embeds = prefill.inputs_embeds.clone()
        for row in range(prefill.batch_size):
            start, length = int(prefill.image_start[row]), int(prefill.image_len[row])
            if length == 0:
                raise ValueError("AvisC needs an image in every sequence")
            found = find_blind_tokens(rows[:, row, start : start + length], self.config.layer_gamma, self.config.lamb)
            self.found.append(found)
            positions = found.masked.to(embeds.device) + start
            embeds[row, positions] = self.mask_values(len(positions), embeds, context, row)
        return [Prefill(embeds, prefill.attention_mask, prefill.position_ids, prefill.image_start, prefill.image_len)]

    def mask_values(self, count: int, embeds: torch.Tensor, context: DecodingContext, row: int) -> torch.Tensor:
        shape = (count, embeds.shape[-1])
        if self.config.masking_scheme == "noise":
            generator = context.generators[row] if context.generators else None
            return torch.randn(shape, generator=generator, dtype=embeds.dtype, device=embeds.device)
        fill = 1.0 if self.config.masking_scheme == "ones" else 0.0
        return embeds.new_full(shape, fill)
