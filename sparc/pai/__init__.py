"""PAI (Liu et al., ECCV 2024, "Paying More Attention to Image"): attention re-weighting towards the image and a
classifier-free-guidance contrast against the text-only prompt, on the hook point and the decoding loop of ``llava``.

Importing the package registers the method ``pai`` (:mod:`sparc.pai.config`, light); the implementation is
:mod:`sparc.pai.method`.
"""
from sparc.pai.config import PAI, PaiConfig

__all__ = ["PAI", "PaiConfig"]
