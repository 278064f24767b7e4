"""SPARC's hyper-parameters and the named presets of the official scripts."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True)
class SparcConfig:
    """``alpha``: amplification per selection (1.0 = vanilla, as in the official code); ``beta``: weight of the
    history in the EMA; ``tau``: relative-change threshold; ``selected_layer``: the layer whose attention selects;
    ``start_layer``..``end_layer`` (inclusive): the layers whose cached values are amplified."""

    alpha: float = 1.1
    beta: float = 0.1
    tau: float = 1.5
    selected_layer: int = 20
    start_layer: int = 0
    end_layer: int = 31

    @property
    def enabled(self) -> bool:
        return self.alpha != 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self, num_layers: int) -> None:
        """Clear errors for layer indices outside the model."""
        for name in ("selected_layer", "start_layer", "end_layer"):
            value = getattr(self, name)
            if not 0 <= value < num_layers:
                raise ValueError(f"{name}={value} is outside the model's {num_layers} layers")
        if self.start_layer > self.end_layer:
            raise ValueError(f"start_layer {self.start_layer} > end_layer {self.end_layer}")


PRESETS: dict[str, SparcConfig] = {
    "llava-1.5": SparcConfig(alpha=1.1, beta=0.1, tau=1.5, selected_layer=20, start_layer=0, end_layer=31),
    "llava-next": SparcConfig(alpha=1.1, beta=0.1, tau=4.0, selected_layer=20, start_layer=0, end_layer=31),
    "baseline": SparcConfig(alpha=1.0),
}


def get_preset(name: str, **overrides: Any) -> SparcConfig:
    """Preset ``name`` with the given fields replaced (``None`` values are ignored)."""
    try:
        preset = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown SPARC preset {name!r}; known: {', '.join(PRESETS)}") from None
    return replace(preset, **{k: v for k, v in overrides.items() if v is not None})
