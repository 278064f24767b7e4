"""PAI's settings under the official argument names, registered as the method ``pai`` with its presets.

Source: LALBJ/PAI @ 9bbd8bd (``attention.py``, ``CFG.py``, ``model_loader.py``, ``chair_eval.py``,
``pope_eval.py``); what the code does, line by line: ``spec/pai-official.md``.

Parameters (the scripts' flags, underscored): ``use_attn`` (``--use-attn``), ``alpha``, ``use_cfg`` (``--use-cfg``),
``gamma``, ``start_layer``, ``end_layer`` (exclusive, as ``range(start_layer, end_layer)``). The dataclass defaults
are the scripts' argparse defaults: both parts off, alpha 0.2, gamma 2, layers 2..31.

Presets:

- ``official`` (= ``scripts``): the README's commands (``--use-attn --alpha 0.2 --use-cfg --gamma 1.1
  --start-layer 2 --end-layer 32``) with PAI's own protocol: greedy decoding, 512 new tokens, and where PAI's code
  supports the family, its prompt: on LLaVA-1.5 its hand-written template (``pai``: no space before ``USER:``, the
  image placeholder then a space then the question) and CLIP resize + center-crop (no pad); for captioning
  ``chair_eval.py``'s query "Please help me describe the image in detail." (LLaVA-1.5 and InstructBLIP).
  LLaVA-NeXT is not in PAI's code: it keeps the benchmark's template and preprocessing.
- ``paper``: the README's parameters under the benchmark's own protocol (the SPARC paper compares every method
  under one captioning protocol).
- ``argparse``: the argparse defaults (nothing switched on: plain greedy decoding through PAI's code path) with
  PAI's protocol, as running a script without flags.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from llava.methods import ALL_LAYERS_END, FamilyDefault, MethodSpec, Preset, Rule, register_method
from llava.model.families.qwen2_vl import QWEN_FAMILIES

SOURCE = "LALBJ/PAI @ 9bbd8bd (attention.py, CFG.py, model_loader.py, chair_eval.py, pope_eval.py), spec/pai-official.md"
CAPTION_QUERY = "Please help me describe the image in detail."
"""``chair_eval.py``'s captioning query (LLaVA's own is "Please describe this image in detail.")."""


@dataclass(frozen=True)
class PaiConfig:
    """``use_attn``: re-weight the last query's pre-softmax attention to the image, ``A + alpha * |A|``, in layers
    ``start_layer .. end_layer - 1``; ``use_cfg``: contrast with the text-only prompt,
    ``gamma * (s - u) + u`` on log-probabilities (``s`` image, ``u`` text-only) where ``s >= log(0.1) + max(s)``.

    Raises ``ValueError`` for values outside their range; :meth:`validate` checks the layers against a model.
    """

    use_attn: bool = False
    alpha: float = 0.2
    use_cfg: bool = False
    gamma: float = 2.0
    start_layer: int = 2
    end_layer: int = 32

    def __post_init__(self) -> None:
        for name in ("use_attn", "use_cfg"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if not (math.isfinite(self.alpha) and self.alpha >= 0):
            raise ValueError(f"alpha must be a finite number >= 0 (0 = no re-weighting), got {self.alpha}")
        if not (math.isfinite(self.gamma) and self.gamma > 0):
            raise ValueError(f"gamma must be a finite number > 0 (1 = no contrast), got {self.gamma}")
        if self.start_layer < 0:
            raise ValueError(f"start_layer must be >= 0, got {self.start_layer}")
        if self.end_layer <= self.start_layer:
            raise ValueError(f"end_layer {self.end_layer} must be > start_layer {self.start_layer} (end is exclusive)")

    def validate(self, num_layers: int) -> None:
        """Clear error for a layer range outside a model of ``num_layers`` layers (checked where the layers are used:
        with ``use_attn``)."""
        if self.use_attn and self.end_layer > num_layers:
            raise ValueError(f"end_layer={self.end_layer} is beyond the model's {num_layers} layers (end is exclusive)")

    @property
    def contrasts(self) -> bool:
        """Whether the text-only branch runs: ``CFGLogits`` returns plain log-probabilities when ``gamma == 1``."""
        return self.use_cfg and self.gamma != 1

    def reweights_at(self, step: int) -> bool:
        """Whether the image branch's forward of step ``step`` (0: the prefill) is re-weighted, as the official flags
        make it: ``llama_modify`` sets ``use_cfg`` on the layers, and ``CFGLogits`` sets it to ``True`` around its
        text-only forward and ``False`` after it (``CFG.py:32-33, 48-49``), unless ``gamma == 1`` (it returns before).
        So with CFG the prefill is never re-weighted and every later step is; with ``gamma == 1`` no step is."""
        if not self.use_attn:
            return False
        if not self.use_cfg:
            return True
        return self.contrasts and step > 0


README_COMMANDS = {"use_attn": True, "alpha": 0.2, "use_cfg": True, "gamma": 1.1, "start_layer": 2, "end_layer": 32}
"""The README's CHAIR and POPE commands."""
_PROTOCOL = {"decoding": "greedy", "max_new_tokens": 512, "num_beams": 1}  # chair_eval.py / pope_eval.py defaults
_PROTOCOL_RULES = (
    Rule({"conv_mode": "pai", "image_aspect": "crop"}, family=("llava",)),
    Rule({"prompt": CAPTION_QUERY}, family=("llava", "instructblip"), task=("caption",)),
)

_official = Preset("the README commands (attn 0.2 + CFG 1.1, layers 2..31) with PAI's protocol (greedy, 512 tokens; "
                   "LLaVA-1.5: its template and center crop; captioning: its query)",
                   {**README_COMMANDS, **_PROTOCOL}, _PROTOCOL_RULES)
_paper = Preset("the README's parameters (attn 0.2 + CFG 1.1, layers 2..31) under the benchmark's protocol", README_COMMANDS)
_argparse = Preset("the scripts' argparse defaults (nothing on) with PAI's protocol", _PROTOCOL, _PROTOCOL_RULES)

QWEN_DEFAULT = FamilyDefault(QWEN_FAMILIES, {"end_layer": ALL_LAYERS_END}, "Qwen2-VL family default, not from a paper")
"""No paper gives PAI values for Qwen2-VL: the README's values, re-weighting "all layers but the first two" as on
LLaVA (``range(2, depth)``), the text-only branch without the vision block."""
PAI = register_method(MethodSpec(
    name="pai", config=PaiConfig, factory="sparc.pai.method:Pai",
    presets={"paper": _paper, "scripts": _official, "official": _official, "argparse": _argparse},
    description="PAI: attention to the image amplified (A + alpha|A|), CFG against the text-only prompt",
    source=SOURCE,
    family_defaults=(QWEN_DEFAULT,),
))
