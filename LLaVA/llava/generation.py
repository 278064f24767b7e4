"""Our decoding loop: greedy or sampling, left-padded batches, EOS / max-token stopping, and extra *branches*.

A :class:`DecodingMethod` plugs in at three places:

- ``hook``: an :class:`~llava.attention.AttentionHook` that runs inside the main branch's attention at the prefill
  and at every decode step (SPARC amplifies cached values there; AvisC reads the prefill attention);
- ``branches``: extra inputs built after the main prefill (AvisC's masked image, VCD's noised image, M3ID's and PAI's
  text-only prompt). Each branch keeps its own KV cache rows, and from the first decode step on all branches run **in
  the same batched forward** as the main one, so a contrastive step costs about one step, not two. A branch laid out
  like the main input (same prompt lengths: AvisC, VCD) shares the main rows' cache and attention call; any other (a
  text-only prompt, 41 tokens against the main 617) is a :class:`RowGroup` of its own: the rows of the forward share
  the projections and the MLP, and attention runs per group over the group's own cache length, with no padding to
  the longest group and no mask where the group has no padding (:class:`~llava.attention.KVGroups`). So a short
  branch costs what its length costs. At decode steps the hook runs in the main rows' group (same-layout branch
  rows follow the main rows there), never in another group's rows;
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
from transformers.cache_utils import CacheLayerMixin, DynamicLayer

from llava.attention import AttentionHook, KVGroups
from llava.batch import PromptBatch
from llava.inputs import Prefill
from llava.model.families import family_of
from llava.model.families.base import ModelFamily
from llava.settings import GenerationConfig


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
        """Extra branch inputs (each with the batch's rows, in the batch's order), built after the main prefill;
        ``combine`` receives their logits in this order."""
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


class NonFiniteLogits(ValueError):
    """A decode step whose final logits hold NaN or +inf, or only -inf, in some rows (a float16 overflow, a branch
    gone wrong): greedy decoding would silently pick token 0 and sampling would fail inside ``multinomial``. The rows
    fail; a runner records each failing sample with the step and goes on with the others."""

    def __init__(self, step: int, rows: list[int]):
        self.step, self.rows = step, rows
        super().__init__(f"non-finite logits (NaN or inf) at decode step {step} in batch row(s) {rows}: the model's "
                         "numbers overflowed (float16?) or a method produced no usable logits")


def check_finite_logits(logits: torch.Tensor, step: int) -> None:
    """Raise :class:`NonFiniteLogits` for the rows of ``logits`` ``(R, V)`` that hold NaN or +inf or no finite value
    at all (``-inf`` alone is a token ruled out: top-k, top-p and the contrastive cutoffs write it)."""
    bad = logits.isnan().any(dim=-1) | logits.isposinf().any(dim=-1) | logits.isneginf().all(dim=-1)
    if bool(bad.any()):
        raise NonFiniteLogits(step, bad.nonzero().flatten().tolist())


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


class PaddingMask:
    """One row group's 2-D attention mask for a whole generation, allocated once: the prompt's left padding, then a
    column of ones per decode step (:meth:`grow` widens the view; no step allocates or copies a mask)."""

    def __init__(self, prompt_mask: torch.Tensor, room: int):
        rows, self.length = prompt_mask.shape
        self.buffer: torch.Tensor | None = None
        if not bool(prompt_mask.all()):
            self.buffer = torch.ones(rows, self.length + room, dtype=torch.bool, device=prompt_mask.device)
            self.buffer[:, : self.length] = prompt_mask.bool()

    def grow(self) -> None:
        """One more position (the token of the coming decode step)."""
        self.length += 1

    @property
    def current(self) -> torch.Tensor | None:
        """``(rows, length)`` boolean, ``True`` = token; ``None`` when no row is padded (causal attention needs no mask
        then, and transformers skips a host sync per forward)."""
        return None if self.buffer is None else self.buffer[:, : self.length]


@dataclass
class RowGroup:
    """Rows of the batched decode forward that share one KV cache, hence one prompt layout."""

    rows: slice
    cache: Cache
    mask: PaddingMask


class GroupedLayer(CacheLayerMixin):
    """One model layer over several row groups' caches: ``update`` writes each group's rows of the new keys and values
    into the group's own cache layer and returns them all as :class:`~llava.attention.KVGroups`, for the hooked
    attention to attend per group. Transformers sees a cache as long as the longest group (its mask, which the
    hooked attention replaces by each group's own, is built at that length)."""

    is_sliding = False

    def __init__(self, groups: list[RowGroup], layer_idx: int):
        super().__init__()
        self.groups, self.layer_idx = groups, layer_idx
        self.is_initialized = True

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        """Nothing to allocate: the groups' caches exist."""

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs) -> tuple[KVGroups, KVGroups]:
        keys, values = [], []
        for group in self.groups:
            layer = group.cache.layers[self.layer_idx]
            group_keys, group_values = layer.update(key_states[group.rows], value_states[group.rows])
            keys.append(group_keys)
            values.append(group_values)
        grouped = KVGroups([g.rows for g in self.groups], keys, values, [g.mask.current for g in self.groups])
        return grouped, grouped

    def get_seq_length(self) -> int:
        return max(group.cache.layers[self.layer_idx].get_seq_length() for group in self.groups)

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.get_seq_length() + query_length, 0

    def get_max_length(self) -> int:
        return -1


def decode_cache(groups: list[RowGroup], num_layers: int) -> Cache:
    """The cache of the decode forwards: the one group's own cache, or a :class:`GroupedLayer` cache over all groups."""
    if len(groups) == 1:
        return groups[0].cache
    return Cache(layers=[GroupedLayer(groups, layer_idx) for layer_idx in range(num_layers)])


def _stack(prefills: list[Prefill]) -> Prefill:
    """Several branch prefills as one left-padded batch."""
    if len(prefills) == 1:
        return prefills[0]
    return Prefill.from_sequences([s for p in prefills for s in p.to_sequences()])


def forward_logits(model: Any, family: ModelFamily, embeds, mask, positions, cache, hook) -> torch.Tensor:
    """One language-model forward; float32 logits of the last position only. ``mask`` is None when nothing is
    padded (causal attention needs no mask then, and transformers skips a host sync per forward)."""
    out = family.decoder(model)(
        inputs_embeds=embeds, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True,
        attn_hook=hook,
    )
    return family.logits(model, out.last_hidden_state[:, -1])


def run_prefill(
    model: Any, family: ModelFamily, prefill: Prefill, hook: AttentionHook | None, room: int
) -> tuple[Cache, torch.Tensor]:
    """Run the prompt through the model into a new cache with ``room`` positions to spare; last-position logits."""
    cache = new_cache(family.num_layers(model), prefill.inputs_embeds.shape[1] + room)
    mask = prefill.attention_mask if prefill.padded else None
    logits = forward_logits(model, family, prefill.inputs_embeds, mask, prefill.position_ids, cache, hook)
    return cache, logits


def _same_layout(branch: Prefill, prefill: Prefill) -> bool:
    """Whether ``branch`` has the main input's padding (every row as long as the main one)."""
    return branch.attention_mask.shape == prefill.attention_mask.shape and torch.equal(
        branch.attention_mask.to(prefill.attention_mask.device), prefill.attention_mask)


@dataclass
class PrefillState:
    """After the prefill(s): the row groups (main rows first), each row's next position ``(R,)``, the first logits of
    every row ``(R, V)``, and the rows of each branch in the order :meth:`DecodingMethod.branches` returned them."""

    groups: list[RowGroup]
    positions: torch.Tensor
    logits: torch.Tensor
    branch_rows: list[slice]


def _prefill_groups(context: DecodingContext, method: DecodingMethod, hook: AttentionHook | None, room: int) -> PrefillState:
    """Prefill the main input, then the method's branches. Branches laid out like the main input join the main rows'
    cache (one merged cache, one attention call per layer); every other branch is prefilled alone into a cache of
    its own length and becomes a row group of its own."""
    model, family, prefill = context.model, context.family, context.prefill
    rows = prefill.batch_size
    cache, logits = run_prefill(model, family, prefill, hook, room)
    branch_inputs = method.branches(context)
    for branch in branch_inputs:
        if branch.batch_size != rows:
            raise ValueError(f"{type(method).__name__}: a branch of {branch.batch_size} rows for a batch of {rows}")
    same = [i for i, branch in enumerate(branch_inputs) if _same_layout(branch, prefill)]
    other = [i for i in range(len(branch_inputs)) if i not in same]
    mask, positions, first_logits = prefill.attention_mask, [prefill.next_positions], [logits]
    if same:
        stacked = _stack([branch_inputs[i] for i in same])
        branch_cache, branch_logits = run_prefill(model, family, stacked, None, 0)
        cache, mask = merge_caches([cache, branch_cache], [mask, stacked.attention_mask], room)
        positions.append(stacked.next_positions)
        first_logits.append(branch_logits)
    groups = [RowGroup(slice(0, rows * (1 + len(same))), cache, PaddingMask(mask, room))]
    branch_rows = {i: slice(rows * (1 + k), rows * (2 + k)) for k, i in enumerate(same)}
    for i in other:
        branch = branch_inputs[i]
        branch_cache, branch_logits = run_prefill(model, family, branch, None, room)
        start = groups[-1].rows.stop
        groups.append(RowGroup(slice(start, start + rows), branch_cache, PaddingMask(branch.attention_mask, room)))
        branch_rows[i] = groups[-1].rows
        positions.append(branch.next_positions)
        first_logits.append(branch_logits)
    device = first_logits[0].device
    return PrefillState(groups, torch.cat([p.to(device) for p in positions]), torch.cat(first_logits),
                        [branch_rows[i] for i in range(len(branch_inputs))])


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
    state = _prefill_groups(context, method, hook, config.max_new_tokens)
    groups, positions, logits = state.groups, state.positions, state.logits
    cache = decode_cache(groups, family.num_layers(model))
    copies = positions.shape[0] // rows

    chosen_steps: list[torch.Tensor] = []
    finished = torch.zeros(rows, dtype=torch.bool, device=logits.device)
    eos = torch.tensor(config.eos_token_ids, device=logits.device)
    step = 0
    for step in range(1, config.max_new_tokens + 1):
        final = warp_logits(method.combine(step, logits[:rows], [logits[r] for r in state.branch_rows]), config)
        check_finite_logits(final.masked_fill(finished[:, None], 0.0), step)  # a finished row's logits are unused
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
        for group in groups:
            group.mask.grow()
        mask = groups[0].mask.current if len(groups) == 1 else None  # grouped: each group's own, in attention
        embeds = family.embed_tokens(model, chosen.repeat(copies)[:, None])
        logits = forward_logits(model, family, embeds, mask, positions[:, None], cache, hook)
        positions += 1

    tokens = torch.stack(chosen_steps, dim=1) if chosen_steps else torch.empty(rows, 0, dtype=torch.long)
    return GenerationOutput(_trim(tokens, config.eos_token_ids), step)


def _trim(tokens: torch.Tensor, eos_token_ids: Sequence[int]) -> list[list[int]]:
    """Each row's ids up to and including its first EOS."""
    sequences = []
    for row in tokens.tolist():
        ends = [i for i, token in enumerate(row) if token in eos_token_ids]
        sequences.append(row[: ends[0] + 1] if ends else row)
    return sequences
