"""Our decoding loop (``llava.generation``): agreement with transformers' ``generate``, batching, EOS stopping,
logit warpers and seeded sampling."""
from __future__ import annotations

import copy
import functools

import pytest
import torch
from transformers.generation.logits_process import (
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from helpers import golden_image, golden_model, make_batch, random_image, seeded_generators, synthetic
from llava.generation import DecodingMethod, GenerationConfig, choose_tokens, generate, merge_caches, warp_logits

QUESTIONS = [
    "Please describe this image in detail.",
    "What is it?",
    "Is there a dog in the image? Answer briefly and precisely, please.",
]
GOLDEN_IMAGES = ["img_wide.jpg", "img_tall.jpg", "img_square.jpg"]


def _golden_batch(rows=(0, 1, 2), conv_mode="vicuna_v1"):
    tokenizer, model, processor = golden_model("tiny-llava-v1.5")
    return make_batch(tokenizer, model, processor, [QUESTIONS[r] for r in rows],
                      [golden_image(GOLDEN_IMAGES[r]) for r in rows], conv_mode)


@functools.lru_cache(maxsize=None)
def _golden_batch_run(max_new_tokens: int) -> list[list[int]]:
    """Greedy tokens of the left-padded golden LLaVA-1.5 batch of 3 (shared by the tests below: a prefill of three
    600-token sequences through 32 layers is the expensive part on a CPU)."""
    return generate(_golden_batch(), GenerationConfig(max_new_tokens=max_new_tokens)).sequences


def _synthetic_batch(rows=(0, 1, 2)):
    tokenizer, model, processor = synthetic("llava", 2)
    questions = ["is there a dog ?", "describe this image in detail please .", "a cat ?"]
    images = [random_image(300, 200, 1), random_image(200, 300, 2), random_image(336, 336, 3)]
    return make_batch(tokenizer, model, processor, [questions[r] for r in rows], [images[r] for r in rows])


# ================================================================================================================
# agreement with transformers


def test_greedy_equals_transformers_generate_on_the_same_inputs():
    """transformers' own ``generate`` (its own eager attention, its own cache, position ids and padding handling) on
    the prefill embeddings we build gives the same greedy tokens, for a left-padded batch of 3."""
    batch = _golden_batch()
    prefill = batch.encode()
    assert len(set(prefill.lengths.tolist())) == 3  # really left-padded
    ours = _golden_batch_run(12)
    reference = copy.deepcopy(batch.model)
    reference.set_attn_implementation({"text_config": "eager"})  # transformers' eager, not our hooked function
    with torch.no_grad():
        theirs = reference.generate(
            inputs_embeds=prefill.inputs_embeds, attention_mask=prefill.attention_mask, max_new_tokens=12,
            do_sample=False, eos_token_id=2, pad_token_id=0,
        )
    assert ours == theirs.tolist()


# ================================================================================================================
# batching


def _batch_equals_singles(tokenizer, model, processor, questions, images, conv_mode, n, aspect=None):
    batch = make_batch(tokenizer, model, processor, questions, images, conv_mode, aspect)
    together = generate(batch, GenerationConfig(max_new_tokens=n)).sequences
    alone = [
        generate(make_batch(tokenizer, model, processor, [q], [i], conv_mode, aspect), GenerationConfig(max_new_tokens=n)).sequences[0]
        for q, i in zip(questions, images)
    ]
    assert together == alone
    return batch


def test_batch_of_three_equals_three_single_runs_golden_llava15():
    alone = [generate(_golden_batch((row,)), GenerationConfig(max_new_tokens=12)).sequences[0] for row in range(3)]
    assert _golden_batch_run(12) == alone


def test_batch_of_three_equals_three_single_runs_llava_next_different_image_lengths():
    tokenizer, model, processor = synthetic("llava_next", 4)
    images = [random_image(480, 320, 1), random_image(240, 400, 2), random_image(336, 336, 3)]
    batch = _batch_equals_singles(tokenizer, model, processor, ["is there a dog ?", "describe this image .", "a cat ?"],
                                  images, "vicuna_v1", 8)
    prefill = batch.encode()
    assert len(set(prefill.image_len.tolist())) == 3  # three different image spans


def test_batch_of_three_equals_three_single_runs_instructblip():
    tokenizer, model, processor = synthetic("instructblip", 4)
    images = [random_image(300, 200, 1), random_image(200, 300, 2), random_image(224, 224, 3)]
    batch = _batch_equals_singles(tokenizer, model, processor,
                                  ["is there a dog ?", "describe this image in detail please .", "a cat ?"], images, None, 8)
    assert len(set(batch.encode().lengths.tolist())) == 3


# ================================================================================================================
# stopping


class ForceEos(DecodingMethod):
    """Makes EOS (id 2) the best token of ``row`` at decode step ``step``."""

    def __init__(self, row, step):
        self.row, self.step = row, step

    def combine(self, step, logits, branch_logits):
        if step == self.step:
            logits = logits.clone()
            logits[self.row, 2] = logits[self.row].max() + 100
        return logits


def test_eos_stops_a_row_and_the_others_continue():
    batch = _synthetic_batch()
    plain = generate(batch, GenerationConfig(max_new_tokens=8)).sequences
    assert all(2 not in row for row in plain)
    seen = []
    out = generate(batch, GenerationConfig(max_new_tokens=8), ForceEos(row=1, step=3),
                   step_callback=lambda step, final, chosen: seen.append(chosen.clone()))
    assert out.sequences[1] == plain[1][:2] + [2]  # ends with EOS at step 3, nothing after it
    assert out.sequences[0] == plain[0] and out.sequences[2] == plain[2]
    assert out.steps == 8 and len(seen) == 8


def test_generation_ends_when_every_row_has_finished():
    batch = _synthetic_batch((0, 1))

    class AllEos(DecodingMethod):
        def combine(self, step, logits, branch_logits):
            if step == 4:
                logits = logits.clone()
                logits[:, 2] = 1e4
            return logits

    out = generate(batch, GenerationConfig(max_new_tokens=20), AllEos())
    assert out.steps == 4
    assert [len(row) for row in out.sequences] == [4, 4] and all(row[-1] == 2 for row in out.sequences)


def test_max_new_tokens_and_custom_eos_ids():
    batch = _synthetic_batch((0,))
    plain = generate(batch, GenerationConfig(max_new_tokens=6)).sequences[0]
    assert len(plain) == 6
    # declaring the third generated token an EOS id stops there
    out = generate(batch, GenerationConfig(max_new_tokens=6, eos_token_ids=(2, plain[2])))
    assert out.sequences[0] == plain[:3] and out.steps == 3


# ================================================================================================================
# warpers


def test_temperature_hand_example():
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    torch.testing.assert_close(warp_logits(logits, GenerationConfig(temperature=2.0)), torch.tensor([[0.5, 1.0, 1.5]]))
    assert torch.equal(warp_logits(logits, GenerationConfig()), logits)


def test_top_k_hand_example():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0], [5.0, 4.0, 4.0, 1.0]])
    out = warp_logits(logits, GenerationConfig(top_k=2))
    inf = float("-inf")
    assert out.tolist() == [[inf, 3.0, 2.0, inf], [5.0, 4.0, 4.0, inf]]  # ties with the k-th are kept
    assert torch.equal(warp_logits(logits, GenerationConfig(top_k=10)), logits)


@pytest.mark.parametrize(
    "top_p, kept",
    [
        (0.9, [0, 1, 2]),   # drop tokens while the ascending cumulative mass <= 0.1: only 0.05
        (0.75, [0, 1]),     # <= 0.25: 0.05, 0.15 (cumsum 0.2)
        (0.4, [0]),         # <= 0.6: 0.05, 0.15, 0.3 (cumsum 0.5)
        (1e-6, [0]),        # everything but the most likely token (0 itself is no setting: see below)
    ],
)
def test_top_p_hand_example(top_p, kept):
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    out = warp_logits(probs.log(), GenerationConfig(top_p=top_p))
    assert torch.isfinite(out[0]).nonzero().flatten().tolist() == kept
    torch.testing.assert_close(out[0, kept], probs.log()[0, kept])


@pytest.mark.parametrize("settings, message", [
    (dict(max_new_tokens=0), "max_new_tokens must be at least 1"),
    (dict(temperature=0.0), "temperature must be at least"),
    (dict(temperature=float("nan")), "temperature must be a finite number"),
    (dict(top_k=0), "top_k must be at least 1"),
    (dict(top_p=0.0), "top_p must be in \\(0, 1\\]"),
    (dict(top_p=1.5), "top_p must be in \\(0, 1\\]"),
])
def test_generation_settings_validate_themselves(settings, message):
    """One home for the checks of max_new_tokens, temperature, top-k and top-p: the config refuses what cannot run
    wherever it is built (runners, llava.run, figures, bench)."""
    with pytest.raises(ValueError, match=message):
        GenerationConfig(**settings)


def test_temperature_applies_before_top_p():
    # T=1: probs [.665, .245, .090] -> top_p 0.8 drops only the last; T=0.5: [.867, .117, .016] -> keeps one
    logits = torch.tensor([[2.0, 1.0, 0.0]])
    assert torch.isfinite(warp_logits(logits, GenerationConfig(top_p=0.8))).sum() == 2
    assert torch.isfinite(warp_logits(logits, GenerationConfig(top_p=0.8, temperature=0.5))).sum() == 1


def test_warpers_equal_transformers_warpers():
    logits = torch.randn(4, 500, generator=torch.Generator().manual_seed(0)) * 3
    for temperature, top_k, top_p in [(0.7, 40, 0.9), (1.3, None, 0.5), (1.0, 5, None), (0.5, 100, 0.95)]:
        expected = logits
        if temperature != 1.0:
            expected = TemperatureLogitsWarper(temperature)(None, expected)
        if top_k:
            expected = TopKLogitsWarper(top_k)(None, expected)
        if top_p is not None:
            expected = TopPLogitsWarper(top_p)(None, expected)
        out = warp_logits(logits, GenerationConfig(temperature=temperature, top_k=top_k, top_p=top_p))
        assert torch.equal(torch.isinf(out), torch.isinf(expected))
        torch.testing.assert_close(out[torch.isfinite(out)], expected[torch.isfinite(expected)])


def test_choose_tokens_greedy_and_per_row_generators():
    logits = torch.tensor([[0.0, 5.0, 1.0], [3.0, 0.0, 0.0]])
    assert choose_tokens(logits, GenerationConfig(), None).tolist() == [1, 0]
    spread = torch.zeros(2, 1000)
    config = GenerationConfig(do_sample=True)
    first = choose_tokens(spread, config, seeded_generators([1, 2]))
    again = choose_tokens(spread, config, seeded_generators([1, 2]))
    swapped = choose_tokens(spread.flip(0), config, seeded_generators([2, 1]))
    assert torch.equal(first, again) and torch.equal(first, swapped.flip(0))
    assert first[0] == torch.multinomial(spread[0].softmax(-1), 1, generator=torch.Generator().manual_seed(1)).item()
    only = torch.full((1, 5), float("-inf"))
    only[0, 3] = 0.0
    assert choose_tokens(only, config, seeded_generators([7])).tolist() == [3]


# ================================================================================================================
# seeded sampling end to end


def test_seeded_sampling_is_reproducible_and_independent_of_batch_composition():
    tokenizer, model, processor = synthetic("llava", 2)
    questions = ["is there a dog ?", "describe this image .", "a cat on the table ?"]
    images = [random_image(300, 200, 1), random_image(200, 300, 2), random_image(336, 336, 3)]
    seeds = [11, 22, 33]
    config = GenerationConfig(max_new_tokens=8, do_sample=True, temperature=1.5, top_k=200)

    def run(rows):
        batch = make_batch(tokenizer, model, processor, [questions[r] for r in rows], [images[r] for r in rows])
        return generate(batch, config, generators=seeded_generators([seeds[r] for r in rows])).sequences

    full = run([0, 1, 2])
    assert run([0, 1, 2]) == full
    assert [run([r])[0] for r in range(3)] == full
    assert run([2, 0]) == [full[2], full[0]]
    # the seed matters (so the checks above are not vacuous)
    batch = make_batch(tokenizer, model, processor, questions[:1], images[:1])
    assert generate(batch, config, generators=seeded_generators([12])).sequences[0] != full[0]
    with pytest.raises(ValueError, match="generators"):
        generate(batch, config, generators=seeded_generators([1, 2]))


# ================================================================================================================
# caches


def test_merge_caches_left_pads_the_shorter_cache():
    from transformers import DynamicCache

    _, model, _ = synthetic("llava", 2)
    config = model.model.language_model.config
    a, b = DynamicCache(config=config), DynamicCache(config=config)
    for layer in range(2):
        a.update(torch.ones(1, 4, 3, 16), torch.ones(1, 4, 3, 16) * 2, layer)
        b.update(torch.ones(2, 4, 5, 16) * 3, torch.ones(2, 4, 5, 16) * 4, layer)
    merged, mask = merge_caches([a, b], [torch.ones(1, 3, dtype=torch.long), torch.tensor([[0, 1, 1, 1, 1], [1] * 5])], 4)
    assert mask.tolist() == [[0, 0, 1, 1, 1], [0, 1, 1, 1, 1], [1] * 5]
    for layer in range(2):
        keys, values = merged.layers[layer].keys, merged.layers[layer].values
        assert keys.shape == (3, 4, 5, 16)
        assert keys[0, :, :2].abs().sum() == 0 and (keys[0, :, 2:] == 1).all() and (values[0, :, 2:] == 2).all()
        assert (keys[1:] == 3).all() and (values[1:] == 4).all()
        # decode steps append after the merged positions and keep them
        keys, values = merged.update(torch.full((3, 4, 1, 16), 5.0), torch.full((3, 4, 1, 16), 6.0), layer)
        assert keys.shape == (3, 4, 6, 16) and (keys[:, :, 5] == 5).all() and (values[:, :, 5] == 6).all()
        assert (keys[1:, :, :5] == 3).all() and (values[0, :, 2:5] == 2).all()


# ================================================================================================================
# branches of another prompt layout: their own row group, length and mask


class RecordBranches(DecodingMethod):
    """A text-only branch (another layout) and a copy of the main input (the same layout), in that order; keeps the
    logits ``combine`` receives and decodes with the main logits."""

    def __init__(self):
        self.seen: list[tuple[torch.Tensor, list[torch.Tensor]]] = []

    def branches(self, context):
        return [context.batch.encode(text_only=True), context.batch.encode()]

    def combine(self, step, logits, branch_logits):
        self.seen.append((logits.clone(), [b.clone() for b in branch_logits]))
        return logits


def test_branches_decode_as_they_would_alone():
    """Main rows decode as without branches; the text-only rows (own cache, own positions) give the logits of the
    text-only prompt decoded alone on the same tokens; the same-layout copy gives the main logits; ``combine`` gets
    the branches in the order the method returned them. The text-only rows run beside other rows (another batch
    shape, so other float32 kernels): their logits (about 7 in size) move by up to 1.03e-5 from the alone run (AMD EPYC,
    1 and 2 threads); the bound is 5e-5. The copy shares the main rows' layout and matches to 1e-5."""
    from llava.generation import forward_logits, run_prefill
    from llava.model.families import family_of

    batch = _synthetic_batch()
    method = RecordBranches()
    out = generate(batch, GenerationConfig(max_new_tokens=5), method)
    assert out.sequences == generate(batch, GenerationConfig(max_new_tokens=5)).sequences
    model, family = batch.model, family_of(batch.model)
    text = batch.encode(text_only=True)
    assert text.padded and len(set(text.lengths.tolist())) == 3
    with torch.inference_mode():
        cache, logits = run_prefill(model, family, text, None, 8)
        mask, positions = text.attention_mask, text.lengths.clone()
        tokens = torch.tensor(out.sequences)
        for step, (main, (text_logits, copy_logits)) in enumerate(method.seen):
            torch.testing.assert_close(text_logits, logits, rtol=0, atol=5e-5, msg=f"step {step + 1}")
            torch.testing.assert_close(copy_logits, main, rtol=0, atol=1e-5, msg=f"step {step + 1}")
            mask = torch.cat([mask, mask.new_ones(3, 1)], dim=1)
            logits = forward_logits(model, family, family.embed_tokens(model, tokens[:, step, None]), mask, positions[:, None],
                              cache, None)
            positions = positions + 1


def test_short_branch_attends_over_its_own_length_without_a_mask(monkeypatch):
    """At batch 1, M3ID's text-only branch is not padded to the image prompt's length: each decode step attends
    twice per layer, over the main cache and over the branch's own (short) cache, neither with a mask."""
    import torch.nn.functional as F

    from avisc.config import M3idConfig
    from avisc.methods import M3id

    tokenizer, model, processor = synthetic("llava", 2, attn_implementation="sdpa")
    batch = make_batch(tokenizer, model, processor, ["is there a dog ?"], [random_image(300, 200, 1)])
    main_length, text_length = int(batch.encode().lengths[0]), int(batch.encode(text_only=True).lengths[0])
    assert text_length < main_length - 500
    calls = []
    sdpa = F.scaled_dot_product_attention

    def spy(query, key, value, **kwargs):
        if query.shape[2] == 1:  # decode steps
            calls.append((key.shape[2], kwargs.get("attn_mask") is not None))
        return sdpa(query, key, value, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    generate(batch, GenerationConfig(max_new_tokens=3), M3id(M3idConfig()))
    expected = [(length + step, False) for step in (1, 2) for _ in range(2) for length in (main_length, text_length)]
    assert calls == expected


def test_padding_mask_is_allocated_once():
    from llava.generation import PaddingMask

    mask = PaddingMask(torch.tensor([[0, 1, 1], [1, 1, 1]]), room=3)
    first = mask.current
    assert first.dtype == torch.bool and first.tolist() == [[False, True, True], [True, True, True]]
    mask.grow()
    mask.grow()
    assert mask.current.tolist() == [[False, True, True, True, True], [True] * 5]
    assert mask.current.data_ptr() == first.data_ptr()  # a wider view of the same buffer, no copy
    assert PaddingMask(torch.ones(2, 4, dtype=torch.long), room=3).current is None  # unpadded: no mask at all


class _Poison(DecodingMethod):
    """Writes ``value`` into row ``row``'s logits at decode step ``step`` (everywhere, or in every logit but one)."""

    def __init__(self, row: int, step: int, value: float, everywhere: bool = True):
        self.row, self.step, self.value, self.everywhere = row, step, value, everywhere

    def combine(self, step, logits, branch_logits):
        if step == self.step:
            logits = logits.clone()
            if self.everywhere:
                logits[self.row] = self.value
            else:
                logits[self.row, 5] = self.value
        return logits


@pytest.mark.parametrize("sample", [False, True])
@pytest.mark.parametrize("value, everywhere", [(float("nan"), True), (float("nan"), False), (float("inf"), False),
                                                (float("-inf"), True)])
def test_a_non_finite_step_fails_its_rows_under_greedy_and_sampling_alike(value, everywhere, sample):
    """NaN anywhere, +inf anywhere, or nothing finite: greedy decoding would pick token 0 (argmax of NaN) and a
    normal-looking answer would be recorded; the step's rows fail instead, naming the step and the rows."""
    from llava.generation import NonFiniteLogits

    tokenizer, model, processor = synthetic("llava", 2)
    batch = make_batch(tokenizer, model, processor, ["a", "b", "c"], [random_image(60, 40, i) for i in range(3)])
    config = GenerationConfig(max_new_tokens=6, do_sample=sample, eos_token_ids=())
    with pytest.raises(NonFiniteLogits, match="decode step 3 in batch row\\(s\\) \\[1\\]") as raised:
        generate(batch, config, _Poison(1, 3, value, everywhere), seeded_generators([1, 2, 3]) if sample else None)
    assert (raised.value.step, raised.value.rows) == (3, [1])


def test_minus_infinity_for_some_tokens_is_a_ruled_out_token_not_a_failure():
    tokenizer, model, processor = synthetic("llava", 2)
    batch = make_batch(tokenizer, model, processor, ["a"], [random_image(60, 40)])
    output = generate(batch, GenerationConfig(max_new_tokens=4, eos_token_ids=()), _Poison(0, 2, float("-inf"), False))
    assert len(output.sequences[0]) == 4
