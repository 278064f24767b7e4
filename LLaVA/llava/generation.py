"""Our decoding loop: greedy or sampling, left-padded batches, EOS / max-token stopping, and extra *branches*.

A :class:`DecodingMethod` plugs in at three places:

- ``hook``: an :class:`~llava.attention.AttentionHook` that runs inside the main branch's attention at the prefill
  and at every decode step (SPARC amplifies cached values there; AvisC reads the prefill attention);
- ``branches``: extra inputs built after the main prefill (AvisC's masked image, VCD's noised image, M3ID's text-only
  prompt). Each branch keeps its own KV cache rows, and from the first decode step on all branches run **in the same
  batched forward** as the main one, so a contrastive step costs about one step, not two;
- ``combine``: the final logits of each step from the main logits and the branches' logits.

Every row of a batch is independent: the same tokens come out at batch size 1 and N (greedy, float32, up to float
rounding), and sampling draws from one ``torch.Generator`` per row, so seeded sampling does not depend on the batch
composition either.

>>> batch = PromptBatch(model, tokenizer, processor, [prompt], images)           # doctest: +SKIP
>>> generate(batch, GenerationConfig(max_new_tokens=64)).sequences               # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from transformers import Cache
from transformers.cache_utils import DynamicLayer

from llava.attention import AttentionHook
from llava.inputs import Prefill, PromptBatch
from llava.model.families import ModelFamily, family_of


@dataclass
class GenerationConfig:
    """Decoding settings (transformers' names and semantics)."""

    max_new_tokens: int = 512
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    eos_token_ids: tuple[int, ...] = (2,)
    pad_token_id: int = 0


@dataclass
class DecodingContext:
    """What a method may use when it prepares a batch."""

    batch: PromptBatch
    family: ModelFamily
    prefill: Prefill
    generators: Sequence[torch.Generator] | None

    @property
    def model(self) -> Any:
        return self.batch.model


class DecodingMethod:
    """Plain decoding. Subclasses override what they change; see the module docstring."""

    hook: AttentionHook | None = None

    def begin(self, context: DecodingContext) -> None:
        """Called before the main prefill of each batch (reset per-batch state, set ``hook``)."""

    def branches(self, context: DecodingContext) -> list[Prefill]:
        """Extra branch inputs (each with the batch's rows), built after the main prefill."""
        return []

    def combine(self, step: int, logits: torch.Tensor, branch_logits: list[torch.Tensor]) -> torch.Tensor:
        """Final logits ``(B, V)`` of decode step ``step`` (1-based), before temperature / top-k / top-p."""
        return logits


@dataclass
class GenerationOutput:
    """Generated ids per row (EOS included when reached, nothing after it) and the number of decode steps run."""

    sequences: list[list[int]]
    steps: int


StepCallback = Callable[[int, torch.Tensor, torch.Tensor], None]


def warp_logits(logits: torch.Tensor, config: GenerationConfig) -> torch.Tensor:
    """Temperature, then top-k, then top-p (nucleus), as transformers' warpers in that order."""
    if config.temperature != 1.0:
        logits = logits / config.temperature
    if config.top_k:
        kth = torch.topk(logits, min(config.top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if config.top_p is not None and config.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=False, dim=-1)
        remove = sorted_logits.softmax(dim=-1).cumsum(dim=-1) <= 1 - config.top_p
        remove[..., -1] = False  # keep at least the most likely token
        logits = logits.masked_fill(remove.scatter(-1, order, remove), float("-inf"))
    return logits


def choose_tokens(logits: torch.Tensor, config: GenerationConfig, generators: Sequence[torch.Generator] | None) -> torch.Tensor:
    """Argmax (greedy) or one draw per row from ``softmax(logits)``, each row with its own generator."""
    if not config.do_sample:
        return logits.argmax(dim=-1)
    probs = logits.softmax(dim=-1)
    if generators is None:
        return torch.multinomial(probs, 1).squeeze(-1)
    return torch.cat([torch.multinomial(p, 1, generator=g) for p, g in zip(probs, generators)])


class PreallocatedLayer(DynamicLayer):
    """A KV-cache layer whose keys and values live in buffers sized for the whole generation.

    ``update`` writes the new positions in place and returns views of the filled part, instead of concatenating
    (``DynamicLayer`` copies the whole cache at every step, which at batch 16 moves as many bytes as the weights).
    The views are what attention receives, so in-place edits of cached values (SPARC) persist, as with
    ``DynamicLayer``. The buffers grow by doubling if ``capacity`` is ever exceeded.
    """

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        self.length = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        self._keys = key_states.new_empty(*key_states.shape[:2], self.capacity, key_states.shape[-1])
        self._values = value_states.new_empty(*value_states.shape[:2], self.capacity, value_states.shape[-1])
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        start, end = self.length, self.length + key_states.shape[-2]
        if end > self.capacity:
            self._grow(max(end, 2 * self.capacity))
        self._keys[:, :, start:end] = key_states
        self._values[:, :, start:end] = value_states
        self.length = end
        self.keys, self.values = self._keys[:, :, :end], self._values[:, :, :end]
        return self.keys, self.values

    def _grow(self, capacity: int) -> None:
        keys, values = self._keys, self._values
        self._keys = keys.new_empty(*keys.shape[:2], capacity, keys.shape[-1])
        self._values = values.new_empty(*values.shape[:2], capacity, values.shape[-1])
        self._keys[:, :, : self.length] = keys[:, :, : self.length]
        self._values[:, :, : self.length] = values[:, :, : self.length]
        self.capacity = capacity


def new_cache(num_layers: int, capacity: int) -> Cache:
    """An empty KV cache of :class:`PreallocatedLayer` with room for ``capacity`` positions."""
    return Cache(layers=[PreallocatedLayer(capacity) for _ in range(num_layers)])


def _left_pad(tensor: torch.Tensor, length: int, dim: int) -> torch.Tensor:
    missing = length - tensor.shape[dim]
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


def merge_caches(caches: list[Cache], masks: list[torch.Tensor], room: int) -> tuple[Cache, torch.Tensor]:
    """Stack caches along the batch (left-padding the shorter ones) into one cache, with ``room`` more positions,
    and one attention mask."""
    if len(caches) == 1:
        return caches[0], masks[0]
    length = max(m.shape[1] for m in masks)
    merged = new_cache(len(caches[0].layers), length + room)
    for layer_idx in range(len(caches[0].layers)):
        keys = torch.cat([_left_pad(c.layers[layer_idx].keys, length, 2) for c in caches])
        values = torch.cat([_left_pad(c.layers[layer_idx].values, length, 2) for c in caches])
        merged.update(keys, values, layer_idx)
    return merged, torch.cat([_left_pad(m, length, 1) for m in masks])


def _stack(prefills: list[Prefill]) -> Prefill:
    """Several branch prefills as one left-padded batch."""
    if len(prefills) == 1:
        return prefills[0]
    return Prefill.from_sequences([s for p in prefills for s in p.to_sequences()])


def _forward(model: Any, family: ModelFamily, embeds, mask, positions, cache, hook) -> torch.Tensor:
    """One language-model forward; float32 logits of the last position only. ``mask`` is None when nothing is
    padded (causal attention needs no mask then, and transformers skips a host sync per forward)."""
    out = family.decoder(model)(
        inputs_embeds=embeds, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True,
        attn_hook=hook,
    )
    return family.logits(model, out.last_hidden_state[:, -1])


def _prefill(
    model: Any, family: ModelFamily, prefill: Prefill, hook: AttentionHook | None, room: int
) -> tuple[Cache, torch.Tensor]:
    """Run the prompt through the model into a new cache with ``room`` positions to spare; last-position logits."""
    cache = new_cache(family.num_layers(model), prefill.inputs_embeds.shape[1] + room)
    mask = prefill.attention_mask if prefill.padded else None
    logits = _forward(model, family, prefill.inputs_embeds, mask, prefill.position_ids, cache, hook)
    return cache, logits


def _prefill_branches(
    context: DecodingContext, method: DecodingMethod, hook: AttentionHook | None, room: int
) -> tuple[Cache, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prefill the main input, then the method's branches; one cache for all rows (main rows first), its attention
    mask, each row's next position, and the first logits of every row."""
    model, family, prefill = context.model, context.family, context.prefill
    cache, logits = _prefill(model, family, prefill, hook, room)
    branch_inputs = method.branches(context)
    if not branch_inputs:
        return cache, prefill.attention_mask, prefill.lengths, logits
    branches = _stack(branch_inputs)
    branch_cache, branch_logits = _prefill(model, family, branches, None, 0)
    merged, mask = merge_caches([cache, branch_cache], [prefill.attention_mask, branches.attention_mask], room)
    positions = torch.cat([prefill.lengths, branches.lengths]).to(mask.device)
    return merged, mask, positions, torch.cat([logits, branch_logits])


@torch.inference_mode()
def generate(
    batch: PromptBatch,
    config: GenerationConfig,
    method: DecodingMethod | None = None,
    generators: Sequence[torch.Generator] | None = None,
    step_callback: StepCallback | None = None,
) -> GenerationOutput:
    """Decode ``batch`` with ``method`` (plain decoding when ``None``).

    ``generators``: one per row, for sampling and for any randomness of the method (VCD noise). ``step_callback(step,
    final_logits, tokens)`` sees at each decode step the final logits (after the method's combination and the
    warpers) and the chosen tokens (before EOS padding).
    """
    model = batch.model
    family = family_of(model)
    method = method or DecodingMethod()
    prefill = batch.encode()
    rows = prefill.batch_size
    if generators is not None and len(generators) != rows:
        raise ValueError(f"{len(generators)} generators for a batch of {rows}")
    context = DecodingContext(batch, family, prefill, generators)

    method.begin(context)
    hook = method.hook
    if hook is not None:
        hook.begin_forward(0)
    cache, mask, positions, logits = _prefill_branches(context, method, hook, config.max_new_tokens)
    padded = not bool(mask.all())
    copies = mask.shape[0] // rows

    chosen_steps: list[torch.Tensor] = []
    finished = torch.zeros(rows, dtype=torch.bool, device=logits.device)
    eos = torch.tensor(config.eos_token_ids, device=logits.device)
    step = 0
    for step in range(1, config.max_new_tokens + 1):
        final = warp_logits(method.combine(step, logits[:rows], list(logits[rows:].split(rows))), config)
        chosen = choose_tokens(final, config, generators)
        if step_callback is not None:
            step_callback(step, final, chosen)
        chosen = chosen.masked_fill(finished, config.pad_token_id)
        chosen_steps.append(chosen)
        finished |= torch.isin(chosen, eos)
        if step == config.max_new_tokens or bool(finished.all()):
            break
        if hook is not None:
            hook.begin_forward(step)
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        embeds = family.embed_tokens(model, chosen.repeat(copies)[:, None])
        logits = _forward(model, family, embeds, mask if padded else None, positions[:, None], cache, hook)
        positions = positions + 1

    tokens = torch.stack(chosen_steps, dim=1) if chosen_steps else torch.empty(rows, 0, dtype=torch.long)
    return GenerationOutput(_trim(tokens, config.eos_token_ids), step)


def _trim(tokens: torch.Tensor, eos_token_ids: Sequence[int]) -> list[list[int]]:
    """Each row's ids up to and including its first EOS."""
    sequences = []
    for row in tokens.tolist():
        ends = [i for i, token in enumerate(row) if token in eos_token_ids]
        sequences.append(row[: ends[0] + 1] if ends else row)
    return sequences
