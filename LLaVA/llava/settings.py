"""Settings that validate themselves where they are built (light: no torch).

- :class:`GenerationConfig`: what the decoding loop takes (transformers' names and semantics). The one home of the
  checks of ``max_new_tokens``, ``temperature``, ``top_k`` and ``top_p``.
- :class:`Protocol`: everything a benchmark run decides apart from the method (template, prompt, preprocessing,
  decoding, token budget, seed, beams, text cut), resolved from the benchmark, the model family, the method's preset
  and the flags (``eval.benchmarks``); frozen, validated, and the source of the run's :class:`GenerationConfig`.

>>> Protocol(decoding="sample", temperature=0.7, max_new_tokens=64).generation_config(eos_token_ids=(2,)).do_sample
True
>>> GenerationConfig(max_new_tokens=0)
Traceback (most recent call last):
ValueError: max_new_tokens must be at least 1, got 0
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

from llava.constants import MIN_TEMPERATURE

DECODINGS = ("greedy", "sample")


def check_finite(values: Mapping[str, Any]) -> None:
    """``ValueError`` naming the first float of ``values`` that is NaN or infinite: no method parameter or protocol
    value means anything there, and NaN would never compare equal when a run is resumed."""
    for name, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value}")


@dataclass(frozen=True)
class GenerationConfig:
    """Decoding settings of the loop (transformers' names and semantics): at most ``max_new_tokens`` tokens; greedy,
    or sampling (``do_sample``) at ``temperature`` after top-k then top-p; stop at any of ``eos_token_ids``
    (``pad_token_id`` fills a finished row). Raises ``ValueError`` for a value that cannot run."""

    max_new_tokens: int = 512
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    eos_token_ids: tuple[int, ...] = (2,)
    pad_token_id: int = 0

    def __post_init__(self) -> None:
        check_finite({"temperature": self.temperature, "top_p": self.top_p})
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if not self.temperature >= MIN_TEMPERATURE:
            raise ValueError(f"temperature must be at least {MIN_TEMPERATURE} (greedy decoding: --decoding greedy), "
                             f"got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


@dataclass(frozen=True)
class Protocol:
    """A benchmark run's protocol. ``conv_mode``: the LLaVA template (``None``: the family's own prompt);
    ``prompt``: the captioning question (``None``: each sample's own); ``image_aspect``: LLaVA's preprocessing mode
    (``None``: the model's own); ``min_pixels`` / ``max_pixels``: Qwen2-VL's resize bounds; ``decoding``: greedy or
    sample, with ``temperature`` / ``top_k`` / ``top_p``; ``max_new_tokens``; ``seed`` (subset draws and sampling);
    ``num_beams`` (beam search, greedy only); ``text_cut``: an answer ends before the first occurrence of this text.
    Raises ``ValueError`` for values that cannot run."""

    conv_mode: str | None = None
    prompt: str | None = None
    image_aspect: str | None = None
    min_pixels: int | None = None
    max_pixels: int | None = None
    decoding: str = "greedy"
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    max_new_tokens: int = 512
    seed: int = 42
    num_beams: int = 1
    text_cut: str | None = None

    def __post_init__(self) -> None:
        check_finite(self.to_dict())
        if self.decoding not in DECODINGS:
            raise ValueError(f"decoding must be one of {', '.join(DECODINGS)}, got {self.decoding!r}")
        self.generation_config(())  # max_new_tokens, temperature, top_k, top_p
        if self.num_beams < 1:
            raise ValueError(f"num_beams must be at least 1, got {self.num_beams}")
        if self.num_beams > 1 and self.decoding != "greedy":
            raise ValueError("beam search (num_beams > 1) needs greedy decoding (--decoding greedy)")
        for name in ("min_pixels", "max_pixels"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if self.min_pixels is not None and self.max_pixels is not None and self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels {self.min_pixels} is above max_pixels {self.max_pixels}")

    @property
    def sampling(self) -> bool:
        return self.decoding == "sample"

    def generation_config(self, eos_token_ids: tuple[int, ...]) -> GenerationConfig:
        """The decoding loop's settings (the EOS ids are the model family's)."""
        return GenerationConfig(max_new_tokens=self.max_new_tokens, do_sample=self.sampling,
                                temperature=self.temperature if self.sampling else 1.0, top_k=self.top_k,
                                top_p=self.top_p, eos_token_ids=tuple(eos_token_ids))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **values: Any) -> "Protocol":
        return dataclasses.replace(self, **values)


PROTOCOL_FIELDS = tuple(field.name for field in dataclasses.fields(Protocol))
"""The protocol settings a benchmark defines and a method preset or a flag may override."""
