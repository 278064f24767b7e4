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
from typing import Any, Iterable, Sequence

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


LOGIT_ERROR = 5e-5
"""Float32 error budget of one logit of a golden checkpoint against the official run, on eager attention (the official
arithmetic), on any CPU and thread count: how far one logit may move relative to the others (a shift of all of them
together cancels in every log-softmax, contrast and cutoff). So a log-probability of one forward is within
``2 * LOGIT_ERROR`` of the official one (the entry plus the normalisation), so is a raw logit (the entry plus the
common shift, bounded alike), and so is a logit's distance to the largest one, which every cutoff compares.

Why this value: the golden records of single forwards (no method contrast) show log-probabilities up to 5.3e-5 from
the official ones (PAI's text-only branch, transformers 4.37), 4.9e-5 (PAI's image branch), 2.8e-5 (AvisC's plain
decoding, transformers 4.31), 2.2e-5 (OPERA's first beam step, transformers 4.29.2) on an AMD EPYC (AVX2, the same at
1 and 2 threads), and 2.8e-5 for AvisC's plain decoding on an AVX-512 CPU: one logit moves by up to 2.7e-5; raw
logits of PAI's plain decoding move by up to 4.7e-5 here, 5.2e-5 on another CPU. Another CPU's kernels round
differently again: the budget is about twice the largest move. (An earlier 2e-5, from AvisC's plain decoding
alone, failed AvisC's alpha 2.5 case on the AMD EPYC: 2.48e-4 against 2.4e-4.)"""

SDPA_LOGIT_ERROR = 1e-4
""":data:`LOGIT_ERROR` for our SDPA path against the official eager run: SDPA's fused kernel sums and exponentiates in
another order (online softmax) and with the thread count, and a method's score edit becomes an additive bias, so it
rounds further from the official arithmetic. Twice the largest single-forward error of the PAI golden cases on SDPA
(AMD EPYC, 1 and 2 threads): log-probabilities up to 1.04e-4 (text-only branch), raw logits up to 1.13e-4 (PAI's
re-weighting alone), i.e. one logit up to 5.6e-5."""


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


def assert_set_at_cutoff(ours: Iterable[int], official: Iterable[int] | int, values: Sequence[float] | torch.Tensor,
                         cutoff: float, tolerance: float, what: str) -> None:
    """Our set of the entries whose value is at or above ``cutoff`` against the official set, or against its size where
    the golden file records only that: equal, except for entries whose value lies within ``tolerance`` of the cutoff.
    ``tolerance`` is the error budget of the distance between a value and the cutoff: float rounding, which differs
    between CPUs, thread counts and kernels, may put such an entry on either side, so the official set may hold or
    lack it; any other entry is in both sets or in neither, and a recorded size lies between the number of entries
    above the cutoff by more than the tolerance and that number plus the entries within it.

    ``values[i]``: our value of entry ``i``. ``ours``: the entries our run kept, which must be the ones ``values`` put
    above the cutoff (checked away from the cutoff: the values are the ones the method compared)."""
    values = torch.as_tensor(values, dtype=torch.float64).flatten()
    margin = values - float(cutoff)
    near = set(torch.nonzero(margin.abs() <= tolerance).flatten().tolist())
    above = set(torch.nonzero(margin > tolerance).flatten().tolist())
    ours = {int(i) for i in ours}
    assert ours - near == above, (
        f"{what}: the entries we kept are not those our values put above the cutoff {cutoff:.6g} "
        f"(kept below it: {sorted(ours - near - above)[:5]}, not kept above it: {sorted(above - ours)[:5]})")
    if isinstance(official, int):
        assert len(above) <= official <= len(above) + len(near), (
            f"{what}: {official} official entries at or above the cutoff {cutoff:.6g}, {len(ours)} of ours; only "
            f"{len(near)} of our values lie within {tolerance:.3g} of it")
        return
    far = sorted((ours ^ {int(i) for i in official}) - near)
    assert not far, (
        f"{what}: entries {far[:5]} differ from the official set with values "
        f"{[round(float(values[i]), 7) for i in far[:5]]}, more than {tolerance:.3g} from the cutoff {cutoff:.6g}")


ATTENTION_TIE = 1e-4
"""A relative change of attention weights within this of its cutoff (relative to max(1, |cutoff|)) is a float-level
tie: which side it falls on depends on the CPU's float32 kernels and thread count. Seen: SPARC's relative change
0.5000134 against tau 0.5 on an AVX-512 CPU, 4.0000105 against tau 4 on an AMD EPYC; AvisC's attention of an image
token 3e-5 (relative) below its blind-token threshold."""


def assert_selections_match(ours: list[list[int]], official: list[list[int]], ratios: list[list[float]],
                            tau: float, start: int) -> None:
    """Selections equal step for step, except that the first step that differs may differ only in tokens whose
    relative change ties with tau (:func:`assert_set_at_cutoff` with :data:`ATTENTION_TIE`); after such a tie the
    amplified values differ, so later steps are compared as sets: at most 2 % of the selected positions may differ."""
    assert len(ours) == len(official)
    tolerance = ATTENTION_TIE * max(1.0, abs(tau))
    for step, (mine, theirs) in enumerate(zip(ours, official)):
        assert_set_at_cutoff([p - start for p in mine], [p - start for p in theirs], ratios[step], tau, tolerance,
                             f"decode step {step + 1}")
        if mine == theirs:
            continue
        later_ours = {(k, p) for k, sel in enumerate(ours[step + 1:]) for p in sel}
        later_official = {(k, p) for k, sel in enumerate(official[step + 1:]) for p in sel}
        differing = len(later_ours ^ later_official)
        assert differing <= 0.02 * max(1, len(later_ours | later_official)), (
            f"after a tau tie at step {step + 1}, {differing} later selections differ")
        return


def record_main_logits(method):
    """``method``, now also keeping the main logits of row 0 that its ``combine`` receives at each decode step
    (``method.main_logits``): the values a contrastive cutoff compares."""
    base = type(method)

    class Recording(base):
        def combine(self, step, logits, branch_logits):
            self.main_logits.append(logits[0].clone())
            return super().combine(step, logits, branch_logits)

    Recording.__name__ = Recording.__qualname__ = base.__name__
    method.__class__ = Recording
    method.main_logits = []
    return method


@functools.lru_cache(maxsize=None)
def avisc_golden_run(case_name: str, image: str):
    """Our run of one ``avisc_golden.json`` case and image (batch 1, default attention, greedy): ``(generated ids,
    per-step final log-probabilities (V,), the method)``; the method keeps its per-step main logits
    (:func:`record_main_logits`) and, for AvisC, its blind-token detection (``found``)."""
    from llava.generation import GenerationConfig, generate

    data = golden_json("avisc_golden.json")
    case = next(c for c in data["cases"] if c["name"] == case_name)
    tokenizer, model, processor = golden_model(data["checkpoint"])
    batch = make_batch(tokenizer, model, processor, [data["question"]], [golden_image(image)], data["conv_mode"], "crop")
    method = record_main_logits(contrast_method_from(case["params"]))
    logs: list[torch.Tensor] = []
    out = generate(
        batch, GenerationConfig(max_new_tokens=data["max_new_tokens"]), method,
        step_callback=lambda step, final, chosen: logs.append(final[0].log_softmax(-1).clone()),
    )
    return out.sequences[0], logs, method


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


# ---------------------------------------------------------------------------------------------------------------
# shipped data


def assert_files_have_sha256(folder: Path, digests: dict[str, str]) -> None:
    """Each file of ``digests`` under ``folder`` has that SHA-256 (of its uncompressed content for a ``.gz``)."""
    import gzip
    import hashlib

    for name, digest in digests.items():
        data = (folder / name).read_bytes()
        if name.endswith(".gz"):
            data = gzip.decompress(data)
        assert hashlib.sha256(data).hexdigest() == digest, name
