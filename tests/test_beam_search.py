"""Plain beam search (``llava.beam_search``): the official beam-search baseline of ``opera_golden.json`` step by step,
a hand-worked scorer walk (EOS hypotheses, length normalisation with the prompt ids, finalize), batching
(batch 3 = 3 x batch 1 on LLaVA-1.5 and LLaVA-NeXT), the cache operations and the decode dispatch."""
from __future__ import annotations

import functools
import math

import pytest
import torch

from helpers import LOGIT_ERROR, golden_image, golden_json, golden_model, golden_params, make_batch, random_image, synthetic
from llava.beam_search import (
    BeamMethod,
    BeamSearch,
    Hypotheses,
    beam_search,
    crop,
    prompt_id_lengths,
    reorder_rows,
    trim_left,
    write_rows,
)
from llava.decoding import decode
from llava.generation import DecodingMethod, GenerationConfig, generate, new_cache
from llava.batch import PromptBatch
from sparc.opera.config import OPERA_CONV_MODE

OPERA_GOLDEN = "pai_opera/opera_golden.json"


def opera_batch(images: list[str], questions: list[str] | None = None, attn: str | None = None) -> PromptBatch:
    """A batch of OPERA prompts on the golden checkpoint, CLIP center crop as OPERA preprocesses."""
    from llava.model.families import family_of

    data = golden_json(OPERA_GOLDEN)
    tokenizer, model, processor = golden_model(data["checkpoint"], attn)
    questions = questions or [data["question"]] * len(images)
    family = family_of(model)
    pixels = family.pixel_values(model, processor, [golden_image(i) for i in images], family.preprocessing(model, processor, "crop"))
    prompts = [family.format_prompt(model, q, OPERA_CONV_MODE) for q in questions]  # OPERA's template (PAI's)
    return PromptBatch(model, tokenizer, processor, prompts, pixels)


def beam_score_tolerance(step: int) -> float:
    """A beam score sums ``step + 1`` log-probabilities, each within two logit error budgets of the official one."""
    return (step + 1) * 2 * LOGIT_ERROR


FLOAT32_REL = 1e-6
"""Relative rounding of float32 scores (a few ulps): OPERA's non-candidates sit near -1000, where one ulp is 6e-5."""


def candidates(tokens: list[int], beams: list[int], scores: list[float]) -> dict[tuple[int, int], float]:
    """The 2K candidates of a scorer call as ``(token, source beam) -> score``: their order is that of their scores,
    so two candidates whose scores are within float noise of each other may come in either order on another CPU."""
    by_key = {(token, beam): score for token, beam, score in zip(tokens, beams, scores)}
    assert len(by_key) == len(tokens), "a candidate twice"
    return by_key


def assert_steps_match(ours, golden_steps: list[dict], fragile: list[list[float]], live_beams: int | None = None) -> None:
    """Our scorer calls equal the official ones: the kept beams (token, source beam) exactly, the scores within
    :func:`beam_score_tolerance`; the 2K candidates too (as a set, each with its score) unless ``live_beams`` limits
    the check to the first beams (OPERA's one-candidate setting: the other slots hold filler ids from ``topk``'s tie
    order). A step where the official kept / dropped gap was below the error budget may flip on other hardware:
    reported as an xfail there."""
    assert [r.cur_len for r in ours] == [g["cur_len"] for g in golden_steps]
    near_ties = {index for gap, index in fragile if gap < 4 * LOGIT_ERROR}
    for index, (record, step) in enumerate(zip(ours, golden_steps)):
        keep = slice(0, live_beams)
        same = (record.next_beam_tokens[keep] == step["next_beam_tokens"][keep]
                and record.next_beam_indices[keep] == step["next_beam_indices"][keep])
        if live_beams is None:
            mine = candidates(record.topk_tokens, record.topk_beam, record.topk_scores)
            theirs = candidates(step["topk_tokens"], step["topk_beam"], step["topk_scores"])
            same = same and mine.keys() == theirs.keys()
        if not same and index in near_ties:
            pytest.xfail(f"step {index}: the official kept / dropped gap is within float noise")
        assert same, f"step {index}: {record} != {step}"
        tolerance = beam_score_tolerance(index)
        assert record.next_beam_scores[keep] == pytest.approx(step["next_beam_scores"][keep], abs=tolerance,
                                                              rel=FLOAT32_REL)
        if live_beams is None:
            assert mine == pytest.approx(theirs, abs=tolerance, rel=FLOAT32_REL)


# ================================================================================================================
# golden: the official plain beam search (transformers 4.29.2 through OPERA's generate, opera_decoding=False)


@functools.lru_cache(maxsize=None)
def _golden_beam_run(image: str, beams: int):
    records = []
    batch = opera_batch([image])
    out = beam_search(batch, GenerationConfig(max_new_tokens=golden_json(OPERA_GOLDEN)["max_new_tokens"]), beams,
                      on_step=records.append)
    return out.sequences[0], records


@pytest.mark.parametrize("case, output", golden_params(OPERA_GOLDEN, lambda c: not c["params"]["opera_decoding"]))
def test_golden_beam_baseline(case, output):
    tokens, records = _golden_beam_run(output["image"], case["params"]["beam"])
    assert tokens == output["generated_ids"]
    assert_steps_match(records, output["beam_steps"], output["smallest_keep_drop_gaps"])


def test_golden_prompt_ids_and_image_span():
    """The prompt of the golden runs: OPERA's 48 ids with the placeholder at 34, 576 image embeddings from there,
    the response starting at 623 (``key_position``); the crop preprocessing gives the official pixels."""
    import hashlib

    from llava.mm_utils import tokenizer_image_token

    data = golden_json(OPERA_GOLDEN)
    output = data["cases"][0]["outputs"][0]
    batch = opera_batch([output["image"]])
    assert tokenizer_image_token(batch.prompts[0], batch.tokenizer) == output["input_ids"]
    prefill = batch.encode()
    key = output["key_position"]
    assert int(prefill.image_start[0]) == key["image_start"]
    assert int(prefill.image_start[0] + prefill.image_len[0]) - 1 == key["image_end"]
    assert int(prefill.lengths[0]) == key["response_start"]
    assert prompt_id_lengths(prefill).tolist() == [len(output["input_ids"])]
    pixels = batch.images.pixel_values[0].numpy().tobytes()
    assert hashlib.sha256(pixels).hexdigest() == output["pixel_values_sha256"]


def test_golden_has_a_beam_baseline():
    assert golden_params(OPERA_GOLDEN, lambda c: not c["params"]["opera_decoding"])


# ================================================================================================================
# the scorer, hand-worked


def test_hypotheses_keep_the_best_k_and_their_worst_score():
    hyps = Hypotheses(num_beams=2)
    hyps.add([1], -4.0, 2)  # -2
    hyps.add([2], -9.0, 3)  # -3
    assert hyps.worst_score == -3.0
    hyps.add([3], -2.0, 4)  # -0.5 evicts -3
    assert sorted(h.score for h in hyps.beams) == [-2.0, -0.5] and hyps.worst_score == -2.0
    hyps.add([4], -30.0, 10)  # -3: worse than the worst kept, ignored
    assert [h.tokens for h in hyps.beams] == [[1], [3]]
    assert hyps.best().tokens == [3]


def test_hypotheses_done_heuristic_and_ties():
    hyps = Hypotheses(num_beams=2)
    hyps.add([1], -2.0, 2)
    assert not hyps.is_done(-0.1, 5)  # fewer than K hypotheses
    hyps.add([2], -2.0, 2)  # the same score: the later one wins ties
    assert hyps.best().tokens == [2]
    assert hyps.is_done(-10.0, 4)  # worst -1 >= -10 / 4
    assert not hyps.is_done(-6.0, 8)  # -1 < -0.75


class Scripted(BeamSearch):
    """Beam search whose logits come from a script: ``script[step][parent tokens]`` = {token: probability}; every
    other token gets probability 0 (a logit of -1e4, whose exp is 0 in float32)."""

    def __init__(self, batch, config, num_beams, script):
        super().__init__(batch, config, num_beams)
        self.script = script

    def next_token_logits(self, logits):
        scripted = torch.full_like(logits, -1e4)
        for row in range(self.rows):
            prefix = tuple(self.tokens[row, : self.generated[row // self.num_beams]].tolist())
            for token, p in self.script[self.step - 1].get(prefix, {}).items():
                scripted[row, token] = torch.tensor(p).log()
        return scripted


def test_scorer_walk_eos_hypothesis_length_normalisation_and_finalize():
    """K = 2, EOS = 2, 3 new tokens, a prompt of P ids. Step 1: 10 (0.6), 11 (0.3), EOS (0.1): beams [10] -0.511,
    [11] -1.204 (the EOS ranks third, >= K: ignored). Step 2: after [10] EOS 0.6 / 12 0.4, after [11] 13 0.9 / 14 0.1:
    candidates EOS -1.022 (rank 0: hypothesis [10] scored -1.022 / (P + 1)), 13 -1.309, 12 -1.427 -> beams
    [11, 13], [10, 12]. Step 3: each continues with probability 1; the prompt is out of tokens and finalize adds
    [11, 13, 15] -1.309 / (P + 3) and [10, 12, 16] -1.427 / (P + 3). With P = 40-odd ids the EOS hypothesis is best
    (-0.025 against -0.030); without the prompt ids it would lose (-1.022 against -0.436). The output is [10, EOS]."""
    tokenizer, model, processor = synthetic("llava", 2)
    batch = make_batch(tokenizer, model, processor, ["describe this image in detail please ."], [random_image(336, 336, 4)])
    script = [
        {(): {10: 0.6, 11: 0.3, 2: 0.1}},
        {(10,): {2: 0.6, 12: 0.4}, (11,): {13: 0.9, 14: 0.1}},
        {(11, 13): {15: 1.0}, (10, 12): {16: 1.0}},
    ]
    search = Scripted(batch, GenerationConfig(max_new_tokens=3, eos_token_ids=(2,)), 2, script)
    records = []
    search.on_step = records.append
    out = search.run()
    prompt = search.prompt_ids[0]
    assert 30 < prompt < 60
    assert out.sequences == [[10, 2]]
    assert [(r.next_beam_tokens, r.next_beam_indices) for r in records] == [([10, 11], [0, 0]), ([13, 12], [1, 0]),
                                                                           ([15, 16], [0, 1])]
    hypotheses = sorted((h.score, h.tokens) for h in search.hypotheses[0].beams)
    assert [tokens for _, tokens in hypotheses] == [[11, 13, 15], [10, 2]]
    assert [score for score, _ in hypotheses] == pytest.approx(
        [(math.log(0.3) + math.log(0.9)) / (prompt + 3), 2 * math.log(0.6) / (prompt + 1)], rel=1e-5)


def test_scorer_stops_when_done():
    """EOS ids 2 and 3. Step 1: EOS 3 (0.5) and EOS 2 (0.45) rank first: two hypotheses, -0.69 / P and -0.80 / P;
    beams [10] (0.04) and [11] (0.01). Step 2: both continue with probability 1; the best running score
    log(0.04) = -3.2 over P + 2 cannot reach the worst hypothesis any more: done after 2 of 8 steps. The best
    hypothesis ended with EOS 3 but is returned with the first EOS id, 2, as transformers appends ``eos[0]``."""
    tokenizer, model, processor = synthetic("llava", 2)
    batch = make_batch(tokenizer, model, processor, ["a cat ?"], [random_image(336, 336, 5)])
    script = [{(): {3: 0.5, 2: 0.45, 10: 0.04, 11: 0.01}}, {(10,): {12: 1.0}, (11,): {13: 1.0}}]
    search = Scripted(batch, GenerationConfig(max_new_tokens=8, eos_token_ids=(2, 3)), 2, script)
    out = search.run()
    assert out.steps == 2 and search.done == [True]
    assert out.sequences == [[2]]


# ================================================================================================================
# batching: every prompt is its own beam search


QUESTIONS = ["Please describe this image in detail.", "What is it?",
             "Is there a dog in the image? Answer briefly and precisely, please."]


def _singles_equal_batch(make, rows, run):
    batch = run(make(rows))
    singles = [run(make([r]))[0] for r in rows]
    assert batch == singles


def test_batch_of_three_equals_three_single_runs_golden_llava15():
    images = ["img_wide.jpg", "img_tall.jpg", "img_square.jpg"]
    make = lambda rows: opera_batch([images[r] for r in rows], [QUESTIONS[r] for r in rows])
    assert len(set(make([0, 1, 2]).encode().lengths.tolist())) == 3  # really left-padded
    _singles_equal_batch(make, [0, 1, 2], lambda b: beam_search(b, GenerationConfig(max_new_tokens=16), 3).sequences)


def next_batch(rows: list[int], model_maker=synthetic) -> PromptBatch:
    """Three LLaVA-NeXT prompts whose images have different anyres grids (different image span lengths)."""
    tokenizer, model, processor = model_maker("llava_next", 4)
    questions = ["is there a dog ?", "describe this image in detail please .", "a cat ?"]
    images = [random_image(300, 200, 1), random_image(200, 300, 2), random_image(336, 336, 3)]
    return make_batch(tokenizer, model, processor, [questions[r] for r in rows], [images[r] for r in rows])


def test_batch_of_three_equals_three_single_runs_llava_next():
    assert len(set(next_batch([0, 1, 2]).encode().image_len.tolist())) > 1
    _singles_equal_batch(next_batch, [0, 1, 2], lambda b: beam_search(b, GenerationConfig(max_new_tokens=20), 4).sequences)


# ================================================================================================================
# cache operations and entry points


def _cache(rows: int = 3, length: int = 4):
    cache = new_cache(2, 8)
    values = torch.arange(rows * length, dtype=torch.float32).view(rows, 1, length, 1).expand(-1, 1, -1, 2)
    for layer in range(2):
        cache.update(values.clone() + 100 * layer, -values.clone(), layer)
    return cache, values


def test_reorder_crop_write_and_trim_keep_the_cache_consistent():
    cache, values = _cache()
    reorder_rows(cache, torch.tensor([2, 0, 0]))
    assert torch.equal(cache.layers[1].keys, values[[2, 0, 0]] + 100)
    assert torch.equal(cache.layers[0].values, -values[[2, 0, 0]])
    crop(cache, 2)
    assert cache.layers[0].keys.shape[2] == 2
    new = torch.full((3, 1, 1, 2), 7.0)
    keys, _ = cache.layers[0].update(new, new)
    assert keys.shape[2] == 3 and torch.equal(keys[:, :, 2:], new)  # the next write goes right after the crop
    source, _ = _cache(rows=1, length=2)
    write_rows(cache, torch.tensor([1]), source)
    assert torch.equal(cache.layers[0].keys[1, :, 1:], source.layers[0].keys[0])  # right-aligned at the end
    trim_left(cache, 1)
    assert cache.layers[0].keys.shape[2] == 2 and torch.equal(cache.layers[0].keys[1], source.layers[0].keys[0])


def test_prompt_id_lengths_count_the_image_as_one_id():
    from llava.inputs import Prefill

    prefill = Prefill(torch.zeros(2, 10, 4), torch.tensor([[1] * 10, [0, 0] + [1] * 8]), torch.zeros(2, 10),
                      torch.tensor([3, 4]), torch.tensor([5, 0]))
    assert prompt_id_lengths(prefill).tolist() == [10 - 5 + 1, 8]


def test_decode_dispatch():
    tokenizer, model, processor = synthetic("llava", 2)
    batch = make_batch(tokenizer, model, processor, ["a cat ?"], [random_image(336, 336, 6)])
    config = GenerationConfig(max_new_tokens=4)
    assert decode(batch, config).sequences == generate(batch, config).sequences
    assert decode(batch, config, None, 3).sequences == beam_search(batch, config, 3).sequences

    class NoBeams(DecodingMethod):
        pass

    with pytest.raises(ValueError, match="has no beam search"):
        decode(batch, config, NoBeams(), 3)

    class Wide(BeamMethod):
        num_beams = 3

        def search(self, batch, config, on_step=None):
            return BeamSearch(batch, config, self.num_beams, on_step=on_step)

    assert decode(batch, config, Wide()).sequences == beam_search(batch, config, 3).sequences
    with pytest.raises(ValueError, match="searches with 3 beams, not 4"):
        decode(batch, config, Wide(), 4)
    with pytest.raises(ValueError, match="Wide is a beam search: decode it with llava.decoding.decode"):
        generate(batch, config, Wide())  # never silently greedy


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_beams=1), "num_beams >= 2"),
    (dict(num_beams=2, sample=True), "do_sample must be False"),
])
def test_invalid_settings(kwargs, message):
    tokenizer, model, processor = synthetic("llava", 2)
    batch = make_batch(tokenizer, model, processor, ["a cat ?"], [random_image(336, 336, 6)])
    with pytest.raises(ValueError, match=message):
        BeamSearch(batch, GenerationConfig(do_sample=kwargs.get("sample", False)), kwargs["num_beams"])
