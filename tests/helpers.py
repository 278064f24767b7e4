"""Shared test utilities: the golden reference data, golden models and synthetic models loaded once per session.

Every loader here is cached for the whole test session (``functools.lru_cache`` on a module that pytest imports
once), so each golden checkpoint is read from disk once. Cached models are shared between tests: never modify them
(deep-copy one first, e.g. to switch its attention implementation).
"""
from __future__ import annotations

import functools
import json
import math
import subprocess
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import GOLDEN

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711])


# ---------------------------------------------------------------------------------------------------------------
# golden json files


@functools.lru_cache(maxsize=None)
def golden_json(name: str) -> dict[str, Any]:
    """``sparc_golden.json`` etc., parsed once."""
    path = GOLDEN / name
    if not path.is_file():
        pytest.fail(f"golden file not found: {path}")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def golden_params(name: str, case_filter=None) -> list[Any]:
    """``pytest.param(case, output)`` for every case and image of a golden file (read at collection time, so cases or
    images added to the file are picked up without touching the tests)."""
    data = golden_json(name)
    params = []
    for case in data["cases"]:
        if case_filter is not None and not case_filter(case):
            continue
        for output in case["outputs"]:
            params.append(pytest.param(case, output, id=f"{case['name']}-{Path(output['image']).stem}"))
    return params


def golden_outputs(name: str) -> list[dict[str, Any]]:
    """Every output record of a golden file, all cases together."""
    return [output for case in golden_json(name)["cases"] for output in case["outputs"]]


# ---------------------------------------------------------------------------------------------------------------
# models


@functools.lru_cache(maxsize=None)
def golden_model(checkpoint: str, attn_implementation: str | None = None) -> tuple[Any, Any, Any]:
    """``(tokenizer, model, image_processor)`` of a golden checkpoint, fp32 on the CPU, loaded once per session."""
    from llava.model.builder import load_pretrained_model

    tokenizer, model, processor, _ = load_pretrained_model(
        GOLDEN / checkpoint, device_map="cpu", dtype=torch.float32, attn_implementation=attn_implementation
    )
    return tokenizer, model, processor


@functools.lru_cache(maxsize=None)
def synthetic(family: str, num_layers: int | None = None, seed: int = 0, attn_implementation: str | None = None):
    """``(tokenizer, model, processor)`` of a random tiny model, built once per session."""
    from llava.model.synthetic import synthetic_model

    tokenizer, model, processor, _ = synthetic_model(
        family, "tiny", seed=seed, num_layers=num_layers, attn_implementation=attn_implementation
    )
    return tokenizer, model, processor


@functools.lru_cache(maxsize=None)
def sharpened(family: str, num_layers: int | None = None, scale: float = 10.0):
    """A random tiny model whose language-model attention is sharp, as the golden checkpoints' is: a copy of
    :func:`synthetic` with the query and key projections times ``scale`` (scores times ``scale ** 2``). With the
    default initialisation attention is nearly uniform, so SPARC would select nothing and AvisC's contrast would
    be tiny."""
    import copy

    tokenizer, model, processor = synthetic(family, num_layers)
    model = copy.deepcopy(model)
    decoder = model.language_model.model if family == "instructblip" else model.model.language_model
    with torch.no_grad():
        for layer in decoder.layers:
            layer.self_attn.q_proj.weight *= scale
            layer.self_attn.k_proj.weight *= scale
    return tokenizer, model, processor


# ---------------------------------------------------------------------------------------------------------------
# images


@functools.lru_cache(maxsize=None)
def golden_image(name: str) -> Image.Image:
    from llava.mm_utils import load_image

    return load_image(GOLDEN / "images" / name)


def golden_image_names() -> list[str]:
    return sorted(p.name for p in (GOLDEN / "images").iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def random_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """A deterministic noise image (smooth enough that resizing keeps structure)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8)
    return Image.fromarray(small).resize((width, height), Image.BILINEAR)


def clip_normalise(image: Image.Image) -> torch.Tensor:
    """Hand-written CLIP normalisation of an RGB PIL image: ``(x / 255 - mean) / std`` as ``(3, H, W)`` float64."""
    array = np.asarray(image, dtype=np.float64) / 255.0
    return torch.from_numpy(((array - CLIP_MEAN) / CLIP_STD).transpose(2, 0, 1).copy())


# ---------------------------------------------------------------------------------------------------------------
# batches and runs


def make_batch(tokenizer, model, processor, questions: Sequence[str], images: Sequence[Image.Image] | None,
               conv_mode: str | None = "vicuna_v1", aspect: str | None = None):
    """A :class:`~llava.inputs.PromptBatch` of one question per image, formatted by the model's family."""
    from llava.batch import PromptBatch
    from llava.model.families import family_of

    family = family_of(model)
    if family.spec.prompt_style != "template":  # the raw question (InstructBLIP) or the chat template (Qwen2-VL)
        conv_mode = None
    prompts = [family.format_prompt(model, q, conv_mode, tokenizer) for q in questions]
    pixels = family.pixel_values(model, processor, list(images), family.preprocessing(model, processor, aspect)) \
        if images is not None else None
    return PromptBatch(model, tokenizer, processor, prompts, pixels)


def seeded_generators(seeds: Sequence[int]) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(int(s)) for s in seeds]


def sparc_config_from(params: dict[str, Any]):
    """A :class:`~sparc.SparcConfig` from the ``params`` of a golden SPARC case (missing fields keep defaults)."""
    from sparc import SparcConfig

    fields = ("alpha", "beta", "tau", "selected_layer", "start_layer", "end_layer")
    return SparcConfig(**{k: params[k] for k in fields if k in params})


def contrast_method_from(params: dict[str, Any]):
    """The method of a golden AvisC case (``use_avisc`` / ``use_m3id`` / neither: plain decoding) with its ``params``."""
    from avisc.config import AviscConfig, M3idConfig
    from avisc.methods import Avisc, M3id
    from llava.generation import DecodingMethod

    if params.get("use_avisc"):
        fields = ("layer_gamma", "lamb", "cd_alpha", "cd_beta", "masking_scheme")
        return Avisc(AviscConfig(**{k: params[k] for k in fields if k in params}))
    if params.get("use_m3id"):
        return M3id(M3idConfig(**{k: params[k] for k in ("cd_beta",) if k in params}))
    return DecodingMethod()


LOGIT_ERROR = 2e-5
"""Float32 error budget of one logit against the official run, from the base (plain decoding) golden cases: up to
1.3e-5 on the CPU that recorded the golden files' neighbours, 2.8e-5 on an AVX-512 CPU (different kernels)."""


def golden_logprob_tolerance(params: dict[str, Any], step: int) -> float:
    """How far our final log-probability of a golden AvisC step may be from the official one: the logit error budget
    propagated through the method's weights (AvisC / VCD: ``(1 + alpha) l - alpha l2`` weighs both branches' errors by
    ``1 + 2 alpha``; M3ID: ``lc + w (lc - lu)`` on log-probabilities by ``1 + 2 w``, ``w = (1 - g_t) / g_t``), doubled
    for the log-softmax normalisation."""
    if params.get("use_avisc"):
        weight = 1 + 2 * params["cd_alpha"]
    elif params.get("use_m3id"):
        gamma = math.exp(-0.02 * step)
        weight = 1 + 2 * (1 - gamma) / gamma
    else:
        weight = 1.0
    return 2 * LOGIT_ERROR * weight


@functools.lru_cache(maxsize=None)
def sparc_golden_run(golden_file: str, case_name: str, image: str) -> tuple[list[int], list[list[int]], list[list[float]]]:
    """Our SPARC run of one golden case and image, at batch size 1 with the default (eager) attention:
    ``(generated ids, selected absolute positions per decode step, relative change of every image token per decode
    step)``; the positions are the golden file's ``image_token_start`` plus our image-token indices (no selections
    when the method installs no hook)."""
    from llava.generation import GenerationConfig, generate
    from sparc.method import Sparc, SparcHook

    class RatioHook(SparcHook):
        """Also keeps ``(a - ema) / ema``, the quantity compared with tau, at every decode step."""

        ratios: list[list[float]]

        def on_attention(self, layer_idx, row):
            if self.step > 0:
                attention = row.gather(1, self.positions)
                self.ratios.append(((attention - self.ema) / self.ema)[0].tolist())
            super().on_attention(layer_idx, row)

    class RatioSparc(Sparc):
        def begin(self, context):
            super().begin(context)
            if self.hook is not None:
                prefill = context.prefill
                self.hook = RatioHook(self.config, prefill.image_start, prefill.image_len, record=True)
                self.hook.ratios = []

    data = golden_json(golden_file)
    case = next(c for c in data["cases"] if c["name"] == case_name)
    tokenizer, model, processor = golden_model(data["checkpoint"])
    batch = make_batch(tokenizer, model, processor, [data["question"]], [golden_image(image)], data["conv_mode"])
    method = RatioSparc(sparc_config_from(case["params"]), record=True)
    out = generate(batch, GenerationConfig(max_new_tokens=data["max_new_tokens"]), method)
    if method.hook is None:
        return out.sequences[0], [], []
    start = data["image_token_start"]
    selections = [[start + j for j in step] for step in method.traces()[0].selections]
    return out.sequences[0], selections, method.hook.ratios


TAU_TIE = 1e-4
"""A relative change within this of tau (relative to max(1, tau)) is a float-level tie: which side it falls on
depends on the CPU's float32 kernels (seen once: 0.5000134 against tau 0.5 on an AVX-512 CPU)."""


def assert_selections_match(ours: list[list[int]], official: list[list[int]], ratios: list[list[float]],
                            tau: float, start: int) -> None:
    """Selections equal step for step, except that the first step that differs may differ only in tokens whose
    relative change ties with tau (:data:`TAU_TIE`); after such a tie the amplified values differ, so later steps are
    compared as sets: at most 2 % of the selected positions may differ."""
    assert len(ours) == len(official)
    for step, (mine, theirs) in enumerate(zip(ours, official)):
        if mine == theirs:
            continue
        for position in set(mine) ^ set(theirs):
            ratio = ratios[step][position - start]
            assert abs(ratio - tau) <= TAU_TIE * max(1.0, abs(tau)), (
                f"decode step {step + 1}: position {position} differs with relative change {ratio} (tau {tau})")
        later_ours = {(k, p) for k, sel in enumerate(ours[step + 1:]) for p in sel}
        later_official = {(k, p) for k, sel in enumerate(official[step + 1:]) for p in sel}
        differing = len(later_ours ^ later_official)
        assert differing <= 0.02 * max(1, len(later_ours | later_official)), (
            f"after a tau tie at step {step + 1}, {differing} later selections differ")
        return


@functools.lru_cache(maxsize=None)
def avisc_golden_run(case_name: str, image: str):
    """Our run of one ``avisc_golden.json`` case and image (batch 1, default attention, greedy):
    ``(generated ids, per-step final log-probabilities (V,), masked indices or None)``."""
    from avisc.methods import Avisc
    from llava.generation import GenerationConfig, generate

    data = golden_json("avisc_golden.json")
    case = next(c for c in data["cases"] if c["name"] == case_name)
    tokenizer, model, processor = golden_model(data["checkpoint"])
    batch = make_batch(tokenizer, model, processor, [data["question"]], [golden_image(image)], data["conv_mode"], "crop")
    method = contrast_method_from(case["params"])
    logs: list[torch.Tensor] = []
    out = generate(
        batch, GenerationConfig(max_new_tokens=data["max_new_tokens"]), method,
        step_callback=lambda step, final, chosen: logs.append(final[0].log_softmax(-1).clone()),
    )
    masked = method.found[0].masked.tolist() if isinstance(method, Avisc) else None
    return out.sequences[0], logs, masked


# ---------------------------------------------------------------------------------------------------------------
# runs in another process


def signal_when_running(process: subprocess.Popen, config: Path, signum: int) -> str:
    """Send ``signum`` to ``process`` once the run it started is generating (its ``config`` written, a second more);
    its stderr once it has ended."""
    deadline = time.time() + 120
    while time.time() < deadline and not config.is_file():
        time.sleep(0.1)
    time.sleep(1.0)
    process.send_signal(signum)
    return process.communicate(timeout=120)[1]
