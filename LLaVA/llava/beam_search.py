"""Beam search on our decoding loop's primitives: B prompts x K beams in one batch, transformers 4.29.2 semantics.

What the official code runs for ``num_beams > 1`` (``generate`` -> ``beam_search`` with a ``BeamSearchScorer``,
transformers 4.29.2, the version OPERA vendors; ``spec/opera-official.md`` section 2-3):

- the prompt is expanded to K beams; beam scores start at ``[0, -1e9, ..., -1e9]``, so the first step draws all
  beams from beam 0;
- each step: ``log_softmax`` of the last logits plus the beam scores, ``topk(2K)`` over the K*V scores of a prompt,
  then the scorer walks them in order: an EOS among the first K ranks closes a hypothesis (scored by its summed
  log-probability over its length, ``length_penalty`` 1.0, the length counting the prompt's ids with the image
  placeholder as one id, EOS excluded), every other candidate fills the next free beam until K are kept;
- a prompt is done when K hypotheses exist and the best running score over ``cur_len`` (``early_stopping=False``)
  cannot beat the worst of them; generation stops when all are done or ``max_new_tokens`` tokens were generated;
- ``finalize`` adds the running beams of unfinished prompts and returns the best hypothesis (ties: the last added),
  followed by the first EOS id when it ended with one.

Every prompt of a batch is a *group* of K rows with its own scorer, length and stopping: a batch of N prompts gives
the tokens of N single runs. The KV cache is our preallocated cache, reordered in place along the beams.

:class:`BeamSearch` is the loop; a method that is its own beam search (OPERA, ``sparc.opera``) subclasses it and
overrides :meth:`BeamSearch.next_token_logits` (the logits of a step), :meth:`BeamSearch.on_forward` (what the
attention hook saw) and :meth:`BeamSearch.reorder` (per-beam state), and may restore a group to an earlier
:meth:`BeamSearch.snapshot`.

>>> beam_search(batch, GenerationConfig(max_new_tokens=64), num_beams=5).sequences     # doctest: +SKIP
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import torch
from transformers import Cache

from llava.attention import AttentionHook
from llava.generation import (
    DecodingContext,
    DecodingMethod,
    GenerationConfig,
    GenerationOutput,
    forward_logits,
    run_prefill,
    check_finite_logits,
    new_cache,
)
from llava.batch import PromptBatch
from llava.inputs import Prefill
from llava.model.families import family_of

INITIAL_BEAM_SCORE = -1e9
"""Score of beams 1..K-1 before the first step (transformers), so that the first step expands beam 0 only."""


# ---------------------------------------------------------------------------------------------------------------
# the scorer (transformers 4.29.2 BeamHypotheses / BeamSearchScorer, one per prompt)


@dataclass
class Hypothesis:
    """A finished beam: ``score`` = summed log-probability / ``length`` (prompt ids + generated, EOS excluded);
    ``tokens``: the generated ids, ending with the first EOS id when the beam ended with EOS."""

    score: float
    tokens: list[int]


@dataclass
class Hypotheses:
    """The K best finished hypotheses of one prompt (transformers 4.29.2 ``BeamHypotheses``, length penalty 1.0,
    ``early_stopping=False``)."""

    num_beams: int
    beams: list[Hypothesis] = field(default_factory=list)
    worst_score: float = 1e9

    def add(self, tokens: list[int], sum_logprobs: float, length: int) -> None:
        score = sum_logprobs / length
        if len(self.beams) < self.num_beams or score > self.worst_score:
            self.beams.append(Hypothesis(score, tokens))
            if len(self.beams) > self.num_beams:
                ranked = sorted((h.score, index) for index, h in enumerate(self.beams))
                del self.beams[ranked[0][1]]
                self.worst_score = ranked[1][0]
            else:
                self.worst_score = min(score, self.worst_score)

    def is_done(self, best_sum_logprobs: float, cur_len: int) -> bool:
        """No running beam can still beat the worst kept hypothesis (the ``early_stopping=False`` heuristic)."""
        return len(self.beams) >= self.num_beams and self.worst_score >= best_sum_logprobs / cur_len

    def best(self) -> Hypothesis:
        """The best hypothesis; among equal scores the last added (``sorted(...).pop()``, as transformers)."""
        return sorted(self.beams, key=lambda h: h.score).pop()


@dataclass
class BeamStepRecord:
    """One scorer call of one prompt, as the golden files record it: the 2K candidates handed to the scorer
    (token, source beam 0..K-1, score) and the K beams kept. ``cur_len``: prompt ids + generated tokens before it."""

    group: int
    cur_len: int
    topk_tokens: list[int]
    topk_beam: list[int]
    topk_scores: list[float]
    next_beam_tokens: list[int]
    next_beam_indices: list[int]
    next_beam_scores: list[float]


@dataclass
class GroupSnapshot:
    """What :meth:`BeamSearch.restore` needs to put one prompt back to an earlier step."""

    tokens: torch.Tensor  # (K, n) generated ids
    beam_scores: torch.Tensor  # (K,)
    hypotheses: Hypotheses
    done: bool

    @property
    def generated(self) -> int:
        return self.tokens.shape[1]


StepObserver = Callable[[BeamStepRecord], None]


# ---------------------------------------------------------------------------------------------------------------
# cache operations on the filled part of a cache (in place, through the layers' public ``keys``/``values`` views)


def repeat_rows(cache: Cache, repeats: int, capacity: int) -> Cache:
    """A new cache (room for ``capacity`` positions) holding each row of ``cache`` ``repeats`` times in a row."""
    repeated = new_cache(len(cache.layers), capacity)
    for index, layer in enumerate(cache.layers):
        repeated.update(layer.keys.repeat_interleave(repeats, 0), layer.values.repeat_interleave(repeats, 0), index)
    return repeated


def reorder_rows(cache: Cache, rows: torch.Tensor) -> None:
    """Row ``i`` of every layer becomes old row ``rows[i]`` (beam reordering); rows that keep their own beam are not
    copied."""
    moved = (rows != torch.arange(rows.shape[0], device=rows.device)).nonzero().squeeze(1)
    if moved.numel() == 0:
        return
    sources = rows[moved]
    for layer in cache.layers:
        layer.keys[moved] = layer.keys[sources]
        layer.values[moved] = layer.values[sources]


def crop(cache: Cache, length: int) -> None:
    """Drop every position from ``length`` on (the next write goes to ``length``)."""
    for layer in cache.layers:
        layer.keys, layer.values = layer.keys[:, :, :length], layer.values[:, :, :length]
        layer.length = length


def write_rows(cache: Cache, rows: torch.Tensor, source: Cache) -> None:
    """Put ``source`` (``len(rows)`` rows, ``S`` positions) into ``rows`` of ``cache``, right-aligned at its end."""
    for layer, new in zip(cache.layers, source.layers):
        end = layer.keys.shape[2]
        start = end - new.keys.shape[2]
        layer.keys[rows, :, start:end] = new.keys
        layer.values[rows, :, start:end] = new.values


def trim_left(cache: Cache, count: int) -> None:
    """Remove the first ``count`` positions of every row (a left padding no row needs any more)."""
    if count == 0:
        return
    length = cache.layers[0].keys.shape[2] - count
    for layer in cache.layers:
        layer.keys[:, :, :length] = layer.keys[:, :, count:].clone()
        layer.values[:, :, :length] = layer.values[:, :, count:].clone()
    crop(cache, length)


# ---------------------------------------------------------------------------------------------------------------
# the search


def prompt_id_lengths(prefill: Prefill) -> torch.Tensor:
    """Each prompt's length as the official ``generate`` counts it (``input_ids`` with the image placeholder as one
    id): real tokens minus the image embeddings plus one placeholder, ``(B,)``."""
    has_image = (prefill.image_len > 0).long()
    return prefill.lengths - prefill.image_len + has_image


class BeamSearch:
    """Beam search over ``B`` prompts x ``K`` beams (rows ``g*K .. g*K+K-1`` belong to prompt ``g``).

    State per row: generated ``tokens`` (``(R, capacity)``, the first ``generated[g]`` valid), ``beam_scores``,
    the cache row (each sequence right-aligned at the cache end, left padding masked), the next position id; per
    prompt: its :class:`Hypotheses`, ``done`` (scorer) and ``stopped`` (done or out of tokens, hypotheses final).
    """

    def __init__(
        self,
        batch: PromptBatch,
        config: GenerationConfig,
        num_beams: int,
        hook: AttentionHook | None = None,
        on_step: StepObserver | None = None,
    ):
        if num_beams < 2:
            raise ValueError(f"beam search needs num_beams >= 2, got {num_beams} (use generate for greedy decoding)")
        if config.do_sample:
            raise ValueError("beam search is deterministic: do_sample must be False")
        self.config, self.num_beams, self.hook, self.on_step = config, num_beams, hook, on_step
        self.model = batch.model
        self.family = family_of(self.model)
        self.prefill = batch.encode()
        self.groups = self.prefill.batch_size
        self.rows = self.groups * num_beams
        device = self.prefill.inputs_embeds.device
        self.prompt_ids = prompt_id_lengths(self.prefill).tolist()
        self.tokens = torch.full((self.rows, config.max_new_tokens + 1), config.pad_token_id, device=device)
        self.generated = [0] * self.groups
        scores = torch.full((self.groups, num_beams), INITIAL_BEAM_SCORE, device=device)
        scores[:, 0] = 0.0
        self.beam_scores = scores.view(-1)
        self.hypotheses = [Hypotheses(num_beams) for _ in range(self.groups)]
        self.done = [False] * self.groups
        self.stopped = [False] * self.groups
        self.step = 0
        self.cache: Cache | None = None
        self.mask: torch.Tensor | None = None  # (R, T): 1 = token, 0 = left padding
        self.padded = False  # whether any row has left padding (else attention runs without a mask)
        self.positions: torch.Tensor | None = None  # (R,) next position id
        self.lengths: torch.Tensor | None = None  # (R,) tokens of each row's sequence (prompt + generated)

    # -- the loop --------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def run(self) -> GenerationOutput:
        """Decode until every prompt is done; the best hypothesis of each prompt."""
        logits = self.start()
        while True:
            self.step += 1
            logits = self.next_token_logits(logits)
            check_finite_logits(logits[self.running_rows()], self.step)
            _, tokens = self.advance(logits.log_softmax(dim=-1))
            if all(self.stopped):
                break
            logits = self.forward(tokens)
        return GenerationOutput([self.hypotheses[g].best().tokens for g in range(self.groups)], self.step)

    def start(self) -> torch.Tensor:
        """Prefill each prompt once and expand the cache to its K beams; the first logits ``(R, V)``."""
        if self.hook is not None:
            self.hook.begin_forward(0)
        room = self.config.max_new_tokens + 1
        cache, logits = run_prefill(self.model, self.family, self.prefill, self.hook, 0)
        self.cache = repeat_rows(cache, self.num_beams, self.prefill.inputs_embeds.shape[1] + room)
        self.mask = self.prefill.attention_mask.repeat_interleave(self.num_beams, 0)
        self.padded = self.prefill.padded
        self.positions = self.prefill.next_positions.repeat_interleave(self.num_beams, 0)
        self.lengths = self.prefill.lengths.repeat_interleave(self.num_beams, 0)
        return logits.repeat_interleave(self.num_beams, 0)

    def next_token_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """The logits ``(R, V)`` whose log-softmax this step's beam step takes (plain beam search: unchanged)."""
        return logits

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed each row's new token; its logits ``(R, V)``."""
        if self.hook is not None:
            self.hook.begin_forward(self.step)
        self.mask = torch.cat([self.mask, self.mask.new_ones(self.rows, 1)], dim=1)
        embeds = self.family.embed_tokens(self.model, tokens[:, None])
        logits = forward_logits(self.model, self.family, embeds, self.attention_mask(), self.positions[:, None], self.cache,
                          self.hook)
        self.positions = self.positions + 1
        self.lengths = self.lengths + 1
        self.on_forward()
        return logits

    def on_forward(self) -> None:
        """Called after each decode forward (the hook has seen it)."""

    def attention_mask(self) -> torch.Tensor | None:
        """The 2-D mask, or None when no row is padded (then attention needs no mask)."""
        return self.mask if self.padded else None

    # -- one beam step ---------------------------------------------------------------------------------------

    def advance(self, logprobs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The scorer step on ``logprobs`` ``(R, V)``: keep K beams per prompt, reorder the state, append the new
        tokens; returns the parent row and new token of every row."""
        K, vocab = self.num_beams, logprobs.shape[-1]
        scores = (logprobs + self.beam_scores[:, None]).view(self.groups, K * vocab)
        top_scores, top_ids = torch.topk(scores, 2 * K, dim=1, largest=True, sorted=True)
        top_beams, top_tokens = (top_ids // vocab).tolist(), (top_ids % vocab).tolist()
        top_scores = top_scores.tolist()
        next_scores, next_tokens, parents = [], [], []
        for g in range(self.groups):
            if self.stopped[g]:
                kept = [(0.0, self.config.pad_token_id, k) for k in range(K)]  # rows stay where they are
            else:
                kept = self._score_group(g, top_tokens[g], top_beams[g], top_scores[g])
            next_scores += [s for s, _, _ in kept]
            next_tokens += [t for _, t, _ in kept]
            parents += [g * K + b for _, _, b in kept]
        device = self.beam_scores.device
        parents_t = torch.tensor(parents, device=device)
        tokens_t = torch.tensor(next_tokens, device=device)
        self.beam_scores = torch.tensor(next_scores, dtype=self.beam_scores.dtype, device=device)
        self.reorder(parents_t)
        self._append(tokens_t)
        return parents_t, tokens_t

    def _score_group(self, g: int, tokens: list[int], beams: list[int], scores: list[float]) -> list[tuple[float, int, int]]:
        """``BeamSearchScorer.process`` for one prompt: the K kept ``(score, token, beam)``; finishes the prompt
        when it is done or out of tokens."""
        K, eos = self.num_beams, self.config.eos_token_ids
        n = self.generated[g]
        kept: list[tuple[float, int, int]] = []
        for rank, (token, beam, score) in enumerate(zip(tokens, beams, scores)):
            if token in eos:
                if rank < K:
                    row = g * K + beam
                    self.hypotheses[g].add(self.tokens[row, :n].tolist() + [eos[0]], score, self.prompt_ids[g] + n)
            else:
                kept.append((score, token, beam))
            if len(kept) == K:
                break
        if len(kept) < K:
            raise ValueError(f"prompt {g}: more than {K} of the top {2 * K} tokens are EOS {eos}")
        cur_len = self.prompt_ids[g] + n + 1
        self.done[g] = self.done[g] or self.hypotheses[g].is_done(max(scores), cur_len)
        if self.on_step is not None:
            self.on_step(BeamStepRecord(g, cur_len - 1, tokens, beams, scores, [t for _, t, _ in kept],
                                        [b for _, _, b in kept], [s for s, _, _ in kept]))
        return kept

    def reorder(self, parents: torch.Tensor) -> None:
        """Row ``i`` continues old row ``parents[i]``: its tokens and cache (subclasses add their per-beam state)."""
        self.tokens = self.tokens[parents]
        reorder_rows(self.cache, parents)

    def _append(self, tokens: torch.Tensor) -> None:
        """Write each running prompt's new tokens; stop prompts that are done or reached ``max_new_tokens``."""
        K = self.num_beams
        for g in range(self.groups):
            if self.stopped[g]:
                continue
            rows = slice(g * K, (g + 1) * K)
            self.tokens[rows, self.generated[g]] = tokens[rows]
            self.generated[g] += 1
            if self.done[g]:
                self.stopped[g] = True
            elif self.generated[g] >= self.config.max_new_tokens:
                self._finalize(g)

    def _finalize(self, g: int) -> None:
        """Add the K running beams of prompt ``g`` to its hypotheses (``BeamSearchScorer.finalize``) and stop it."""
        K, n = self.num_beams, self.generated[g]
        scores = self.beam_scores[g * K:(g + 1) * K].tolist()
        for beam, score in enumerate(scores):
            self.hypotheses[g].add(self.tokens[g * K + beam, :n].tolist(), score, self.prompt_ids[g] + n)
        self.stopped[g] = True

    # -- going back (OPERA's retrospection) ------------------------------------------------------------------

    def running_rows(self) -> list[int]:
        """The rows of the prompts still searching (a stopped prompt's rows are fed padding)."""
        return [row for g in range(self.groups) if not self.stopped[g] for row in range(g * self.num_beams,
                                                                                        (g + 1) * self.num_beams)]

    def group_rows(self, g: int) -> slice:
        return slice(g * self.num_beams, (g + 1) * self.num_beams)

    def snapshot(self, g: int) -> GroupSnapshot:
        """Prompt ``g``'s state now (tokens, beam scores, scorer)."""
        rows = self.group_rows(g)
        return GroupSnapshot(self.tokens[rows, : self.generated[g]].clone(), self.beam_scores[rows].clone(),
                             copy.deepcopy(self.hypotheses[g]), self.done[g])

    def restore(self, g: int, state: GroupSnapshot) -> None:
        """Put prompt ``g`` back to ``state``: tokens, beam scores and scorer (the cache: :meth:`reprefill`)."""
        rows = self.group_rows(g)
        self.tokens[rows, : state.generated] = state.tokens
        self.generated[g] = state.generated
        self.beam_scores[rows] = state.beam_scores
        self.hypotheses[g] = copy.deepcopy(state.hypotheses)
        self.done[g] = state.done

    def reprefill(self, groups: list[int]) -> torch.Tensor:
        """Recompute the cache of every beam of ``groups`` from their prompt and generated tokens, as the official
        rollback does: one forward of the prompt and all tokens but the last, without a cache, then one forward of
        the last token. The rows are written right-aligned into the batch cache; returns their last logits
        ``(len(groups) * K, V)`` (rows in the order of ``groups``)."""
        K = self.num_beams
        prompts = self.prefill.to_sequences()
        logits, end = [], self.cache.layers[0].keys.shape[2]
        for g in groups:
            rows = self.group_rows(g)
            n = self.generated[g]
            if n < 1:
                raise ValueError(f"prompt {g}: nothing generated to re-prefill")
            prompt = prompts[g]
            kept = self.family.embed_tokens(self.model, self.tokens[rows, : n - 1])
            sequences = [prompt.extended(kept[k]) for k in range(K)]
            cache, _ = run_prefill(self.model, self.family, Prefill.from_sequences(sequences), None, 1)
            last = self.family.embed_tokens(self.model, self.tokens[rows, n - 1 : n])
            position = prompt.next_position + n - 1
            positions = torch.full((K, 1), position, device=last.device)
            logits.append(forward_logits(self.model, self.family, last, None, positions, cache, None))
            length = prompt.embeds.shape[0] + n
            write_rows(self.cache, torch.arange(rows.start, rows.stop, device=last.device), cache)
            self.mask[rows] = 0
            self.mask[rows, end - length :] = 1
            self.positions[rows] = position + 1
            self.lengths[rows] = length
        padding = int(self.mask.argmax(dim=1).min())  # leading columns no row uses any more
        trim_left(self.cache, padding)
        self.mask = self.mask[:, padding:]
        self.padded = not bool(self.mask.all())
        return torch.cat(logits)


# ---------------------------------------------------------------------------------------------------------------
# entry points


class BeamMethod(DecodingMethod):
    """A decoding method that is its own beam search (OPERA): :func:`decode` runs :meth:`search` instead of the
    greedy / sampling loop. ``num_beams``: the beam width it needs."""

    num_beams: int = 1

    def search(self, batch: PromptBatch, config: GenerationConfig, on_step: StepObserver | None = None) -> BeamSearch:
        raise NotImplementedError

    def begin(self, context: DecodingContext) -> None:
        """The greedy / sampling loop would silently ignore the method: refuse it."""
        raise ValueError(f"{type(self).__name__} is a beam search: decode it with llava.decoding.decode or "
                         "beam_search, not generate")


def beam_search(
    batch: PromptBatch,
    config: GenerationConfig,
    num_beams: int,
    method: BeamMethod | None = None,
    on_step: StepObserver | None = None,
) -> GenerationOutput:
    """Beam search of ``batch`` with ``num_beams`` beams (plain), or the beam search of ``method`` (OPERA), whose
    width must then equal ``num_beams``. ``on_step`` sees every scorer call (:class:`BeamStepRecord`)."""
    if method is None:
        return BeamSearch(batch, config, num_beams, on_step=on_step).run()
    if num_beams != method.num_beams:
        raise ValueError(f"{type(method).__name__} searches with {method.num_beams} beams, not {num_beams}")
    return method.search(batch, config, on_step).run()
