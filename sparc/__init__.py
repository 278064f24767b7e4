"""SPARC (Jung et al., ICML 2025): selective, progressive attention recalibration, on the hook point of ``llava``."""
from sparc.config import PRESETS, SparcConfig, get_preset
from sparc.method import Sparc, SparcHook

__all__ = ["PRESETS", "Sparc", "SparcConfig", "SparcHook", "get_preset"]
