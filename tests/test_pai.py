"""PAI: the official golden outputs (prompt ids, pixels, tokens, scores, the re-weighting flags per forward) on eager
attention and on SDPA, batching (batch 3 = 3 x batch 1 for every mode, LLaVA-1.5 and LLaVA-NeXT), hand-worked
examples of the score edit, the CFG combination and the flag toggling, and the registered presets."""
from __future__ import annotations

import copy
import functools
import hashlib
import math

import pytest
import torch

from helpers import (
    LOGIT_ERROR,
    SDPA_LOGIT_ERROR,
    assert_set_at_cutoff,
    golden_image,
    golden_json,
    golden_model,
    make_batch,
    random_image,
    record_main_logits,
    sharpened,
)
from llava.generation import GenerationConfig, generate
from llava.methods import get_method
from llava.mm_utils import tokenizer_image_token
from llava.model.prepare import prepare_model
from llava.model.families import family_of
from sparc.pai.config import CAPTION_QUERY, PaiConfig
from sparc.pai.method import LOG_CUTOFF, Pai, PaiHook

GOLDEN = "pai_opera/pai_golden.json"
TASKS = {"chair": "caption", "pope": "yesno"}  # golden task -> benchmark task of the presets
LOGIT_ERRORS = {"eager": LOGIT_ERROR, "sdpa": SDPA_LOGIT_ERROR}  # the budget of one logit on each attention path


def golden_cases() -> list:
    data = golden_json(GOLDEN)
    return [pytest.param(case, output, id=f"{case['name']}-{case['task']}-{output['image'].split('.')[0]}")
            for case in data["cases"] for output in case["outputs"]]


@functools.lru_cache(maxsize=None)
def golden_pai_model(attn: str):
    """The golden checkpoint on ``attn`` (a deep copy for SDPA: the cached model stays on eager)."""
    tokenizer, model, processor = golden_model("tiny-llava-v1.5")
    if attn != "eager":
        model = copy.deepcopy(model)
        prepare_model(model, tokenizer, attn)
    return tokenizer, model, processor


def official_run(params: dict, task: str):
    """The ``official`` preset resolved for a golden case (its parameters as ``--method-args``) on LLaVA-1.5:
    ``(PaiConfig, protocol)``."""
    resolution = get_method("pai").resolve("official", family="llava", task=TASKS[task], overrides=params)
    return PaiConfig(**resolution.params), resolution.protocol


def golden_batch(attn: str, task: str, image: str, protocol: dict):
    tokenizer, model, processor = golden_pai_model(attn)
    question = protocol.get("prompt") or golden_json(GOLDEN)["tasks"][task]["query"]
    return make_batch(tokenizer, model, processor, [question], [golden_image(image)], protocol["conv_mode"],
                      protocol["image_aspect"])


@functools.lru_cache(maxsize=None)
def golden_run(attn: str, case_name: str, task: str, image: str):
    """Our run of one golden case, task and image at batch 1: ``(tokens, final scores per step, image-branch logits
    per step, reweighted flags)``."""
    case = next(c for c in golden_json(GOLDEN)["cases"] if c["name"] == case_name and c["task"] == task)
    config, protocol = official_run(case["params"], task)
    batch = golden_batch(attn, task, image, protocol)
    method = record_main_logits(Pai(config))
    finals: list[torch.Tensor] = []
    out = generate(batch, GenerationConfig(max_new_tokens=golden_json(GOLDEN)["tasks"][task]["max_new_tokens"]), method,
                   step_callback=lambda step, final, chosen: finals.append(final[0].clone()))
    flags = "".join("1" if f else "0" for f in method.hook.reweighted) if method.hook is not None else None
    return out.sequences[0], finals, method.main_logits, flags


# ================================================================================================================
# golden inputs: prompt ids, image span, text-only ids, pixels


@pytest.mark.parametrize("case, output", golden_cases())
def test_golden_inputs(case, output):
    config, protocol = official_run(case["params"], case["task"])
    assert protocol["conv_mode"] == "pai" and protocol["image_aspect"] == "crop"
    batch = golden_batch("eager", case["task"], output["image"], protocol)
    tokenizer = golden_pai_model("eager")[0]
    assert batch.prompts[0] == output["prompt"].replace("<ImageHere>", "<image>")
    ids = tokenizer_image_token(batch.prompts[0], tokenizer)
    assert ids == output["input_ids"]
    assert ids.index(-200) == output["img_start_idx"] == 34
    prefill = batch.encode()
    assert int(prefill.image_start[0]) == output["img_start_idx"]
    assert int(prefill.image_start[0] + prefill.image_len[0]) == output["img_end_idx"]
    assert int(prefill.lengths[0]) == output["image_branch_prefill_len"]
    text_only = [i for i in ids if i != -200]
    assert int(batch.encode(text_only=True).lengths[0]) == len(text_only)
    if config.contrasts:  # the CFG branch's prompt: the same ids without the placeholder
        assert text_only == output["text_only_input_ids"]
        assert len(text_only) == output["text_branch_prefill_len"]
    pixels = batch.images.pixel_values[0].contiguous().numpy().tobytes()
    assert hashlib.sha256(pixels).hexdigest() == output["pixel_values_sha256"]


# ================================================================================================================
# golden outputs, eager and SDPA


def score_tolerance(params: dict, attn: str) -> float:
    """The logit budget of the attention path through CFG's ``gamma * s - (gamma - 1) * u`` (weights
    ``gamma + |gamma - 1|``), doubled for the log-softmax normalisation; without CFG the scores are raw logits, within
    twice the budget too (the logit relative to the others plus their common shift)."""
    if params["use_cfg"] and params["gamma"] != 1:
        return 2 * LOGIT_ERRORS[attn] * (params["gamma"] + abs(params["gamma"] - 1))
    return 2 * LOGIT_ERRORS[attn]


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("case, output", golden_cases())
def test_golden(case, output, attn):
    """Tokens and re-weighting flags exactly; the scores within :func:`score_tolerance`; with CFG the tokens that
    survive the ``0.1 * max`` cutoff as a set at that cutoff (:func:`assert_set_at_cutoff`): a log-probability's
    distance to the largest one is a logit's distance to the largest logit, within twice the budget."""
    tokens, finals, logits, flags = golden_run(attn, case["name"], case["task"], output["image"])
    assert tokens == output["generated_ids"]
    assert len(finals) == len(output["steps"]) == len(logits)
    tolerance = score_tolerance(case["params"], attn)
    has_cutoff = official_run(case["params"], case["task"])[0].contrasts  # CFG against the text-only branch
    for step, (final, image_logits, expected) in enumerate(zip(finals, logits, output["steps"]), start=1):
        ours = final[expected["top_ids"]].double()
        torch.testing.assert_close(ours, torch.tensor(expected["top_scores"], dtype=torch.float64), rtol=0,
                                   atol=tolerance, msg=f"step {step}")
        kept = torch.isfinite(final).nonzero().flatten().tolist()
        if has_cutoff:  # the tokens whose image-branch probability is at least 0.1 of the largest
            scores = image_logits.log_softmax(-1)
            assert_set_at_cutoff(kept, expected["num_finite"], scores, LOG_CUTOFF + float(scores.max()),
                                 2 * LOGIT_ERRORS[attn], f"step {step}")
        else:
            assert len(kept) == expected["num_finite"] == final.numel(), f"step {step}"
    if case["params"]["use_attn"]:
        assert flags == output["image_branch_reweighted_per_forward"][: len(flags)]
        assert len(flags) == len(tokens)  # one image-branch forward per token: the prefill and every later step
    else:
        assert flags is None


def test_golden_cases_differ_from_plain_decoding():
    """Every PAI case changes the tokens of the plain-decoding case (so the golden checks are not vacuous)."""
    data = golden_json(GOLDEN)
    for case in data["cases"]:
        baseline = next(c for c in data["cases"] if c["name"] == "baseline" and c["task"] == case["task"])
        for output, plain in zip(case["outputs"], baseline["outputs"]):
            assert (output["generated_ids"] != plain["generated_ids"]) == (case["name"] != "baseline")


# ================================================================================================================
# batching: batch 3 = 3 x batch 1, every mode


MODES = {
    "attn": dict(use_attn=True, alpha=0.5, use_cfg=False, start_layer=1, end_layer=3),
    "cfg": dict(use_attn=False, use_cfg=True, gamma=1.5),
    "both": dict(use_attn=True, alpha=0.5, use_cfg=True, gamma=1.5, start_layer=1, end_layer=3),
}


def _batch_vs_single(tokenizer, model, processor, questions, images, config, aspect, n):
    def run(rows):
        batch = make_batch(tokenizer, model, processor, [questions[r] for r in rows], [images[r] for r in rows], "pai",
                           aspect)
        return batch, generate(batch, GenerationConfig(max_new_tokens=n), Pai(config)).sequences

    batch, together = run([0, 1, 2])
    assert len(set(batch.encode().lengths.tolist())) == 3  # left padding in play
    assert together == [run([row])[1][0] for row in range(3)]
    plain = generate(batch, GenerationConfig(max_new_tokens=n)).sequences
    assert together != plain  # the method changes something
    return batch


@pytest.mark.parametrize("mode", list(MODES))
def test_batch_equals_single_runs_golden_llava15(mode):
    tokenizer, model, processor = golden_model("tiny-llava-v1.5")
    params = {**MODES[mode], "start_layer": 2, "end_layer": 32}
    questions = ["Is there a dog in the image?", "What is it?", CAPTION_QUERY]
    images = [golden_image(name) for name in ("img_square.jpg", "img_tall.jpg", "img_wide.jpg")]
    _batch_vs_single(tokenizer, model, processor, questions, images, PaiConfig(**params), "crop", 6)


@pytest.mark.parametrize("mode", list(MODES))
def test_batch_equals_single_runs_llava_next_different_image_lengths(mode):
    tokenizer, model, processor = sharpened("llava_next", 4)
    questions = ["is there a dog ?", "describe this image in detail please .", "a cat ?"]
    images = [random_image(480, 320, 1), random_image(240, 400, 2), random_image(336, 336, 3)]
    batch = _batch_vs_single(tokenizer, model, processor, questions, images, PaiConfig(**MODES[mode]), None, 6)
    assert len(set(batch.encode().image_len.tolist())) == 3  # three different image spans


# ================================================================================================================
# hand-worked examples


def test_edit_scores_hand_example():
    """Row 0's image is columns 1..2, row 1's column 3 (left padding shifts it); ``A + 0.5 |A|`` there only."""
    hook = PaiHook(PaiConfig(use_attn=True, alpha=0.5), torch.tensor([1, 3]), torch.tensor([2, 1]))
    scores = torch.tensor([
        [[-2.0, 1.0, -4.0, 3.0, 5.0], [0.0, -1.0, 2.0, 6.0, 1.0]],
        [[1.0, 1.0, 1.0, -2.0, 8.0], [4.0, 4.0, 4.0, 2.0, -8.0]],
    ])  # (B=2, H=2, S=5): column 4 is a generated token, never edited
    expected = torch.tensor([
        [[-2.0, 1.5, -2.0, 3.0, 5.0], [0.0, -0.5, 3.0, 6.0, 1.0]],
        [[1.0, 1.0, 1.0, -1.0, 8.0], [4.0, 4.0, 4.0, 3.0, -8.0]],
    ])
    hook.edit_scores(5, scores)
    assert torch.equal(scores, expected)
    extra = torch.ones(3, 1, 5)  # rows after the hook's own (a branch sharing the group) are left alone
    hook.edit_scores(5, extra)
    assert torch.equal(extra[2], torch.ones(1, 5))


def test_cfg_combination_hand_example():
    """``s = log_softmax(l)``, ``u = log_softmax(l_text)``: ``gamma (s - u) + u`` where ``p_image >= 0.1 max``."""
    logits = torch.tensor([[math.log(0.5), math.log(0.3), math.log(0.16), math.log(0.04)]])
    text = torch.tensor([[math.log(0.25), math.log(0.25), math.log(0.25), math.log(0.25)]])
    out = Pai(PaiConfig(use_cfg=True, gamma=2.0)).combine(1, logits, [text])
    s, u = [0.5, 0.3, 0.16], 0.25  # 0.04 < 0.1 * 0.5: cut
    expected = [2 * math.log(p) - math.log(u) for p in s] + [float("-inf")]
    torch.testing.assert_close(out[0], torch.tensor(expected))
    plain = Pai(PaiConfig(use_cfg=True, gamma=1.0)).combine(1, logits, [])  # gamma 1: log-probabilities as they are
    torch.testing.assert_close(plain, logits.log_softmax(-1))
    assert torch.equal(Pai(PaiConfig(use_attn=True)).combine(1, logits, []), logits)  # no CFG: raw logits


@pytest.mark.parametrize("params, flags", [
    (dict(use_attn=True), "1111"),
    (dict(use_attn=True, use_cfg=True, gamma=1.1), "0111"),  # the prefill runs with use_cfg still True
    (dict(use_attn=True, use_cfg=True, gamma=1.0), "0000"),  # CFGLogits returns before touching the flags
    (dict(use_attn=False, use_cfg=True, gamma=1.1), "0000"),
])
def test_reweighting_flags_per_forward(params, flags):
    config = PaiConfig(**params)
    assert "".join("1" if config.reweights_at(step) else "0" for step in range(4)) == flags


def test_text_branch_only_when_cfg_contrasts():
    assert PaiConfig(use_cfg=True, gamma=1.1).contrasts
    assert not PaiConfig(use_cfg=True, gamma=1.0).contrasts and not PaiConfig(gamma=1.1).contrasts


def test_reweighting_needs_an_image():
    tokenizer, model, processor = golden_model("tiny-llava-v1.5")
    batch = make_batch(tokenizer, model, processor, ["Is there a dog?"], None, "pai")
    with pytest.raises(ValueError, match="needs an image"):
        generate(batch, GenerationConfig(max_new_tokens=1), Pai(PaiConfig(use_attn=True)))


# ================================================================================================================
# config and presets


@pytest.mark.parametrize("kwargs, message", [
    (dict(alpha=-0.1), "alpha"),
    (dict(alpha=float("nan")), "alpha"),
    (dict(gamma=0.0), "gamma"),
    (dict(start_layer=-1), "start_layer"),
    (dict(start_layer=5, end_layer=5), "end_layer"),
    (dict(use_attn="yes"), "use_attn"),
])
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PaiConfig(**kwargs)


def test_end_layer_checked_against_the_model():
    tokenizer, model, processor = sharpened("llava", 4)
    batch = make_batch(tokenizer, model, processor, ["a dog ?"], [random_image(64, 64)], "pai")
    with pytest.raises(ValueError, match="end_layer=5 is beyond the model's 4 layers"):
        generate(batch, GenerationConfig(max_new_tokens=1), Pai(PaiConfig(use_attn=True, end_layer=5)))


def test_presets():
    spec = get_method("pai")
    readme = dict(use_attn=True, alpha=0.2, use_cfg=True, gamma=1.1, start_layer=2, end_layer=32)
    official = spec.resolve("official", family="llava", benchmark="coco", task="caption")
    assert official.params == readme
    assert official.protocol == {"conv_mode": "pai", "image_aspect": "crop", "prompt": CAPTION_QUERY,
                                 "decoding": "greedy", "max_new_tokens": 512, "num_beams": 1}
    pope = spec.resolve("official", family="llava", benchmark="pope", task="yesno").protocol
    assert "prompt" not in pope and pope["conv_mode"] == "pai"  # the raw question
    next_ = spec.resolve("official", family="llava_next", task="caption").protocol
    assert "conv_mode" not in next_ and "image_aspect" not in next_ and "prompt" not in next_
    assert spec.resolve("official", family="instructblip", task="caption").protocol["prompt"] == CAPTION_QUERY
    assert spec.resolve("scripts", family="llava", task="caption") .params == readme
    paper = spec.resolve("paper", family="llava", task="caption")
    assert paper.params == readme and paper.protocol == {}
    argparse = spec.resolve("argparse", family="llava", task="caption")
    assert argparse.params == dict(use_attn=False, alpha=0.2, use_cfg=False, gamma=2.0, start_layer=2, end_layer=32)
    assert argparse.protocol["conv_mode"] == "pai"
    assert isinstance(spec.create(official.params), Pai)


def test_pai_template():
    """PAI's prompt: no space before ``USER:``, the image placeholder, a space, the question (``chair_eval.py``)."""
    model = golden_model("tiny-llava-v1.5")[1]
    prompt = family_of(model).format_prompt(model, "Is there a dog?", "pai")
    assert prompt == ("A chat between a curious user and an artificial intelligence assistant. The assistant gives "
                      "helpful, detailed, and polite answers to the user's questions.USER: <image> Is there a dog? "
                      "ASSISTANT:")
