"""SPARC's hyper-parameters, registered as the method ``sparc`` with the presets of the official scripts.

The official captioning scripts (``sparc-official.md`` section 2) all run alpha 1.1, beta 0.1, layer 20, layers 0-31,
with tau 1.5 on LLaVA-1.5 and 4.0 on LLaVA-NeXT; the paper states the same values. So ``paper``, ``scripts`` and
``official`` are one preset, with LLaVA-NeXT's tau as a family rule. The paper's two ablations are presets too:
``no_selection`` (tau -1: every image token amplified at every step) and ``no_ema`` (beta 0: each step compared with
the previous one only). (The official ``eval.py`` argparse defaults,
alpha 1.0, are the baseline: no patch is applied when alpha is 1.0.)
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from llava.methods import LAST_LAYER, ByDepth, FamilyDefault, MethodSpec, Preset, Rule, register_method
from llava.model.families.qwen2_vl import QWEN_FAMILIES


@dataclass(frozen=True)
class SparcConfig:
    """``alpha``: amplification per selection (1.0 = plain decoding, as in the official code); ``beta``: weight of the
    history in the EMA; ``tau``: relative-change threshold; ``selected_layer``: the layer whose attention selects;
    ``start_layer``..``end_layer`` (inclusive): the layers whose cached values are amplified.

    Raises ``ValueError`` for values outside their range; :meth:`validate` also checks the layers against a model.
    """

    alpha: float = 1.1
    beta: float = 0.1
    tau: float = 1.5
    selected_layer: int = 20
    start_layer: int = 0
    end_layer: int = 31

    def __post_init__(self) -> None:
        if not (math.isfinite(self.alpha) and self.alpha > 0):
            raise ValueError(f"alpha must be a finite number > 0 (1.0 = plain decoding), got {self.alpha}")
        if not math.isfinite(self.tau):
            raise ValueError(f"tau must be a finite number, got {self.tau}")
        if not 0 <= self.beta <= 1:
            raise ValueError(f"beta must be in [0, 1], got {self.beta}")
        for name in ("selected_layer", "start_layer", "end_layer"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.start_layer > self.end_layer:
            raise ValueError(f"start_layer {self.start_layer} > end_layer {self.end_layer}")

    @property
    def enabled(self) -> bool:
        return self.alpha != 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self, num_layers: int) -> None:
        """Clear errors for layer indices outside a model of ``num_layers`` layers."""
        for name in ("selected_layer", "start_layer", "end_layer"):
            value = getattr(self, name)
            if not 0 <= value < num_layers:
                raise ValueError(f"{name}={value} is outside the model's {num_layers} layers")


_NEXT_TAU = Rule({"tau": 4.0}, family=("llava_next",))
_OFFICIAL = Preset(
    "the official scripts and the paper: alpha 1.1, beta 0.1, tau 1.5 (LLaVA-NeXT 4.0), layer 20, layers 0-31",
    rules=(_NEXT_TAU,),
)
NO_SELECTION = Preset(
    "ablation 'no selection' (the paper's): every image token amplified at every step; tau -1 selects every token "
    "(the relative change (a - ema) / ema is at least -1 for any attention a >= 0), all else as paper",
    {"tau": -1.0},
)
NO_EMA = Preset(
    "ablation 'no EMA' (the paper's): each step compared with the previous step only; beta 0 makes the EMA the last "
    "step's attention (ema = (1 - 0) * a + 0 * ema), all else as paper",
    {"beta": 0.0}, (_NEXT_TAU,),
)
QWEN_DEFAULT = FamilyDefault(
    QWEN_FAMILIES,
    {"selected_layer": ByDepth(20 / 32, 0, "layer 20 of 32 scaled to the depth"), "end_layer": LAST_LAYER},
    "Qwen2-VL family default, not from a paper",
)
"""No paper gives SPARC values for Qwen2-VL: the LLaVA-1.5 values (alpha 1.1, beta 0.1, tau 1.5), every layer
amplified (``0 .. depth-1``, as 0..31 on LLaVA), and the selecting layer at the same relative depth as layer 20 of 32
(17 of Qwen2-VL-7B's 28)."""
SPARC = register_method(MethodSpec(
    name="sparc",
    config=SparcConfig,
    factory="sparc.method:Sparc",
    presets={"paper": _OFFICIAL, "scripts": _OFFICIAL, "official": _OFFICIAL, "no_selection": NO_SELECTION,
             "no_ema": NO_EMA},
    description="SPARC: selective, progressive attention recalibration of the image tokens",
    source="mingi000508/SPARC @ bad02ff (attn_util.py, eval.py, scripts/*), spec/sparc-official.md",
    family_defaults=(QWEN_DEFAULT,),
))
