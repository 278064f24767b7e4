"""SPARC: the official golden outputs (tokens and per-step selections), batching, and a hand-built walk through the
EMA / selection / lag / scaling arithmetic of :class:`sparc.SparcHook`."""
from __future__ import annotations

import pytest
import torch

from helpers import (
    assert_selections_match,
    golden_image,
    golden_json,
    golden_model,
    golden_params,
    make_batch,
    random_image,
    sharpened,
    sparc_config_from,
    sparc_golden_run,
    synthetic,
)
from llava.generation import GenerationConfig, generate
from llava.methods import get_method
from sparc.config import SparcConfig
from sparc.method import Sparc, SparcHook

# ================================================================================================================
# golden: every case and image of both files, parameters from the json


def check_golden(golden_file: str, case: dict, output: dict) -> None:
    tokens, selections, ratios = sparc_golden_run(golden_file, case["name"], output["image"])
    assert tokens == output["generated_ids"]
    assert_selections_match(selections, output["selected_positions_per_step"], ratios, case["params"].get("tau", 0.0),
                            golden_json(golden_file)["image_token_start"])


@pytest.mark.parametrize("case, output", golden_params("sparc_golden.json"))
def test_golden_llava15(case, output):
    check_golden("sparc_golden.json", case, output)


@pytest.mark.parametrize("case, output", golden_params("sparc_next_golden.json"))
def test_golden_llava_next(case, output):
    check_golden("sparc_next_golden.json", case, output)


def test_selection_comparison_fails_on_a_real_difference():
    """The tie allowance of the golden comparison only excuses ties: a token far from tau that differs fails, and so
    do relative changes that do not give our own selection."""
    official = [[35, 40], [36]]
    second = [0.0, 2.0] + [0.0] * 6  # position 36 selected at the second step

    def first(ratio_40: float) -> list[float]:
        return [2.0] + [0.0] * 4 + [ratio_40] + [0.0] * 2  # positions 35 .. 42 (start 35)

    assert_selections_match([[35, 40], [36]], official, [first(2.0), second], 1.5, 35)
    with pytest.raises(AssertionError, match=r"entries \[5\] differ from the official set with values \[0.9\]"):
        assert_selections_match([[35], [36]], official, [first(0.9), second], 1.5, 35)
    assert_selections_match([[35], [36]], official, [first(1.49999), second], 1.5, 35)  # a tie with tau: allowed
    with pytest.raises(AssertionError, match="not those our values put above the cutoff"):
        assert_selections_match([[35], [36]], official, [first(2.0), second], 1.5, 35)


def test_golden_selections_cover_every_forwarded_step():
    """The golden records one selection list per decode step that runs a forward (all but the last token)."""
    for name in ("sparc_golden.json", "sparc_next_golden.json"):
        for case in golden_json(name)["cases"]:
            for output in case["outputs"]:
                steps = output["selected_positions_per_step"]
                assert len(steps) == (0 if case["params"]["alpha"] == 1.0 else len(output["generated_ids"]) - 1)


# ================================================================================================================
# batching: batch of 3 (left padding) equals 3 runs of batch 1


QUESTIONS = ["Please describe this image in detail.", "What is in the picture?",
             "Describe the image briefly, naming every object you can see in it."]
IMAGES = ["img_wide.jpg", "img_tall.jpg", "img_square.jpg"]


@pytest.mark.parametrize("case_name", ["paper", "strong"])
def test_batch_of_three_equals_single_runs_llava15(case_name):
    data = golden_json("sparc_golden.json")
    case = next(c for c in data["cases"] if c["name"] == case_name)
    config = sparc_config_from(case["params"])
    tokenizer, model, processor = golden_model(data["checkpoint"])
    n = 16

    def run(rows):
        batch = make_batch(tokenizer, model, processor, [QUESTIONS[r] for r in rows], [golden_image(IMAGES[r]) for r in rows])
        method = Sparc(config, record=True)
        out = generate(batch, GenerationConfig(max_new_tokens=n), method)
        return batch, out.sequences, method.hook.selections

    batch, tokens, selections = run([0, 1, 2])
    assert len(set(batch.encode().lengths.tolist())) == 3  # left padding in play
    for row in range(3):
        _, single_tokens, single_selections = run([row])
        assert tokens[row] == single_tokens[0]
        assert selections[row] == single_selections[0]
        assert any(selections[row])


def test_batch_equals_single_runs_llava_next_different_image_lengths():
    tokenizer, model, processor = sharpened("llava_next", 4)
    config = SparcConfig(alpha=1.5, beta=0.1, tau=1.5, selected_layer=2, start_layer=0, end_layer=3)
    questions = ["describe this image .", "is there a dog in the picture ?"]
    images = [random_image(480, 320, 5), random_image(240, 400, 6)]

    def run(rows):
        batch = make_batch(tokenizer, model, processor, [questions[r] for r in rows], [images[r] for r in rows])
        method = Sparc(config, record=True)
        out = generate(batch, GenerationConfig(max_new_tokens=6), method)
        return batch, out.sequences, method.hook.selections

    batch, tokens, selections = run([0, 1])
    prefill = batch.encode()
    assert prefill.image_len[0] != prefill.image_len[1] and prefill.image_start[0] != prefill.image_start[1]
    for row in range(2):
        _, single_tokens, single_selections = run([row])
        assert tokens[row] == single_tokens[0] and selections[row] == single_selections[0]
        assert any(selections[row])
        assert max(j for step in selections[row] for j in step) < int(prefill.image_len[row])


# ================================================================================================================
# the arithmetic, by hand


def _drive(hook, step, attention, values):
    """One forward as the decoding loop drives it: ``begin_forward``, then per layer ``edit_values`` on that layer's
    cached values before attention and, for the selected layer, ``on_attention`` with the last-query row."""
    hook.begin_forward(step)
    for layer, value in enumerate(values):
        hook.edit_values(layer, value)
        if hook.wants_attention(layer):
            hook.on_attention(layer, attention)


def test_hand_built_ema_selection_lag_and_scaling():
    # two sequences: row 0 has its image at cache positions 1..4 (4 tokens), row 1 at 3..4 (2 tokens, left-padded)
    config = SparcConfig(alpha=2.0, beta=0.25, tau=1.5, selected_layer=1, start_layer=1, end_layer=2)
    hook = SparcHook(config, image_start=torch.tensor([1, 3]), image_len=torch.tensor([4, 2]), record=True)
    values = [torch.ones(2, 3, 9, 2) for _ in range(4)]  # per layer (B, H_kv, S, D), edited in place across steps

    def expect(scales):
        """Expected values: ones, times ``scales[(row, position)]`` in layers 1..2 only."""
        expected = [torch.ones(2, 3, 9, 2) for _ in range(4)]
        for layer in (1, 2):
            for (row, position), factor in scales.items():
                expected[layer][row, :, position] = factor
        return expected

    # prefill (step 0): the EMA starts from the last prompt token's row; nothing is selected or scaled
    a0 = torch.tensor([[0.0, 0.25, 0.0, 0.0, 0.2, 0.55, 0.0],
                       [0.0, 0.0, 0.0, 0.1, 0.2, 0.3, 0.4]])
    _drive(hook, 0, a0, values)
    torch.testing.assert_close(hook.ema[0], torch.tensor([0.25, 0.0, 0.0, 0.2]))
    torch.testing.assert_close(hook.ema[1, :2], torch.tensor([0.1, 0.2]))
    assert hook.selections == [[], []]
    assert all(torch.equal(v, e) for v, e in zip(values, expect({})))

    # step 1: ratio (a - ema) / ema >= tau
    #   row 0: 0.625 vs 0.25 -> exactly 1.5 (equality selects); 0.1 vs 0 -> inf (selected); 0 vs 0 -> NaN (not);
    #          0.49 vs 0.2 -> 1.45 (not)
    #   row 1: 0.5 vs 0.1 -> 4 (selected); 0.2 vs 0.2 -> 0 (not); its columns 2, 3 are padding (a 2-token image)
    a1 = torch.tensor([[0.0, 0.625, 0.1, 0.0, 0.49, 0.0, 0.0, 0.0],
                       [0.0, 0.0, 0.0, 0.5, 0.2, 0.0, 0.0, 0.0]])
    _drive(hook, 1, a1, values)
    assert hook.selections == [[[0, 1]], [[0]]]
    # one-step lag: nothing is scaled in the step that selects (not even in the layers after the selecting one)
    assert all(torch.equal(v, e) for v, e in zip(values, expect({})))
    # the EMA is updated after the selection, beta weighting the history: 0.75 * a + 0.25 * ema
    torch.testing.assert_close(hook.ema[0], torch.tensor([0.53125, 0.075, 0.0, 0.4175]))
    torch.testing.assert_close(hook.ema[1, :2], torch.tensor([0.4, 0.2]))

    # step 2: step 1's selections are amplified in layers 1..2, every head; row 0 column 0 is selected again
    #   (1.328125 vs 0.53125 -> exactly 1.5), nothing else (a == ema)
    a2 = torch.tensor([[0.0, 1.328125, 0.075, 0.0, 0.4175, 0.0, 0.0, 0.0, 0.0],
                       [0.0, 0.0, 0.0, 0.4, 0.2, 0.0, 0.0, 0.0, 0.0]])
    _drive(hook, 2, a2, values)
    assert all(torch.equal(v, e) for v, e in zip(values, expect({(0, 1): 2.0, (0, 2): 2.0, (1, 3): 2.0})))
    assert hook.selections == [[[0, 1], [0]], [[0], []]]

    # step 3: only step 2's selection is applied again, on top of the earlier product: alpha ** count
    _drive(hook, 3, a2, values)
    assert all(torch.equal(v, e) for v, e in zip(values, expect({(0, 1): 4.0, (0, 2): 2.0, (1, 3): 2.0})))
    assert hook.counts.tolist() == [[2, 1, 0, 0], [1, 0, 0, 0]]
    assert hook.selections == [[[0, 1], [0], []], [[0], [], []]]

    # step 4: nothing was selected at step 3, so nothing changes
    _drive(hook, 4, a2, values)
    assert all(torch.equal(v, e) for v, e in zip(values, expect({(0, 1): 4.0, (0, 2): 2.0, (1, 3): 2.0})))


def test_hand_built_scaling_only_in_layers_start_to_end():
    config = SparcConfig(alpha=3.0, beta=0.0, tau=1.0, selected_layer=0, start_layer=1, end_layer=2)
    hook = SparcHook(config, image_start=torch.tensor([2]), image_len=torch.tensor([3]))
    hook.begin_forward(0)
    hook.on_attention(0, torch.tensor([[0.1, 0.1, 0.1, 0.1, 0.1]]))
    hook.begin_forward(1)
    hook.on_attention(0, torch.tensor([[0.1, 0.1, 0.1, 0.3, 0.1, 0.1]]))  # image index 1 (position 3): ratio 2
    hook.begin_forward(2)
    per_layer = [torch.ones(1, 2, 7, 4) for _ in range(4)]
    for layer, value in enumerate(per_layer):
        hook.edit_values(layer, value)
    for layer, value in enumerate(per_layer):
        expected = torch.ones_like(value)
        if 1 <= layer <= 2:
            expected[:, :, 3] = 3.0
        assert torch.equal(value, expected), layer


def test_hand_built_zero_over_zero_and_below_threshold_never_select():
    config = SparcConfig(alpha=2.0, beta=0.1, tau=0.0, selected_layer=0, start_layer=0, end_layer=0)
    hook = SparcHook(config, image_start=torch.tensor([0]), image_len=torch.tensor([3]), record=True)
    hook.begin_forward(0)
    hook.on_attention(0, torch.tensor([[0.0, 0.5, 0.2]]))
    hook.begin_forward(1)
    hook.on_attention(0, torch.tensor([[0.0, 0.4, 0.2, 0.4]]))  # NaN, -0.2, 0.0 (tau 0: equality selects)
    assert hook.selections == [[[2]]]


def test_alpha_one_installs_no_hook_and_decodes_as_vanilla():
    tokenizer, model, processor = sharpened("llava", 2)
    batch = make_batch(tokenizer, model, processor, ["is there a dog ?"], [random_image(300, 200, 1)])

    def run(method):
        logits = []
        out = generate(batch, GenerationConfig(max_new_tokens=5), method,
                       step_callback=lambda step, final, chosen: logits.append(final.clone()))
        return out.sequences, torch.stack(logits)

    method = Sparc(SparcConfig(alpha=1.0, tau=0.1, selected_layer=1, start_layer=0, end_layer=1))
    tokens, logits = run(method)
    assert method.hook is None
    plain_tokens, plain_logits = run(None)
    assert tokens == plain_tokens and torch.equal(logits, plain_logits)
    # any other alpha changes the logits of this model from step 3 on (so the equality above is not vacuous)
    _, strong_logits = run(Sparc(SparcConfig(alpha=3.0, tau=1.5, selected_layer=1, start_layer=0, end_layer=1)))
    assert torch.equal(strong_logits[:2], plain_logits[:2])  # steps 1-2: nothing amplified yet (one-step lag)
    assert (strong_logits[2:] - plain_logits[2:]).abs().max() > 1e-4


def test_config_validation_and_presets():
    with pytest.raises(ValueError, match="selected_layer=32"):
        SparcConfig(selected_layer=32).validate(32)
    with pytest.raises(ValueError, match="start_layer"):
        SparcConfig(start_layer=-1).validate(32)
    with pytest.raises(ValueError, match="end_layer"):
        SparcConfig(end_layer=32).validate(32)
    with pytest.raises(ValueError, match="start_layer 5 > end_layer 4"):
        SparcConfig(start_layer=5, end_layer=4).validate(32)
    SparcConfig().validate(32)
    # the decoding loop validates against the model (2 layers here)
    tokenizer, model, processor = synthetic("llava", 2)
    batch = make_batch(tokenizer, model, processor, ["a dog ?"], [random_image(64, 64)])
    with pytest.raises(ValueError, match="outside the model's 2 layers"):
        generate(batch, GenerationConfig(max_new_tokens=1), Sparc(SparcConfig()))
    # the official scripts' settings, one preset with LLaVA-NeXT's tau as a family rule
    spec = get_method("sparc")
    official = dict(alpha=1.1, beta=0.1, tau=1.5, selected_layer=20, start_layer=0, end_layer=31)
    for preset in ("paper", "scripts", "official"):
        assert spec.resolve(preset, family="llava").params == official
        assert spec.resolve(preset, family="llava_next").params == dict(official, tau=4.0)
    resolved = spec.resolve("paper", family="llava_next", overrides={"tau": 2.0})
    assert resolved.params["tau"] == 2.0 and resolved.sources["tau"] == "flag"
    assert spec.resolve("paper", family="llava_next").sources["tau"] == "preset:paper[family=llava_next]"
    assert not SparcConfig(alpha=1.0).enabled and SparcConfig().enabled
    with pytest.raises(ValueError, match="no preset 'llava-2'"):
        spec.resolve("llava-2")
    for bad, message in ((dict(alpha=0.0), "alpha must be a finite number > 0"), (dict(beta=1.5), "beta must be in"),
                         (dict(selected_layer=-1), "selected_layer must be >= 0")):
        with pytest.raises(ValueError, match=message):
            SparcConfig(**bad)
    assert SparcConfig().to_dict() == dict(alpha=1.1, beta=0.1, tau=1.5, selected_layer=20, start_layer=0, end_layer=31)


def test_per_sequence_state_survives_a_new_batch():
    """``begin`` builds fresh state for every batch: a second batch is not influenced by the first."""
    tokenizer, model, processor = sharpened("llava", 2)
    config = SparcConfig(alpha=2.0, beta=0.1, tau=1.5, selected_layer=1, start_layer=0, end_layer=1)
    first = make_batch(tokenizer, model, processor, ["a dog ?"], [random_image(300, 200, 1)])
    second = make_batch(tokenizer, model, processor, ["describe this image ."], [random_image(200, 300, 2)])
    method = Sparc(config, record=True)
    generate(first, GenerationConfig(max_new_tokens=4), method)
    reused = generate(second, GenerationConfig(max_new_tokens=4), method).sequences, method.hook.selections
    fresh_method = Sparc(config, record=True)
    fresh = generate(second, GenerationConfig(max_new_tokens=4), fresh_method).sequences, fresh_method.hook.selections
    assert reused == fresh
    assert any(fresh[1][0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("count", [3, 40])
def test_sparse_and_dense_amplification_scale_exactly_the_selected_values(count, dtype):
    """Few selections are amplified by indexing, many by per-token factors over the image span (above 1/16 of the
    88 image tokens here): both multiply exactly the selected cached values by alpha and leave the rest bit-equal."""
    config = SparcConfig(alpha=1.1, beta=0.1, tau=1.0, selected_layer=0, start_layer=0, end_layer=0)
    starts, lengths, length = [3, 5], [48, 40], 60
    hook = SparcHook(config, image_start=torch.tensor(starts), image_len=torch.tensor(lengths))
    hook.begin_forward(0)
    hook.on_attention(0, torch.full((2, length), 0.01))
    generator = torch.Generator().manual_seed(count)
    pairs = [(0, j) for j in range(48)] + [(1, j) for j in range(40)]
    chosen = [pairs[i] for i in torch.randperm(len(pairs), generator=generator)[:count].tolist()]
    step = torch.full((2, length + 1), 0.01)
    for row, index in chosen:
        step[row, starts[row] + index] = 0.02  # relative change 1.0 >= tau
    hook.begin_forward(1)
    hook.on_attention(0, step)
    value = torch.randn(2, 4, length + 2, 8, generator=generator).to(dtype)
    expected = value.clone()
    for row, index in chosen:
        expected[row, :, starts[row] + index] = expected[row, :, starts[row] + index] * 1.1
    hook.begin_forward(2)
    assert (hook.factor is not None) == (count > 88 // 16)
    hook.edit_values(0, value)
    assert torch.equal(value, expected)


def test_the_ablation_presets_mean_what_the_paper_ablates():
    """``no_selection``: every image token is selected at every step (tau -1); ``no_ema``: each step is compared with
    the previous step's attention only (beta 0); everything else stays the paper's, on every family."""
    from eval.methods import get_method
    from sparc.method import SparcHook

    spec = get_method("sparc")
    for family, tau in (("llava", 1.5), ("llava_next", 4.0)):
        paper = spec.resolve("paper", family=family).params
        assert spec.resolve("no_selection", family=family).params == {**paper, "tau": -1.0}
        assert spec.resolve("no_ema", family=family).params == {**paper, "beta": 0.0} and paper["tau"] == tau
    # the arithmetic, by hand on one sequence of four image tokens
    image_start, image_len = torch.tensor([0]), torch.tensor([4])
    rows = [torch.tensor([[0.1, 0.2, 0.3, 0.4]]), torch.tensor([[0.4, 0.0, 0.3, 0.1]]), torch.tensor([[0.2, 0.1, 0.6, 0.1]])]
    every = SparcHook(SparcConfig(tau=-1.0, selected_layer=0, end_layer=0), image_start, image_len, record=True)
    last = SparcHook(SparcConfig(beta=0.0, tau=0.5, selected_layer=0, end_layer=0), image_start, image_len, record=True)
    for hook in (every, last):
        for step, row in enumerate(rows):
            hook.begin_forward(step)
            hook.on_attention(0, row)
    assert every.selections[0] == [[0, 1, 2, 3], [0, 1, 2, 3]]  # even token 1, whose change is exactly -1
    # no EMA: step 2 compares with step 1 only: (0.2 - 0.4) / 0.4, (0.1 - 0.0) / 0.0 = inf, (0.6 - 0.3) / 0.3 = 1
    assert last.selections[0] == [[0], [1, 2]]
