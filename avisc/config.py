"""Settings of AvisC and of the baselines it is compared with (VCD, M3ID), registered as methods with their presets.

Parameters keep the official argument names (``avisc-official.md`` section 3): AvisC ``layer_gamma, lamb, cd_alpha,
cd_beta, masking_scheme``; VCD ``cd_alpha, cd_beta, noise_step``; M3ID ``cd_beta, m3id_lambda`` (the official code
hard-codes 0.02).

Presets (each method defines all three; values below are what differs from the dataclass defaults):

- ``paper``: the AvisC paper's configuration: layer_gamma 0.5, lamb 1, cd_alpha 2.5 (LLaVA) / 3 (InstructBLIP),
  cd_beta 0.1, zeros masking; VCD alpha 1, noise step 500; M3ID lambda 0.02, beta 0.1.
- ``scripts``: what the shipped evaluation scripts pass, per benchmark (POPE: lamb 0.99 for LLaVA / 0.95 for
  InstructBLIP and alpha 1.0; AMBER: lamb 1, alpha 2.5; MME: lamb 1, alpha 1); elsewhere the paper's.
- ``official``: ``scripts``; for VCD alpha 1.0, which the official sampler uses whatever is asked
  (``avisc_sample.py:229``).

Every preset samples at temperature 1 as the benchmark protocols say; any of them can be decoded greedily instead.
"""
from __future__ import annotations

from dataclasses import dataclass

from llava.methods import FamilyDefault, MethodSpec, Preset, Rule, register_method
from llava.model.families.qwen2_vl import QWEN_FAMILIES

MASKING_SCHEMES = ("zeros", "ones", "noise")
DIFFUSION_STEPS = 1000
LLAVA_FAMILIES = ("llava", "llava_next")
SOURCE = "sangminwoo/AvisC @ 772eba4 (avisc_utils/avisc_sample.py, eval_bench/*), spec/avisc-official.md"


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class ContrastConfig:
    """What every contrastive method has: ``cd_beta``, the plausibility cutoff (tokens whose original logit is below
    ``log(cd_beta) + max`` are dropped)."""

    cd_beta: float = 0.1

    def __post_init__(self) -> None:
        _check(0 < self.cd_beta <= 1, f"cd_beta must be in (0, 1], got {self.cd_beta}")


@dataclass(frozen=True)
class AviscConfig(ContrastConfig):
    """``layer_gamma``: share of image attention covered by the chosen layers; ``lamb``: blind-token threshold
    ``mean + lamb * std``; ``cd_alpha``: contrast weight; ``masking_scheme``: what replaces the non-blind tokens."""

    layer_gamma: float = 0.5
    lamb: float = 1.0
    cd_alpha: float = 2.5
    masking_scheme: str = "zeros"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(0 < self.layer_gamma <= 1, f"layer_gamma must be in (0, 1], got {self.layer_gamma}")
        _check(self.cd_alpha >= 0, f"cd_alpha must be >= 0, got {self.cd_alpha}")
        _check(self.masking_scheme in MASKING_SCHEMES,
               f"unknown masking_scheme {self.masking_scheme!r}; expected one of {', '.join(MASKING_SCHEMES)}")


@dataclass(frozen=True)
class VcdConfig(ContrastConfig):
    """``cd_alpha``: contrast weight; ``noise_step``: the diffusion step of the noised image (of 1000)."""

    cd_alpha: float = 1.0
    noise_step: int = 500

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.cd_alpha >= 0, f"cd_alpha must be >= 0, got {self.cd_alpha}")
        _check(0 <= self.noise_step < DIFFUSION_STEPS, f"noise_step must be in [0, {DIFFUSION_STEPS}), got {self.noise_step}")


@dataclass(frozen=True)
class M3idConfig(ContrastConfig):
    """``m3id_lambda``: decay of ``g_t = exp(-lambda * t)`` (the official code hard-codes 0.02)."""

    m3id_lambda: float = 0.02

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.m3id_lambda > 0, f"m3id_lambda must be > 0, got {self.m3id_lambda}")


QWEN_DEFAULT = FamilyDefault(QWEN_FAMILIES, note="Qwen2-VL family default, not from a paper")
"""No paper gives AvisC, VCD or M3ID values for Qwen2-VL: the presets' values (LLaVA's) apply, recorded as such."""

# The shipped scripts' AvisC settings per benchmark and family (avisc-official.md section 3). MME's seed 55 under these
# presets is a fact of the benchmark's scripts, not of a method: see eval.benchmarks.
_SCRIPT_RULES = (
    Rule({"lamb": 0.99, "cd_alpha": 1.0}, family=LLAVA_FAMILIES, benchmark=("pope",)),
    Rule({"lamb": 0.95, "cd_alpha": 1.0}, family=("instructblip",), benchmark=("pope",)),
    Rule({"lamb": 1.0, "cd_alpha": 2.5}, benchmark=("amber",)),
    Rule({"lamb": 1.0, "cd_alpha": 1.0}, benchmark=("mme",)),
)
_PAPER_ALPHA = Rule({"cd_alpha": 3.0}, family=("instructblip",))

_avisc_paper = Preset("the AvisC paper: layer_gamma 0.5, lamb 1, alpha 2.5 (LLaVA) / 3 (InstructBLIP), beta 0.1, zeros",
                      rules=(_PAPER_ALPHA,))
_avisc_scripts = Preset("the shipped scripts' values per benchmark (POPE lamb 0.99 / 0.95, alpha 1; AMBER lamb 1, "
                        "alpha 2.5; MME lamb 1, alpha 1)", rules=(_PAPER_ALPHA, *_SCRIPT_RULES))
AVISC = register_method(MethodSpec(
    name="avisc", config=AviscConfig, factory="avisc.methods:Avisc",
    presets={"paper": _avisc_paper, "scripts": _avisc_scripts, "official": _avisc_scripts},
    description="AvisC: contrast with the image whose non-blind tokens are masked", source=SOURCE,
    family_defaults=(QWEN_DEFAULT,),
))

_vcd_paper = Preset("VCD: alpha 1, beta 0.1, noise step 500")
VCD = register_method(MethodSpec(
    name="vcd", config=VcdConfig, factory="avisc.methods:Vcd",
    presets={"paper": _vcd_paper, "scripts": _vcd_paper,
             "official": Preset("the official sampler's VCD: alpha 1.0 whatever is asked", {"cd_alpha": 1.0})},
    description="VCD: contrast with the image under diffusion noise", source=SOURCE,
    family_defaults=(QWEN_DEFAULT,),
))

_m3id_paper = Preset("M3ID: lambda 0.02, beta 0.1")
M3ID = register_method(MethodSpec(
    name="m3id", config=M3idConfig, factory="avisc.methods:M3id",
    presets={"paper": _m3id_paper, "scripts": _m3id_paper, "official": _m3id_paper},
    description="M3ID: contrast with the text-only prompt, weighted by (1 - g_t) / g_t", source=SOURCE,
    family_defaults=(QWEN_DEFAULT,),
))
