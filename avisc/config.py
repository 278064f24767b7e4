"""Settings of AvisC and of the baselines it is compared with (VCD, M3ID), with the presets of the paper and of the
official scripts.

``paper``: the paper's stated configuration (P = layer_gamma 0.5, lambda 1, alpha 2.5 for LLaVA-1.5 / 3 for
InstructBLIP, beta 0.1, zeros masking; VCD alpha 1, noise step 500; M3ID beta 0.1).
``scripts``: what the shipped evaluation scripts pass, per benchmark (e.g. POPE: lambda 0.99 for LLaVA / 0.95 for
InstructBLIP and alpha 1.0; AMBER: lambda 1, alpha 2.5; MME: lambda 1, alpha 1).
``official``: ``scripts`` plus the official sampler's override of VCD's alpha to 1.0 whatever is asked
(``avisc_sample.py:229``); in the other presets an explicit ``cd_alpha`` is honoured for VCD.
All presets sample at temperature 1 (seed 42; MME scripts 55); any of them can be decoded greedily instead.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

METHODS = ("base", "vcd", "m3id", "avisc")
MASKING_SCHEMES = ("zeros", "ones", "noise")
PRESET_NAMES = ("paper", "scripts", "official")


@dataclass(frozen=True)
class ContrastConfig:
    """``cd_alpha``/``cd_beta``: contrast weight and plausibility cutoff (``log beta + max logit``); ``layer_gamma``,
    ``lamb``, ``masking_scheme``: AvisC's layer share, threshold and masking; ``noise_step``: VCD's diffusion step;
    ``m3id_lambda``: M3ID's decay; ``force_vcd_alpha_one``: the official sampler's VCD override."""

    method: str = "avisc"
    cd_alpha: float = 2.5
    cd_beta: float = 0.1
    layer_gamma: float = 0.5
    lamb: float = 1.0
    masking_scheme: str = "zeros"
    noise_step: int = 500
    m3id_lambda: float = 0.02
    force_vcd_alpha_one: bool = False

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; expected one of {', '.join(METHODS)}")
        if self.masking_scheme not in MASKING_SCHEMES:
            raise ValueError(f"unknown masking scheme {self.masking_scheme!r}; expected one of {', '.join(MASKING_SCHEMES)}")
        if not 0 < self.cd_beta <= 1:
            raise ValueError(f"cd_beta must be in (0, 1], got {self.cd_beta}")
        if not 0 <= self.noise_step < 1000:
            raise ValueError(f"noise_step must be in [0, 1000), got {self.noise_step}")

    @property
    def vcd_alpha(self) -> float:
        return 1.0 if self.force_vcd_alpha_one else self.cd_alpha

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_PAPER_ALPHA = {"instructblip": 3.0}  # LLaVA families: 2.5
_SCRIPT_SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    # benchmark -> family -> AvisC settings the shipped scripts pass (avisc-official.md section 3)
    "pope": {"llava": {"lamb": 0.99, "cd_alpha": 1.0}, "instructblip": {"lamb": 0.95, "cd_alpha": 1.0}},
    "amber": {"llava": {"lamb": 1.0, "cd_alpha": 2.5}, "instructblip": {"lamb": 1.0, "cd_alpha": 2.5}},
    "mme": {"llava": {"lamb": 1.0, "cd_alpha": 1.0}, "instructblip": {"lamb": 1.0, "cd_alpha": 1.0}},
}
SCRIPT_SEEDS = {"mme": 55}


def preset(name: str, method: str, family: str, benchmark: str | None = None, **overrides: Any) -> ContrastConfig:
    """The settings of ``method`` under preset ``name`` for a model family and benchmark; ``overrides`` that are not
    ``None`` replace preset values."""
    if name not in PRESET_NAMES:
        raise ValueError(f"unknown preset {name!r}; expected one of {', '.join(PRESET_NAMES)}")
    family = "instructblip" if family == "instructblip" else "llava"
    values: dict[str, Any] = {"method": method, "cd_alpha": _PAPER_ALPHA.get(family, 2.5)}
    if name in ("scripts", "official"):
        if benchmark not in _SCRIPT_SETTINGS:
            raise ValueError(f"preset {name!r} needs a benchmark among {', '.join(_SCRIPT_SETTINGS)}")
        values.update(_SCRIPT_SETTINGS[benchmark][family])
    if method == "vcd":
        values["cd_alpha"] = 1.0  # VCD's own setting, and what the official runs used
    values["force_vcd_alpha_one"] = name == "official"
    values.update({k: v for k, v in overrides.items() if v is not None})
    return replace(ContrastConfig(), **values)
