"""Plain decoding reproduces the official code token for token (``tests/fixtures/golden``).

Every image of: ``sparc_golden.json`` case ``vanilla`` (LLaVA-1.5, vicuna_v1, pad-to-square, 48 tokens),
``sparc_next_golden.json`` case ``vanilla`` (LLaVA-NeXT, anyres + spatial_unpad, 32 tokens) and
``avisc_golden.json`` case ``base`` (LLaVA-1.5, llava_v1, CLIP center-crop, 8 tokens). The parameters are read from
the json at collection time, so images added to these cases are picked up automatically. Batch size 1, the default
(eager) attention: the setting in which the official outputs reproduce exactly.
"""
from __future__ import annotations

import functools

import pytest

from helpers import golden_image, golden_json, golden_model, golden_params, make_batch
from llava.generation import GenerationConfig, generate


def _is_vanilla(case):
    return case["name"] == "vanilla" or case["params"].get("alpha") == 1.0


def _is_base(case):
    params = case["params"]
    return case["name"] == "base" or not (params.get("use_avisc") or params.get("use_m3id"))


@functools.lru_cache(maxsize=None)
def _plain(golden_file: str, image: str, aspect: str | None) -> list[int]:
    data = golden_json(golden_file)
    tokenizer, model, processor = golden_model(data["checkpoint"])
    batch = make_batch(tokenizer, model, processor, [data["question"]], [golden_image(image)], data["conv_mode"], aspect)
    return generate(batch, GenerationConfig(max_new_tokens=data["max_new_tokens"])).sequences[0]


@pytest.mark.parametrize("case, output", golden_params("sparc_golden.json", _is_vanilla))
def test_llava15_vanilla(case, output):
    assert golden_json("sparc_golden.json")["image_aspect_ratio"] == "pad"
    assert _plain("sparc_golden.json", output["image"], None) == output["generated_ids"]


@pytest.mark.parametrize("case, output", golden_params("sparc_next_golden.json", _is_vanilla))
def test_llava_next_vanilla(case, output):
    assert golden_json("sparc_next_golden.json")["image_aspect_ratio"] == "anyres"
    assert _plain("sparc_next_golden.json", output["image"], None) == output["generated_ids"]


@pytest.mark.parametrize("case, output", golden_params("avisc_golden.json", _is_base))
def test_avisc_base_center_crop(case, output):
    assert "center crop" in golden_json("avisc_golden.json")["image_processing"]
    assert _plain("avisc_golden.json", output["image"], "crop") == output["generated_ids"]


def test_golden_files_have_vanilla_cases():
    """Guards against a renamed case silently leaving the tests above with nothing to check."""
    assert golden_params("sparc_golden.json", _is_vanilla)
    assert golden_params("sparc_next_golden.json", _is_vanilla)
    assert golden_params("avisc_golden.json", _is_base)
