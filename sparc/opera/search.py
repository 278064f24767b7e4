"""OPERA's beam search (``opera_beam_search`` of OPERA's patched transformers 4.29.2), batched, on our loop.

One step of a prompt with ``n`` generated tokens (``spec/opera-official.md`` section 3; L = response start):

1. candidates: the ``C`` largest **raw logits** of each beam;
2. the candidates' attention: each candidate token is fed after its beam, and the **last layer's** softmax row of
   its query, **max over heads**, is taken. Here all ``K x C`` candidates run as ONE forward: each beam row gets its
   C candidates as C queries at the same position, with a tree mask (candidate c sees the beam's cache and itself),
   so the cache is shared, never copied; the C positions are cropped off afterwards;
3. every attention row (the generated tokens' rows kept from earlier steps, and the candidate's) is renormalised to
   sum 1; ``W = scale_factor * rows`` restricted to the generated tokens (incl. the candidate); the column score is
   ``score_j = 1e-7 * prod_{i >= j} W[i, j]``, **stored in float16** (tiny values become 0, huge ones inf). The
   products over the history rows are kept per beam and extended by one row per step (the same left-to-right
   products as the official column ``prod``, which recomputes them from scratch every step);
4. penalty: while ``n + 1 <= 10`` minus the candidate's attention mass on the image (a bonus), afterwards the
   largest column score; ``candidate score = logit - penalty_weights * penalty``;
5. retrospection: the column of the largest score, its mode over the candidates (per beam) and then over the
   beams; when every beam slot saw that location more than ``threshold`` times, the location is >= 10 and the
   per-position budget (``num_attn_candidates`` rollbacks) allows, the prompt goes back to the step that had
   ``location + 1`` tokens (or one less when that budget is spent), recomputes its cache from scratch, and takes this
   step from the **full-vocabulary** logits shifted so that their minimum is -999, with the (beam, token) choices
   made there before set to -999; otherwise every logit but the candidates' is -999;
6. the usual beam step (log-softmax, beam scores, top 2K, scorer).

Official quirks kept (each listed in the README): the window is not local (all generated tokens); the bonus and
penalty use only the last layer and the max over heads; float16 scores; ``torch.mode`` ties (smallest value on the
CPU) and ``torch.max`` ties (first column); history locations follow beam slots, not lineages; the rollback
bookkeeping of the 512-slot tables (history trimming, the clearing of rejection lists at the end of the table
instead of the discarded positions, the clamp of distant rollbacks, an index past the tables ending the attempt as
the official bare ``except`` does); a rejected pair gets -999, as unlikely as the least likely token, not impossible.
Per prompt instead of per batch (the official code is batch-1 only): the modes, the rollback decision, the budget and
rejection tables, and the rejected (beam, token) positions.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from llava.attention import AttentionHook
from llava.beam_search import BeamMethod, BeamSearch, GroupSnapshot, StepObserver, crop
from llava.generation import GenerationConfig, forward_logits
from llava.batch import PromptBatch
from llava.model.families import family_of
from sparc.opera.config import WINDOW, OperaConfig

SCORE_SCALE = 1e-7
"""The factor in front of every column product (``utils.py``: ``1e-7 * attn_local[..., j:, j].prod(-1)``)."""
BONUS_TOKENS = 10
"""While the window (generated tokens plus the candidate) is at most this long, the penalty is the image bonus."""
MIN_LOCATION = 10
"""Rollbacks only go to locations from here on."""
FILL = -999.0
"""The logit of every non-candidate token, and of a rejected (beam, token) pair after a rollback."""


def column_scores(products: torch.Tensor, window: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """OPERA's over-trust score of every window column, ``score_j = 1e-7 * prod_{i=j}^{n} W[i, j]``, float16.

    ``products`` ``(R, N + 1)``: per beam, ``prod_{i=j}^{n-1} W[i, j]`` over the rows of its ``n = counts[r]``
    generated tokens (columns ``j < n``); ``window`` ``(R, C, N + 1)``: each candidate's row ``W[n, j]`` (scaled,
    renormalised attention on generated token ``j``; ``j = n`` is the candidate itself). The product is extended by the
    candidate's row, left to right as the official column ``prod``, scaled by 1e-7 in the model dtype and stored in
    float16 (values below ~6e-8 become 0, above 65504 inf). Returns ``(R, C, N + 1)``; columns ``j > n`` are -inf.
    """
    j = torch.arange(window.shape[-1], device=window.device)
    history = torch.where(j < counts[:, None], products, torch.ones_like(products))
    scores = (SCORE_SCALE * (history[:, None, :] * window)).to(torch.float16)
    return scores.masked_fill((j > counts[:, None])[:, None, :], float("-inf"))


def spend_budget(budget: list[int], position: int, window: int, limit: int) -> int | None:
    """The official rollback budget: roll back to ``position`` if it was rolled back to fewer than ``limit``
    (``num_attn_candidates``) times, else to ``position - 1`` under the same rule, else not at all (None); the chosen
    entry of ``budget`` is spent. A position past the 512-slot table raises in the official code (no rollback); a
    rollback more than ``512 + 1`` tokens back from the ``window`` (generated tokens + candidate) is clamped, after the
    budget was spent, as there."""
    if position >= len(budget):
        return None
    if budget[position] >= limit:
        position -= 1
        if budget[position] >= limit:
            return None
    budget[position] += 1
    if window - position > WINDOW + 1:
        position = max(1, window - WINDOW - 1)
    return position


class LastLayerAttention(AttentionHook):
    """Receives the last layer's attention rows, max over heads, of every query of each decode forward."""

    head_reduction = "max"
    query_rows = "all"

    def __init__(self, layer: int):
        self.layer = layer
        self.active = False
        self.rows: torch.Tensor | None = None  # (R, Q, S)

    def begin_forward(self, step: int) -> None:
        self.active = step > 0  # the prompt's own rows never enter the window

    def wants_attention(self, layer_idx: int) -> bool:
        return self.active and layer_idx == self.layer

    def on_attention(self, layer_idx: int, row: torch.Tensor) -> None:
        self.rows = row


@dataclass
class StepState:
    """One entry of a prompt's history (the official ``current_state``): the search state at the start of a step,
    the column products of the history rows, the candidates with their penalised scores, and the (beam, token)
    choices that led here (local beam indices)."""

    search: GroupSnapshot
    products: torch.Tensor  # (K, n)
    candidate_tokens: torch.Tensor  # (K, C)
    candidate_scores: torch.Tensor  # (K, C)
    parents: torch.Tensor | None  # (K,)
    tokens: torch.Tensor | None  # (K,)


@dataclass
class Rollback:
    """One rollback: ``reprefill_len`` = ids fed to the re-prefill (prompt ids with the image as one id, plus the
    kept tokens minus one), ``resume_response_len`` = the generated tokens kept."""

    reprefill_len: int
    resume_response_len: int


@dataclass
class Retrospection:
    """A prompt's rollback bookkeeping (the official ``history_*``, ``max_rollback_time``, ``reject_token_pos_gather``
    tables, each sized by the window of 512)."""

    history: list[StepState] = field(default_factory=list)
    locations: list[torch.Tensor] = field(default_factory=list)  # per step: the location of each beam slot (K,)
    budget: list[int] = field(default_factory=lambda: [0] * WINDOW)
    rejected: list[torch.Tensor | None] = field(default_factory=lambda: [None] * WINDOW)
    parents: torch.Tensor | None = None  # the last step's choices (local beam, token)
    tokens: torch.Tensor | None = None
    rollbacks: list[Rollback] = field(default_factory=list)


class OperaSearch(BeamSearch):
    """OPERA on a batch of prompts (see the module docstring); ``retrospection[g].rollbacks`` lists prompt ``g``'s
    rollbacks."""

    def __init__(self, batch: PromptBatch, config: GenerationConfig, opera: OperaConfig,
                 on_step: StepObserver | None = None):
        last_layer = family_of(batch.model).num_layers(batch.model) - 1
        super().__init__(batch, config, opera.beam, LastLayerAttention(last_layer), on_step)
        self.opera = opera
        self.retrospection = [Retrospection() for _ in range(self.groups)]
        self.products: torch.Tensor | None = None  # (R, max_new_tokens + 1): prod_{i=j}^{n-1} W[i, j]
        left_padding = self.prefill.attention_mask.shape[1] - self.prefill.lengths
        self.image_offset = (self.prefill.image_start - left_padding).tolist()  # image start within each prompt
        self.image_len = self.prefill.image_len.tolist()

    # -- per-beam state ---------------------------------------------------------------------------------------

    def start(self) -> torch.Tensor:
        logits = super().start()
        dtype = self.cache.layers[0].keys.dtype
        self.products = torch.ones(self.rows, self.config.max_new_tokens + 1, dtype=dtype, device=logits.device)
        return logits

    def reorder(self, parents: torch.Tensor) -> None:
        super().reorder(parents)
        self.products = self.products[parents]

    def advance(self, logprobs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        parents, tokens = super().advance(logprobs)
        for g, state in enumerate(self.retrospection):
            rows = self.group_rows(g)
            state.parents, state.tokens = parents[rows] - rows.start, tokens[rows]
        return parents, tokens

    def on_forward(self) -> None:
        """Extend the column products by the row of the token just fed (generated index ``n - 1``)."""
        row = self.hook.rows[:, -1]  # (R, T)
        counts = self._counts()
        scaled = self.opera.scale_factor * (row / row.sum(dim=-1, keepdim=True))
        width = int(counts.max())
        j = torch.arange(width, device=row.device)
        columns = (row.shape[1] - counts[:, None] + j).clamp(0, row.shape[1] - 1)
        values = scaled.gather(1, columns)
        old = self.products[:, :width]
        self.products[:, :width] = torch.where(j < counts[:, None] - 1, old * values,
                                               torch.where(j == counts[:, None] - 1, values, old))

    def _counts(self) -> torch.Tensor:
        """Generated tokens of each row's prompt, ``(R,)``."""
        return torch.tensor(self.generated, device=self.positions.device).repeat_interleave(self.num_beams)

    # -- one OPERA step ---------------------------------------------------------------------------------------

    def next_token_logits(self, logits: torch.Tensor) -> torch.Tensor:
        running = [g for g in range(self.groups) if not self.stopped[g]]
        states = {g: self.snapshot(g) for g in running}
        scores, tokens = torch.topk(logits, self.opera.num_attn_candidates, dim=-1, largest=True, sorted=True)
        rows = self._candidate_rows(tokens)
        best, locations = self._column_scores(rows).max(dim=-1)  # (R, C) float16, the first of equal columns
        penalty = torch.where((self._counts() + 1 <= BONUS_TOKENS)[:, None],
                              (self.opera.penalty_weights * -self._image_attention(rows)).float(),
                              (self.opera.penalty_weights * best).float())
        scores = scores - penalty
        beam_locations = locations.mode(dim=-1).values  # (R,)
        result = torch.full_like(logits, FILL).scatter_(-1, tokens, scores)
        rollbacks = {}
        for g in running:
            found = self._record(g, states[g], tokens, scores, beam_locations)
            if found is not None:
                rollbacks[g] = found
        if rollbacks:
            self._roll_back(rollbacks, result)
        return result

    def _candidate_rows(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed the ``C`` candidates of every beam in one forward (C queries per row at the next position, each
        seeing the row's cache and itself); the last layer's rows ``(R, C, T + 1)``: the ``T`` cached positions, then
        the candidate's own."""
        candidates = tokens.shape[1]
        length = self.cache.layers[0].keys.shape[2]
        dtype = self.cache.layers[0].keys.dtype
        blocked = torch.finfo(dtype).min
        prefix = torch.zeros(self.rows, length, dtype=dtype, device=tokens.device).masked_fill(self.mask == 0, blocked)
        own = torch.full((candidates, candidates), blocked, dtype=dtype, device=tokens.device).fill_diagonal_(0)
        mask = torch.cat([prefix[:, None, :].expand(-1, candidates, -1), own.expand(self.rows, -1, -1)], dim=-1)
        embeds = self.family.embed_tokens(self.model, tokens)
        positions = self.positions[:, None].expand(-1, candidates)
        self.hook.begin_forward(self.step)
        forward_logits(self.model, self.family, embeds, mask[:, None], positions, self.cache, self.hook)
        crop(self.cache, length)
        rows = self.hook.rows
        own_column = torch.diagonal(rows[:, :, length:], dim1=1, dim2=2)  # (R, C)
        rows = torch.cat([rows[:, :, :length], own_column[:, :, None]], dim=-1)
        return rows / rows.sum(dim=-1, keepdim=True)

    def _column_scores(self, rows: torch.Tensor) -> torch.Tensor:
        """The over-trust scores of every candidate (:func:`column_scores`) from its renormalised row ``(R, C, T + 1)``
        (the candidate's own position last, generated token ``j`` at ``T - n + j``)."""
        counts = self._counts()
        j = torch.arange(int(counts.max()) + 1, device=rows.device)
        columns = (rows.shape[-1] - 1 - counts[:, None] + j).clamp(0, rows.shape[-1] - 1)
        window = rows.gather(-1, columns[:, None, :].expand(-1, rows.shape[1], -1))
        return column_scores(self.products[:, : j.shape[0]], self.opera.scale_factor * window, counts)

    def _image_attention(self, rows: torch.Tensor) -> torch.Tensor:
        """Each candidate's renormalised attention mass on its prompt's image tokens, ``(R, C)``."""
        length = rows.shape[-1] - 1
        mass = rows.new_zeros(rows.shape[:2])
        for g in range(self.groups):
            group = self.group_rows(g)
            start = length - int(self.lengths[group.start]) + self.image_offset[g]  # sequences end at the cache end
            mass[group] = rows[group, :, start : start + self.image_len[g]].sum(dim=-1)
        return mass

    # -- retrospection ----------------------------------------------------------------------------------------

    def _record(self, g: int, state: GroupSnapshot, tokens: torch.Tensor, scores: torch.Tensor,
                locations: torch.Tensor) -> int | None:
        """Append this step to prompt ``g``'s history; the position to roll back to, or None."""
        memory = self.retrospection[g]
        rows = self.group_rows(g)
        n = self.generated[g]
        memory.locations.append(locations[rows].clone())
        if len(memory.history) >= WINDOW:
            memory.history.pop(0)
        memory.history.append(StepState(state, self.products[rows, :n].clone(), tokens[rows].clone(),
                                        scores[rows].clone(), memory.parents, memory.tokens))
        location = int(locations[rows].mode().values)
        seen = torch.stack(memory.locations, dim=1)  # (K, steps)
        if not bool(((seen == location).sum(dim=1) > int(self.opera.threshold)).all()) or location < MIN_LOCATION:
            return None
        return spend_budget(memory.budget, location + 1, n + 1, self.opera.num_attn_candidates)

    def _roll_back(self, positions: dict[int, int], logits: torch.Tensor) -> None:
        """Put each prompt of ``positions`` back to its rollback position, recompute its cache, and write its logits
        for this step into ``logits`` (full vocabulary shifted to a minimum of -999, earlier choices rejected)."""
        restored: dict[int, StepState] = {}
        decisions: dict[int, StepState] = {}
        for g, position in positions.items():
            memory = self.retrospection[g]
            for j in range(self.generated[g] + 1 - position - 2):
                memory.history.pop()
                memory.locations.pop()
                memory.rejected[-(j + 1)] = None  # official quirk: the end of the table, not the discarded positions
            restored[g], decisions[g] = memory.history[-2], memory.history[-1]
            self.restore(g, restored[g].search)
            self.products[self.group_rows(g), : restored[g].search.generated] = restored[g].products
            memory.history.pop()
            memory.locations.pop()
            n = restored[g].search.generated
            memory.rollbacks.append(Rollback(self.prompt_ids[g] + n - 1, n))
        fresh = self.reprefill(list(positions)).split(self.num_beams)
        vocab = logits.shape[-1]
        for (g, position), recomputed in zip(positions.items(), fresh):
            rows, memory = self.group_rows(g), self.retrospection[g]
            if position + 1 >= WINDOW:  # past the rejection table: the official except keeps the restored candidates
                logits[rows] = torch.full_like(recomputed, FILL).scatter_(
                    -1, restored[g].candidate_tokens, restored[g].candidate_scores)
                continue
            memory.rejected[position + 1] = None
            shifted = (recomputed - (recomputed.min(dim=-1, keepdim=True).values - FILL)).view(-1)  # min -> -999
            decision = decisions[g]
            reject = decision.parents * vocab + decision.tokens
            if memory.rejected[position] is not None:
                reject = torch.cat([memory.rejected[position], reject])
            memory.rejected[position] = reject
            logits[rows] = shifted.scatter(-1, reject, FILL).view(self.num_beams, vocab)


class Opera(BeamMethod):
    """The registered method ``opera`` (factory of :mod:`sparc.opera.config`): its beam search with ``beam`` beams."""

    def __init__(self, config: OperaConfig):
        self.config = config
        self.num_beams = config.beam

    def search(self, batch: PromptBatch, config: GenerationConfig, on_step: StepObserver | None = None) -> OperaSearch:
        return OperaSearch(batch, config, self.config, on_step)
