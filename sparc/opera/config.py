"""OPERA's settings, registered as the method ``opera`` with its presets (light: no torch import).

Parameters keep the official ``generate`` argument names (``spec/opera-official.md`` section 1): ``beam`` (the beam
width, ``--beam``), ``scale_factor``, ``threshold``, ``num_attn_candidates``, ``penalty_weights``; the window of
512 (``window_size``) is not an argument in the official code and is fixed here too.

Presets (OPERA's own protocol is that of ``chair_eval.py`` / ``pope_eval.py`` on LLaVA-1.5: its template, CLIP
resize + center crop, beam search, 512 new tokens for captions and 10 for POPE, the answer text cut at "###"):

- ``official``: the README command (``--beam 5``) with the argparse defaults (scale 50, threshold 15, 5 candidates,
  penalty 1) and OPERA's protocol;
- ``scripts``: ``official`` (the repository ships no other script);
- ``efficient``: the README's faster variant (threshold 25, one candidate) with OPERA's protocol;
- ``paper``: the OPERA paper's hyper-parameters (those of ``official``) inside the benchmark's own protocol, as the
  SPARC paper compares methods ("the hyper-parameters from their papers", one captioning protocol for all).

Every preset decodes greedily (beam search); OPERA cannot sample.
"""
from __future__ import annotations

from dataclasses import dataclass

from llava.methods import FamilyDefault, MethodSpec, Preset, Rule, register_method
from llava.model.families.qwen2_vl import QWEN_FAMILIES

WINDOW = 512
"""``window_size`` of ``opera_beam_search``: the length of its history, rollback budget and rejection tables."""

OPERA_CONV_MODE = "pai"
"""OPERA's LLaVA-1.5 prompt, ``system + "USER: <image> <question> ASSISTANT:"`` (no space before "USER:"), is
PAI's template."""

TEXT_CUT = "###"
"""OPERA's LLaVA wrapper ends the answer text before the first "###" (``minigpt4/models/llava.py:239-245``)."""

SOURCE = ("shikiw/OPERA @ 61426ef (transformers-4.29.2/src/transformers/generation/utils.py opera_beam_search, "
          "chair_eval.py, pope_eval.py, minigpt4/models/llava.py), spec/opera-official.md")


@dataclass(frozen=True)
class OperaConfig:
    """``beam``: beams (``num_beams``); ``scale_factor``: scale of the attention inside the over-trust product;
    ``threshold``: a rollback needs more than this many steps agreeing on the location; ``num_attn_candidates``:
    candidates per beam (also the rollback budget per position); ``penalty_weights``: weight of the penalty.

    Raises ``ValueError`` for values the official code cannot run (``beam`` 1 asserts there, fewer than one
    candidate raises)."""

    beam: int = 5
    scale_factor: float = 50.0
    threshold: int = 15
    num_attn_candidates: int = 5
    penalty_weights: float = 1.0

    def __post_init__(self) -> None:
        if self.beam < 2:
            raise ValueError(f"beam must be >= 2 (OPERA is a beam search; the official code asserts), got {self.beam}")
        if not self.scale_factor > 0:
            raise ValueError(f"scale_factor must be > 0, got {self.scale_factor}")
        if self.threshold < 0:
            raise ValueError(f"threshold must be >= 0, got {self.threshold}")
        if self.num_attn_candidates < 1:
            raise ValueError(f"num_attn_candidates must be >= 1, got {self.num_attn_candidates}")
        if self.penalty_weights < 0:
            raise ValueError(f"penalty_weights must be >= 0, got {self.penalty_weights}")

    @property
    def num_beams(self) -> int:
        """The beam width (``beam``, the official argument)."""
        return self.beam


_PROTOCOL = {"decoding": "greedy"}
_OWN_PROTOCOL = (
    Rule({"conv_mode": OPERA_CONV_MODE, "image_aspect": "crop", "text_cut": TEXT_CUT}, family=("llava",)),
    Rule({"max_new_tokens": 10}, benchmark=("pope",)),
)
_OFFICIAL = Preset(
    "the README command and argparse defaults (beam 5, scale 50, threshold 15, 5 candidates, penalty 1) with "
    "OPERA's protocol (LLaVA-1.5: its template and center crop; 512 new tokens for captions, 10 for POPE)",
    _PROTOCOL, _OWN_PROTOCOL,
)
OPERA = register_method(MethodSpec(
    name="opera",
    config=OperaConfig,
    factory="sparc.opera.search:Opera",
    presets={
        "paper": Preset("the OPERA paper's hyper-parameters (as official) in the benchmark's own protocol", _PROTOCOL),
        "scripts": _OFFICIAL,
        "official": _OFFICIAL,
        "efficient": Preset("the README's efficient variant (threshold 25, one candidate) with OPERA's protocol",
                            {**_PROTOCOL, "threshold": 25, "num_attn_candidates": 1}, _OWN_PROTOCOL),
    },
    description="OPERA: beam search with an over-trust penalty and retrospection-allocation rollback",
    source=SOURCE,
    search="beam",
    family_defaults=(FamilyDefault(QWEN_FAMILIES, note="Qwen2-VL family default, not from a paper"),),
))
