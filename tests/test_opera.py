"""OPERA (``sparc.opera``): every case of ``opera_golden.json`` token for token with its rollbacks and scorer steps,
the batched candidate forward against one forward per candidate, the over-trust scores and the rollback budget
hand-worked, batching with rollbacks (batch 3 = 3 x batch 1 on LLaVA-1.5 and LLaVA-NeXT), and the registered
method's presets."""
from __future__ import annotations

import functools

import pytest

from eval.benchmarks import resolve_run
import torch

from helpers import golden_json, golden_params, sharpened
from llava.beam_search import crop
from llava.decoding import decode
from llava.generation import GenerationConfig, forward_logits
from llava.methods import create_method, get_method
from sparc.opera.config import OPERA_CONV_MODE, WINDOW, OperaConfig
from sparc.opera.search import Opera, OperaSearch, column_scores, spend_budget
from test_beam_search import OPERA_GOLDEN, QUESTIONS, assert_steps_match, next_batch, opera_batch


def config_from(params: dict) -> OperaConfig:
    return OperaConfig(**{k: params[k] for k in ("beam", "scale_factor", "threshold", "num_attn_candidates",
                                                  "penalty_weights")})


def rollbacks_of(search: OperaSearch) -> list[list[tuple[int, int]]]:
    return [[(r.reprefill_len, r.resume_response_len) for r in memory.rollbacks] for memory in search.retrospection]


# ================================================================================================================
# golden: every case and image, parameters from the json


@functools.lru_cache(maxsize=None)
def _golden_run(case_name: str, image: str, attn: str | None = None):
    data = golden_json(OPERA_GOLDEN)
    case = next(c for c in data["cases"] if c["name"] == case_name)
    records = []
    search = OperaSearch(opera_batch([image], attn=attn), GenerationConfig(max_new_tokens=data["max_new_tokens"]),
                         config_from(case["params"]), records.append)
    return search.run().sequences[0], records, rollbacks_of(search)[0]


def _is_opera(case):
    return case["params"]["opera_decoding"]


@pytest.mark.parametrize("case, output", golden_params(OPERA_GOLDEN, _is_opera))
def test_golden(case, output):
    tokens, records, rollbacks = _golden_run(case["name"], output["image"])
    assert tokens == output["generated_ids"]
    assert rollbacks == [(r["reprefill_len"], r["resume_response_len"]) for r in output["rollbacks"]]
    assert len(rollbacks) == output["num_rollbacks"]
    single_candidate = case["params"]["num_attn_candidates"] == 1  # the README: compare the live beam only
    assert_steps_match(records, output["beam_steps"], output["smallest_keep_drop_gaps"], 1 if single_candidate else None)


@pytest.mark.parametrize("case_name", ["opera_default", "opera_rollback"])
def test_golden_with_sdpa(case_name):
    """The same tokens and rollbacks through SDPA (the candidate forward's tree mask as an additive mask)."""
    case = next(c for c in golden_json(OPERA_GOLDEN)["cases"] if c["name"] == case_name)
    output = case["outputs"][-1]
    tokens, _, rollbacks = _golden_run(case_name, output["image"], "sdpa")
    assert tokens == output["generated_ids"]
    assert rollbacks == [(r["reprefill_len"], r["resume_response_len"]) for r in output["rollbacks"]]


def test_golden_covers_every_kind_of_case():
    names = {case["name"] for case in golden_json(OPERA_GOLDEN)["cases"] if _is_opera(case)}
    assert {"opera_default", "opera_efficient", "opera_rollback"} <= names
    assert any(output["num_rollbacks"] > 1 for output in golden_outputs_of("opera_rollback"))


def golden_outputs_of(name: str) -> list[dict]:
    return next(c for c in golden_json(OPERA_GOLDEN)["cases"] if c["name"] == name)["outputs"]


def test_preset_template_gives_the_official_prompt_ids():
    """The ``official`` preset's template builds OPERA's prompt: the golden 48 ids, placeholder at 34."""
    from llava.mm_utils import tokenizer_image_token
    from llava.model.families import family_of

    batch = opera_batch(["img_square.jpg"])
    protocol = resolve_run("coco", "llava", "opera", "official").protocol
    prompt = family_of(batch.model).format_prompt(batch.model, protocol.prompt, protocol.conv_mode)
    assert tokenizer_image_token(prompt, batch.tokenizer) == golden_outputs_of("opera_default")[0]["input_ids"]


# ================================================================================================================
# the mechanism, piece by piece


def test_one_candidate_forward_equals_one_forward_per_candidate():
    """The C candidates of every beam as C queries of one forward (tree mask) give each candidate's last-layer
    attention row (max over heads) of a separate forward of that candidate after its beam, as the official loop."""
    search = OperaSearch(opera_batch(["img_wide.jpg"]), GenerationConfig(max_new_tokens=4), OperaConfig(beam=3))
    logits = search.start()
    search.step = 1
    search.advance(logits.log_softmax(-1))
    search.step = 2
    logits = search.forward(torch.tensor([5, 6, 7]))  # beams that differ
    candidates = torch.topk(logits, 4, dim=-1).indices
    rows = search._candidate_rows(candidates)  # (R, C, T + 1), renormalised
    length = search.cache.layers[0].keys.shape[2]
    for c in range(candidates.shape[1]):
        search.hook.begin_forward(2)
        embeds = search.family.embed_tokens(search.model, candidates[:, c : c + 1])
        forward_logits(search.model, search.family, embeds, None, search.positions[:, None], search.cache, search.hook)
        crop(search.cache, length)
        alone = search.hook.rows[:, -1]
        # one forward of 4 queries per row rounds differently from 4 forwards of one (other matmul shapes), and the
        # golden checkpoint's sharp attention amplifies it: measured up to 6.4e-5 relative per entry
        assert torch.allclose(rows[:, c], alone / alone.sum(-1, keepdim=True), rtol=2e-4, atol=0)


def _official_column_scores(matrix: torch.Tensor, scale: float) -> torch.Tensor:
    """The official loop, literally: ``1e-7 * (scale * W)[j:, j].prod()`` for every column, into float16."""
    scaled = scale * matrix
    scores = torch.zeros(matrix.shape[-1], dtype=torch.float16)
    for j in range(matrix.shape[-1]):
        scores[j] = (1e-7 * scaled[j:, j].prod()).to(torch.float32)
    return scores


@pytest.mark.parametrize("scale, attention, expect", [(50.0, 1e-3, "zeros"), (1000.0, 3e-3, "finite"),
                                                      (30000.0, 0.3, "inf")])
def test_column_scores_equal_the_official_products(scale, attention, expect):
    """History products extended by the candidate's row equal the official column products of the full window,
    float16 included: scale 50 on attention ~1e-3 underflows to 0 everywhere (the default on the tiny checkpoint),
    factors ~3 stay finite and positive, factors ~1e4 overflow to inf after a few rows."""
    torch.manual_seed(0)
    n = 6
    window = ((torch.rand(n + 1, n + 1) * 0.5 + 0.75) * attention).tril()  # generated rows 0..n-1, candidate row n
    products = torch.ones(1, n + 1)
    for i in range(n):
        scaled_row = scale * window[i]
        products[0, :i] *= scaled_row[:i]
        products[0, i] = scaled_row[i]
    ours = column_scores(products, scale * window[n][None, None], torch.tensor([n]))[0, 0]
    official = _official_column_scores(window, scale)
    assert torch.equal(ours, official)
    if expect == "zeros":
        assert bool((ours == 0).all())
    elif expect == "inf":
        assert bool(torch.isinf(ours).any())
    else:
        assert bool((ours > 0).all()) and bool(torch.isfinite(ours).all())


def test_column_scores_mask_columns_past_a_rows_window():
    scores = column_scores(torch.ones(2, 4), torch.ones(2, 1, 4), torch.tensor([3, 1]))
    assert torch.isinf(scores[1, 0, 2:]).all() and bool((scores[1, 0, 2:] < 0).all())
    assert bool(torch.isfinite(scores[0]).all())


def test_rollback_budget_per_position():
    """``num_attn_candidates`` rollbacks per position, then the position before, then none; a position past the
    512-slot table is no rollback; a rollback more than 513 tokens back is clamped (after spending)."""
    budget = [0] * WINDOW
    assert [spend_budget(budget, 20, 30, 2) for _ in range(5)] == [20, 20, 19, 19, None]
    assert budget[20] == 2 and budget[19] == 2
    assert spend_budget(budget, WINDOW, WINDOW + 1, 2) is None
    assert spend_budget(budget, 50, 600, 2) == 600 - WINDOW - 1 and budget[50] == 1


def test_rollback_resumes_from_full_vocabulary_with_rejected_choices():
    """The step after a rollback takes its logits from the re-prefilled beams, shifted so that the minimum is -999,
    with the (beam, token) pairs chosen at that position before at -999 (hand-checked on the golden rollback of
    img_tall, three times to 14 tokens: 3, 6, then 9 rejected pairs)."""
    case = next(c for c in golden_json(OPERA_GOLDEN)["cases"] if c["name"] == "opera_rollback")
    search = OperaSearch(opera_batch(["img_tall.jpg"]), GenerationConfig(max_new_tokens=48), config_from(case["params"]))
    seen = []
    original = search._roll_back

    def roll_back(positions, logits):
        original(positions, logits)
        position = positions[0]
        seen.append((position, logits[search.group_rows(0)].clone(), search.retrospection[0].rejected[position].clone()))

    search._roll_back = roll_back
    search.run()
    assert [position for position, _, _ in seen] == [14, 14, 14]
    for count, (_, logits, rejected) in enumerate(seen, start=1):
        assert rejected.numel() == 3 * count  # the 3 beams chosen at 14 each time, accumulated
        flat = logits.reshape(-1)
        assert bool((flat[rejected] == -999.0).all())
        assert float(flat.min()) == -999.0
        assert int((flat > -999.0).sum()) > flat.numel() // 2  # the full vocabulary, not only candidates


# ================================================================================================================
# batching with rollbacks


ROLLBACK = OperaConfig(beam=3, scale_factor=1000.0, threshold=3, num_attn_candidates=3, penalty_weights=2.0)


def _batch_equals_singles(make, config: OperaConfig, tokens: int) -> list[list[tuple[int, int]]]:
    generation = GenerationConfig(max_new_tokens=tokens)
    search = OperaSearch(make([0, 1, 2]), generation, config)
    together = search.run().sequences
    rollbacks = rollbacks_of(search)
    for row in range(3):
        alone = OperaSearch(make([row]), generation, config)
        assert alone.run().sequences[0] == together[row]
        assert rollbacks_of(alone)[0] == rollbacks[row]
    return rollbacks


def test_batch_of_three_equals_three_single_runs_golden_llava15():
    images = ["img_wide.jpg", "img_tall.jpg", "img_square.jpg"]
    make = lambda rows: opera_batch([images[r] for r in rows], [QUESTIONS[r] for r in rows])
    rollbacks = _batch_equals_singles(make, ROLLBACK, 36)
    assert sum(1 for r in rollbacks if r) >= 2  # prompts roll back at different steps in the same batch


def test_batch_of_three_equals_three_single_runs_llava_next():
    """Three LLaVA-NeXT prompts with image spans of different lengths, batched, give each prompt's single run, with
    OPERA's candidate penalty on every step (rollbacks inside a batch: the LLaVA-1.5 golden test above). Ten tokens:
    this random model's sharpened attention is nearly an argmax, and from about the 13th step two keys of one
    candidate's row tie within float32 noise, so batch and single runs may flip a whole 0.25 of attention mass on
    another CPU (seen on an AMD EPYC at one thread; earlier steps agree to 1e-4 in every candidate score)."""
    config = OperaConfig(beam=3, scale_factor=1500.0, threshold=1, num_attn_candidates=3, penalty_weights=2.0)
    make = lambda rows: next_batch(rows, sharpened)
    _batch_equals_singles(make, config, 10)


# ================================================================================================================
# the registered method


def test_registered_method_and_presets():
    spec = get_method("opera")
    method = create_method("opera", "official")
    assert isinstance(method, Opera) and method.num_beams == 5 and method.config == OperaConfig()
    official = spec.resolve("official", family="llava", benchmark="coco", task="caption")
    assert official.params == dict(beam=5, scale_factor=50.0, threshold=15, num_attn_candidates=5, penalty_weights=1.0)
    assert official.protocol == dict(decoding="greedy", conv_mode=OPERA_CONV_MODE, image_aspect="crop", text_cut="###")
    # OPERA's captioning prompt and 512 tokens are the captioning benchmarks' own: resolved from the benchmark
    run = resolve_run("coco", "llava", "opera", "official")
    assert (run.protocol.prompt, run.protocol.max_new_tokens) == ("Please describe this image in detail.", 512)
    assert run.sources["conv_mode"] == "preset:official[family=llava]" and run.sources["prompt"] == "benchmark:coco"
    pope = spec.resolve("official", family="llava", benchmark="pope", task="yesno").protocol
    assert pope["max_new_tokens"] == 10 and "prompt" not in pope
    assert "conv_mode" not in spec.resolve("official", family="llava_next", task="caption").protocol
    efficient = spec.resolve("efficient", family="llava", task="caption")
    assert (efficient.params["threshold"], efficient.params["num_attn_candidates"]) == (25, 1)
    assert spec.resolve("paper", family="llava", task="caption").protocol == dict(decoding="greedy")
    assert spec.resolve("scripts").params == official.params


@pytest.mark.parametrize("field, value", [("beam", 1), ("scale_factor", 0.0), ("threshold", -1),
                                          ("num_attn_candidates", 0), ("penalty_weights", -1.0)])
def test_invalid_parameters(field, value):
    with pytest.raises(ValueError, match=field):
        OperaConfig(**{field: value})


def test_decode_runs_opera_with_its_own_width():
    batch = opera_batch(["img_square.jpg"])
    config = GenerationConfig(max_new_tokens=3)
    method = Opera(OperaConfig(beam=3))
    assert decode(batch, config, method).sequences == method.search(batch, config).run().sequences
