"""From a resolved run to decoded answers: prompts, images, per-sample generators, the method, the decoding loop.

One :class:`Decoder` serves both runners, so every benchmark builds its batches the same way whatever the method.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image

from eval.benchmarks import ResolvedRun
from eval.benchmarks.samples import Sample
from eval.methods import get_method
from llava.batch import PromptBatch
from llava.decoding import decode
from llava.mm_utils import Preprocessing, load_image
from llava.model.builder import LoadedModel
from llava.settings import Protocol


def sample_seed(seed: int, key: str) -> int:
    """A per-sample seed from the run seed and the sample id: the same draw whatever the batch, shard or resume."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "little") & (2**63 - 1)


def generators_for(samples: Sequence[Sample], seed: int, device: torch.device) -> list[torch.Generator]:
    return [torch.Generator(device=device).manual_seed(sample_seed(seed, s.key)) for s in samples]


def answer_text(decoded: str, text_cut: str | None) -> str:
    """The answer recorded for a decoded text: cut before the first ``text_cut`` when one is set (OPERA's LLaVA
    wrapper, ``minigpt4/models/llava.py:239-245``), then stripped.

    >>> answer_text(" A dog on a sofa.### Human: what", "###"), answer_text(" A dog. ", None)
    ('A dog on a sofa.', 'A dog.')
    """
    if text_cut:
        decoded = decoded.split(text_cut, 1)[0]
    return decoded.strip()


def preprocessing_of(loaded: LoadedModel, protocol: Protocol) -> Preprocessing:
    """How a run preprocesses its images: the protocol's ``image_aspect`` and the family's own image settings
    (Qwen2-VL's ``min_pixels`` / ``max_pixels``)."""
    settings = {name: getattr(protocol, name) for name in loaded.family.spec.image_settings}
    return loaded.family.preprocessing(loaded.model, loaded.image_processor, protocol.image_aspect, **settings)


class QuestionTooLong(ValueError):
    """A question that cannot fit the model's context; found on a prefix, never by tokenising all of it."""


def check_question_length(question: str, tokenizer: Any, context: int) -> None:
    """:class:`QuestionTooLong` when ``question`` alone makes more than ``context`` tokens. Tokenises at most a
    prefix of about four characters per token of the context (no tokenizer makes fewer tokens than characters / 4 of
    real text, and byte-level ones at most 4 per character), doubling it only while its tokens still fit: the work is
    bounded by the context, not by the question (a 50 MB question is refused after a few dozen kB)."""
    if 4 * len(question) <= context:  # even four tokens per character fit
        return
    end = context
    while True:
        count = len(tokenizer(question[:end], add_special_tokens=False).input_ids)
        if count > context:
            raise QuestionTooLong(f"a question of {len(question):,} characters is longer than the model's context of "
                                  f"{context:,} tokens (its first {end:,} characters already make {count:,}): "
                                  "shorten it")
        if end >= len(question):
            return
        end *= 2


class Decoder:
    """Answers a batch of samples with the run's method and protocol; called by :class:`eval.runner.Runner`."""

    def __init__(self, loaded: LoadedModel, run: ResolvedRun):
        self.loaded, self.run = loaded, run
        self.method_spec = get_method(run.method)
        self.config = run.protocol.generation_config(loaded.family.eos_token_ids(loaded.model, loaded.tokenizer))
        self.task = run.benchmark.task
        self.preprocessing = preprocessing_of(loaded, run.protocol)

    def load_image(self, path: Path) -> Image.Image:
        """An image as RGB, refused before decoding when its preprocessing would exceed the size bound
        (:data:`llava.mm_utils.MAX_PREPROCESS_PIXELS`)."""
        return load_image(path, self.preprocessing)

    def identity(self, spec: Any) -> dict[str, Any]:
        """The settings that decide the outputs (checked when a run is resumed): model, method, protocol."""
        model = self.loaded.model
        return {
            "model_path": spec.model.model_path, "vision_tower": spec.model.vision_tower, "dtype": str(model.dtype),
            "attn": model.config.get_text_config()._attn_implementation, "benchmark": self.run.benchmark.name,
            "method": self.run.method, "method_params": self.run.params, "protocol": self.run.protocol.to_dict(),
        }

    def __call__(self, samples: Sequence[Sample], images: Sequence[Image.Image]) -> list[dict[str, Any]]:
        loaded, protocol = self.loaded, self.run.protocol
        family, model = loaded.family, loaded.model
        for sample in samples:
            check_question_length(sample.question, loaded.tokenizer, loaded.context_len)
        prompts = [family.format_prompt(model, s.question, protocol.conv_mode, loaded.tokenizer) for s in samples]
        pixels = family.pixel_values(model, loaded.image_processor, images, self.preprocessing)
        batch = PromptBatch(model, loaded.tokenizer, loaded.image_processor, prompts, pixels)
        method = self.method_spec.create(self.run.method_config)
        output = decode(batch, self.config, method, protocol.num_beams,
                        generators_for(samples, protocol.seed, loaded.device))
        answers = []
        for ids in output.sequences:
            finished = bool(ids) and ids[-1] in self.config.eos_token_ids
            answer = {
                self.task.answer_field: answer_text(loaded.tokenizer.decode(ids, skip_special_tokens=True),
                                                    protocol.text_cut),
                "num_tokens": len(ids),
                "finish_reason": "eos" if finished else "length",
            }
            if self.task.answer_file_fields:  # LLaVA's answer-file convention
                answer.update(model_id=loaded.model_path, method=self.run.method)
            answers.append(answer)
        return answers
