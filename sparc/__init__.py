"""SPARC (Jung et al., ICML 2025): selective, progressive attention recalibration, on the hook point of ``llava``.

Importing the package registers the method ``sparc`` (:mod:`sparc.config`, light); the implementation is
:mod:`sparc.method`.
"""
from sparc.config import SPARC, SparcConfig

__all__ = ["SPARC", "SparcConfig"]
