"""The hook point inside attention (``llava.attention``).

(b) the last-query attention row a hook receives equals the row of transformers' own eager attention with
    ``output_attentions=True`` (a separate copy of the model), at the prefill and at a decode step, with and without
    left padding, through both hooked implementations (SDPA and eager), and with grouped-query attention;
(a) editing cached values through ``edit_values`` changes the next step exactly as editing the cache by hand does.
"""
from __future__ import annotations

import copy

import pytest
import torch
from transformers import DynamicCache, LlamaConfig, LlamaModel

from helpers import sharpened, synthetic
from llava.attention import HOOKED_EAGER, HOOKED_SDPA, AttentionHook, query_attention
from llava.inputs import positions_from_mask
from llava.model.prepare import prepare_model

NUM_LAYERS = 4

ROW_ERROR = 2e-3
"""How far one float32 attention weight of these sharp models may move between our hooked path and transformers' eager
attention (different kernels, thread counts): usually about 1e-5, up to 1.1e-3 where a layer's top keys nearly tie
(SDPA, one thread, an AMD EPYC: its inputs already differ by float noise, and the sharp softmax amplifies it). A wrong
head reduction, mask or row moves weights by 0.75 to 1.0 on these models."""

OUTPUT_ERROR = 1e-4
"""How far a float32 hidden state may move between the two paths, relative to the largest one: up to 2.8e-5 seen
(SDPA with a score edit, AMD EPYC)."""


def assert_outputs_close(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    """Hidden states within :data:`OUTPUT_ERROR` of the largest reference value."""
    torch.testing.assert_close(ours, theirs, rtol=0, atol=OUTPUT_ERROR * float(theirs.abs().max()))


class RecordRows(AttentionHook):
    """Keeps the last-query row of every layer of one forward."""

    def __init__(self, layers=None):
        self.layers = layers
        self.rows: dict[int, torch.Tensor] = {}

    def wants_attention(self, layer_idx):
        return self.layers is None or layer_idx in self.layers

    def on_attention(self, layer_idx, row):
        self.rows[layer_idx] = row.clone()


class ScaleValues(AttentionHook):
    """Multiplies the cached values of ``positions[row]`` by ``alpha`` in ``layers``."""

    def __init__(self, alpha, positions, layers):
        self.alpha, self.positions, self.layers = alpha, positions, layers
        self.seen_shapes = []

    def edit_values(self, layer_idx, value):
        self.seen_shapes.append(tuple(value.shape))
        if layer_idx in self.layers:
            for row, positions in self.positions.items():
                value[row, :, positions] *= self.alpha


def _decoder_pair(implementation: str):
    """A tiny LLaVA decoder on our hooked ``implementation`` and an independent copy on transformers' own eager
    (with sharp attention, so that a wrong scaling or mask shows clearly in the rows)."""
    _, model, _ = sharpened("llava", NUM_LAYERS)
    hooked = copy.deepcopy(model)
    prepare_model(hooked, _toy(), implementation)
    reference = copy.deepcopy(model)
    reference.set_attn_implementation({"text_config": "eager"})
    return hooked.model.language_model, reference.model.language_model


def _toy():
    tokenizer, _, _ = synthetic("llava", NUM_LAYERS)
    return tokenizer


def _inputs(padded: bool, hidden: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    if padded:
        embeds = torch.randn(3, 11, hidden, generator=generator)
        mask = torch.tensor([[1] * 11, [0] * 4 + [1] * 7, [0] * 2 + [1] * 9])
        embeds = embeds * mask[..., None]  # pad embeddings are zeros, as Prefill makes them
    else:
        embeds = torch.randn(1, 11, hidden, generator=generator)
        mask = torch.ones(1, 11, dtype=torch.long)
    return embeds, mask


def _reference_rows(attentions):
    """Head-mean of the last query's row, per layer, from ``output_attentions``."""
    return {layer: a[:, :, -1, :].mean(dim=1) for layer, a in enumerate(attentions)}


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "left-padded"])
@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_last_query_row_equals_eager_output_attentions(implementation, padded):
    decoder, reference = _decoder_pair(implementation)
    hidden = decoder.config.hidden_size
    embeds, mask = _inputs(padded, hidden)
    positions = positions_from_mask(mask)
    with torch.no_grad():
        # prefill
        hook = RecordRows()
        cache = DynamicCache(config=decoder.config)
        out = decoder(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, past_key_values=cache,
                      use_cache=True, attn_hook=hook)
        ref_cache = DynamicCache(config=reference.config)
        ref = reference(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, past_key_values=ref_cache,
                        use_cache=True, output_attentions=True)
        expected = _reference_rows(ref.attentions)
        assert sorted(hook.rows) == list(range(NUM_LAYERS))
        for layer in range(NUM_LAYERS):
            assert hook.rows[layer].shape == (embeds.shape[0], embeds.shape[1])
            torch.testing.assert_close(hook.rows[layer], expected[layer], rtol=0, atol=ROW_ERROR)
            torch.testing.assert_close(hook.rows[layer].sum(-1), torch.ones(embeds.shape[0]), rtol=0, atol=1e-5)
            if (mask == 0).any():
                assert hook.rows[layer][mask == 0].abs().max() < 1e-12  # no mass on left padding
        real = mask.bool()  # outputs at pad positions are meaningless (fully masked rows)
        assert_outputs_close(out.last_hidden_state[real], ref.last_hidden_state[real])

        # two decode steps
        for step in range(2):
            new = torch.randn(embeds.shape[0], 1, hidden, generator=torch.Generator().manual_seed(10 + step))
            mask = torch.cat([mask, torch.ones(mask.shape[0], 1, dtype=mask.dtype)], dim=1)
            position = mask.sum(dim=1, keepdim=True) - 1
            hook = RecordRows()
            out = decoder(inputs_embeds=new, attention_mask=mask, position_ids=position, past_key_values=cache,
                          use_cache=True, attn_hook=hook)
            ref = reference(inputs_embeds=new, attention_mask=mask, position_ids=position, past_key_values=ref_cache,
                            use_cache=True, output_attentions=True)
            expected = _reference_rows(ref.attentions)
            for layer in range(NUM_LAYERS):
                assert hook.rows[layer].shape == mask.shape
                torch.testing.assert_close(hook.rows[layer], expected[layer], rtol=0, atol=ROW_ERROR)
            assert_outputs_close(out.last_hidden_state, ref.last_hidden_state)


class RecordAllRows(RecordRows):
    """Keeps every query's row, max over heads (OPERA's reading)."""

    head_reduction = "max"
    query_rows = "all"


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "left-padded"])
@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_all_query_rows_equal_eager_output_attentions(implementation, padded):
    """``query_rows = "all"``: every query's row (max over heads) equals eager ``output_attentions``, at the prefill
    (causal mask applied by hand where transformers passes none) and for several queries at a decode forward."""
    decoder, reference = _decoder_pair(implementation)
    hidden = decoder.config.hidden_size
    embeds, mask = _inputs(padded, hidden, seed=4)
    positions = positions_from_mask(mask)
    with torch.no_grad():
        hook = RecordAllRows()
        cache, ref_cache = DynamicCache(config=decoder.config), DynamicCache(config=reference.config)
        decoder(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, past_key_values=cache,
                use_cache=True, attn_hook=hook)
        ref = reference(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, past_key_values=ref_cache,
                        use_cache=True, output_attentions=True)
        real = mask.bool()
        for layer, attention in enumerate(ref.attentions):
            assert hook.rows[layer].shape == (embeds.shape[0], embeds.shape[1], embeds.shape[1])
            torch.testing.assert_close(hook.rows[layer][real], attention.amax(dim=1)[real], rtol=0, atol=ROW_ERROR)
        # three new queries at once, after the prompt
        new = torch.randn(embeds.shape[0], 3, hidden, generator=torch.Generator().manual_seed(9))
        mask = torch.cat([mask, torch.ones(mask.shape[0], 3, dtype=mask.dtype)], dim=1)
        position = mask.sum(dim=1, keepdim=True) - 3 + torch.arange(3)
        hook = RecordAllRows()
        decoder(inputs_embeds=new, attention_mask=mask, position_ids=position, past_key_values=cache, use_cache=True,
                attn_hook=hook)
        ref = reference(inputs_embeds=new, attention_mask=mask, position_ids=position, past_key_values=ref_cache,
                        use_cache=True, output_attentions=True)
        for layer, attention in enumerate(ref.attentions):
            assert hook.rows[layer].shape == (embeds.shape[0], 3, mask.shape[1])
            torch.testing.assert_close(hook.rows[layer], attention.amax(dim=1), rtol=0, atol=ROW_ERROR)


def test_hook_rows_only_for_layers_asked_and_no_effect_on_outputs():
    decoder, _ = _decoder_pair("sdpa")
    embeds, mask = _inputs(True, decoder.config.hidden_size)
    positions = positions_from_mask(mask)
    with torch.no_grad():
        hook = RecordRows(layers={2})
        with_hook = decoder(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, attn_hook=hook)
        without = decoder(inputs_embeds=embeds, attention_mask=mask, position_ids=positions)
    assert sorted(hook.rows) == [2]
    assert torch.equal(with_hook.last_hidden_state, without.last_hidden_state)


@pytest.mark.parametrize("implementation", [HOOKED_SDPA, HOOKED_EAGER])
def test_grouped_query_attention_rows(implementation):
    """4 query heads over 2 KV heads: the hook's grouping must match ``repeat_kv`` (heads 0,1 -> kv 0; 2,3 -> kv 1)."""
    config = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    torch.manual_seed(0)
    reference = LlamaModel(config).eval()
    reference.set_attn_implementation("eager")
    hooked = copy.deepcopy(reference)
    hooked.set_attn_implementation(implementation)
    embeds, mask = _inputs(True, 32, seed=3)
    positions = positions_from_mask(mask)
    with torch.no_grad():
        hook = RecordRows()
        hooked(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, attn_hook=hook)
        ref = reference(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, output_attentions=True)
    for layer, row in _reference_rows(ref.attentions).items():
        torch.testing.assert_close(hook.rows[layer], row, rtol=0, atol=ROW_ERROR)


def test_last_query_attention_hand_example():
    """One head, scores q.k / sqrt(2): keys chosen so the scores are 0, 1, 2 (-> softmax [1, e, e^2] / sum)."""
    scale = 2 ** 0.5
    query = torch.tensor([[[[0.0, 0.0], [scale, 0.0]]]])            # (B=1, H=1, Q=2, D=2); only the last query counts
    key = torch.tensor([[[[0.0, 5.0], [1.0, 0.0], [2.0, 0.0]]]])    # (1, 1, S=3, 2)
    row = query_attention(query, key, None, scaling=2 ** -0.5)
    e = torch.tensor([1.0, torch.e, torch.e ** 2])
    torch.testing.assert_close(row, (e / e.sum())[None], rtol=0, atol=1e-6)
    masked = query_attention(query, key, torch.tensor([[[[True, True, True], [False, True, True]]]]), 2 ** -0.5)
    torch.testing.assert_close(masked, torch.tensor([[0.0, torch.e, torch.e ** 2]]) / (torch.e + torch.e ** 2), rtol=0, atol=1e-6)
    additive = torch.tensor([[[[0.0, 0.0, 0.0], [float("-inf"), 0.0, 0.0]]]])
    torch.testing.assert_close(query_attention(query, key, additive, 2 ** -0.5), masked, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# (a) editing cached values


def _cache_kinds():
    """transformers' ``DynamicCache`` and, where it has one, the cache our decoding loop uses."""
    import llava.generation as generation

    kinds = [pytest.param(lambda decoder: DynamicCache(config=decoder.config), id="DynamicCache")]
    if hasattr(generation, "new_cache"):
        kinds.append(pytest.param(lambda decoder: generation.new_cache(decoder.config.num_hidden_layers, 12),
                                  id="generation-cache"))
    return kinds


@pytest.mark.parametrize("make_cache", _cache_kinds())
@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_edit_values_equals_scaling_the_cache_by_hand(implementation, make_cache):
    decoder, _ = _decoder_pair(implementation)
    hidden = decoder.config.hidden_size
    embeds, mask = _inputs(True, hidden, seed=5)
    positions = positions_from_mask(mask)
    edits = {0: [3, 7], 1: [5], 2: [2, 3, 4]}  # per row, cache positions (row 1 has 4 pads, row 2 has 2)
    layers = {1, 2}
    alpha = 1.7
    steps = [torch.randn(3, 1, hidden, generator=torch.Generator().manual_seed(20 + i)) for i in range(2)]

    def run(by_hand: bool, edit: bool):
        cache = make_cache(decoder)
        decoder(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True)
        if edit and by_hand:
            for layer in layers:
                for row, cols in edits.items():
                    cache.layers[layer].values[row, :, cols] *= alpha
        hook = ScaleValues(alpha, edits, layers) if edit and not by_hand else None
        step_mask = torch.cat([mask, torch.ones(3, 1, dtype=mask.dtype)], dim=1)
        out = decoder(inputs_embeds=steps[0], attention_mask=step_mask, position_ids=step_mask.sum(1, keepdim=True) - 1,
                      past_key_values=cache, use_cache=True, attn_hook=hook)
        first = out.last_hidden_state[:, -1].clone()
        # a second step without any hook: the edit persists in the cache (it is the cache's own storage)
        step_mask = torch.cat([step_mask, torch.ones(3, 1, dtype=mask.dtype)], dim=1)
        out = decoder(inputs_embeds=steps[1], attention_mask=step_mask, position_ids=step_mask.sum(1, keepdim=True) - 1,
                      past_key_values=cache, use_cache=True)
        return first, out.last_hidden_state[:, -1].clone(), cache, hook

    with torch.no_grad():
        hand_first, hand_second, hand_cache, _ = run(by_hand=True, edit=True)
        hook_first, hook_second, hook_cache, hook = run(by_hand=False, edit=True)
        plain_first, _, plain_cache, _ = run(by_hand=False, edit=False)
    torch.testing.assert_close(hook_first, hand_first, rtol=0, atol=1e-6)
    torch.testing.assert_close(hook_second, hand_second, rtol=0, atol=1e-6)
    lm_head = sharpened("llava", NUM_LAYERS)[1].lm_head  # the logits these hidden states give
    with torch.no_grad():
        torch.testing.assert_close(lm_head(hook_first), lm_head(hand_first), rtol=0, atol=1e-6)
        torch.testing.assert_close(lm_head(hook_second), lm_head(hand_second), rtol=0, atol=1e-6)
        assert (lm_head(hook_first) - lm_head(plain_first)).abs().max() > 1e-3
    for layer in range(NUM_LAYERS):
        torch.testing.assert_close(hook_cache.layers[layer].values, hand_cache.layers[layer].values, rtol=0, atol=1e-6)
    # the edit did something, only where asked
    assert (hook_first - plain_first).abs().max() > 1e-3
    for layer in range(NUM_LAYERS):
        edited, plain = hook_cache.layers[layer].values, plain_cache.layers[layer].values
        expected = plain.clone()
        if layer in layers:
            for row, cols in edits.items():
                expected[row, :, cols] *= alpha
        # the new steps' values differ (different inputs downstream of the edit), so compare the prefill part only
        length = mask.shape[1]
        torch.testing.assert_close(edited[:, :, :length], expected[:, :, :length], rtol=0, atol=1e-6)
    # the hook sees every layer once per forward, the full cache (B, H_kv, S, D) including the current step
    heads = decoder.config.num_key_value_heads
    head_dim = decoder.config.hidden_size // decoder.config.num_attention_heads
    assert hook.seen_shapes == [(3, heads, mask.shape[1] + 1, head_dim)] * NUM_LAYERS


# ---------------------------------------------------------------------------------------------------------------
# (c) editing the last query's pre-softmax scores


class AmplifySpan(AttentionHook):
    """``A + alpha * |A|`` on the last query's scores over ``spans[row] = (start, end)`` in ``layers`` (a hand loop)."""

    def __init__(self, alpha, spans, layers):
        self.alpha, self.spans, self.layers = alpha, spans, layers
        self.seen_shapes = []

    def wants_scores(self, layer_idx):
        return layer_idx in self.layers

    def edit_scores(self, layer_idx, scores):
        self.seen_shapes.append(tuple(scores.shape))
        for row, (start, end) in enumerate(self.spans):
            scores[row, :, start:end] += self.alpha * scores[row, :, start:end].abs()


def _register_reference(name, alpha, spans, layers):
    """transformers' own ``eager_attention_forward``, with ``alpha * |A|`` of the last query (computed by hand from
    that layer's query and keys) added to the last row of its additive mask."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask
    from transformers.models.llama.modeling_llama import eager_attention_forward, repeat_kv

    def reference(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
        if module.layer_idx in layers:
            keys = repeat_kv(key, module.num_key_value_groups)
            scores = torch.matmul(query[:, :, -1:], keys.transpose(2, 3)) * scaling + attention_mask[:, :, -1:]
            mask = attention_mask.expand(-1, query.shape[1], -1, -1).clone()
            for row, (start, end) in enumerate(spans):
                mask[row, :, -1, start:end] += alpha * scores[row, :, 0, start:end].abs()
            attention_mask = mask
        return eager_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                       **kwargs)

    AttentionInterface.register(name, reference)
    AttentionMaskInterface.register(name, eager_mask)


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "left-padded"])
@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_score_edit_equals_reference(implementation, padded):
    """Prefill and two decode steps with the last query's image-span scores amplified in layers 1 and 3 equal
    transformers' eager attention with the same amplification added to its mask; the edit changes the outputs."""
    decoder, _ = _decoder_pair(implementation)
    hidden = decoder.config.hidden_size
    embeds, mask = _inputs(padded, hidden, seed=7)
    positions = positions_from_mask(mask)
    spans = [(2, 8), (5, 9), (3, 10)][: embeds.shape[0]]  # cache positions per row (rows 1, 2 have 4, 2 pads)
    layers, alpha = {1, 3}, 0.5
    _, model, _ = sharpened("llava", NUM_LAYERS)
    reference = copy.deepcopy(model)
    name = f"test_reference_edit_{implementation}_{padded}"
    _register_reference(name, alpha, spans, layers)
    reference.set_attn_implementation({"text_config": name})
    reference = reference.model.language_model
    steps = [torch.randn(embeds.shape[0], 1, hidden, generator=torch.Generator().manual_seed(30 + i)) for i in range(2)]

    def run(model, hook):
        cache = DynamicCache(config=model.config)
        outputs = [model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, past_key_values=cache,
                         use_cache=True, attn_hook=hook).last_hidden_state[:, -1]]
        step_mask = mask
        for new in steps:
            step_mask = torch.cat([step_mask, torch.ones(step_mask.shape[0], 1, dtype=mask.dtype)], dim=1)
            outputs.append(model(inputs_embeds=new, attention_mask=step_mask, position_ids=step_mask.sum(1, keepdim=True) - 1,
                                 past_key_values=cache, use_cache=True, attn_hook=hook).last_hidden_state[:, -1])
        return outputs

    with torch.no_grad():
        hook = AmplifySpan(alpha, spans, layers)
        edited = run(decoder, hook)
        expected = run(reference, None)
        plain = run(decoder, None)
    for ours, theirs, unedited in zip(edited, expected, plain):
        assert_outputs_close(ours, theirs)
        assert (ours - unedited).abs().max() > 1e-3
    # the hook sees (B, H, S) rows of the layers it asked for, once per forward, S including the current step
    heads = decoder.config.num_attention_heads
    length = mask.shape[1]
    assert hook.seen_shapes == [(embeds.shape[0], heads, length + step) for step in range(3) for _ in layers]


def test_score_edit_keeps_the_model_on_sdpa(monkeypatch):
    """On SDPA only the edited last query is computed apart: at the prefill every layer still attends through SDPA
    (causal, no mask); at a decode step the edited layer's single query needs no SDPA call, the others make one."""
    import torch.nn.functional as F

    decoder, _ = _decoder_pair("sdpa")
    embeds, mask = _inputs(False, decoder.config.hidden_size)
    calls = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda q, k, v, **kw: calls.append(
        (q.shape[2], kw.get("attn_mask") is not None)) or sdpa(q, k, v, **kw))
    hook = AmplifySpan(0.5, [(2, 8)], {1})
    with torch.no_grad():
        cache = DynamicCache(config=decoder.config)
        decoder(inputs_embeds=embeds, position_ids=positions_from_mask(mask), past_key_values=cache, use_cache=True,
                attn_hook=hook)
        assert calls == [(11, False)] * NUM_LAYERS
        calls.clear()
        decoder(inputs_embeds=embeds[:, :1], position_ids=torch.tensor([[11]]), past_key_values=cache, use_cache=True,
                attn_hook=hook)
    assert calls == [(1, False)] * (NUM_LAYERS - 1)
    assert len(hook.seen_shapes) == 2


def test_eager_workspace_reuses_its_buffers_and_changes_nothing():
    """Eager attention's large score buffers are kept and reused (same storage on the next prefill), with the same
    outputs as freshly allocated tensors (what it does while autograd records)."""
    from llava.attention import WORKSPACE

    decoder, _ = _decoder_pair("eager")
    embeds = torch.randn(4, 300, decoder.config.hidden_size, generator=torch.Generator().manual_seed(2))
    positions = torch.arange(300)[None].expand(4, -1)

    def kept():  # the buffers outside inference mode (the key's last field), by name
        return {key[0]: buffer.data_ptr() for key, buffer in WORKSPACE._buffers.items() if not key[3]}

    with torch.no_grad():
        first = decoder(inputs_embeds=embeds, position_ids=positions).last_hidden_state
        pointers = kept()
        again = decoder(inputs_embeds=embeds, position_ids=positions).last_hidden_state
    assert set(pointers) == {"scores", "probs"} and kept() == pointers
    with torch.enable_grad():
        fresh = decoder(inputs_embeds=embeds, position_ids=positions).last_hidden_state
    assert torch.equal(first, again) and torch.equal(first, fresh)
