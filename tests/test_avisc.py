"""AvisC and the baselines it is compared with (VCD, M3ID): the official golden outputs, hand-built blind-token
detection and branch masking, VCD's noise, M3ID's weights, the contrast / cutoff / NaN fallback, presets, batching."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from avisc.config import AviscConfig, M3idConfig, VcdConfig
from avisc.blind import find_blind_tokens, layer_shares, non_blind_tokens, select_layers
from avisc.methods import Avisc, ContrastiveDecoding, M3id, Vcd, add_diffusion_noise, diffusion_schedule
from helpers import (
    ATTENTION_TIE,
    LOGIT_ERROR,
    assert_set_at_cutoff,
    avisc_golden_run,
    contrast_method_from,
    golden_logprob_tolerance,
    golden_image,
    golden_json,
    golden_model,
    golden_params,
    make_batch,
    random_image,
    seeded_generators,
    sharpened,
    synthetic,
)
from llava.generation import DecodingMethod, GenerationConfig, generate
from llava.methods import get_method

# ================================================================================================================
# golden: every case and image, parameters from the json


@pytest.mark.parametrize("case, output", golden_params("avisc_golden.json"))
def test_golden(case, output):
    """Tokens exactly; the final log-probabilities within :func:`golden_logprob_tolerance`; the candidates (main logit
    within ``log(beta)`` of the best one) and the blind tokens as sets at their cutoffs (:func:`assert_set_at_cutoff`):
    a logit's distance to the best one is within ``2 * LOGIT_ERROR`` of the official one, an attention weight's
    relative distance to the blind-token threshold within :data:`ATTENTION_TIE`."""
    tokens, logs, method = avisc_golden_run(case["name"], output["image"])
    assert tokens == output["generated_ids"]
    assert len(logs) == len(output["steps"]) == len(method.main_logits)
    for step, (logprobs, logits, expected) in enumerate(zip(logs, method.main_logits, output["steps"]), start=1):
        kept = torch.isfinite(logprobs).nonzero().flatten().tolist()
        if isinstance(method, ContrastiveDecoding):
            cutoff = method.log_beta + float(logits.max())
            assert_set_at_cutoff(kept, expected["num_candidates"], logits, cutoff, 2 * LOGIT_ERROR, f"step {step}")
        else:  # plain decoding: no cutoff
            assert len(kept) == expected["num_candidates"] == logprobs.numel()
        ours = logprobs[expected["top_ids"]].double()
        torch.testing.assert_close(ours, torch.tensor(expected["top_logprobs"], dtype=torch.float64), rtol=0,
                                   atol=golden_logprob_tolerance(case["params"], step), msg=f"step {step}")
        assert int(logprobs.argmax()) == tokens[step - 1] == expected["top_ids"][0]
    if not isinstance(method, Avisc):
        assert output["masked_image_token_indices"] is None
        return
    found, lamb = method.found[0], case["params"]["lamb"]
    threshold = float(found.attention.mean() + found.attention.std() * lamb)  # at or above: blind
    tokens_of_image = set(range(found.attention.numel()))
    assert_set_at_cutoff(tokens_of_image - set(found.masked.tolist()),
                         tokens_of_image - set(output["masked_image_token_indices"]), found.attention, threshold,
                         ATTENTION_TIE * threshold, "blind tokens")


def test_golden_cases_build_the_right_methods():
    kinds = {}
    for case in golden_json("avisc_golden.json")["cases"]:
        kinds[case["name"]] = type(contrast_method_from(case["params"]))
    assert kinds["avisc_paper"] is Avisc and kinds["m3id"] is M3id and kinds["base"] is DecodingMethod


# ================================================================================================================
# blind tokens, by hand


def test_layer_shares_and_selection_hand_examples():
    attention = torch.tensor([[0.1, 0.1, 0.0], [0.3, 0.2, 0.1], [0.05, 0.05, 0.1]])  # (L=3, N=3): totals .2 .6 .2
    torch.testing.assert_close(layer_shares(attention), torch.tensor([0.2, 0.6, 0.2]))
    shares = torch.tensor([0.1, 0.6, 0.3])
    # sorted: .6 .3 .1 -> cumulative .6 .9 1.0; k = #(cumsum < gamma) + 1
    assert select_layers(shares, 0.5).tolist() == [1]        # 0 prefix sums < .5 -> 1 layer
    assert select_layers(shares, 0.6).tolist() == [1]        # .6 < .6 is false -> 1 layer
    assert select_layers(shares, 0.61).tolist() == [1, 2]    # .6 < .61 -> 2 layers
    assert select_layers(shares, 0.95).tolist() == [1, 2, 0]
    # shares that do not sum to one are normalised before the cumulative sum
    assert select_layers(torch.tensor([1.0, 6.0, 3.0]), 0.61).tolist() == [1, 2]


def test_threshold_is_mean_plus_lamb_times_unbiased_std():
    # values 0, 0, 0, 1: mean .25, unbiased std .5 (biased .433)
    attention = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    assert non_blind_tokens(attention, 1.0).tolist() == [0, 1, 2]      # threshold .75
    assert non_blind_tokens(attention, 1.5).tolist() == [0, 1, 2]      # threshold exactly 1.0: at or above is blind
    assert non_blind_tokens(attention, 1.6).tolist() == [0, 1, 2, 3]   # threshold 1.05 (biased std: .943 -> [0,1,2])
    # the chosen layers are averaged first
    two_layers = torch.tensor([[0.0, 0.0, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0]])
    assert non_blind_tokens(two_layers, 1.5).tolist() == [0, 1, 2]


def test_find_blind_tokens_hand_example():
    attention = torch.tensor([
        [0.01, 0.01, 0.01, 0.01],   # total .04
        [0.02, 0.02, 0.50, 0.02],   # total .56 (largest share)
        [0.10, 0.10, 0.10, 0.10],   # total .40
    ])
    found = find_blind_tokens(attention, layer_gamma=0.5, lamb=1.0)
    torch.testing.assert_close(found.shares, torch.tensor([0.04, 0.56, 0.40]))
    assert found.layers.tolist() == [1]
    torch.testing.assert_close(found.attention, attention[1])
    assert found.masked.tolist() == [0, 1, 3]  # token 2 soaks up attention: blind, kept; the others are masked
    found = find_blind_tokens(attention, layer_gamma=0.9, lamb=1.0)  # .56 < .9, .96 >= .9: layers 1 and 2
    assert found.layers.tolist() == [1, 2]
    torch.testing.assert_close(found.attention, (attention[1] + attention[2]) / 2)


class CaptureAvisc(Avisc):
    """Avisc that keeps the main prefill and the branch prefill it builds."""

    def branches(self, context):
        self.main = copy.deepcopy(context.prefill)
        self.built = super().branches(context)
        self.main_after = context.prefill
        return self.built


def _reference_masked(model, prefill, gamma, lamb):
    """Blind-token detection from transformers' own eager ``output_attentions`` on a copy of the model, by hand."""
    reference = copy.deepcopy(model)
    reference.set_attn_implementation({"text_config": "eager"})
    with torch.no_grad():
        out = reference.model.language_model(inputs_embeds=prefill.inputs_embeds, attention_mask=prefill.attention_mask,
                                             position_ids=prefill.position_ids, output_attentions=True)
    masked = []
    for row in range(prefill.batch_size):
        start, length = int(prefill.image_start[row]), int(prefill.image_len[row])
        rows = torch.stack([a[row, :, -1, start:start + length].mean(0) for a in out.attentions]).double()
        totals = rows.sum(dim=1)
        shares = totals / totals.sum()
        ordered = sorted(range(len(shares)), key=lambda i: -float(shares[i]))
        cumulative, k = 0.0, 0
        for index in ordered:
            cumulative += float(shares[index])
            if cumulative < gamma:
                k += 1
        chosen = rows[ordered[: k + 1]].mean(dim=0).numpy()
        threshold = chosen.mean() + lamb * chosen.std(ddof=1)
        masked.append([j for j in range(length) if chosen[j] < threshold])
    return masked


@pytest.mark.parametrize("scheme", ["zeros", "ones", "noise"])
def test_branch_prefill_masks_the_non_blind_tokens(scheme):
    tokenizer, model, processor = sharpened("llava", 4)
    batch = make_batch(tokenizer, model, processor, ["is there a dog ?", "describe this image in detail please ."],
                       [random_image(300, 200, 1), random_image(200, 300, 2)], "llava_v1", "crop")
    gamma, lamb = 0.5, 1.0
    method = CaptureAvisc(AviscConfig(layer_gamma=gamma, lamb=lamb, masking_scheme=scheme))
    generate(batch, GenerationConfig(max_new_tokens=1), method, generators=seeded_generators([5, 6]))
    main, (branch,) = method.main, method.built
    expected = _reference_masked(model, main, gamma, lamb)
    assert [f.masked.tolist() for f in method.found] == expected
    # the main prefill is untouched; the branch has the same layout (mask, positions, span)
    assert torch.equal(method.main_after.inputs_embeds, main.inputs_embeds)
    for field in ("attention_mask", "position_ids", "image_start", "image_len"):
        assert torch.equal(getattr(branch, field), getattr(main, field)), field
    dim = main.inputs_embeds.shape[-1]
    for row in range(2):
        start = int(main.image_start[row])
        masked = [start + j for j in expected[row]]
        kept = [p for p in range(main.inputs_embeds.shape[1]) if p not in masked]
        assert 0 < len(masked) < int(main.image_len[row])
        assert torch.equal(branch.inputs_embeds[row, kept], main.inputs_embeds[row, kept])  # blind tokens and text
        values = branch.inputs_embeds[row, masked]
        if scheme == "zeros":
            assert torch.equal(values, torch.zeros_like(values))
        elif scheme == "ones":
            assert torch.equal(values, torch.ones_like(values))
        else:  # standard normal noise from the row's generator
            noise = torch.randn((len(masked), dim), generator=torch.Generator().manual_seed([5, 6][row]))
            assert torch.equal(values, noise)


def test_avisc_needs_an_image_in_every_sequence():
    tokenizer, model, processor = synthetic("llava", 2)
    batch = make_batch(tokenizer, model, processor, ["is there a dog ?"], None)
    with pytest.raises(ValueError, match="AvisC needs an image"):
        generate(batch, GenerationConfig(max_new_tokens=1), Avisc(AviscConfig()))


# ================================================================================================================
# VCD noise


def test_vcd_noise_schedule_from_the_formula():
    betas = 1 / (1 + np.exp(-np.linspace(-6, 6, 1000))) * (0.5e-2 - 1e-5) + 1e-5
    alpha_bar = np.cumprod(1 - betas)
    signal, noise = diffusion_schedule()
    assert signal.shape == noise.shape == (1000,)
    np.testing.assert_allclose(signal.numpy(), np.sqrt(alpha_bar), atol=1e-5)
    np.testing.assert_allclose(noise.numpy(), np.sqrt(1 - alpha_bar), atol=1e-5)
    assert abs(float(signal[500]) - 0.863) < 1e-3 and abs(float(noise[500]) - 0.505) < 1e-3


def test_add_diffusion_noise_with_a_seeded_generator():
    pixels = torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(0))
    noised = add_diffusion_noise(pixels, 500, torch.Generator().manual_seed(7))
    noise = torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(7))
    betas = 1 / (1 + np.exp(-np.linspace(-6, 6, 1000))) * (0.5e-2 - 1e-5) + 1e-5
    alpha_bar = float(np.cumprod(1 - betas)[500])
    torch.testing.assert_close(noised, math.sqrt(alpha_bar) * pixels + math.sqrt(1 - alpha_bar) * noise, rtol=0, atol=1e-5)
    assert torch.equal(noised, add_diffusion_noise(pixels, 500, torch.Generator().manual_seed(7)))


class CaptureVcd(Vcd):
    def branches(self, context):
        self.original = [p.clone() for p in context.batch.images.pixel_values]
        captured = {}
        encode = context.batch.encode

        def spy(images=None, text_only=False):
            captured["images"] = images
            return encode(images, text_only)

        context.batch.encode = spy
        try:
            result = super().branches(context)
        finally:
            del context.batch.encode
        self.noised = captured["images"].pixel_values
        return result


def test_vcd_branch_sees_each_row_noised_with_its_generator():
    tokenizer, model, processor = synthetic("llava", 2)
    batch = make_batch(tokenizer, model, processor, ["a dog ?", "a cat ?"], [random_image(300, 200, 1), random_image(80, 90, 2)],
                       "llava_v1", "crop")
    method = CaptureVcd(VcdConfig(cd_alpha=1.0))
    generate(batch, GenerationConfig(max_new_tokens=1), method, generators=seeded_generators([3, 4]))
    signal, noise = diffusion_schedule()
    for row, seed in enumerate([3, 4]):
        expected = signal[500] * method.original[row] + noise[500] * torch.randn(
            method.original[row].shape, generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(method.noised[row], expected, rtol=0, atol=1e-6)


# ================================================================================================================
# M3ID weights, contrast, cutoff, NaN fallback


@pytest.mark.parametrize("step, weight", [(1, 0.020), (10, 0.22), (64, 2.6)])
def test_m3id_weight(step, weight):
    gamma = math.exp(-0.02 * step)
    assert abs((1 - gamma) / gamma - weight) < 0.005
    logits = torch.tensor([[2.0, 0.0, -1.0, 0.5]])
    other = torch.tensor([[0.0, 1.0, -1.0, 0.0]])
    method = M3id(M3idConfig(cd_beta=0.1))
    out = method.contrast(step, logits, other)
    conditioned, unconditioned = logits.log_softmax(-1), other.log_softmax(-1)
    torch.testing.assert_close(out, conditioned + ((1 - gamma) / gamma) * (conditioned - unconditioned))
    measured = (out - conditioned) / (conditioned - unconditioned)
    torch.testing.assert_close(measured, torch.full_like(measured, weight), rtol=0, atol=0.005)


def test_contrast_cutoff_hand_example():
    inf = float("-inf")
    # log(0.1) + 2 = -0.303: logits below it (-0.5, -5) are cut, whatever the branch says
    logits = torch.tensor([[2.0, 0.0, -0.5, -5.0]])
    other = torch.tensor([[1.0, 1.0, -9.0, -9.0]])
    avisc = Avisc(AviscConfig(cd_alpha=1.0, cd_beta=0.1))
    assert avisc.combine(1, logits, [other]).tolist() == [[3.0, -1.0, inf, inf]]          # 2l - l2
    strong = Avisc(AviscConfig(cd_alpha=2.5, cd_beta=0.1))
    torch.testing.assert_close(strong.combine(1, logits, [other])[0, :2], torch.tensor([4.5, -2.5]))  # 3.5l - 2.5l2
    loose = Avisc(AviscConfig(cd_alpha=1.0, cd_beta=0.5))  # log .5 + 2 = 1.307: only 2.0
    assert loose.combine(1, logits, [other]).tolist() == [[3.0, inf, inf, inf]]
    everything = Avisc(AviscConfig(cd_alpha=1.0, cd_beta=1.0))  # only the max survives
    assert torch.isfinite(everything.combine(1, logits, [other])).sum() == 1


def test_nan_branch_falls_back_to_the_original_logits_per_row():
    inf = float("-inf")
    logits = torch.tensor([[2.0, 0.0, -0.5], [1.0, 1.0, 0.0]])
    other = torch.tensor([[1.0, 1.0, 1.0], [float("nan"), 0.0, 0.0]])
    method = Avisc(AviscConfig(cd_alpha=2.0, cd_beta=0.1))
    out = method.combine(3, logits, [other])
    assert out[0].tolist() == [4.0, -2.0, inf]          # 3l - 2l2 with the cutoff
    assert out[1].tolist() == [1.0, 1.0, 0.0]           # the branch is NaN: (1 + a) l - a l = l, cutoff -1.303 keeps all


def test_vcd_alpha_is_its_cd_alpha():
    logits, other = torch.tensor([[2.0, 1.0]]), torch.tensor([[0.0, 1.0]])
    assert Vcd(VcdConfig(cd_alpha=3.0)).combine(1, logits, [other]).tolist() == [[8.0, 1.0]]  # 4l - 3l2
    assert Vcd(VcdConfig()).combine(1, logits, [other]).tolist() == [[4.0, 1.0]]              # 2l - l2


# ================================================================================================================
# presets and config validation


def params(method, preset, family, benchmark=None, **overrides):
    return get_method(method).resolve(preset, family=family, benchmark=benchmark, overrides=overrides).params


def test_presets():
    paper = params("avisc", "paper", "llava", "pope")
    assert paper == dict(layer_gamma=0.5, lamb=1.0, cd_alpha=2.5, cd_beta=0.1, masking_scheme="zeros")
    assert params("avisc", "paper", "llava_next")["cd_alpha"] == 2.5
    assert params("avisc", "paper", "instructblip")["cd_alpha"] == 3.0
    for preset in ("scripts", "official"):  # avisc-official.md section 3
        assert params("avisc", preset, "llava", "pope") == dict(paper, lamb=0.99, cd_alpha=1.0)
        assert params("avisc", preset, "llava_next", "pope")["lamb"] == 0.99
        assert (params("avisc", preset, "instructblip", "pope")["lamb"], params("avisc", preset, "instructblip", "pope")["cd_alpha"]) == (0.95, 1.0)
        assert params("avisc", preset, "llava", "amber") == dict(paper, lamb=1.0, cd_alpha=2.5)
        assert params("avisc", preset, "instructblip", "mme") == dict(paper, lamb=1.0, cd_alpha=1.0)
        assert params("avisc", preset, "instructblip", "coco")["cd_alpha"] == 3.0  # no script: the paper's
    # VCD: alpha 1 everywhere; an explicit value is honoured, also under official (recorded as a flag)
    assert params("vcd", "paper", "llava") == dict(cd_beta=0.1, cd_alpha=1.0, noise_step=500)
    assert params("vcd", "official", "llava", "pope") == params("vcd", "paper", "llava")
    resolution = get_method("vcd").resolve("official", family="llava", overrides={"cd_alpha": 2.0})
    assert resolution.params["cd_alpha"] == 2.0 and resolution.sources["cd_alpha"] == "flag"
    assert params("m3id", "paper", "llava") == dict(cd_beta=0.1, m3id_lambda=0.02)
    resolution = get_method("avisc").resolve("scripts", family="llava", benchmark="pope", overrides={"cd_beta": 0.2})
    assert resolution.sources == {"layer_gamma": "default", "lamb": "preset:scripts[family=llava|llava_next,benchmark=pope]",
                                  "cd_alpha": "preset:scripts[family=llava|llava_next,benchmark=pope]", "cd_beta": "flag",
                                  "masking_scheme": "default"}
    with pytest.raises(ValueError, match="no preset 'best'"):
        get_method("avisc").resolve("best")
    with pytest.raises(ValueError, match="avisc has no parameter 'noise_step'"):
        get_method("avisc").resolve("paper", overrides={"noise_step": 3})


@pytest.mark.parametrize("config, kwargs, message", [
    (AviscConfig, dict(masking_scheme="blur"), "unknown masking_scheme"),
    (AviscConfig, dict(cd_beta=0.0), "cd_beta"),
    (VcdConfig, dict(cd_beta=1.5), "cd_beta"),
    (VcdConfig, dict(noise_step=1000), "noise_step"),
    (AviscConfig, dict(layer_gamma=0.0), "layer_gamma"),
    (AviscConfig, dict(cd_alpha=-1.0), "cd_alpha"),
    (M3idConfig, dict(m3id_lambda=0.0), "m3id_lambda"),
])
def test_config_validation(config, kwargs, message):
    with pytest.raises(ValueError, match=message):
        config(**kwargs)


# ================================================================================================================
# batching: batch > 1 gives the tokens of batch 1


QUESTIONS = ["Is there a dog in the image?", "What is it?", "Is there a cat on the table in this picture?"]
IMAGES = ["img_square.jpg", "img_tall.jpg", "img_wide.jpg"]
SEEDS = [42, 43, 44]


def _batch_vs_single(tokenizer, model, processor, questions, images, config, conv_mode, n):
    def run(rows):
        batch = make_batch(tokenizer, model, processor, [questions[r] for r in rows], [images[r] for r in rows], conv_mode, "crop")
        method = METHOD_CLASSES[type(config)](config)
        out = generate(batch, GenerationConfig(max_new_tokens=n), method, generators=seeded_generators([SEEDS[r] for r in rows]))
        masked = [f.masked.tolist() for f in method.found] if isinstance(method, Avisc) else None
        return batch, out.sequences, masked

    rows = list(range(len(questions)))
    batch, tokens, masked = run(rows)
    assert len(set(batch.encode().lengths.tolist())) == len(rows)  # left padding in play
    for row in rows:
        _, single, single_masked = run([row])
        assert tokens[row] == single[0]
        if masked is not None:
            assert masked[row] == single_masked[0]


METHOD_CLASSES = {AviscConfig: Avisc, VcdConfig: Vcd, M3idConfig: M3id}
GOLDEN_CONFIGS = {
    "avisc": AviscConfig(cd_alpha=2.5, lamb=1.0, layer_gamma=0.5),
    "vcd": VcdConfig(cd_alpha=1.0),
    "m3id": M3idConfig(),
}


@pytest.mark.parametrize("method", list(GOLDEN_CONFIGS))
def test_batch_equals_single_runs_golden_llava15(method):
    tokenizer, model, processor = golden_model("tiny-llava-v1.5")
    _batch_vs_single(tokenizer, model, processor, QUESTIONS, [golden_image(n) for n in IMAGES],
                     GOLDEN_CONFIGS[method], "llava_v1", 6)


@pytest.mark.parametrize("method", list(GOLDEN_CONFIGS))
def test_batch_equals_single_runs_instructblip(method):
    tokenizer, model, processor = sharpened("instructblip", 4)
    questions = ["is there a dog ?", "describe this image in detail please .", "a cat ?"]
    images = [random_image(300, 200, 1), random_image(200, 300, 2), random_image(224, 224, 3)]
    _batch_vs_single(tokenizer, model, processor, questions, images, GOLDEN_CONFIGS[method], None, 6)
